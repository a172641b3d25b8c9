"""Ticket schema v1: strict parsing of what a peer sends, and ticket ids that fit in a dialplan extension."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from telephony.errors import InvalidInput
from telephony.ids import TICKET_ID
from telephony.tickets.models import (
    DRAFT_FIELDS,
    STATES,
    TICKET_FIELDS,
    Event,
    Party,
    Ticket,
    encode,
    new_event_id,
    new_ticket_id,
    parse_draft,
    parse_event,
    parse_payload,
    parse_ticket,
)

TID = "37080020260101120000123456"


def make_ticket(**overrides: Any) -> Ticket:
    fields: dict[str, Any] = dict(
        id=TID, direction="12345->110", source=Party("12345", "12345"), target=Party("110", "110"),
        caller_number="13912345678", agent_id="1001", linkedid="1767268800.12",
        uniqueids=["1767268800.12", "1767268800.13"], created_at="2026-01-01T12:00:00.000Z",
        division="370800", category="noise", content="loud music\nevery night", address="1 Main St",
        caller_name="张三", title="noise complaint", status="delivered", version=3,
        updated_at="2026-01-01T12:00:05.000Z", offered_to="2001",
        history=[
            Event("a" * 32, TID, "created", "2026-01-01T12:00:00.000Z", {"platform": "12345", "site": "12345",
                                                                         "agent": "1001"}, {}, 1, 1),
            Event("d" * 32, TID, "delivered", "2026-01-01T12:00:01.000Z", {"platform": "110", "site": "110"},
                  {"via": "push"}, 2, 1),
            Event("b" * 32, TID, "offered", "2026-01-01T12:00:05.000Z", {"platform": "110", "site": "110",
                                                                         "agent": "2001"}, {"ring": 1}, 3, 2),
        ], path=["12345", "110"], sequences={"12345": 1, "110": 2})
    fields.update(overrides)
    return Ticket(**fields)


def event_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "c" * 32, "ticket_id": TID, "type": "signed_for",
                            "at": "2026-01-01T12:00:09Z", "version": 3, "payload": {},
                            "actor": {"platform": "110", "site": "110", "agent": "2001"}}
    data.update(overrides)
    return data


def refused(data: Any, field: str | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_ticket(data)
    if field is not None:
        assert info.value.details.get("field") == field
    return info.value


# ---- parse_ticket --------------------------------------------------------------------------------------

def test_round_trip_of_to_dict() -> None:
    ticket = make_ticket()
    parsed = parse_ticket(ticket.to_dict())
    assert parsed == ticket
    assert parsed.history[2].payload == {"ring": 1}
    assert [e.seq for e in parsed.history] == [1, 1, 2]
    assert parsed.source == Party("12345", "12345")


def test_to_dict_is_every_field_in_order_and_a_deep_copy() -> None:
    """to_dict (and the JSON encoding) give every field in declaration order, as dataclasses.asdict did."""
    ticket = make_ticket(decision={"keeper": "110"}, flags=["overdue"], pending=[
        Event("e" * 32, TID, "amended", "2026-01-01T12:00:09.000Z", {"platform": "110", "site": "110"},
              {"fields": ["content"], "nested": {"a": [1, {"b": 2}]}}, 4, 4)])
    assert list(json.loads(encode(ticket)).items()) == list(ticket.to_dict().items())
    assert list(ticket.to_dict()) == [f.name for f in msgspec.structs.fields(Ticket)]
    assert list(ticket.history[0].to_dict()) == [f.name for f in msgspec.structs.fields(Event)]
    copy = ticket.to_dict()
    copy["source"]["site"] = "x"
    copy["uniqueids"].append("x")
    copy["decision"]["keeper"] = "x"
    copy["flags"].append("x")
    copy["path"].append("x")
    copy["sequences"]["x"] = 9
    copy["history"][0]["actor"]["site"] = "x"
    copy["pending"][0]["payload"]["nested"]["a"][1]["b"] = 3
    assert ticket == make_ticket(decision={"keeper": "110"}, flags=["overdue"], pending=[
        Event("e" * 32, TID, "amended", "2026-01-01T12:00:09.000Z", {"platform": "110", "site": "110"},
              {"fields": ["content"], "nested": {"a": [1, {"b": 2}]}}, 4, 4)])
    assert set(ticket.to_dict()) == TICKET_FIELDS


def test_minimal_ticket_gets_defaults() -> None:
    data = {"schema": 1, "id": TID, "direction": "12345->110", "created_at": "2026-01-01T12:00:00Z",
            "source": {"platform": "12345", "site": "12345"}, "target": {"platform": "110", "site": "110"}}
    t = parse_ticket(data)
    assert (t.status, t.version, t.history, t.uniqueids, t.content) == ("created", 0, [], [], "")
    assert (t.flags, t.path, t.sequences, t.pending, t.officer_contact, t.result) == ([], [], {}, [], "", "")


def test_unknown_field_is_refused() -> None:
    data = make_ticket().to_dict()
    data["priority"] = "high"
    assert "priority" in refused(data, "priority").message


@pytest.mark.parametrize("schema", [None, 0, 2, "1", "v1", [1]])
def test_wrong_schema_is_refused(schema: Any) -> None:
    data = make_ticket().to_dict()
    if schema is None:
        del data["schema"]
    else:
        data["schema"] = schema
    refused(data, "schema")


@pytest.mark.parametrize("ticket_id", ["37080020260101120000abcdef", "1234", "3" * 33, "",
                                       370800202601011200001234])
def test_bad_ticket_id_is_refused(ticket_id: Any) -> None:
    refused(make_ticket(id=ticket_id, history=[]).to_dict(), "id")


@pytest.mark.parametrize("field, value", [
    ("caller_number", "139-1234-5678"), ("caller_number", "1391234567a"), ("agent_id", "agent1"),
    ("division", "3708"), ("category", "Noise!"),
])
def test_bad_formats_are_refused(field: str, value: str) -> None:
    refused(make_ticket(**{field: value}).to_dict(), field)


@pytest.mark.parametrize("field", ["content", "address", "caller_name", "title"])
@pytest.mark.parametrize("char", ["\x00", "\r", "\x1b", "\x08"])
def test_control_characters_in_text_are_refused(field: str, char: str) -> None:
    err = refused(make_ticket(**{field: f"a{char}b"}).to_dict(), field)
    assert "control" in err.message


def test_newline_and_tab_are_allowed_in_text() -> None:
    assert parse_ticket(make_ticket(content="line 1\n\tline 2").to_dict()).content == "line 1\n\tline 2"


def test_content_length_limit_is_5000() -> None:
    assert len(parse_ticket(make_ticket(content="x" * 5000).to_dict()).content) == 5000
    refused(make_ticket(content="x" * 5001).to_dict(), "content")


def test_non_string_text_is_refused() -> None:
    refused(make_ticket(content=["a"]).to_dict(), "content")


@pytest.mark.parametrize("uniqueids", [["1767268800.1 ; Hangup"], ["x" * 65], [1767268800.1], "1767268800.1",
                                       [f"1767268800.{i}" for i in range(9)], ["a\nb"]])
def test_bad_uniqueids_are_refused(uniqueids: Any) -> None:
    refused(make_ticket(uniqueids=uniqueids).to_dict(), "uniqueids")


def test_history_event_of_another_ticket_is_refused() -> None:
    data = make_ticket().to_dict()
    data["history"][1]["ticket_id"] = "37080020260101120000999999"
    err = refused(data, "history")
    assert "another ticket" in err.message


def test_bad_event_in_history_is_refused() -> None:
    data = make_ticket().to_dict()
    data["history"][0]["type"] = "deleted"
    refused(data, "type")


def test_bad_party_is_refused() -> None:
    data = make_ticket().to_dict()
    data["target"] = {"platform": "110", "site": "110", "extra": "x"}
    refused(data, "target")


@pytest.mark.parametrize("version", [-1, "2", True, 1.5])
def test_bad_version_is_refused(version: Any) -> None:
    refused(make_ticket(version=version).to_dict(), "version")


def test_bad_time_is_refused() -> None:
    refused(make_ticket(created_at="yesterday").to_dict(), "created_at")


@pytest.mark.parametrize("data", [None, [], "ticket", 1])
def test_non_object_is_refused(data: Any) -> None:
    refused(data)


# ---- parse_event ---------------------------------------------------------------------------------------

def test_event_parses() -> None:
    e = parse_event(event_dict(payload={"via": "push", "ring": 2, "late": True, "none": None}))
    assert (e.type, e.ticket_id, e.version) == ("signed_for", TID, 3)
    assert e.actor == {"platform": "110", "site": "110", "agent": "2001"}
    assert e.payload == {"via": "push", "ring": 2, "late": True, "none": None}


def test_event_empty_agent_is_dropped_from_actor() -> None:
    e = parse_event(event_dict(actor={"platform": "110", "site": "110", "agent": ""}))
    assert e.actor == {"platform": "110", "site": "110"}


@pytest.mark.parametrize("etype", ["deleted", "SIGNED_FOR", "", 7])
def test_event_unknown_type_is_refused(etype: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_event(event_dict(type=etype))
    assert info.value.details["field"] == "type"


@pytest.mark.parametrize("actor", [
    None, "110", {"platform": "110"}, {"platform": "110", "site": "110", "role": "x"}, {"site": "110"},
    {"platform": "110", "site": "1 10"}, {"platform": "110", "site": "110", "agent": "twenty"},
])
def test_event_bad_actor_is_refused(actor: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_event(event_dict(actor=actor))


@pytest.mark.parametrize("payload", [{"Via": "push"}, {"dial-status": "x"}, {"": 1}, {"a" * 33: 1},
                                     {f"k{chr(97 + i)}": i for i in range(17)}, {"nested": {"a": 1}},
                                     {"ratio": 0.5}, {"text": "a\x00b"}, {"text": "x" * 501}, ["via"]])
def test_event_bad_payload_is_refused(payload: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_event(event_dict(payload=payload))
    keys = list(payload) if isinstance(payload, dict) else []
    assert info.value.details["field"] in ["payload", *keys]


def test_event_unknown_field_and_bad_ids_are_refused() -> None:
    for bad in (event_dict(extra=1), event_dict(id="C" * 32), event_dict(id="c" * 31),
                event_dict(ticket_id="abc"), event_dict(at="tomorrow"), event_dict(version=-1)):
        with pytest.raises(InvalidInput):
            parse_event(bad)


# ---- parse_draft ---------------------------------------------------------------------------------------

def test_draft_keeps_known_fields() -> None:
    draft = {"division": "370811", "category": "traffic", "content": "x" * 5000, "caller_name": "李四"}
    assert parse_draft(draft) == draft
    assert parse_draft({}) == {}


@pytest.mark.parametrize("draft, field", [
    ({"status": "signed_for"}, "status"), ({"division": "1"}, "division"),
    ({"category": "Traffic"}, "category"), ({"title": "t" * 201}, "title"),
    ({"address": "a\x07"}, "address"), ({"content": 5}, "content"),
])
def test_draft_refuses_bad_fields(draft: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_draft(draft)
    assert info.value.details["field"] == field


def test_draft_must_be_an_object() -> None:
    with pytest.raises(InvalidInput):
        parse_draft(["content"])


# ---- ids -----------------------------------------------------------------------------------------------

def test_new_ticket_id_is_26_digits_starting_with_the_division() -> None:
    ids = {new_ticket_id("370800") for _ in range(50)}
    for tid in ids:
        assert re.fullmatch(r"[0-9]{26}", tid)
        assert tid.startswith("370800")
        assert TICKET_ID.match(tid)
    assert len(ids) > 1  # the random tail varies


def test_new_event_id_matches_the_event_schema() -> None:
    eid = new_event_id()
    assert parse_event(event_dict(id=eid)).id == eid


# ---- fixed bugs and schema v1 additions -------------------------------------------------------------------

@pytest.mark.parametrize("status", ["hacked", "deleted_by_peer", "Signed_For", "offered", "abandoned"])
def test_unknown_status_is_refused(status: str) -> None:
    err = refused(make_ticket(status=status).to_dict(), "status")
    assert "signed_for" in err.message  # the message lists the states


@pytest.mark.parametrize("status", STATES)
def test_every_state_is_accepted(status: str) -> None:
    assert parse_ticket(make_ticket(status=status).to_dict()).status == status


@pytest.mark.parametrize("schema", [True, 1.0])
def test_schema_of_another_type_is_refused(schema: Any) -> None:
    data = make_ticket().to_dict()
    data["schema"] = schema
    refused(data, "schema")


def test_closed_loop_fields_round_trip() -> None:
    pending = Event("e" * 32, TID, "resolved", "2026-01-01T12:10:00.000Z", {"platform": "110", "site": "110"},
                    {"result": "done"}, 0, 5)
    ticket = make_ticket(officer_contact="Officer Wang 0537-1234567", result="officers attended",
                         return_reason="", satisfaction="satisfied", flags=["caller_abandoned", "overdue"],
                         path=["12345", "110", "110-370811"], sequences={"12345": 1, "110": 2}, pending=[pending])
    parsed = parse_ticket(ticket.to_dict())
    assert parsed == ticket
    assert parsed.pending[0].seq == 5
    assert parsed.event_ids() == {"a" * 32, "b" * 32, "d" * 32, "e" * 32}


@pytest.mark.parametrize("field, limit", [("officer_contact", 200), ("result", 4000), ("return_reason", 1000),
                                          ("satisfaction", 32)])
def test_closed_loop_text_limits(field: str, limit: int) -> None:
    assert getattr(parse_ticket(make_ticket(**{field: "x" * limit}).to_dict()), field) == "x" * limit
    refused(make_ticket(**{field: "x" * (limit + 1)}).to_dict(), field)


@pytest.mark.parametrize("flags", [["hacked"], "overdue", [1], [None]])
def test_unknown_flags_are_refused(flags: Any) -> None:
    refused(make_ticket(flags=flags).to_dict(), "flags")


@pytest.mark.parametrize("path", ["12345", ["1 2"], [1], [f"s{i}" for i in range(9)], [""]])
def test_bad_path_is_refused(path: Any) -> None:
    refused(make_ticket(path=path).to_dict(), "path")


@pytest.mark.parametrize("sequences", [[1], {"110": -1}, {"110": "1"}, {"110": True}, {"1 10": 1},
                                       {f"s{i}": 1 for i in range(9)}])
def test_bad_sequences_are_refused(sequences: Any) -> None:
    refused(make_ticket(sequences=sequences).to_dict(), "sequences")


def test_pending_is_bounded_and_holds_events_of_this_ticket() -> None:
    def pending(n: int, ticket_id: str = TID) -> list[dict[str, Any]]:
        return [event_dict(id=f"{i + 1:032x}", ticket_id=ticket_id, seq=i + 3) for i in range(n)]

    data = make_ticket().to_dict()
    data["pending"] = pending(50)
    assert len(parse_ticket(data).pending) == 50
    data["pending"] = pending(51)
    refused(data, "pending")
    data["pending"] = pending(1, "37080020260101120000999999")
    refused(data, "history")
    data["pending"] = "x"
    refused(data, "pending")


def test_history_is_bounded_to_500_events() -> None:
    data = make_ticket().to_dict()
    data["history"] = [event_dict(id=f"{i + 1:032x}") for i in range(501)]
    refused(data, "history")


@pytest.mark.parametrize("seq", [-1, "1", True, 1.0])
def test_event_seq_must_be_a_non_negative_integer(seq: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_event(event_dict(seq=seq))
    assert info.value.details["field"] == "seq"


def test_event_seq_defaults_to_zero() -> None:
    assert parse_event(event_dict()).seq == 0
    assert parse_event(event_dict(seq=7)).seq == 7


# ---- parse_payload -------------------------------------------------------------------------------------

def test_payload_keeps_strings_small_integers_booleans_and_null() -> None:
    payload = {"reason": "r", "count": 2**53 - 1, "neg": -(2**53 - 1), "late": False, "none": None}
    assert parse_payload(payload) == payload


@pytest.mark.parametrize("value", [2**53, -(2**53), 0.5, [1], {"a": 1}])
def test_payload_refuses_big_integers_floats_and_nesting(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_payload({"value": value})
    assert info.value.details["field"] == "value"


def test_payload_text_limits_follow_the_key() -> None:
    assert parse_payload({"result": "x" * 4000}) == {"result": "x" * 4000}
    with pytest.raises(InvalidInput):
        parse_payload({"result": "x" * 4001})
    with pytest.raises(InvalidInput):
        parse_payload({"reason": "x" * 501})  # no own limit: 500


@pytest.mark.parametrize("payload", [[], "x", None, {f"k{chr(97 + i)}": 1 for i in range(17)}, {"Key": 1},
                                     {1: "x"}])
def test_payload_shape_is_refused(payload: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_payload(payload)
    assert info.value.details["field"] == "payload"


def test_draft_fields_include_the_officers_contact() -> None:
    assert sorted(DRAFT_FIELDS) == ["address", "caller_name", "category", "content", "division", "officer_contact",
                                    "title", "urgency"]
    assert parse_draft({"officer_contact": "x" * 200}) == {"officer_contact": "x" * 200}
    with pytest.raises(InvalidInput):
        parse_draft({"officer_contact": "x" * 201})
