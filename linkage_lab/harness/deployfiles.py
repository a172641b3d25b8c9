"""What the deployment files refer to, for the tests that hold them to the product: the metric names the Grafana
dashboard and the Prometheus rules use, and the commands of docs/deploy.md by step.

docs/deploy.md marks each fenced `sh` block with `<!-- step: NAME -->` on the line before it; a test runs the
block of every step (tests/lab/test_deploy_stock.py, tests/unit/test_deploy_files.py) and
tests/unit/test_deploy_files.py checks that every step is run by one of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "linkage-controller.json"
RULES = ROOT / "deploy" / "prometheus" / "linkage-rules.yml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
METRIC = re.compile(r"\b(linkage_[a-z_]+)\b")
STEP = re.compile(r"<!-- step: ([a-z0-9-]+) -->\n```sh\n(.*?)```", re.DOTALL)
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*([node["expr"]] if isinstance(node.get("expr"), str) else []),
                *(e for v in node.values() for e in _exprs(v))]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    query = [v["definition"] for v in data["templating"]["list"] if v.get("definition")]
    return _exprs(data["panels"]) + query


def rule_exprs() -> list[str]:
    return _exprs(yaml.safe_load(RULES.read_text(encoding="utf-8")))


def metric_names(exprs: list[str]) -> set[str]:
    return {name for e in exprs for name in METRIC.findall(e)}


def family(name: str) -> tuple[str, str | None]:
    """The metric family a sample name belongs to, and the type its suffix implies."""
    for suffix, kind in (("_bucket", "histogram"), ("_count", None), ("_sum", None), ("_total", "counter")):
        if name.endswith(suffix):
            return name.removesuffix(suffix), kind
    return name, None


def doc_steps(path: Path = DEPLOY_DOC) -> dict[str, str]:
    steps: dict[str, str] = {}
    for name, body in STEP.findall(path.read_text(encoding="utf-8")):
        if name in steps:
            raise ValueError(f"{path.name}: step {name} appears twice")
        steps[name] = body
    return steps


def fenced_blocks(path: Path = DEPLOY_DOC) -> list[str]:
    """Every fenced shell block of the file, marked or not (a block without a step is run by no test)."""
    return re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)
