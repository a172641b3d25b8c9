"""The scope catalogue (受理范围指导清单) as data: each line of the plan's annex with its id, category, platform
and the words that point at it. The built-in one is `scope.yaml` next to this file; a city adds its own, longer
list with `advice.catalogue` in the site's file (docs/advice.md): a YAML file of the same form whose `extends:
builtin` keeps the annex and appends its lines (new ids) and categories, or, without `extends`, replaces it. Its
`version` is recorded with every advice, so the quarterly review knows which list advised what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from telephony.errors import ConfigError

PLATFORMS = ("110", "12345")
OTHER = "other"
ITEM_ID = re.compile(r"^[a-z_]{1,32}\.(110|12345)\.[0-9a-z_-]{1,32}$")
CATEGORY_KEY = re.compile(r"^[a-z_]{1,32}$")  # a ticket's category (telephony/ids.py CATEGORY)
VERSION = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    platform: str  # "110", "12345" or "other"
    text: str
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    version: str
    names: dict[str, str]  # category key -> its Chinese name
    items: dict[str, Item]  # id -> line, `other` included

    def item(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def lines(self, platform: str | None = None, category: str | None = None) -> list[Item]:
        return [i for i in self.items.values() if (platform is None or i.platform == platform)
                and (category is None or i.category == category)]


def builtin_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(resources.files("telephony.advice").joinpath("scope.yaml").read_text(
        encoding="utf-8"))
    return data


def load_catalogue(path: str = "") -> Catalogue:
    """The built-in catalogue, or a city's (`path`) on top of it or instead of it; refused with the key at fault."""
    if not path:
        return parse(builtin_data(), "telephony/advice/scope.yaml")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"advice.catalogue: cannot read {path}: {exc}", key="advice.catalogue",
                          file=path) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scope catalogue is a mapping", key="advice.catalogue", file=path)
    if data.get("extends") == "builtin":
        data = merged(builtin_data(), data)
    elif "extends" in data:
        raise ConfigError(f"{path}: extends: only 'builtin' is known", key="extends", file=path)
    return parse(data, path)


def merged(base: dict[str, Any], city: dict[str, Any]) -> dict[str, Any]:
    out = {"version": city.get("version"), "categories": {k: dict(v) for k, v in base["categories"].items()},
           "other": city.get("other", base["other"])}
    for key, cat in (city.get("categories") or {}).items():
        into = out["categories"].setdefault(key, {"name": (cat or {}).get("name", key)})
        for platform in PLATFORMS:
            into[platform] = [*into.get(platform, []), *((cat or {}).get(platform) or [])]
    return out


def parse(data: dict[str, Any], source: str) -> Catalogue:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {problem}", key=key, file=source)

    version = str(data.get("version") or "")
    if not VERSION.match(version):
        raise fail("version", "required: letters, digits and ._- (at most 40)")
    names: dict[str, str] = {}
    items: dict[str, Item] = {}
    for key, cat in (data.get("categories") or {}).items():
        if not CATEGORY_KEY.match(str(key)) or not isinstance(cat, dict) or not isinstance(cat.get("name"), str):
            raise fail(f"categories.{key}", "a category is a lower-case key with a name")
        names[key] = cat["name"]
        for platform in PLATFORMS:
            for n, raw in enumerate(cat.get(platform) or []):
                where = f"categories.{key}.{platform}[{n}]"
                item = _item(raw, key, platform, fail, where)
                if item.id in items:
                    raise fail(where, f"id {item.id!r} is used twice")
                items[item.id] = item
    other = data.get("other") or {}
    if not isinstance(other, dict) or not isinstance(other.get("text"), str):
        raise fail("other", "the text for matters of neither platform is required")
    items[OTHER] = Item(OTHER, "", OTHER, other["text"])
    return Catalogue(version, names, items)


def _item(raw: Any, category: str, platform: str, fail: Any, where: str) -> Item:
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or not raw["text"].strip():
        raise fail(where, "a line is {id, text, terms}")
    item_id = str(raw.get("id", ""))
    if not ITEM_ID.match(item_id) or not item_id.startswith(f"{category}.{platform}."):
        raise fail(where, f"id must read {category}.{platform}.<n>")
    terms = raw.get("terms") or []
    if not isinstance(terms, list) or not all(isinstance(t, str) and 0 < len(t) <= 20 for t in terms):
        raise fail(where, "terms are a list of words (at most 20 characters each)")
    return Item(item_id, category, platform, raw["text"].strip(), tuple(terms))
