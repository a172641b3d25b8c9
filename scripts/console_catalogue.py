"""Writes telephony/console/catalogue.json, the console's pick lists: the scope catalogue's categories (key and
Chinese name) and the city's division codes. Run it when the domain files change:

    python scripts/console_catalogue.py ../shared/domain
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).parents[1] / "telephony" / "console" / "catalogue.json"


def categories(scope: Path) -> list[dict[str, str]]:
    text = scope.read_text(encoding="utf-8")
    block = text.split("\nrules:", 1)[0]  # only the categories are needed; the rules are prose
    data = yaml.safe_load(block)["categories"]
    return [{"key": key, "name": value["name"]} for key, value in data.items()]


def divisions(table: Path) -> list[dict[str, str]]:
    with table.open(encoding="utf-8", newline="") as f:
        return [{"code": row["code"], "name": row["name"]} for row in csv.DictReader(f)]


def main() -> None:
    domain = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/domain")
    out = {"categories": categories(domain / "scope.yaml"), "divisions": divisions(domain / "divisions.csv")}
    OUT.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
