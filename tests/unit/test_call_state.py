"""The call's hand-over state: every legal move, every refused one, and what the registry keeps of it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from telephony.calls import state
from telephony.calls.registry import Call, CallRegistry
from telephony.errors import Conflict

STARTS = ("transfer", "threeway", "consult", "return")
SETTLES = ("not_stored", "pbx_refused", "recalled", "consult_cancelled", "returned")
LINKEDID = "1795934017.10"


def _call(handover: str = state.IDLE) -> Call:
    call = Call(LINKEDID, ticket_id="37080020260101120000654321")
    call.handover = handover
    return call


def test_the_table_covers_exactly_these_events_and_states() -> None:
    assert set(state.RULES) == set(STARTS) | set(SETTLES)
    assert {new for new, _ in state.RULES.values()} <= set(state.STATES)


@pytest.mark.parametrize(("event", "new"), [("transfer", state.TRANSFERRING), ("threeway", state.THREEWAY),
                                            ("consult", state.CONSULTING), ("return", state.RETURNING)])
def test_an_idle_call_starts_each_kind_of_hand_over(event: str, new: str) -> None:
    call = _call()
    assert not call.transferring
    assert state.move(call, event) == new
    assert call.handover == new and call.transferring


@pytest.mark.parametrize("busy", [state.TRANSFERRING, state.THREEWAY, state.CONSULTING, state.RETURNING])
@pytest.mark.parametrize("event", STARTS)
def test_a_call_being_handed_over_refuses_a_second_start(busy: str, event: str) -> None:
    call = _call(busy)
    with pytest.raises(Conflict) as info:
        state.move(call, event)
    assert info.value.message == "this call is already being transferred"
    assert info.value.details == {"ticket_id": call.ticket_id}  # the 409 body, as the console knows it
    assert call.handover == busy  # a refused move changes nothing


def test_the_refusal_names_no_ticket_when_the_call_has_none() -> None:
    call = _call(state.TRANSFERRING)
    call.ticket_id = None
    with pytest.raises(Conflict) as info:
        state.check(call, "transfer")
    assert info.value.details == {"ticket_id": ""}


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("event", SETTLES)
def test_every_settling_event_brings_a_hand_over_back_to_idle(start: str, event: str) -> None:
    call = _call()
    state.move(call, start)
    assert state.move(call, event) == state.IDLE
    assert not call.transferring
    state.move(call, start)  # and the call can be handed over again


@pytest.mark.parametrize("event", SETTLES)
def test_settling_an_idle_call_is_allowed_and_keeps_it_idle(event: str) -> None:
    """A recall can reach a call a restarted controller only learnt from a resync (idle), or cross another
    settling event: it must not fail."""
    call = _call()
    assert state.move(call, event) == state.IDLE


def test_check_is_separate_from_applying() -> None:
    call = _call()
    state.check(call, "transfer")
    assert call.handover == state.IDLE
    assert state.allowed(state.IDLE, "transfer") and not state.allowed(state.THREEWAY, "transfer")
    assert all(state.allowed(s, e) for s in state.STATES for e in SETTLES)


def test_a_move_logs_old_event_and_new() -> None:
    call = _call()
    with capture_logs() as logs:
        state.move(call, "threeway")
    assert [(e["event"], e["old"], e["event_type"], e["new"], e["linkedid"]) for e in logs] == [
        ("call.transition", "idle", "threeway", "threeway", LINKEDID)]


def test_a_refused_move_logs_nothing() -> None:
    call = _call(state.CONSULTING)
    with capture_logs() as logs, pytest.raises(Conflict):
        state.move(call, "consult")
    assert logs == []


@pytest.mark.parametrize(("mode", "event"), [("transfer", "transfer"), ("threeway", "threeway"),
                                             ("attended", "consult")])
def test_each_ticket_mode_has_its_start_event(mode: str, event: str) -> None:
    assert state.start_event(mode) == event


def test_transferring_is_read_only() -> None:
    call = _call()
    with pytest.raises(AttributeError):
        call.transferring = True  # type: ignore[misc]


def test_a_call_learnt_from_a_resync_starts_idle() -> None:
    calls = CallRegistry()
    calls.resync([{"Uniqueid": LINKEDID, "Linkedid": LINKEDID, "Channel": "PJSIP/citizen-00000001"}])
    assert calls.calls[LINKEDID].handover == state.IDLE and not calls.calls[LINKEDID].transferring
