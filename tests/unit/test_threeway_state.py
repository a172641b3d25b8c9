"""The three-way room's and the consultation's state tables: every legal move and the refused ones."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from telephony.errors import Conflict
from telephony.threeway import state
from telephony.threeway.state import Consult, Room

TID = "37080020260101120000654321"
ROOM_STATES = (state.DIALLING, state.JOINED, state.DECIDED, state.CLOSED, state.DESERTED)
ROOM_EVENTS = ("far_joined", "accepted", "timeout", "both_left", "caller_left", "emptied")
CONSULT_STATES = (state.RESERVED, state.CONSULTING, state.COMPLETED, state.CANCELLED, state.EXPIRED)
CONSULT_EVENTS = ("dialled", "completed", "cancelled", "expired")

# every legal (state, event) -> new state; anything else is refused
ROOM_LEGAL = {
    (state.DIALLING, "far_joined"): state.JOINED,
    (state.DIALLING, "accepted"): state.DECIDED,
    (state.JOINED, "accepted"): state.DECIDED,
    (state.DIALLING, "timeout"): state.DECIDED,
    (state.JOINED, "timeout"): state.DECIDED,
    (state.DESERTED, "timeout"): state.CLOSED,
    (state.JOINED, "both_left"): state.DECIDED,
    (state.DIALLING, "caller_left"): state.CLOSED,
    (state.JOINED, "caller_left"): state.CLOSED,
    (state.DECIDED, "caller_left"): state.CLOSED,
    (state.DIALLING, "emptied"): state.DESERTED,
    (state.JOINED, "emptied"): state.DESERTED,
    (state.DECIDED, "emptied"): state.CLOSED,
}
CONSULT_LEGAL = {
    (state.RESERVED, "dialled"): state.CONSULTING,
    (state.RESERVED, "expired"): state.EXPIRED,
    (state.CONSULTING, "completed"): state.COMPLETED,
    (state.CONSULTING, "cancelled"): state.CANCELLED,
}


def _room(at: str = state.DIALLING) -> Room:
    return Room(TID, "PJSIP/citizen-00000001", "PJSIP/agent1001-00000002", "1001", "110*" + TID, state=at)


def _consult(at: str = state.RESERVED) -> Consult:
    return Consult(TID, "PJSIP/agent1001-00000002", "110*" + TID, "1000", 0.0, state=at)


@pytest.mark.parametrize("at", ROOM_STATES)
@pytest.mark.parametrize("event", ROOM_EVENTS)
def test_room_moves_follow_the_table(at: str, event: str) -> None:
    room = _room(at)
    new = ROOM_LEGAL.get((at, event))
    assert state.can(room, event) is (new is not None)
    if new is None:
        with pytest.raises(Conflict) as info:
            state.move(room, event)
        assert info.value.details == {"ticket_id": TID, "state": at, "event": event}
        assert room.state == at  # a refused move changes nothing
    else:
        assert state.move(room, event) == new and room.state == new


@pytest.mark.parametrize("at", CONSULT_STATES)
@pytest.mark.parametrize("event", CONSULT_EVENTS)
def test_consult_moves_follow_the_table(at: str, event: str) -> None:
    consult = _consult(at)
    new = CONSULT_LEGAL.get((at, event))
    assert state.can(consult, event) is (new is not None)
    if new is None:
        with pytest.raises(Conflict):
            state.move(consult, event)
        assert consult.state == at
    else:
        assert state.move(consult, event) == new and consult.state == new


def test_an_unknown_event_is_refused() -> None:
    assert not state.can(_room(), "hung_up") and not state.can(_consult(), "accepted")
    assert state.room_next(state.DIALLING, "hung_up") is None


def test_a_room_is_open_only_while_it_negotiates() -> None:
    assert [s for s in ROOM_STATES if _room(s).open] == [state.DIALLING, state.JOINED]


def test_the_whole_life_of_a_room_decided_by_a_key() -> None:
    room = _room()
    for event, new in [("far_joined", state.JOINED), ("accepted", state.DECIDED), ("caller_left", state.CLOSED)]:
        assert state.move(room, event) == new
    assert not state.can(room, "timeout")  # a late deadline decides nothing


def test_a_deserted_room_is_still_decided_by_its_deadline_but_by_nothing_else() -> None:
    room = _room()
    state.move(room, "emptied")
    assert [e for e in ROOM_EVENTS if state.can(room, e)] == ["timeout"]
    assert state.move(room, "timeout") == state.CLOSED


def test_both_left_needs_the_other_platform_in_the_conference_first() -> None:
    assert not state.can(_room(state.DIALLING), "both_left")
    assert state.can(_room(state.JOINED), "both_left")


def test_the_whole_life_of_a_consultation() -> None:
    done = _consult()
    assert [state.move(done, e) for e in ("dialled", "completed")] == [state.CONSULTING, state.COMPLETED]
    back = _consult()
    assert [state.move(back, e) for e in ("dialled", "cancelled")] == [state.CONSULTING, state.CANCELLED]
    stale = _consult()
    assert state.move(stale, "expired") == state.EXPIRED and not state.can(stale, "dialled")


def test_moves_log_old_event_and_new() -> None:
    room, consult = _room(), _consult()
    with capture_logs() as logs:
        state.move(room, "far_joined")
        state.move(consult, "dialled")
    assert [(e["event"], e["ticket_id"], e["old"], e["event_type"], e["new"]) for e in logs] == [
        ("threeway.room_transition", TID, "dialling", "far_joined", "joined"),
        ("threeway.consult_transition", TID, "reserved", "dialled", "consulting")]
