"""Micro-benchmark: encode and parse a ticket with the msgspec schema (telephony.tickets.models) against the
hand-written code it replaced (copied below, verbatim, from telephony/tickets/models.py before the change).

Run: python -m linkage_lab.bench.schema [--rounds N] [--ops N] (also part of `make bench`)
Prints JSON: per operation the median microseconds of the old and the new code over interleaved rounds, and the
ratio new/old (below 1 is faster). "encode" is a ticket object to the JSON stored in Redis and pushed to a peer;
"parse" is that JSON back to a validated ticket (what the store's get and the peer route do); "to_dict" and
"parse_dict" are the same steps to and from Python data (what the HTTP handlers use).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from linkage_lab.bench.report import ROOT, machine, replace_section
from telephony.errors import InvalidInput
from telephony.tickets import models as new

TID = "37080020260101120000123456"


# ==== BASELINE: the hand-written schema before msgspec (git 9af5992:telephony/tickets/models.py) ============

SCHEMA_VERSION = 1
TICKET_ID = re.compile(r"^[0-9]{20,32}$")
EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
SITE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")
PHONE = re.compile(r"^\+?[0-9]{0,20}$")
AGENT = re.compile(r"^[0-9]{0,10}$")
DIVISION = re.compile(r"^([0-9]{6})?$")
CATEGORY = re.compile(r"^[a-z_]{0,32}$")
ASTERISK_ID = re.compile(r"^[A-Za-z0-9._-]{0,64}$")
PAYLOAD_KEY = re.compile(r"^[a-z_]{1,32}$")
TEXT_LIMITS = {"content": 5000, "address": 500, "caller_name": 100, "title": 200, "officer_contact": 200,
               "result": 4000, "return_reason": 1000, "satisfaction": 32}

STATES = ("created", "delivered", "signed_for", "accepted", "returned", "in_progress", "resolved",
          "followed_up", "closed", "transfer_failed", "cancelled")
EVENT_TYPES = {"created", "delivered", "offered", "signed_for", "abandoned", "accepted", "returned",
               "in_progress", "resolved", "followed_up", "closed", "transfer_failed", "cancelled", "amended",
               "overdue", "routed", "transferred", "decided"}
FLAGS = {"caller_abandoned", "overdue"}
DRAFT_FIELDS = {"division", "category", "content", "address", "caller_name", "title", "officer_contact"}


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (what asdict does to a payload)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copy(v) for v in value)
    return copy.deepcopy(value) if not isinstance(value, str | int | float | bool | type(None)) else value


@dataclass
class Party:
    platform: str
    site: str


@dataclass
class Event:
    id: str
    ticket_id: str
    type: str
    at: str
    actor: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # position in the history of the copy that holds it
    seq: int = 0  # per ticket and authoring site: 1, 2, 3 … applied in this order on every copy

    def to_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gives (a deep copy), written out: it is on every store write and every push,
        # and asdict's generic recursion was ~6 % of a controller's time under load.
        return {"id": self.id, "ticket_id": self.ticket_id, "type": self.type, "at": self.at,
                "actor": _copy(self.actor), "payload": _copy(self.payload), "version": self.version,
                "seq": self.seq}


@dataclass
class Ticket:
    id: str
    direction: str
    source: Party
    target: Party
    caller_number: str
    agent_id: str
    linkedid: str
    uniqueids: list[str]
    created_at: str
    division: str = ""
    category: str = ""
    content: str = ""
    address: str = ""
    caller_name: str = ""
    title: str = ""
    officer_contact: str = ""  # 前期出警人员联系方式: officers who attended, on a 110 -> 12345 transfer
    mode: str = "transfer"  # transfer (one-key, blind) | threeway (三方通话) | attended (consultative)
    recording: str = ""  # the call's one recording, made on the caller's channel from the first answer
    decision: dict[str, str] = field(default_factory=dict)  # three-way outcome: keeper, rule, by
    status: str = "created"
    version: int = 0
    updated_at: str = ""
    offered_to: str = ""
    signed_for_by: str = ""
    result: str = ""
    return_reason: str = ""
    satisfaction: str = ""
    flags: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # sites the ticket travelled through, sender first
    sequences: dict[str, int] = field(default_factory=dict)  # last applied seq per authoring site
    pending: list[Event] = field(default_factory=list)  # events that arrived ahead of their predecessors
    history: list[Event] = field(default_factory=list)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """As dataclasses.asdict (a deep copy, fields in declaration order), written out for speed."""
        return {
            "id": self.id, "direction": self.direction,
            "source": {"platform": self.source.platform, "site": self.source.site},
            "target": {"platform": self.target.platform, "site": self.target.site},
            "caller_number": self.caller_number, "agent_id": self.agent_id, "linkedid": self.linkedid,
            "uniqueids": _copy(self.uniqueids), "created_at": self.created_at, "division": self.division,
            "category": self.category, "content": self.content, "address": self.address,
            "caller_name": self.caller_name, "title": self.title, "officer_contact": self.officer_contact,
            "mode": self.mode, "recording": self.recording, "decision": _copy(self.decision),
            "status": self.status, "version": self.version, "updated_at": self.updated_at,
            "offered_to": self.offered_to, "signed_for_by": self.signed_for_by, "result": self.result,
            "return_reason": self.return_reason, "satisfaction": self.satisfaction, "flags": _copy(self.flags),
            "path": _copy(self.path), "sequences": _copy(self.sequences),
            "pending": [e.to_dict() for e in self.pending], "history": [e.to_dict() for e in self.history],
            "schema": self.schema,
        }

    def event_ids(self) -> set[str]:
        return {e.id for e in self.history} | {e.id for e in self.pending}


TICKET_FIELDS = {
    "schema", "id", "direction", "source", "target", "caller_number", "agent_id", "linkedid", "uniqueids",
    "created_at", "division", "category", "content", "address", "caller_name", "title", "officer_contact",
    "mode", "recording", "decision",
    "status", "version", "updated_at", "offered_to", "signed_for_by", "result", "return_reason", "satisfaction",
    "flags", "path", "sequences", "pending", "history",
}
EVENT_FIELDS = {"id", "ticket_id", "type", "at", "actor", "payload", "version", "seq"}


def _str(data: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None, limit: int = 200,
         required: bool = False) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"field {key!r} must be a string", field=key)
    if required and not value:
        raise InvalidInput(f"field {key!r} is required", field=key)
    if len(value) > limit:
        raise InvalidInput(f"field {key!r} is longer than {limit} characters", field=key)
    if pattern is not None and not pattern.match(value):
        raise InvalidInput(f"field {key!r} has an invalid format", field=key)
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidInput(f"field {key!r} contains control characters", field=key)
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if type(value) is not int or value < 0:
        raise InvalidInput(f"field {key!r} must be a non-negative integer", field=key)
    return value


def _time(data: dict[str, Any], key: str, required: bool = True) -> str:
    value = _str(data, key, limit=40, required=required)
    if value:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput(f"field {key!r} is not an ISO 8601 time", field=key) from exc
    return value


def _party(data: dict[str, Any], key: str) -> Party:
    value = data.get(key)
    if not isinstance(value, dict) or set(value) != {"platform", "site"}:
        raise InvalidInput(f"field {key!r} must be an object with platform and site", field=key)
    return Party(_str(value, "platform", SITE, required=True), _str(value, "site", SITE, required=True))


def _unknown(data: dict[str, Any], known: set[str], what: str) -> None:
    unknown = set(data) - known
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"unknown field {name!r} in {what}", field=name)


def parse_event(data: Any) -> Event:
    if not isinstance(data, dict):
        raise InvalidInput("an event must be a JSON object")
    _unknown(data, EVENT_FIELDS, "event")
    etype = _str(data, "type", required=True, limit=32)
    if etype not in EVENT_TYPES:
        raise InvalidInput(f"unknown event type {etype!r}", field="type")
    actor = data.get("actor")
    if not isinstance(actor, dict) or not set(actor) <= {"platform", "site", "agent"} or "site" not in actor:
        raise InvalidInput("field 'actor' must be an object with platform, site and optionally agent", field="actor")
    actor_clean = {"platform": _str(actor, "platform", SITE, required=True),
                   "site": _str(actor, "site", SITE, required=True)}
    if actor.get("agent"):
        actor_clean["agent"] = _str(actor, "agent", AGENT)
    return Event(
        id=_str(data, "id", EVENT_ID, required=True),
        ticket_id=_str(data, "ticket_id", TICKET_ID, required=True),
        type=etype,
        at=_time(data, "at"),
        actor=actor_clean,
        payload=parse_payload(data.get("payload", {})),
        version=_int(data, "version"),
        seq=_int(data, "seq"),
    )


def parse_payload(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict) or len(payload) > 16:
        raise InvalidInput("field 'payload' must be an object of at most 16 keys", field="payload")
    clean: dict[str, Any] = {}
    for k, v in payload.items():
        if not isinstance(k, str) or not PAYLOAD_KEY.match(k):
            raise InvalidInput("payload keys must be lower-case words", field="payload")
        if isinstance(v, bool) or v is None or (isinstance(v, int) and abs(v) < 2**53):
            clean[k] = v
        else:
            clean[k] = _str(payload, k, limit=TEXT_LIMITS.get(k, 500))
    return clean


def parse_ticket(data: Any) -> Ticket:
    """Strict: unknown fields, wrong types, over-long text and control characters are refused."""
    if not isinstance(data, dict):
        raise InvalidInput("a ticket must be a JSON object")
    _unknown(data, TICKET_FIELDS, "ticket")
    if type(data.get("schema")) is not int or data["schema"] != SCHEMA_VERSION:
        raise InvalidInput(f"field 'schema' must be the integer {SCHEMA_VERSION}", field="schema")
    uniqueids = data.get("uniqueids", [])
    if not isinstance(uniqueids, list) or len(uniqueids) > 8:
        raise InvalidInput("field 'uniqueids' must be a list of at most 8 ids", field="uniqueids")
    for u in uniqueids:
        if not isinstance(u, str) or not ASTERISK_ID.match(u):
            raise InvalidInput("field 'uniqueids' holds an invalid id", field="uniqueids")
    history_raw = data.get("history", [])
    pending_raw = data.get("pending", [])
    if not isinstance(history_raw, list) or len(history_raw) > 500:
        raise InvalidInput("field 'history' must be a list of at most 500 events", field="history")
    if not isinstance(pending_raw, list) or len(pending_raw) > 50:
        raise InvalidInput("field 'pending' must be a list of at most 50 events", field="pending")
    history = [parse_event(e) for e in history_raw]
    pending = [parse_event(e) for e in pending_raw]
    ticket_id = _str(data, "id", TICKET_ID, required=True)
    if any(e.ticket_id != ticket_id for e in history + pending):
        raise InvalidInput("history holds an event of another ticket", field="history")
    status = _str(data, "status", limit=32) or "created"
    if status not in STATES:
        raise InvalidInput(f"field 'status' must be one of {', '.join(STATES)}", field="status")
    flags = data.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) and f in FLAGS for f in flags):
        raise InvalidInput(f"field 'flags' must be a list drawn from {sorted(FLAGS)}", field="flags")
    path = data.get("path", [])
    if not isinstance(path, list) or len(path) > 8 or not all(isinstance(p, str) and SITE.match(p) for p in path):
        raise InvalidInput("field 'path' must be a list of at most 8 site names", field="path")
    sequences = data.get("sequences", {})
    if (not isinstance(sequences, dict) or len(sequences) > 8
            or not all(isinstance(k, str) and SITE.match(k) and type(v) is int and v >= 0
                       for k, v in sequences.items())):
        raise InvalidInput("field 'sequences' must map site names to non-negative integers", field="sequences")
    return Ticket(
        id=ticket_id,
        direction=_str(data, "direction", re.compile(r"^[0-9A-Za-z_-]{1,32}->[0-9A-Za-z_-]{1,32}$"), required=True),
        source=_party(data, "source"),
        target=_party(data, "target"),
        caller_number=_str(data, "caller_number", PHONE),
        agent_id=_str(data, "agent_id", AGENT),
        linkedid=_str(data, "linkedid", ASTERISK_ID),
        uniqueids=list(uniqueids),
        created_at=_time(data, "created_at"),
        division=_str(data, "division", DIVISION),
        category=_str(data, "category", CATEGORY),
        content=_str(data, "content", limit=TEXT_LIMITS["content"]),
        address=_str(data, "address", limit=TEXT_LIMITS["address"]),
        caller_name=_str(data, "caller_name", limit=TEXT_LIMITS["caller_name"]),
        title=_str(data, "title", limit=TEXT_LIMITS["title"]),
        officer_contact=_str(data, "officer_contact", limit=TEXT_LIMITS["officer_contact"]),
        mode=_str(data, "mode", re.compile(r"^(transfer|threeway|attended)?$")) or "transfer",
        recording=_str(data, "recording", re.compile(r"^[A-Za-z0-9._-]{0,100}$")),
        decision=_decision(data.get("decision", {})),
        status=status,
        version=_int(data, "version"),
        updated_at=_time(data, "updated_at", required=False),
        offered_to=_str(data, "offered_to", AGENT),
        signed_for_by=_str(data, "signed_for_by", AGENT),
        result=_str(data, "result", limit=TEXT_LIMITS["result"]),
        return_reason=_str(data, "return_reason", limit=TEXT_LIMITS["return_reason"]),
        satisfaction=_str(data, "satisfaction", limit=TEXT_LIMITS["satisfaction"]),
        flags=list(flags),
        path=list(path),
        sequences=dict(sequences),
        pending=pending,
        history=history,
    )


def _decision(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not set(value) <= {"keeper", "rule", "by"}:
        raise InvalidInput("field 'decision' must be an object of keeper, rule and by", field="decision")
    return {k: _str(value, k, re.compile(r"^[0-9A-Za-z_/ -]{0,64}$")) for k in value}


def parse_draft(data: Any) -> dict[str, str]:
    """What an agent typed in the console for the ticket of an active call (or an amendment later)."""
    if not isinstance(data, dict):
        raise InvalidInput("a draft must be a JSON object")
    _unknown(data, DRAFT_FIELDS, "draft")
    out = {}
    for key in data:
        pattern = {"division": DIVISION, "category": CATEGORY}.get(key)
        out[key] = _str(data, key, pattern, limit=TEXT_LIMITS.get(key, 32))
    return out

# ==== END OF BASELINE ======================================================================================


def _events(cls: Any) -> list[Any]:
    """Eight history events of a realistic transfer: created, delivered, offered, signed_for, amended, …"""
    kinds: list[tuple[str, str, str, dict[str, Any]]] = [
             ("created", "12345", "1001", {}), ("delivered", "110", "", {"via": "push"}),
             ("offered", "110", "2001", {"ring": 1}), ("signed_for", "110", "2001", {}),
             ("amended", "12345", "1001", {"fields": "content", "reason": "caller added the address"}),
             ("accepted", "110", "2001", {}), ("in_progress", "110", "2001", {"note": "officers on the way"}),
             ("resolved", "110", "2001", {"result": "officers attended; the noise stopped at 23:10"})]
    out = []
    for i, (kind, site, agent, payload) in enumerate(kinds):
        actor = {"platform": site, "site": site, **({"agent": agent} if agent else {})}
        out.append(cls(f"{i + 1:032x}", TID, kind, f"2026-01-01T12:00:{i:02d}.000Z", actor, dict(payload),
                       i + 1, i + 1))
    return out


def _ticket(ticket_cls: Any, party_cls: Any, event_cls: Any) -> Any:
    return ticket_cls(
        id=TID, direction="12345->110", source=party_cls("12345", "12345"), target=party_cls("110", "110"),
        caller_number="13912345678", agent_id="1001", linkedid="1767268800.12",
        uniqueids=["1767268800.12", "1767268800.13"], created_at="2026-01-01T12:00:00.000Z",
        division="370800", category="noise", content="loud music from the flat above, every night after 22:00\n"
        "the caller has asked the neighbours twice", address="1 Main St, Rencheng District", caller_name="张三",
        title="noise complaint", officer_contact="Officer Wang 0537-1234567", status="resolved", version=8,
        updated_at="2026-01-01T12:00:07.000Z", offered_to="2001", signed_for_by="2001",
        result="officers attended; the noise stopped at 23:10", path=["12345", "110"],
        sequences={"12345": 5, "110": 8}, history=_events(event_cls))


def _old_encode(ticket: Any) -> bytes:
    return json.dumps(ticket.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()


def _old_parse(raw: bytes) -> Any:
    return parse_ticket(json.loads(raw))


def _clock(fn: Callable[[], Any], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops * 1e6


def run(rounds: int, ops: int) -> dict[str, Any]:
    old_ticket = _ticket(Ticket, Party, Event)
    new_ticket = _ticket(new.Ticket, new.Party, new.Event)
    old_raw, new_raw = _old_encode(old_ticket), new.encode(new_ticket)
    # the same ticket either way, and each side reads what the other wrote. Fields added since the old code
    # (parent, advice, …) are left at their defaults here and taken out for the old side.
    old_doc, new_doc = json.loads(old_raw), json.loads(new_raw)
    later = set(new_doc) - set(old_doc)
    assert {k: v for k, v in new_doc.items() if k not in later} == old_doc
    assert new.decode_ticket(old_raw) == new_ticket
    assert _old_parse(json.dumps({k: v for k, v in new_doc.items() if k not in later}).encode()) == old_ticket
    data = old_ticket.to_dict()
    pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "encode": (lambda: _old_encode(old_ticket), lambda: new.encode(new_ticket)),
        "parse": (lambda: _old_parse(old_raw), lambda: new.decode_ticket(new_raw)),
        "to_dict": (old_ticket.to_dict, new_ticket.to_dict),
        "parse_dict": (lambda: parse_ticket(data), lambda: new.parse_ticket(data)),
    }
    samples: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in pairs}
    for r in range(rounds):  # interleaved, and the order flips each round, so drift hits both alike
        for name, (old_fn, new_fn) in pairs.items():
            order = [("old", old_fn), ("new", new_fn)] if r % 2 == 0 else [("new", new_fn), ("old", old_fn)]
            for side, fn in order:
                samples[name][side].append(_clock(fn, ops))
    out: dict[str, Any] = {"ticket_bytes": len(new_raw), "history_events": len(new_ticket.history),
                           "rounds": rounds, "ops_per_round": ops, "unit": "microseconds per operation (median)"}
    for name, sides in samples.items():
        old_us, new_us = statistics.median(sides["old"]), statistics.median(sides["new"])
        out[name] = {"old": round(old_us, 2), "new": round(new_us, 2), "ratio": round(new_us / old_us, 3)}
    return out


HEADING = "## Ticket schema: msgspec against the hand-written code"


def section(report: dict[str, Any]) -> str:
    rows = "\n".join(f"| {name} | {report[name]['old']} | {report[name]['new']} | {report[name]['ratio']} |"
                     for name in ("encode", "parse", "to_dict", "parse_dict"))
    m = report["machine"]
    return f"""{HEADING} (`{report['command']}`, bench/results/schema-{report['date']}.json)
A ticket of {report['ticket_bytes']} bytes with {report['history_events']} history events; median microseconds per
operation over {report['rounds']} interleaved rounds of {report['ops_per_round']} (the order flips each round).
Below 1 the new code is faster. Commit {m['commit']}, {m['cpu']}, Python {m['python']}.

| step | hand-written (µs) | msgspec (µs) | new / old |
|---|---|---|---|
{rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {"command": f"python -m linkage_lab.bench.schema --rounds {args.rounds} --ops {args.ops}",
              "date": stamp, "machine": machine(), **run(args.rounds, args.ops)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"schema-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not args.no_markdown:
        replace_section(ROOT / "BENCHMARKS.md", HEADING, section(report))


if __name__ == "__main__":
    main()
