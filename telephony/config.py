"""Typed site configuration: defaults, then a YAML file, then LINKAGE_* environment overrides.

One file per site. Every value is validated at load time; an error names the key and the file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from telephony.errors import ConfigError
from telephony.security.tls import TlsFileError, client_context, server_context

SITE_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")
DIVISION = re.compile(r"^[0-9]{6}$")
DIAL = re.compile(r"^[0-9]{2,15}$")
FEATURE_KEY = re.compile(r"^[*#0-9]{1,4}$")
AGENT_ID = re.compile(r"^[0-9]{2,10}$")
TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,200}$")
SECRET = re.compile(r"^[A-Za-z0-9]{8,64}$")
USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
NUMBER = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,9})?$")
URL = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int


@dataclass(frozen=True)
class Tls:
    """TLS for one peer (as its client) or for our listener; the context is built from the files at load time."""

    context: ssl.SSLContext = field(compare=False, repr=False)
    ca: str = ""  # peer: the CA that signs the peer's server cert ("" = system store); listener: client_ca
    cert: str = ""  # the certificate we present: to a peer asking for one (mutual TLS), or as the server
    key: str = ""


@dataclass(frozen=True)
class AmiConfig:
    host: str
    port: int
    username: str
    secret: str
    ping_interval: float = 5.0
    reconnect_min: float = 0.5  # seconds before the first reconnect attempt; doubles (with jitter) …
    reconnect_max: float = 5.0  # … up to this, and starts over after a successful login (AMI is local and
    # cheap to reach, while every second without it costs key presses a resync)


@dataclass(frozen=True)
class Agent:
    id: str
    host: str
    port: int
    token: str = ""  # this agent's console token: it may act only for this agent

@dataclass(frozen=True)
class Peer:
    """Another site this one transfers calls to (over the SIP trunk) and pushes tickets to (over HTTP)."""

    name: str
    platform: str
    url: str
    trunk: HostPort
    dial: str  # the number sent over the trunk
    level: str = "city"
    division: str = ""  # a county peer owns the tickets of its division code (市级互转, push-down)
    secrets: tuple[str, ...] = ()  # shared signing secrets (whsec_…), newest first; both sites hold the same list
    tls: Tls | None = None  # set exactly when url is https://


@dataclass(frozen=True)
class Target:
    """Where a feature key sends the caller: a peer site with a controller (ticket pushed), or a phone-only
    desk such as 120 or a utility hotline (the call goes with the caller's number; the ticket stays here)."""

    name: str
    platform: str
    key: str
    dial: str
    peer: str | None = None  # name of the peer site that receives the ticket
    via: str | None = None  # a peer that relays to this target (a county 110 reaches 12345 through the city)
    phone: HostPort | None = None  # SIP address of a phone-only target


@dataclass(frozen=True)
class Deadlines:
    """Supervision (跟踪督办): how long a ticket may stay in a state before it is flagged overdue."""

    signed_for: float = 60.0  # seconds from the offer (phone ringing) to signed for
    accepted: float = 1800.0  # seconds from signed for to accepted / returned
    resolved_days: float = 5.0  # working days from accepted to resolved
    working_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0


@dataclass(frozen=True)
class Threeway:
    """The three-way call (三方通话): the agent's key, the platform dialled in, the negotiation keys inside the
    conference, and how long the platforms may take to decide before the plan's rules decide for them."""

    key: str = "*9"
    target: str = ""  # a transfer target's name; default the first target
    accept_key: str = "*1"  # "my platform takes it": the other agent is released
    leave_key: str = "*0"  # "I leave"
    decide_seconds: float = 120.0
    consult_key: str = "*7"  # attended (consultative) transfer to the three-way target
    consult_abort: str = "*1"  # features.conf atxferabort: cancel, the caller comes back
    consult_complete: str = "*2"  # features.conf atxfercomplete (hanging up completes it too)
    emergency_categories: tuple[str, ...] = ("report",)  # danger to life or property: emergency_platform keeps it
    emergency_platform: str = "110"  # the platform whose role is emergencies (公安110): it keeps such a caller


@dataclass(frozen=True)
class SiteConfig:
    name: str
    platform: str
    level: str
    division: str
    sip: HostPort
    ami: AmiConfig
    agi: HostPort
    http: HostPort
    public_url: str
    api_token: str
    redis_url: str
    onekey: str
    citizen: HostPort
    hotline: str  # the number citizens dial at this site
    agents: tuple[Agent, ...]
    peers: tuple[Peer, ...]
    ring_timeout: int = 30
    fetch_timeout: float = 0.5
    # A linked call that outruns its ticket's push waits this long for it before fetching it by reference. The push
    # is normally there in a few ms; under load (72-80 transfers/s in the lab) it can take longer, and a fetch then
    # adds a request to both controllers just when they are busiest.
    push_wait: float = 0.5
    overflow: str = ""  # a peer (county seats) that takes an emergency this site's agents could not answer
    push_delay: float = 0.0  # seconds before a new ticket's first push: lab and fault drills only
    delivered_linger: float = 0.02  # seconds a `delivered` event waits for the `offered` that follows it
    targets: tuple[Target, ...] = ()
    deadlines: Deadlines = Deadlines()
    threeway: Threeway = Threeway()
    bench_key: str = ""  # lab/bench only: a pure-dialplan blind transfer to the first target, the baseline
    # lab/bench only: the same blind transfer plus one bare FastAGI round trip on each PBX (no controller work):
    # the floor under any FastAGI-driven transfer, measured beside the baseline
    bench_floor_key: str = ""
    rate_per_second: float = 200.0  # API requests per caller (peer site, agent, console) …
    rate_burst: float = 400.0  # … with this burst
    # How long a processed peer message id is remembered. Longer than the sender's retry window (days), so a
    # late retry of a message whose answer was lost is still recognised as a replay.
    replay_window: float = 8 * 86400.0
    storage_keys: tuple[str, ...] = ()  # AES-256-GCM keys for tickets at rest (base64 of 32 bytes), newest first
    http_tls: Tls | None = None  # TLS (and with a client CA, mutual TLS) on the peer/console listener
    parent: str = ""
    source_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def peer(self, name: str) -> Peer | None:
        for p in self.peers:
            if p.name == name:
                return p
        return None

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)



