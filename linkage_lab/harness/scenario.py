"""Declarative scenario files (YAML): roles driven by SIPp, expected AMI events with exact counts, expected
ticket state and history on each controller, and a time budget. See docs/scenarios.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from telephony.errors import ConfigError

PARAM = re.compile(r"^[A-Za-z0-9_.:+*#-]{0,64}$")
# what a console action does: the first four kinds run during the call, the last two once the calls are over
ACTION_KINDS = ("draft", "transfer", "threeway", "consult", "return", "queue", "transition", "amend")
DURING_CALL = ACTION_KINDS[:6]
QUEUE_ACTIONS = ("login", "logout", "pause", "unpause")



def fill_sipp(template: Path, params: dict[str, str], workdir: Path, name: str | None = None) -> Path:
    """A SIPp scenario file with its {{name}} parameters filled in, written into `workdir` (under the template's
    own name unless `name` is given). A parameter left unfilled is a ConfigError naming it."""
    text = template.read_text(encoding="utf-8")
    for key, value in params.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ConfigError(f"unfilled parameter in {template.name}: {text[text.index('{{'):][:30]}")
    out = workdir / (name or template.name)
    out.write_text(text, encoding="utf-8")
    return out


@dataclass(frozen=True)
class Role:
    name: str
    site: str
    account: str  # "citizen" or "agents[N]"
    sipp: Path
    params: dict[str, str]
    dtmf: str | None  # a key name from the site's `keys`, played as keys.pcap
    calls: bool  # a UAC that dials the site's hotline
    dtmf_times: int = 1  # the key sequence repeated (a double press)
    dtmf_then: str | None = None  # a second key, played later in the same call as keys2.pcap
    dial: str | None = None  # what the role dials instead of the hotline (an agent's queue code such as *623)


@dataclass(frozen=True)
class AmiExpectation:
    site: str
    match: dict[str, str]
    count: int


@dataclass(frozen=True)
class TicketExpectation:
    site: str
    count: int
    status: str | None
    history: list[str] | None
    fields: dict[str, Any]
    payload: dict[str, Any]
    history_contains: list[str] | None = None  # these events, in any order (for facts from two sites at once)
    index: int | None = None  # one of several tickets of the site (a list in the file), in order of creation


@dataclass(frozen=True)
class MediaExpectation:
    """The role must receive sound, with no gap above max_gap_ms, between two AMI events of a site."""

    role: str
    site: str
    start: dict[str, str]
    end: dict[str, str]
    max_gap_ms: float
    min_audible_ms: float


@dataclass(frozen=True)
class Action:
    """Something an agent does in the console: `at` seconds after the callers start (a draft of the call's
    ticket), or once the calls have ended (`after: calls`: a lifecycle transition or an amendment of the
    scenario's ticket on that site). `expect` is the HTTP status the action must get (default: success)."""

    at: float | None
    site: str
    draft: dict[str, str]
    transition: dict[str, Any] | None = None
    amend: dict[str, Any] | None = None
    expect: int | None = None
    transfer: dict[str, Any] | None = None  # the console's transfer button: {agent, target}
    threeway: dict[str, Any] | None = None  # the console's three-way button: {agent}
    consult: dict[str, Any] | None = None  # the console's consult (attended transfer) button: {agent}
    give_back: dict[str, Any] | None = None  # the return button (退回), `return:` in the file: {agent, reason}
    queue: dict[str, str] | None = None  # the console's queue buttons (排队签入): {agent, action, reason?}


@dataclass(frozen=True)
class SetupFlag:
    """A caller's number flagged on a site before the calls (lifted after the scenario)."""

    site: str
    flag: dict[str, str]  # {number, reason}


@dataclass(frozen=True)
class SetupQueue:
    """An agent's queue state set on a site before the calls (every agent back in, unpaused, after)."""

    site: str
    queue: dict[str, str]  # {agent, action, reason?}


@dataclass
class Scenario:
    name: str
    description: str
    path: Path
    budget: float
    settle: float
    roles: list[Role]
    ami: list[AmiExpectation] = field(default_factory=list)
    tickets: list[TicketExpectation] = field(default_factory=list)
    media: list[MediaExpectation] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    controller_env: dict[str, dict[str, str]] = field(default_factory=dict)
    down: list[str] = field(default_factory=list)  # "asterisk:SITE" / "controller:SITE" stopped meanwhile
    # Record every site's AMI events for the timeline and checks. Benchmarks turn it off: three PBXes' full
    # event streams parsed in Python would compete with what is measured for this machine's two cores.
    watch_ami: bool = True
    setup: list[SetupFlag] = field(default_factory=list)
    suggestions: dict[str, list[str]] = field(default_factory=dict)  # site -> the repeat callers it suggests
    queue_setup: list[SetupQueue] = field(default_factory=list)
    queue: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # site -> agent -> member fields


def load(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read scenario: {exc}") from exc
    try:
        return _build(raw, p)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ConfigError(f"{p}: malformed scenario: {exc}") from exc


def _build(raw: Any, p: Path) -> Scenario:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{p}: {key}: {problem}")

    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise fail("name", "a scenario needs a name")
    unknown = set(raw) - {"name", "description", "budget", "settle", "roles", "expect", "actions",
                          "controller_env", "down", "setup"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key")
    roles = []
    for i, r in enumerate(raw.get("roles") or []):
        if not isinstance(r, dict) or not {"name", "site", "account", "sipp"} <= set(r):
            raise fail(f"roles[{i}]", "needs name, site, account and sipp")
        account = str(r["account"])
        if account not in ("citizen", "followup") and not re.match(r"^(agents\[[0-9]\]|target:[0-9A-Za-z_-]{1,32})$",
                                                                   account):
            raise fail(f"roles[{i}].account", "must be citizen, followup, agents[N] or target:NAME")
        params = {str(k): str(v) for k, v in (r.get("params") or {}).items()}
        for k, v in params.items():
            if not PARAM.match(v):
                raise fail(f"roles[{i}].params.{k}", "has characters SIPp XML cannot take")
        sipp = (p.parent / str(r["sipp"])).resolve()
        if not sipp.exists():
            raise fail(f"roles[{i}].sipp", f"{sipp} does not exist")
        dial = str(r["dial"]) if r.get("dial") is not None else None
        if dial is not None and not re.match(r"^[*#0-9]{1,16}$", dial):
            raise fail(f"roles[{i}].dial", "must be digits, * and # (a number or a code the role dials)")
        roles.append(Role(str(r["name"]), str(r["site"]), account, sipp, params,
                          str(r["dtmf"]) if r.get("dtmf") else None, account == "citizen" or dial is not None,
                          int(r.get("dtmf_times", 1)), str(r["dtmf_then"]) if r.get("dtmf_then") else None,
                          dial))
    if not roles:
        raise fail("roles", "at least one role is needed")
    expect = raw.get("expect") or {}
    if not isinstance(expect, dict):
        raise fail("expect", "must be a mapping")
    ami = []
    for site, items in (expect.get("ami") or {}).items():
        for j, item in enumerate(items or []):
            if not isinstance(item, dict) or not isinstance(item.get("match"), dict):
                raise fail(f"expect.ami.{site}[{j}]", "needs a match mapping")
            ami.append(AmiExpectation(str(site), {str(k): str(v) for k, v in item["match"].items()},
                                      int(item.get("count", 1))))
    tickets = []
    for site, spec in (expect.get("tickets") or {}).items():
        # a mapping: every ticket of the site; a list: the site's tickets one by one, in order of creation
        items = spec if isinstance(spec, list) else [spec]
        for j, item in enumerate(items):
            if not isinstance(item, dict):
                raise fail(f"expect.tickets.{site}", "must be a mapping or a list of mappings")
            tickets.append(TicketExpectation(str(site), len(items) if isinstance(spec, list) else
                                             int(item.get("count", 1)), item.get("status"),
                                             item.get("history"), item.get("fields") or {},
                                             item.get("payload") or {}, item.get("history_contains"),
                                             j if isinstance(spec, list) else None))
    media = []
    for j, item in enumerate(expect.get("media") or []):
        if not isinstance(item, dict) or not {"role", "site", "from", "to"} <= set(item):
            raise fail(f"expect.media[{j}]", "needs role, site, from and to")
        if item["role"] not in {r.name for r in roles}:
            raise fail(f"expect.media[{j}].role", f"no role named {item['role']!r}")
        media.append(MediaExpectation(str(item["role"]), str(item["site"]),
                                      {str(k): str(v) for k, v in item["from"].items()},
                                      {str(k): str(v) for k, v in item["to"].items()},
                                      float(item.get("max_gap_ms", 300)), float(item.get("min_audible_ms", 200))))
    actions = []
    for j, item in enumerate(raw.get("actions") or []):
        kinds = [k for k in ACTION_KINDS if isinstance(item, dict) and k in item]
        if not isinstance(item, dict) or len(kinds) != 1 or not isinstance(item[kinds[0]], dict) or "site" not in item:
            raise fail(f"actions[{j}]", f"needs a site and exactly one of {', '.join(ACTION_KINDS)}")
        after = item.get("after")
        during = kinds[0] in DURING_CALL
        # a lifecycle step may also run `at: N` (a role waits for what it causes, e.g. a follow-up call)
        if after not in (None, "calls") or (during and after == "calls") or (not during and after is None
                                                                           and "at" not in item):
            raise fail(f"actions[{j}].after", "transitions and amendments run `after: calls`; drafts and "
                                              "transfers run `at: N` seconds into the call")
        try:
            at = None if after == "calls" else float(item.get("at", 1.0))
            expect_status = int(item["expect"]) if "expect" in item else None
        except (TypeError, ValueError) as exc:
            raise fail(f"actions[{j}]", "at must be a number and expect an HTTP status") from exc
        queue = _queue_step(item["queue"], f"actions[{j}].queue", fail) if kinds[0] == "queue" else None
        actions.append(Action(at, str(item["site"]),
                              {str(k): str(v) for k, v in item["draft"].items()} if kinds[0] == "draft" else {},
                              item.get("transition"), item.get("amend"), expect_status, item.get("transfer"),
                              item.get("threeway"), item.get("consult"), item.get("return"), queue))
    env = raw.get("controller_env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, dict) for v in env.values()):
        raise fail("controller_env", "maps a site to LINKAGE_* overrides for its controller")
    controller_env = {str(site): {str(k): str(v) for k, v in over.items()} for site, over in env.items()}
    for over in controller_env.values():
        if not all(k.startswith("LINKAGE_") for k in over):
            raise fail("controller_env", "only LINKAGE_* variables can be set")
    down = [str(d) for d in raw.get("down") or []]
    for d in down:
        if not re.match(r"^(asterisk|controller):[0-9A-Za-z_-]{1,32}$", d):
            raise fail("down", f"{d!r} is not asterisk:SITE or controller:SITE")
    setup, queue_setup = [], []
    for j, item in enumerate(raw.get("setup") or []):
        if isinstance(item, dict) and "queue" in item and "site" in item:
            queue_setup.append(SetupQueue(str(item["site"]), _queue_step(item["queue"], f"setup[{j}].queue", fail)))
            continue
        flag = item.get("flag") if isinstance(item, dict) else None
        if not isinstance(flag, dict) or "site" not in item or not {"number", "reason"} <= set(flag):
            raise fail(f"setup[{j}]", "needs a site and flag: {number, reason} or queue: {agent, action}")
        setup.append(SetupFlag(str(item["site"]), {"number": str(flag["number"]), "reason": str(flag["reason"])}))
    suggested = expect.get("suggestions") or {}
    if not isinstance(suggested, dict) or not all(isinstance(v, list) for v in suggested.values()):
        raise fail("expect.suggestions", "maps a site to the list of numbers it must suggest")
    queue_expect = expect.get("queue") or {}
    if not isinstance(queue_expect, dict) or not all(isinstance(v, dict) and all(isinstance(m, dict)
                                                                                 for m in v.values())
                                                     for v in queue_expect.values()):
        raise fail("expect.queue", "maps a site to agents, each to the member fields it must show")
    return Scenario(str(raw["name"]), str(raw.get("description", "")), p, float(raw.get("budget", 30)),
                    float(raw.get("settle", 3)), roles, ami, tickets, media, actions, controller_env, down,
                    setup=setup, suggestions={str(k): [str(n) for n in v] for k, v in suggested.items()},
                    queue_setup=queue_setup,
                    queue={str(s): {str(a): dict(m) for a, m in v.items()} for s, v in queue_expect.items()})


def _queue_step(step: Any, key: str, fail: Any) -> dict[str, str]:
    if not isinstance(step, dict) or not {"agent", "action"} <= set(step) or step["action"] not in QUEUE_ACTIONS:
        raise fail(key, f"needs agent and action (one of {', '.join(QUEUE_ACTIONS)}), and reason with pause")
    return {str(k): str(v) for k, v in step.items()}
