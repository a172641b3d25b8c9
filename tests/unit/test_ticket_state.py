"""The ticket state machine: one rules table, authorship checks, forward moves only, duplicates ignored, late
events kept in the history without moving the ticket back."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from telephony.errors import Conflict, Forbidden, InvalidInput
from telephony.tickets.models import DRAFT_FIELDS, EVENT_TYPES, STATES, Event, Party, Ticket
from telephony.tickets.state import (
    ANY,
    FINAL,
    RECEIVER,
    RELAY,
    REQUIRED,
    RULES,
    SATISFACTION,
    SENDER,
    Applied,
    allowed_from,
    apply_event,
    check,
    check_author,
    role_of,
)

TID = "37080020260101120000123456"
SENDING, RECEIVING = "12345", "110"
_ids = itertools.count(1)
PAYLOADS: dict[str, dict[str, Any]] = {"returned": {"reason": "not police business"},
                                       "resolved": {"result": "officers attended"},
                                       "followed_up": {"satisfaction": "satisfied"},
                                       "transfer_failed": {"reason": "no answer"}}


def ticket(status: str = "created") -> Ticket:
    return Ticket(id=TID, direction="12345->110", source=Party("12345", SENDING), target=Party("110", RECEIVING),
                  caller_number="13912345678", agent_id="1001", linkedid="1767268800.1", uniqueids=[],
                  created_at="2026-01-01T12:00:00.000Z", status=status, path=[SENDING, RECEIVING])


def author_of(etype: str) -> str:
    who = RULES[etype][0]
    return SENDING if who == SENDER else RECEIVING


def event(etype: str, agent: str = "", event_id: str | None = None, site: str | None = None,
          payload: dict[str, Any] | None = None) -> Event:
    n = next(_ids)
    site = site or author_of(etype)
    actor = {"platform": site, "site": site}
    if agent:
        actor["agent"] = agent
    body = PAYLOADS.get(etype, {}) if payload is None else payload
    return Event(event_id or f"{n:032x}", TID, etype, f"2026-01-01T12:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
                 actor, dict(body))


def walk(t: Ticket, *types: str, agent: str = "2001") -> None:
    for etype in types:
        applied = apply_event(t, event(etype, agent=agent))
        assert applied.moved, f"{etype} did not apply from {applied.old}"


# ---- the table -----------------------------------------------------------------------------------------

def test_every_event_type_has_exactly_one_rule() -> None:
    assert set(RULES) == EVENT_TYPES


def test_rules_only_lead_to_known_states() -> None:
    for etype, (who, new, sources) in RULES.items():
        assert who in (SENDER, RECEIVER, ANY), etype
        assert new is None or new in STATES, etype
        assert sources is None or sources <= set(STATES), etype
        assert sources is None or not sources & FINAL, etype  # nothing leaves a final state


def test_final_states_are_closed_and_cancelled() -> None:
    assert sorted(FINAL) == ["cancelled", "closed"]
    for state in FINAL:
        assert [e for e in RULES if allowed_from(ticket(state), e)] == []


def test_required_payload_items() -> None:
    assert REQUIRED == {"returned": "reason", "resolved": "result", "followed_up": "satisfaction",
                        "transfer_failed": "reason"}
    assert SATISFACTION == ("satisfied", "basically_satisfied", "dissatisfied")


# ---- the full loop -------------------------------------------------------------------------------------

def test_the_whole_loop_from_created_to_closed() -> None:
    t = ticket()
    steps = [("created", "created"), ("delivered", "delivered"), ("offered", "delivered"),
             ("signed_for", "signed_for"), ("accepted", "accepted"), ("in_progress", "in_progress"),
             ("resolved", "resolved"), ("followed_up", "followed_up"), ("closed", "closed")]
    for version, (etype, expected) in enumerate(steps, start=1):
        old = t.status
        e = event(etype, agent="2001")
        check(t, e)
        assert apply_event(t, e) == Applied(False, old, expected, True)
        assert (t.status, t.version, e.version) == (expected, version, version)
        assert t.history[-1] is e
        assert t.updated_at == e.at
    assert [e.type for e in t.history] == [s for s, _ in steps]
    assert (t.offered_to, t.signed_for_by) == ("2001", "2001")
    assert (t.result, t.satisfaction) == ("officers attended", "satisfied")


def test_resolved_straight_from_accepted() -> None:
    t = ticket("accepted")
    assert apply_event(t, event("resolved")).new == "resolved"


def test_returned_records_the_reason_and_the_sender_closes_it() -> None:
    t = ticket("signed_for")
    walk(t, "returned")
    assert (t.status, t.return_reason) == ("returned", "not police business")
    walk(t, "closed")
    assert t.status == "closed"


def test_returned_can_also_be_cancelled() -> None:
    t = ticket("returned")
    walk(t, "cancelled")
    assert t.status == "cancelled"


def test_transfer_failed_from_created_then_closed() -> None:
    t = ticket()
    walk(t, "transfer_failed")
    assert t.status == "transfer_failed"
    walk(t, "closed")
    assert t.status == "closed"


def test_accepted_without_signing_for_is_allowed_from_delivered() -> None:
    t = ticket("delivered")
    walk(t, "accepted")
    assert t.status == "accepted"


# ---- who may record what -------------------------------------------------------------------------------

def test_role_of() -> None:
    t = ticket()
    assert (role_of(t, SENDING), role_of(t, RECEIVING), role_of(t, "119")) == (SENDER, RECEIVER, RELAY)


@pytest.mark.parametrize("etype", sorted(e for e, rule in RULES.items() if rule[0] != ANY))
def test_only_the_named_platform_may_record(etype: str) -> None:
    t = ticket()
    right = author_of(etype)
    wrong = RECEIVING if right == SENDING else SENDING
    check_author(t, event(etype, site=right))
    with pytest.raises(Forbidden) as info:
        check_author(t, event(etype, site=wrong))
    assert info.value.status == 403
    assert info.value.details == {"role": RECEIVER if wrong == RECEIVING else SENDER, "event_type": etype}


@pytest.mark.parametrize("etype", sorted(RULES))
def test_a_relay_may_record_only_what_anyone_may(etype: str) -> None:
    e = event(etype, site="110-370811", payload={"content": "x"} if etype == "amended" else None)
    if RULES[etype][0] == ANY:
        check_author(ticket(), e)
    else:
        with pytest.raises(Forbidden):
            check_author(ticket(), e)


@pytest.mark.parametrize("etype", ["overdue", "amended"])
def test_both_platforms_may_record_informational_events(etype: str) -> None:
    payload = {"title": "fixed"} if etype == "amended" else {}
    for site in (SENDING, RECEIVING):
        check_author(ticket(), event(etype, site=site, payload=payload))


@pytest.mark.parametrize("etype, item", sorted(REQUIRED.items()))
@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_payload_item_is_checked(etype: str, item: str, value: str | None) -> None:
    payload = {} if value is None else {item: value}
    with pytest.raises(InvalidInput) as info:
        check_author(ticket(), event(etype, payload=payload))
    assert info.value.status == 400
    assert info.value.details == {"field": f"payload.{item}"}


@pytest.mark.parametrize("satisfaction", ["happy", "SATISFIED", 1])
def test_satisfaction_must_be_one_of_three(satisfaction: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        check_author(ticket(), event("followed_up", payload={"satisfaction": satisfaction}))
    assert info.value.details == {"field": "payload.satisfaction"}


@pytest.mark.parametrize("satisfaction", SATISFACTION)
def test_each_satisfaction_level_is_accepted(satisfaction: str) -> None:
    t = ticket("resolved")
    e = event("followed_up", payload={"satisfaction": satisfaction})
    check(t, e)
    apply_event(t, e)
    assert (t.status, t.satisfaction) == ("followed_up", satisfaction)


@pytest.mark.parametrize("payload", [{}, {"status": "closed"}, {"content": "x", "result": "y"}])
def test_amendment_changes_only_draft_fields(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as info:
        check_author(ticket(), event("amended", payload=payload))
    assert info.value.details == {"field": "payload"}


@pytest.mark.parametrize("payload, field", [({"division": "1"}, "division"), ({"category": "Bad"}, "category"),
                                            ({"title": "t" * 201}, "title"), ({"address": "a\x07"}, "address")])
def test_amendment_values_are_validated_like_a_draft(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_author(ticket(), event("amended", payload=payload))
    assert info.value.details == {"field": field}


def test_amendment_sets_the_fields_and_keeps_the_state() -> None:
    t = ticket("accepted")
    payload = {"division": "370811", "officer_contact": "Officer Wang 0537-1234567", "title": "noise"}
    assert set(payload) <= DRAFT_FIELDS
    e = event("amended", site=SENDING, payload=payload)
    check(t, e)
    applied = apply_event(t, e)
    assert (applied.old, applied.new, applied.moved) == ("accepted", "accepted", True)
    assert (t.division, t.officer_contact, t.title) == ("370811", "Officer Wang 0537-1234567", "noise")


# ---- check: the current state --------------------------------------------------------------------------

@pytest.mark.parametrize("status, etype", [("created", "in_progress"), ("delivered", "resolved"),
                                           ("created", "accepted"), ("accepted", "signed_for"),
                                           ("resolved", "returned"), ("signed_for", "followed_up"),
                                           ("closed", "amended"), ("cancelled", "overdue"),
                                           ("accepted", "cancelled"), ("signed_for", "routed")])
def test_check_refuses_a_move_from_the_wrong_state_with_the_current_status(status: str, etype: str) -> None:
    t = ticket(status)
    before = copy.deepcopy(t)
    payload = {"title": "x"} if etype == "amended" else None
    with pytest.raises(Conflict) as info:
        check(t, event(etype, payload=payload))
    assert info.value.status == 409
    assert info.value.details == {"status": status, "event_type": etype}
    assert status in info.value.message
    assert t == before


def test_check_reports_authorship_before_state() -> None:
    with pytest.raises(Forbidden):
        check(ticket("closed"), event("accepted", site=SENDING))


@pytest.mark.parametrize("status", sorted(set(STATES) - FINAL))
def test_informational_events_are_allowed_from_every_open_state(status: str) -> None:
    for etype in ("offered", "abandoned", "amended", "overdue", "transferred"):
        assert allowed_from(ticket(status), etype), (status, etype)


# ---- apply_event ---------------------------------------------------------------------------------------

def test_duplicate_event_id_is_ignored() -> None:
    t = ticket()
    walk(t, "created", "delivered")
    offered = event("offered", agent="2001")
    apply_event(t, offered)
    before = copy.deepcopy(t)
    again = Event(offered.id, TID, "signed_for", "2026-01-01T13:00:00.000Z", {"platform": "110", "site": "110"})
    assert apply_event(t, again) == Applied(True, "delivered", "delivered", False)
    assert t == before
    assert again.version == 0


def test_late_delivered_after_signed_for_is_recorded_but_keeps_the_state() -> None:
    t = ticket()
    walk(t, "created", "delivered", "offered", "signed_for")
    late = event("delivered")
    assert apply_event(t, late) == Applied(False, "signed_for", "signed_for", False)
    assert t.status == "signed_for"
    assert t.history[-1] is late
    assert (t.version, late.version) == (5, 5)


@pytest.mark.parametrize("etype", ["created", "delivered", "offered", "abandoned", "transferred", "signed_for",
                                   "routed", "transfer_failed"])
def test_nothing_after_signed_for_moves_it_back(etype: str) -> None:
    t = ticket()
    walk(t, "created", "delivered", "offered", "signed_for")
    applied = apply_event(t, event(etype, agent="2002"))
    assert applied.new == "signed_for"
    assert t.status == "signed_for"
    assert t.history[-1].type == etype  # it happened, so it is kept
    assert t.target.site == RECEIVING and t.flags == []


def test_late_events_do_not_rewrite_who_signed_for_it() -> None:
    t = ticket()
    walk(t, "created", "delivered", "offered", "signed_for")
    apply_event(t, event("offered", agent="2002"))
    apply_event(t, event("signed_for", agent="2002"))
    assert t.status == "signed_for"
    assert (t.offered_to, t.signed_for_by) == ("2001", "2001")


def test_a_late_decision_does_not_overwrite_the_fields_of_the_one_taken() -> None:
    t = ticket("accepted")
    applied = apply_event(t, event("returned", payload={"reason": "crossed in the post"}))
    assert (applied.moved, t.status, t.return_reason) == (False, "accepted", "")


def test_offered_keeps_the_state_and_names_the_ringing_agent() -> None:
    t = ticket("delivered")
    assert apply_event(t, event("offered", agent="2002")) == Applied(False, "delivered", "delivered", True)
    assert t.offered_to == "2002"
    apply_event(t, event("offered", agent="2001"))  # it rang elsewhere next
    assert t.offered_to == "2001"


@pytest.mark.parametrize("status, flagged", [("created", True), ("delivered", True), ("signed_for", False)])
def test_abandoned_flags_the_ticket_only_before_anyone_signed_for_it(status: str, flagged: bool) -> None:
    t = ticket(status)
    applied = apply_event(t, event("abandoned", payload={"dial_status": "cancel"}))
    apply_event(t, event("abandoned", payload={"dial_status": "cancel"}))
    assert (applied.old, applied.new) == (status, status)
    assert t.flags == (["caller_abandoned"] if flagged else [])


@pytest.mark.parametrize("payload", [{}, {"dial_status": "noanswer"}, {"dial_status": "busy"}])
def test_only_a_caller_who_hung_up_while_ringing_is_flagged(payload: dict[str, Any]) -> None:
    t = ticket("delivered")
    apply_event(t, event("abandoned", payload=payload))
    assert (t.status, t.flags, [e.type for e in t.history]) == ("delivered", [], ["abandoned"])


def test_overdue_flags_once_and_keeps_the_state() -> None:
    t = ticket("signed_for")
    apply_event(t, event("overdue", payload={"state": "accepted"}))
    apply_event(t, event("overdue", payload={"state": "accepted"}))
    assert (t.status, t.flags, t.version) == ("signed_for", ["overdue"], 2)


def test_routed_moves_the_target_and_extends_the_path() -> None:
    t = ticket("delivered")
    e = event("routed", payload={"site": "110-370811"})
    check(t, e)
    assert apply_event(t, e) == Applied(False, "delivered", "delivered", True)
    assert t.target == Party("110", "110-370811")
    assert t.path == [SENDING, RECEIVING, "110-370811"]
    apply_event(t, event("routed", event_id="f" * 32, payload={"site": "110-370811"}))
    assert t.path == [SENDING, RECEIVING, "110-370811"]  # a site appears once


def test_routed_after_signed_for_is_kept_but_moves_nothing() -> None:
    t = ticket("signed_for")
    applied = apply_event(t, event("routed", payload={"site": "110-370811"}))
    assert applied.moved is False
    assert (t.target.site, t.path) == (RECEIVING, [SENDING, RECEIVING])