class _Reader:
    """Walks a parsed YAML mapping and reports errors as `file: key: problem`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}", key=key, file=self.source)

    def section(self, data: Any, key: str, parent: str = "") -> dict[str, Any]:
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, dict):
            raise self.fail(f"{parent}.{key}" if parent else key, "must be a mapping")
        return value

    def optional(self, data: Any, key: str) -> dict[str, Any]:
        value = data.get(key) if isinstance(data, dict) else None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping")
        return value

    def string(self, data: dict[str, Any], key: str, path: str, pattern: re.Pattern[str] | None = None,
               default: str | None = None) -> str:
        value = data.get(key, default)
        if value is None:
            raise self.fail(f"{path}.{key}", "is required")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", "must be a string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(f"{path}.{key}", f"{value!r} does not match {pattern.pattern}")
        return value

    def integer(self, data: dict[str, Any], key: str, path: str, lo: int, hi: int,
                default: int | None = None) -> int:
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(f"{path}.{key}", f"must be an integer in [{lo}, {hi}]")
        return value

    def number(self, data: dict[str, Any], key: str, path: str, lo: float, hi: float, default: float) -> float:
        value = data.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(f"{path}.{key}", f"must be a number in [{lo}, {hi}]")
        return float(value)

    def host(self, data: dict[str, Any], key: str, path: str) -> str:
        value = self.string(data, key, path)
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise self.fail(f"{path}.{key}", f"{value!r} is not an IP address") from exc
        return value

    def hostport(self, data: dict[str, Any], path: str) -> HostPort:
        return HostPort(self.host(data, "host", path), self.integer(data, "port", path, 1, 65535))


def parse_site_config(raw: Any, source: str) -> SiteConfig:
    r = _Reader(source)
    if not isinstance(raw, dict):
        raise r.fail("(top)", "must be a mapping")
    known = {"site", "pbx", "controller", "redis", "keys", "accounts", "peers", "transfer", "delivery", "targets",
             "supervision", "threeway", "bench", "storage", "security"}
    unknown = set(raw) - known
    if unknown:
        raise r.fail(sorted(unknown)[0], "unknown key")
    site = r.section(raw, "site")
    pbx = r.section(raw, "pbx")
    ctl = r.section(raw, "controller")
    accounts = r.section(raw, "accounts")
    ami = r.section(pbx, "ami", "pbx")
    keys = r.optional(raw, "keys")
    transfer = r.optional(raw, "transfer")
    delivery = r.optional(raw, "delivery")
    redis = r.section(raw, "redis")

    citizen = r.section(accounts, "citizen", "accounts")
    agents_raw = accounts.get("agents")
    if not isinstance(agents_raw, list) or not agents_raw:
        raise r.fail("accounts.agents", "must be a non-empty list")
    agents = []
    for i, a in enumerate(agents_raw):
        if not isinstance(a, dict):
            raise r.fail(f"accounts.agents[{i}]", "must be a mapping")
        p = f"accounts.agents[{i}]"
        token = r.string(a, "token", p, re.compile(rf"^({TOKEN.pattern[1:-1]})?$"), default="")
        agents.append(Agent(r.string(a, "id", p, AGENT_ID), r.host(a, "host", p), r.integer(a, "port", p, 1, 65535),
                            token))
    if len({a.id for a in agents}) != len(agents):
        raise r.fail("accounts.agents", "agent ids must be unique")
    tokens = [a.token for a in agents if a.token]
    if len(set(tokens)) != len(tokens):
        raise r.fail("accounts.agents", "agent tokens must be unique")

    peers = []
    peers_raw = raw.get("peers") or []
    if not isinstance(peers_raw, list):
        raise r.fail("peers", "must be a list")
    for i, p_raw in enumerate(peers_raw):
        p = f"peers[{i}]"
        if not isinstance(p_raw, dict):
            raise r.fail(p, "must be a mapping")
        url = r.string(p_raw, "url", p, URL).rstrip("/")
        peers.append(Peer(
            name=r.string(p_raw, "name", p, SITE_NAME),
            platform=r.string(p_raw, "platform", p, SITE_NAME),
            url=url,
            trunk=r.hostport(r.section(p_raw, "trunk", p), f"{p}.trunk"),
            dial=r.string(p_raw, "dial", p, DIAL),
            level=_level(r, p_raw, p),
            division=r.string(p_raw, "division", p, re.compile(r"^([0-9]{6})?$"), default=""),
            secrets=_secrets(r, p_raw, p),
            tls=_peer_tls(r, p_raw, p, url),
        ))

    onekey = r.string(keys, "onekey", "keys", FEATURE_KEY, default="*8")
    targets = _targets(r, raw.get("targets"), peers, onekey)
    deadlines = _deadlines(r, r.optional(raw, "supervision"))
    threeway = _threeway(r, r.optional(raw, "threeway"), targets, keys)
    level = _level(r, site, "site")
    http_tls = _listener_tls(r, r.section(ctl, "http", "controller"))
    public_url = r.string(ctl, "public_url", "controller", URL).rstrip("/")
    if http_tls is not None and not public_url.startswith("https://"):
        raise r.fail("controller.public_url", "must be https:// when controller.http.tls is set: peers reach "
                                              "ticket references under it")
    config = SiteConfig(
        name=r.string(site, "name", "site", SITE_NAME),
        platform=r.string(site, "platform", "site", SITE_NAME),
        level=level,
        division=r.string(site, "division", "site", DIVISION),
        sip=r.hostport(r.section(pbx, "sip", "pbx"), "pbx.sip"),
        ami=AmiConfig(
            host=r.host(ami, "host", "pbx.ami"),
            port=r.integer(ami, "port", "pbx.ami", 1, 65535),
            username=r.string(ami, "username", "pbx.ami", USERNAME),
            secret=r.string(ami, "secret", "pbx.ami", SECRET),
            ping_interval=r.number(ami, "ping_interval", "pbx.ami", 0.5, 60, 5.0),
            reconnect_min=r.number(ami, "reconnect_min", "pbx.ami", 0.05, 60, 0.5),
            reconnect_max=_reconnect_max(r, ami),
        ),
        agi=r.hostport(r.section(pbx, "agi", "pbx"), "pbx.agi"),
        http=r.hostport(r.section(ctl, "http", "controller"), "controller.http"),
        public_url=public_url,
        http_tls=http_tls,
        api_token=r.string(ctl, "api_token", "controller", TOKEN),
        redis_url=r.string(redis, "url", "redis", re.compile(r"^redis://[A-Za-z0-9.:@/_-]+$")),
        onekey=targets[0].key if targets else onekey,
        citizen=r.hostport(citizen, "accounts.citizen"),
        hotline=r.string(citizen, "dial", "accounts.citizen", DIAL),
        agents=tuple(agents),
        peers=tuple(peers),
        ring_timeout=r.integer(transfer, "ring_timeout", "transfer", 1, 600, default=30),
        fetch_timeout=r.number(transfer, "fetch_timeout", "transfer", 0.05, 10, 0.5),
        push_wait=r.number(transfer, "push_wait", "transfer", 0, 2, 0.5),
        overflow=_overflow(r, transfer, peers),
        push_delay=r.number(delivery, "push_delay", "delivery", 0, 3600, 0.0),
        delivered_linger=r.number(delivery, "delivered_linger", "delivery", 0, 1, 0.02),
        targets=targets,
        deadlines=deadlines,
        threeway=threeway,
        bench_key=r.string(r.optional(raw, "bench"), "baseline_key", "bench", re.compile(r"^([*#0-9]{1,4})?$"),
                           default=""),
        bench_floor_key=r.string(r.optional(raw, "bench"), "agi_floor_key", "bench",
                                 re.compile(r"^([*#0-9]{1,4})?$"), default=""),
        storage_keys=_storage_keys(r, r.optional(raw, "storage")),
        rate_per_second=r.number(ctl, "rate_per_second", "controller", 0.1, 100000, 200.0),
        rate_burst=r.number(ctl, "rate_burst", "controller", 1, 100000, 400.0),
        # At least the signature tolerance (a replay inside it must be caught), at most a quarter year of ids.
        replay_window=r.number(r.optional(raw, "security"), "replay_window", "security", 600, 90 * 86400,
                               8 * 86400.0),
        parent=r.string(site, "parent", "site", re.compile(r"^([0-9A-Za-z][0-9A-Za-z_-]{0,31})?$"), default=""),
        source_file=source,
    )
    _check_feature_keys(r, config, short_form=raw.get("targets") is None)
    return config


# features.conf's fixed codes (dialplans/linkage-features.conf.in): the attended transfer the controller drives
# over AMI, and blind transfer moved off '#'
FIXED_FEATURE_KEYS = {"*#7": "features.conf atxfer", "*#6": "features.conf blindxfer"}


def _check_feature_keys(r: _Reader, config: SiteConfig, short_form: bool) -> None:
    """An agent's call listens for all of these at once: Asterisk runs the first code that matches, so two equal
    codes, or one that begins another (*8 and *81), would leave a key that can never be pressed."""
    keys = [(name, code) for code, name in FIXED_FEATURE_KEYS.items()]  # first: a clash names the configured key
    keys += [("keys.onekey" if short_form else f"targets[{i}].key", t.key) for i, t in enumerate(config.targets)]
    keys += [("keys.threeway", config.threeway.key), ("keys.consult", config.threeway.consult_key)]
    if config.bench_key:
        keys.append(("bench.baseline_key", config.bench_key))
        if config.bench_floor_key:
            keys.append(("bench.agi_floor_key", config.bench_floor_key))
    for i, (name, code) in enumerate(keys):
        for other, other_code in keys[:i]:
            if code.startswith(other_code) or other_code.startswith(code):
                how = "is the same code as" if code == other_code else "overlaps (one begins the other)"
                raise r.fail(name, f"{code} {how} {other_code} of {other}: an agent could never press one of them")


def _reconnect_max(r: _Reader, ami: dict[str, Any]) -> float:
    value = r.number(ami, "reconnect_max", "pbx.ami", 0.05, 3600, 5.0)
    if value < r.number(ami, "reconnect_min", "pbx.ami", 0.05, 60, 0.5):
        raise r.fail("pbx.ami.reconnect_max", "must not be below pbx.ami.reconnect_min")
    return value


def _storage_keys(r: _Reader, raw: dict[str, Any]) -> tuple[str, ...]:
    keys = raw.get("keys", [])
    if not isinstance(keys, list) or len(keys) > 4:
        raise r.fail("storage.keys", "must be a list of at most 4 keys, newest first")
    for i, k in enumerate(keys):
        if not isinstance(k, str) or not re.match(r"^[A-Za-z0-9+/]{43}=$", k):
            raise r.fail(f"storage.keys[{i}]", "must be base64 of 32 bytes (44 characters)")
    return tuple(keys)


def _secrets(r: _Reader, data: dict[str, Any], path: str) -> tuple[str, ...]:
    raw = data.get("secrets")
    if not isinstance(raw, list) or not raw or len(raw) > 4:
        raise r.fail(f"{path}.secrets", "must be a list of 1-4 signing secrets (whsec_ + base64), newest first")
    for i, s in enumerate(raw):
        if not isinstance(s, str) or not re.match(r"^whsec_[A-Za-z0-9+/=]{20,200}$", s):
            raise r.fail(f"{path}.secrets[{i}]", "is not whsec_ followed by base64 of at least 15 bytes")
    return tuple(raw)


def _tls_paths(r: _Reader, raw: dict[str, Any], path: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The file paths of a tls mapping; a relative path is taken from the config file's directory."""
    unknown = set(raw) - set(keys)
    if unknown:
        raise r.fail(f"{path}.{sorted(unknown)[0]}", f"unknown key (expected {', '.join(keys)})")
    base = Path(r.source).parent
    out = {}
    for k in keys:
        value = r.string(raw, k, path, default="")
        out[k] = str(base / value) if value else ""
    return out


