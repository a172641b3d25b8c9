"""Loading a site's configuration: defaults (in schema.py), then the YAML file, then LINKAGE_* environment
overrides, converted by msgspec into the typed SiteConfig and checked across keys. Every error names the key
(as a path into the file: `peers[0].trunk.port`) and the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import msgspec.inspect as mi
import yaml

from telephony.config.schema import ListenerTls, Peer, PeerTls, SiteConfig, Target
from telephony.errors import ConfigError
from telephony.ids import NUMBER

Fail = Callable[[str, str], ConfigError]
_AT = re.compile(r" - at `\$([^`]*)`$")
_NAMED = re.compile(r"`([^`]*)`")
_TYPE_INFO = mi.type_info(SiteConfig)
_EXPECTED = re.compile(r"^Expected `(\w+)(?: \| null)?`(.*)$")
_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "array": "a list", "bool": "true or false"}
WHOLE_LISTS = ("supervision.working_days", "threeway.emergency_categories")  # a bad element names the list
# features.conf's fixed codes (dialplans/linkage-features.conf.in): the attended transfer the controller drives
# over AMI, and blind transfer moved off '#'
FIXED_FEATURE_KEYS = {"*#7": "features.conf atxfer", "*#6": "features.conf blindxfer"}


_Tls = TypeVar("_Tls", PeerTls, ListenerTls)


def fail(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}", key=key, file=source)


def load_site_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}", file=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text: {exc.reason} at byte {exc.start}", file=str(p)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}", file=str(p)) from exc
    raw = _apply_env(raw, os.environ)
    return parse_site_config(raw, str(p))


def _apply_env(raw: Any, env: os._Environ[str] | dict[str, str]) -> Any:
    """LINKAGE_SECTION__KEY=value overrides one scalar (e.g. LINKAGE_CONTROLLER__API_TOKEN)."""
    if not isinstance(raw, dict):
        return raw
    for name, value in env.items():
        if not name.startswith("LINKAGE_") or "__" not in name:
            continue
        parts = [p.lower() for p in name[len("LINKAGE_"):].split("__")]
        node: Any = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            # A value replacing a string stays a string (a secret like 0123 must not turn octal); otherwise
            # a plain decimal becomes a number, so ports and timeouts can be overridden.
            if not isinstance(node.get(parts[-1]), str) and NUMBER.match(value):
                node[parts[-1]] = float(value) if "." in value else int(value)
            elif not isinstance(node.get(parts[-1]), str) and value.startswith("[") and value.endswith("]"):
                node[parts[-1]] = [v.strip() for v in value[1:-1].split(",") if v.strip()]  # a list: [2001,2002]
            else:
                node[parts[-1]] = value
    return raw


def parse_site_config(raw: Any, source: str) -> SiteConfig:
    if not isinstance(raw, dict):
        raise fail(source, "(top)", "must be a mapping")
    # An empty section (`keys:` with nothing under it) reads as absent, as it always has.
    data = {k: v for k, v in raw.items() if v is not None}
    if "source_file" in data:
        raise fail(source, "source_file", "unknown key")
    try:
        config = msgspec.convert(_strings(data, _TYPE_INFO), SiteConfig)
    except msgspec.ValidationError as exc:
        key, problem = _translate(str(exc))
        raise fail(source, key, problem) from exc
    return _checked(config, source, short_form=raw.get("targets") is None)


def _strings(value: Any, t: mi.Type) -> Any:
    """YAML reads `dial: 110` and `division: 370800` as numbers: where the file means a string, an integer is
    taken as its digits (never a boolean or a float)."""
    if type(value) is int and (isinstance(t, mi.StrType)
                               or (isinstance(t, mi.UnionType) and any(isinstance(u, mi.StrType) for u in t.types))):
        return str(value)
    if isinstance(t, mi.UnionType):
        structs = [u for u in t.types if isinstance(u, mi.StructType)]
        return _strings(value, structs[0]) if structs and isinstance(value, dict) else value
    if isinstance(t, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in t.fields}
        return {k: _strings(v, fields[k]) if k in fields else v for k, v in value.items()}
    if isinstance(t, (mi.VarTupleType, mi.ListType)) and isinstance(value, list):
        return [_strings(v, t.item_type) for v in value]
    return value


def _translate(text: str) -> tuple[str, str]:
    """(key, problem) of a msgspec error: `$.pbx.sip.port` is the key `pbx.sip.port`."""
    at = _AT.search(text)
    path = at.group(1).lstrip(".") if at else ""
    detail = text[:at.start()] if at else text
    named = _NAMED.search(detail)
    if detail.startswith("Object missing required field") and named:
        return _join(path, named.group(1)), "is required"
    if detail.startswith("Object contains unknown field") and named:
        return _join(path, named.group(1)), "unknown key"
    if path.startswith(WHOLE_LISTS):
        path = path.split("[", 1)[0]
    if detail.startswith("Expected `object"):
        return path or "(top)", "must be a mapping"
    if detail.startswith("Expected `array`") and "length" not in detail:
        return path, "must be a list"
    expected = _EXPECTED.match(detail)
    if expected is None:
        return path or "(top)", f"{detail[0].lower()}{detail[1:]}"
    kind, rest = expected.groups()
    if rest.startswith(" matching regex "):
        return path, f"does not match {rest[len(' matching regex '):]}"
    return path, f"must be {_KINDS.get(kind, kind)}{rest.split(', got')[0]}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _checked(c: SiteConfig, source: str, short_form: bool) -> SiteConfig:
    """What the types cannot say, and the values completed from others (the short form's target)."""
    def err(key: str, problem: str) -> ConfigError:
        return fail(source, key, problem)

    for key, host in _hosts(c):
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise err(key, f"{host!r} is not an IP address") from exc
    agents = c.accounts.agents
    if len({a.id for a in agents}) != len(agents):
        raise err("accounts.agents", "agent ids must be unique")
    tokens = [a.token for a in agents if a.token]
    if len(set(tokens)) != len(tokens):
        raise err("accounts.agents", "agent tokens must be unique")
    peers = tuple(_peer(err, i, p, source) for i, p in enumerate(c.peers))
    names = {p.name for p in peers}
    if c.transfer.overflow and c.transfer.overflow not in names:
        raise err("transfer.overflow", f"{c.transfer.overflow!r} is not a configured peer")
    targets = _targets(err, c, names, short_form)
    threeway = c.threeway
    if not threeway.target:
        threeway = msgspec.structs.replace(threeway, target=targets[0].name if targets else "x")
    elif targets and threeway.target not in {t.name for t in targets}:
        raise err("threeway.target", f"{threeway.target!r} is not a configured target")
    if not all(cat.isidentifier() for cat in threeway.emergency_categories):
        raise err("threeway.emergency_categories", "must be a list of category words")
    if threeway.accept_key == threeway.leave_key:
        raise err("threeway.leave_key", "must differ from accept_key")
    if c.pbx.ami.reconnect_max < c.pbx.ami.reconnect_min:
        raise err("pbx.ami.reconnect_max", "must not be below pbx.ami.reconnect_min")
    http = c.controller.http
    if http.tls is not None:
        if not http.tls.cert or not http.tls.key:
            raise err(f"controller.http.tls.{'key' if http.tls.cert else 'cert'}",
                      "is required: TLS on the listener needs both cert and key")
        http = msgspec.structs.replace(http, tls=_resolved(http.tls, source))
    public_url = c.controller.public_url.rstrip("/")
    if http.tls is not None and not public_url.startswith("https://"):
        raise err("controller.public_url", "must be https:// when controller.http.tls is set: peers reach "
                                           "ticket references under it")
    try:
        ZoneInfo(c.followup.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise err("followup.timezone", f"{c.followup.timezone!r} is not a known time zone") from exc
    _check_harassment(err, c)
    _check_queue(err, c, names)
    if c.reporting.queue_log and not c.reporting.url:
        raise err("reporting.queue_log", "needs reporting.url: the queue events are read into that database")
    supervision = msgspec.structs.replace(c.supervision, working_days=tuple(sorted(set(c.supervision.working_days))))
    config = msgspec.structs.replace(
        c, peers=peers, targets=targets, threeway=threeway, supervision=supervision, source_file=source,
        controller=msgspec.structs.replace(c.controller, http=http, public_url=public_url))
    _check_feature_keys(err, config, short_form)
    return config


def _check_harassment(err: Fail, c: SiteConfig) -> None:
    ids = {a.id for a in c.accounts.agents}
    for i, agent in enumerate(c.harassment.designated):
        if agent not in ids:
            raise err(f"harassment.designated[{i}]", f"{agent!r} is not an agent of accounts.agents")
    if c.harassment.policy == "designated" and not c.harassment.designated:
        raise err("harassment.designated", "policy designated needs at least one agent to ring first")


def _check_queue(err: Fail, c: SiteConfig, peers: set[str]) -> None:
    q = c.queue
    codes = {"queue.login_code": q.login_code, "queue.logout_code": q.logout_code,
             "queue.pause_code": q.pause_code, "queue.unpause_code": q.unpause_code}
    seen: dict[str, str] = {}
    for key, code in codes.items():
        if code in seen:
            raise err(key, f"{code} is also {seen[code]}: each queue code must differ")
        seen[code] = key
    for i, site in enumerate(q.surge.to):
        if site not in peers:
            raise err(f"queue.surge.to[{i}]", f"{site!r} is not a configured peer")
    if q.surge.waiting_off >= q.surge.waiting_on:
        raise err("queue.surge.waiting_off", "must be below queue.surge.waiting_on (hysteresis)")
    if q.surge.oldest_off >= q.surge.oldest_on:
        raise err("queue.surge.oldest_off", "must be below queue.surge.oldest_on (hysteresis)")


def _hosts(c: SiteConfig) -> Iterator[tuple[str, str]]:
    yield "pbx.sip.host", c.pbx.sip.host
    yield "pbx.ami.host", c.pbx.ami.host
    yield "pbx.agi.host", c.pbx.agi.host
    yield "controller.http.host", c.controller.http.host
    yield "accounts.citizen.host", c.accounts.citizen.host
    for i, a in enumerate(c.accounts.agents):
        yield f"accounts.agents[{i}].host", a.host
    for i, p in enumerate(c.peers):
        yield f"peers[{i}].trunk.host", p.trunk.host
    for i, t in enumerate(c.targets):
        if t.phone is not None:
            yield f"targets[{i}].phone.host", t.phone.host
    if c.followup.gateway is not None:
        yield "followup.gateway.host", c.followup.gateway.host


def _peer(err: Fail, i: int, peer: Peer, source: str) -> Peer:
    if not peer.secrets:
        raise err(f"peers[{i}].secrets", "must be a list of 1-4 signing secrets (whsec_ + base64), newest first")
    url = peer.url.rstrip("/")
    tls = peer.tls
    if not url.startswith("https://"):
        if tls is not None:
            raise err(f"peers[{i}].tls", f"is set but url {url!r} is http://: use an https:// url for TLS")
    else:
        tls = _resolved(tls or PeerTls(), source)  # without a mapping: the system store, no client cert
    return msgspec.structs.replace(peer, url=url, tls=tls)


def _resolved(tls: _Tls, source: str) -> _Tls:
    """A relative path in a tls mapping is taken from the config file's directory."""
    base = Path(source).parent
    return msgspec.structs.replace(tls, **{k: str(base / v) for k, v in msgspec.structs.asdict(tls).items() if v})


def _targets(err: Fail, c: SiteConfig, names: set[str], short_form: bool) -> tuple[Target, ...]:
    if short_form:  # the one-key code goes to the first peer
        first = c.peers[0] if c.peers else None
        return (Target(first.name, first.platform, c.keys.onekey, first.dial, peer=first.name),) if first else ()
    for i, t in enumerate(c.targets):
        if sum(x is not None for x in (t.peer, t.via, t.phone)) != 1:
            raise err(f"targets[{i}]", "needs exactly one of peer, via or phone")
        if t.peer is not None and t.peer not in names:
            raise err(f"targets[{i}].peer", f"{t.peer!r} is not a configured peer")
        if t.via is not None and t.via not in names:
            raise err(f"targets[{i}].via", f"{t.via!r} is not a configured peer")
    for attr in ("name", "key", "dial"):
        if len({getattr(t, attr) for t in c.targets}) != len(c.targets):
            raise err("targets", f"each target needs its own {attr}")
    return c.targets


def _check_feature_keys(err: Fail, config: SiteConfig, short_form: bool) -> None:
    """An agent's call listens for all of these at once: Asterisk runs the first code that matches, so two equal
    codes, or one that begins another (*8 and *81), would leave a key that can never be pressed."""
    keys = [(name, code) for code, name in FIXED_FEATURE_KEYS.items()]  # first: a clash names the configured key
    keys += [("keys.onekey" if short_form else f"targets[{i}].key", t.key) for i, t in enumerate(config.targets)]
    keys += [("keys.threeway", config.keys.threeway), ("keys.consult", config.keys.consult)]
    if config.bench.baseline_key:
        keys.append(("bench.baseline_key", config.bench.baseline_key))
        if config.bench.agi_floor_key:
            keys.append(("bench.agi_floor_key", config.bench.agi_floor_key))
    for i, (name, code) in enumerate(keys):
        for other, other_code in keys[:i]:
            if code.startswith(other_code) or other_code.startswith(code):
                how = "is the same code as" if code == other_code else "overlaps (one begins the other)"
                raise err(name, f"{code} {how} {other_code} of {other}: an agent could never press one of them")
