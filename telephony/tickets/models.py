"""The ticket schema, version 1 (documented in docs/ticket-schema.md), declared once: the same msgspec Structs
validate what a peer sends, encode what we store and push, and are the objects the services change.

msgspec rather than pydantic: tickets are encoded on every store write and push and decoded on every read, and
msgspec validates and encodes from the declaration in C, faster than the hand-written code it replaces.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import msgspec.inspect
from msgspec import Meta

from telephony import ids
from telephony.errors import InvalidInput
from telephony.ids import (
    Category,
    DecisionValue,
    Direction,
    EventId,
    IntakeChannel,
    Mode,
    OptionalAgentId,
    OptionalCallerNumber,
    OptionalDivision,
    OptionalTicketId,
    OptionalUniqueid,
    PayloadKey,
    Recording,
    SiteName,
    TicketId,
    Urgency,
)
from telephony.tickets.advised import Advised
from telephony.validation import Message, field_of, generic, own_message, translate

SCHEMA_VERSION = 1
PAYLOAD_TEXT_LIMIT = 500  # a payload string whose key has no limit of its own
PAYLOAD_VALUES = "a string without control characters, an integer below 2**53, a boolean or null"

STATES = ("created", "delivered", "signed_for", "accepted", "returned", "in_progress", "resolved",
          "followed_up", "closed", "transfer_failed", "cancelled")
EVENT_TYPES = {"created", "delivered", "offered", "signed_for", "abandoned", "accepted", "returned",
               "in_progress", "resolved", "followed_up", "closed", "transfer_failed", "cancelled", "amended",
               "overdue", "routed", "transferred", "decided"}
FLAGS = {"caller_abandoned", "overdue"}


def _one_of(values: Any, empty: bool = False) -> str:
    return f"^({'|'.join(sorted(values))}){'?' if empty else ''}$"


Time = Annotated[str, Meta(min_length=1, max_length=40)]
OptionalTime = Annotated[str, Meta(max_length=40)]
Count = Annotated[int, Meta(ge=0)]
Status = Annotated[str, Meta(pattern=_one_of(STATES, empty=True))]  # empty reads as "created"
EventType = Annotated[str, Meta(pattern=_one_of(EVENT_TYPES))]
Flag = Annotated[str, Meta(pattern=_one_of(FLAGS))]
OptionalSiteName = Annotated[str, Meta(pattern=ids.OPTIONAL_SITE_NAME.pattern)]
# Text a person typed, bounded: one type per limit (TEXT_LIMITS, read from the Ticket, says which has which).
Text32 = Annotated[str, Meta(max_length=32, pattern=ids.TEXT.pattern)]
Text100 = Annotated[str, Meta(max_length=100, pattern=ids.TEXT.pattern)]
Text200 = Annotated[str, Meta(max_length=200, pattern=ids.TEXT.pattern)]
Text500 = Annotated[str, Meta(max_length=500, pattern=ids.TEXT.pattern)]
Text1000 = Annotated[str, Meta(max_length=1000, pattern=ids.TEXT.pattern)]
Text4000 = Annotated[str, Meta(max_length=4000, pattern=ids.TEXT.pattern)]
Text5000 = Annotated[str, Meta(max_length=5000, pattern=ids.TEXT.pattern)]
PayloadValue = (Text5000 | Annotated[int, Meta(ge=-(2**53 - 1), le=2**53 - 1)]
                | bool | None)
if TYPE_CHECKING:  # what the services see: plain dicts (the runtime types below validate the same values)
    Payload = dict[str, Any]
    ActorMap = dict[str, str]
else:
    Payload = Annotated[dict[PayloadKey, PayloadValue], Meta(max_length=16)]
    # platform and site, and the agent when one acted (checked after decoding: the keys differ in pattern)
    ActorMap = dict[Literal["platform", "site", "agent"], OptionalSiteName]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_of(iso: str) -> float:
    """The epoch seconds of a ticket's ISO time (`now_iso`'s form; raises ValueError for anything else)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def new_ticket_id(division: str) -> str:
    """Digits only, so the id can ride in a dialplan extension: division + UTC time + 6 random digits."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    return f"{division}{stamp}{secrets.randbelow(10**6):06d}"


def new_event_id() -> str:
    return uuid.uuid4().hex


class Party(msgspec.Struct, forbid_unknown_fields=True):
    platform: Annotated[str, Meta(min_length=1, pattern=ids.SITE_NAME.pattern)]
    site: Annotated[str, Meta(min_length=1, pattern=ids.SITE_NAME.pattern)]


class Event(msgspec.Struct, forbid_unknown_fields=True):
    id: EventId
    ticket_id: TicketId
    type: EventType
    at: Time
    actor: ActorMap
    payload: Payload = {}
    version: Count = 0  # position in the history of the copy that holds it
    seq: Count = 0  # per ticket and authoring site: 1, 2, 3 … applied in this order on every copy

    def to_dict(self) -> dict[str, Any]:
        """Every field in declaration order, a deep copy (what dataclasses.asdict gave)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class Ticket(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: TicketId
    direction: Direction
    source: Party
    target: Party
    caller_number: OptionalCallerNumber = ""
    agent_id: OptionalAgentId = ""
    linkedid: OptionalUniqueid = ""
    uniqueids: Annotated[list[OptionalUniqueid], Meta(max_length=8)] = []
    created_at: Time
    division: OptionalDivision = ""
    category: Category = ""
    content: Text5000 = ""
    address: Text500 = ""
    caller_name: Text100 = ""
    title: Text200 = ""
    # 前期出警人员联系方式: officers who attended, on a 110 -> 12345 transfer
    officer_contact: Text200 = ""
    urgency: Urgency = ""  # normal | urgent | emergency, as the agent judged it; empty: not stated
    mode: Mode = "transfer"  # transfer (one-key, blind) | threeway (三方通话) | attended | referral (no call)
    channel: IntakeChannel = "call"  # how the matter reached the sender: a call, or a referral's network channel
    parent: OptionalTicketId = ""  # the ticket this one carries the matter on from: the chain of one matter
    recording: Recording = ""  # the call's one recording, made on the caller's channel from the first answer
    decision: dict[Literal["keeper", "rule", "by"], DecisionValue] = {}  # three-way outcome: keeper, rule, by
    advice: Advised | None = None  # 智能转办: what the scope advisor suggested at the transfer, and if followed
    status: Status = "created"
    version: Count = 0
    updated_at: OptionalTime = ""
    offered_to: OptionalAgentId = ""
    signed_for_by: OptionalAgentId = ""
    result: Text4000 = ""
    return_reason: Text1000 = ""
    satisfaction: Text32 = ""
    flags: list[Flag] = []
    path: Annotated[list[SiteName], Meta(max_length=8)] = []  # sites the ticket travelled through, sender first
    sequences: Annotated[dict[SiteName, Count], Meta(max_length=8)] = {}  # last applied seq per authoring site
    pending: Annotated[list[Event], Meta(max_length=50)] = []  # events that arrived ahead of their predecessors
    history: Annotated[list[Event], Meta(max_length=500)] = []
    schema: Annotated[int, Meta(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Every field in declaration order, a deep copy (what dataclasses.asdict gave)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def event_ids(self) -> set[str]:
        return {e.id for e in self.history} | {e.id for e in self.pending}


class Draft(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What an agent typed in the console for the ticket of an active call (or an amendment later)."""

    division: OptionalDivision | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType = msgspec.UNSET
    content: Text5000 | msgspec.UnsetType = msgspec.UNSET
    address: Text500 | msgspec.UnsetType = msgspec.UNSET
    caller_name: Text100 | msgspec.UnsetType = msgspec.UNSET
    title: Text200 | msgspec.UnsetType = msgspec.UNSET
    officer_contact: Text200 | msgspec.UnsetType = msgspec.UNSET
    urgency: Urgency | msgspec.UnsetType = msgspec.UNSET


TEXT_LIMITS: dict[str, int] = {f.name: f.type.max_length or 0 for f in msgspec.inspect.type_info(Ticket).fields  # type: ignore[attr-defined]
               if isinstance(f.type, msgspec.inspect.StrType) and f.type.pattern == ids.TEXT.pattern}
TICKET_FIELDS = {f.encode_name for f in msgspec.structs.fields(Ticket)}
EVENT_FIELDS = {f.encode_name for f in msgspec.structs.fields(Event)}
DRAFT_FIELDS = {f.name for f in msgspec.structs.fields(Draft)}

_TICKET_DECODER = msgspec.json.Decoder(Ticket)
_EVENT_DECODER = msgspec.json.Decoder(Event)
_ENCODER = msgspec.json.Encoder()

# A field's own message where msgspec's generic one would not say what is allowed.
MESSAGES: dict[str, Message] = {
    "schema": f"field 'schema' must be the integer {SCHEMA_VERSION}",
    "status": f"field 'status' must be one of {', '.join(STATES)}",
    "urgency": f"field 'urgency' must be one of {', '.join(ids.URGENCIES)} (or empty)",
    "channel": f"field 'channel' must be one of {', '.join(ids.INTAKE_CHANNELS)}",
    "type": lambda text: f"unknown event type: field 'type' must be one of {', '.join(sorted(EVENT_TYPES))}",
    "source": "field 'source' must be an object with platform and site",
    "target": "field 'target' must be an object with platform and site",
    "actor": "field 'actor' must be an object with platform, site and optionally agent",
    "uniqueids": lambda text: ("field 'uniqueids' holds an invalid id" if "uniqueids[" in text else
                               "field 'uniqueids' must be a list of at most 8 ids"),
    "history": "field 'history' must be a list of at most 500 events",
    "pending": "field 'pending' must be a list of at most 50 events",
    "flags": f"field 'flags' must be a list drawn from {sorted(FLAGS)}",
    "path": "field 'path' must be a list of at most 8 site names",
    "sequences": "field 'sequences' must map site names to non-negative integers",
    "decision": "field 'decision' must be an object of keeper, rule and by",
    "payload": lambda text: ("payload keys must be lower-case words" if "`key` in" in text else
                             f"field 'payload' holds an invalid value: {PAYLOAD_VALUES}" if "[...]" in text else
                             "field 'payload' must be an object of at most 16 keys"),
}


def _refused(exc: msgspec.ValidationError, what: str) -> InvalidInput:
    return translate(exc, what, MESSAGES, top=f"a{'n' if what[0] in 'ae' else ''} {what} must be a JSON object")


def encode(value: Ticket | Event | dict[str, Any]) -> bytes:
    """Compact JSON, UTF-8 unescaped (what json.dumps(ensure_ascii=False, separators=(",", ":")) gave)."""
    return _ENCODER.encode(value)


def decode_ticket(raw: bytes | str) -> Ticket:
    """A ticket from JSON (stored or received): strict like parse_ticket."""
    try:
        ticket = _TICKET_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise _refused(exc, "ticket") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput("a ticket must be a JSON object") from exc
    return _checked_ticket(ticket)


def parse_ticket(data: Any) -> Ticket:
    """Strict: unknown fields, wrong types, over-long text and control characters are refused."""
    if not isinstance(data, dict):
        raise InvalidInput("a ticket must be a JSON object")
    if "schema" not in data:  # the one field a ticket must name although it has a default
        raise InvalidInput(own_message(MESSAGES["schema"], ""), field="schema")
    try:
        ticket = msgspec.convert(data, Ticket)
    except msgspec.ValidationError as exc:
        raise _refused(exc, "ticket") from exc
    return _checked_ticket(ticket)


def _checked_ticket(ticket: Ticket) -> Ticket:
    """What a field's type cannot say: times are times, the events are this ticket's, empty means default."""
    _time(ticket.created_at, "created_at")
    if ticket.updated_at:
        _time(ticket.updated_at, "updated_at")
    for event in ticket.history:
        _checked_event(event)
    for event in ticket.pending:
        _checked_event(event)
    if any(e.ticket_id != ticket.id for e in ticket.history) or any(e.ticket_id != ticket.id
                                                                    for e in ticket.pending):
        raise InvalidInput("history holds an event of another ticket", field="history")
    if not ticket.status:
        ticket.status = "created"
    if not ticket.mode:
        ticket.mode = "transfer"
    return ticket


def decode_event(raw: bytes | str) -> Event:
    try:
        event = _EVENT_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise _refused(exc, "event") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput("an event must be a JSON object") from exc
    return _checked_event(event)


def parse_event(data: Any) -> Event:
    if not isinstance(data, dict):
        raise InvalidInput("an event must be a JSON object")
    try:
        event = msgspec.convert(data, Event)
    except msgspec.ValidationError as exc:
        raise _refused(exc, "event") from exc
    return _checked_event(event)


def _checked_event(event: Event) -> Event:
    actor = event.actor
    if (not actor.get("platform") or not actor.get("site")
            or not ids.OPTIONAL_AGENT_ID.match(actor.get("agent", ""))):
        raise InvalidInput(own_message(MESSAGES["actor"], ""), field="actor")
    if "agent" in actor and not actor["agent"]:
        del actor["agent"]  # an empty agent is no agent
    _time(event.at, "at")
    _payload_limits(event.payload)
    return event


def _time(value: str, key: str) -> None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"field {key!r} is not an ISO 8601 time", field=key) from exc


def _payload_limits(payload: dict[str, Any]) -> None:
    for key, value in payload.items():
        if isinstance(value, str) and len(value) > (limit := TEXT_LIMITS.get(key, PAYLOAD_TEXT_LIMIT)):
            raise InvalidInput(f"field {key!r} is longer than {limit} characters", field=key)


def parse_payload(payload: Any) -> dict[str, Any]:
    """An event's payload on its own (a console action's): a value at fault names its key."""
    try:
        clean: dict[str, Any] = msgspec.convert(payload, Payload)
    except msgspec.ValidationError as exc:
        if "[...]" not in str(exc) or not isinstance(payload, dict):
            raise InvalidInput(own_message(MESSAGES["payload"], str(exc)), field="payload") from exc
        for key, value in payload.items():  # which value: msgspec does not say
            try:
                msgspec.convert(value, PayloadValue)
            except msgspec.ValidationError as inner:
                detail = field_of(str(inner))[1]
                limit = TEXT_LIMITS.get(key, PAYLOAD_TEXT_LIMIT)
                message = (f"field {key!r} must be {PAYLOAD_VALUES}" if "got" in detail else
                           f"field {key!r} is longer than {limit} characters" if "length" in detail else
                           generic(key, detail, "payload"))
                raise InvalidInput(message, field=key) from inner
        raise InvalidInput(own_message(MESSAGES["payload"], str(exc)), field="payload") from exc
    _payload_limits(clean)
    return clean


def parse_draft(data: Any, what: str = "draft") -> dict[str, str]:
    """What an agent typed in the console for the ticket of an active call (or an amendment later, or a
    referral: `what` names it in a refusal)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"a {what} must be a JSON object")
    try:
        draft = msgspec.convert(data, Draft)
    except msgspec.ValidationError as exc:
        raise translate(exc, what, {"urgency": MESSAGES["urgency"]}) from exc
    out: dict[str, str] = msgspec.to_builtins(draft)
    return out