def _peer_tls(r: _Reader, data: dict[str, Any], path: str, url: str) -> Tls | None:
    raw = data.get("tls")
    if raw is not None and not isinstance(raw, dict):
        raise r.fail(f"{path}.tls", "must be a mapping with ca, cert, key")
    if not url.startswith("https://"):
        if raw is not None:
            raise r.fail(f"{path}.tls", f"is set but url {url!r} is http://: use an https:// url for TLS")
        return None
    files = _tls_paths(r, raw or {}, f"{path}.tls", ("ca", "cert", "key"))
    try:
        context = client_context(files["ca"], files["cert"], files["key"])
    except TlsFileError as exc:
        raise r.fail(f"{path}.tls.{exc.key}", exc.problem) from exc
    return Tls(context, files["ca"], files["cert"], files["key"])


def _listener_tls(r: _Reader, http: dict[str, Any]) -> Tls | None:
    raw = http.get("tls")
    if raw is None:
        return None
    path = "controller.http.tls"
    if not isinstance(raw, dict):
        raise r.fail(path, "must be a mapping with cert, key and optionally client_ca")
    files = _tls_paths(r, raw, path, ("cert", "key", "client_ca"))
    if not files["cert"] or not files["key"]:
        raise r.fail(f"{path}.{'key' if files['cert'] else 'cert'}", "is required: TLS on the listener needs "
                                                                      "both cert and key")
    try:
        context = server_context(files["cert"], files["key"], files["client_ca"])
    except TlsFileError as exc:
        raise r.fail(f"{path}.{exc.key}", exc.problem) from exc
    return Tls(context, files["client_ca"], files["cert"], files["key"])


def _overflow(r: _Reader, transfer: dict[str, Any], peers: list[Peer]) -> str:
    name = r.string(transfer, "overflow", "transfer", re.compile(r"^([0-9A-Za-z][0-9A-Za-z_-]{0,31})?$"), default="")
    if name and name not in {p.name for p in peers}:
        raise r.fail("transfer.overflow", f"{name!r} is not a configured peer")
    return name


def _level(r: _Reader, data: dict[str, Any], path: str) -> str:
    level = r.string(data, "level", path, default="city")
    if level not in ("city", "county"):
        raise r.fail(f"{path}.level", "must be city or county")
    return level


def _targets(r: _Reader, raw: Any, peers: list[Peer], onekey: str) -> tuple[Target, ...]:
    if raw is None:  # the short form: the one-key code goes to the first peer
        return (Target(peers[0].name, peers[0].platform, onekey, peers[0].dial, peer=peers[0].name),) if peers else ()
    if not isinstance(raw, list):
        raise r.fail("targets", "must be a list")
    names = {p.name for p in peers}
    out = []
    for i, t in enumerate(raw):
        p = f"targets[{i}]"
        if not isinstance(t, dict):
            raise r.fail(p, "must be a mapping")
        unknown = set(t) - {"name", "platform", "key", "dial", "peer", "via", "phone"}
        if unknown:
            raise r.fail(f"{p}.{sorted(unknown)[0]}", "unknown key")
        peer = t.get("peer")
        via = t.get("via")
        phone = t.get("phone")
        if sum(x is not None for x in (peer, via, phone)) != 1:
            raise r.fail(p, "needs exactly one of peer, via or phone")
        if peer is not None and peer not in names:
            raise r.fail(f"{p}.peer", f"{peer!r} is not a configured peer")
        if via is not None and via not in names:
            raise r.fail(f"{p}.via", f"{via!r} is not a configured peer")
        out.append(Target(
            name=r.string(t, "name", p, SITE_NAME),
            platform=r.string(t, "platform", p, SITE_NAME),
            key=r.string(t, "key", p, FEATURE_KEY),
            dial=r.string(t, "dial", p, DIAL),
            peer=str(peer) if peer is not None else None,
            via=str(via) if via is not None else None,
            phone=r.hostport(phone, f"{p}.phone") if isinstance(phone, dict) else None,
        ))
        if phone is not None and not isinstance(phone, dict):
            raise r.fail(f"{p}.phone", "must be a mapping with host and port")
    for attr in ("name", "key", "dial"):
        if len({getattr(t, attr) for t in out}) != len(out):
            raise r.fail("targets", f"each target needs its own {attr}")
    return tuple(out)


def _threeway(r: _Reader, raw: dict[str, Any], targets: tuple[Target, ...], keys: dict[str, Any]) -> Threeway:
    target = r.string(raw, "target", "threeway", SITE_NAME, default=targets[0].name if targets else "x")
    if targets and target not in {t.name for t in targets}:
        raise r.fail("threeway.target", f"{target!r} is not a configured target")
    cats = raw.get("emergency_categories", ["report"])
    if not isinstance(cats, list) or not all(isinstance(c, str) and c.isidentifier() for c in cats):
        raise r.fail("threeway.emergency_categories", "must be a list of category words")
    tw = Threeway(
        key=r.string(keys, "threeway", "keys", FEATURE_KEY, default="*9"),
        target=target,
        accept_key=r.string(raw, "accept_key", "threeway", FEATURE_KEY, default="*1"),
        leave_key=r.string(raw, "leave_key", "threeway", FEATURE_KEY, default="*0"),
        decide_seconds=r.number(raw, "decide_seconds", "threeway", 1, 3600, 120.0),
        consult_key=r.string(keys, "consult", "keys", FEATURE_KEY, default="*7"),
        consult_abort=r.string(raw, "consult_abort", "threeway", FEATURE_KEY, default="*1"),
        consult_complete=r.string(raw, "consult_complete", "threeway", FEATURE_KEY, default="*2"),
        emergency_categories=tuple(cats),
        emergency_platform=r.string(raw, "emergency_platform", "threeway", SITE_NAME, default="110"),
    )
    if tw.accept_key == tw.leave_key:
        raise r.fail("threeway.leave_key", "must differ from accept_key")
    return tw


def _deadlines(r: _Reader, raw: dict[str, Any]) -> Deadlines:
    days = raw.get("working_days", [0, 1, 2, 3, 4])
    if not isinstance(days, list) or not days or not all(type(d) is int and 0 <= d <= 6 for d in days):
        raise r.fail("supervision.working_days", "must be a non-empty list of weekday numbers 0-6 (Monday = 0)")
    return Deadlines(
        signed_for=r.number(raw, "signed_for", "supervision", 1, 86400, 60.0),
        accepted=r.number(raw, "accepted", "supervision", 1, 30 * 86400, 1800.0),
        resolved_days=r.number(raw, "resolved_days", "supervision", 0.001, 365, 5.0),
        working_days=tuple(sorted(set(days))),
    )


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
            else:
                node[parts[-1]] = value
    return raw
