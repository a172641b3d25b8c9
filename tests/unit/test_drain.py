"""The lab drain: the channel count as Asterisk prints it, and which outgoing legs may still have an INVITE
retransmitting (their far end never answered anything) according to the AMI events a scenario recorded."""

from __future__ import annotations

import asyncio
import time

from linkage_lab.harness.drain import (
    IN_FLIGHT,
    MARGIN,
    TIMER_B,
    Drained,
    InFlight,
    channel_count,
    drain,
    leg_address,
    unanswered_legs,
)


def test_channel_count_reads_the_first_line_and_none_when_the_pbx_did_not_answer() -> None:
    assert channel_count("0 active channels\n0 active calls\n42 calls processed\n") == 0
    assert channel_count("2 active channels\n1 active call\n43 calls processed\n") == 2
    assert channel_count("1 active channel\n1 active call\n44 calls processed\n") == 1
    assert channel_count("Unable to connect to remote asterisk (does /run/asterisk.ctl exist?)\n") is None
    assert channel_count("") is None


def _dial(at: float, dest: str) -> tuple[float, dict[str, str]]:
    return at, {"Event": "DialBegin", "Channel": "PJSIP/citizen-0000009c", "DestChannel": dest}


def test_only_legs_whose_far_end_never_answered_are_waited_for() -> None:
    # the recall of threeway_both_agents_leave: agent 1001's SIPp had exited, agent 1002's rang
    events = [
        _dial(35.335, "PJSIP/agent1001-000000a0"),
        _dial(35.335, "PJSIP/agent1002-000000a1"),
        (35.340, {"Event": "Newstate", "Channel": "PJSIP/agent1002-000000a1", "ChannelState": "5"}),
        _dial(36.0, "PJSIP/trunk-110-000000a5"),  # the other PBX: always answers
        _dial(36.1, "PJSIP/agent1003-000000a6"),
        (36.2, {"Event": "DialEnd", "DestChannel": "PJSIP/agent1003-000000a6", "DialStatus": "BUSY"}),
        _dial(36.3, "PJSIP/phone-000000a7"),
        (36.4, {"Event": "DialState", "DestChannel": "PJSIP/phone-000000a7", "DestChannelState": "5"}),
        (37.241, {"Event": "Hangup", "Channel": "PJSIP/agent1001-000000a0", "Cause": "16"}),
    ]
    assert unanswered_legs(events) == {"PJSIP/agent1001-000000a0": 35.335}
    assert unanswered_legs([]) == {}


def test_timer_b_is_64_times_the_labs_t1() -> None:
    assert TIMER_B == 6.4


def test_the_timeline_note_says_what_was_waited_for() -> None:
    assert Drained({}, 0.01, {}, {}).note("before the scenario") is None
    assert Drained({"110": 2}, 0.4, {}, {}).note("after the scenario") == \
        "lab after the scenario: channels 110: 2, gone in 0.4s"
    assert Drained({"110": 2}, 10.2, {"110": 1}, {"PJSIP/agent1001-000000a0": 35.3}, 2.5).note("after") == \
        "lab after: channels 110: 2, still {'110': 1} after 10.2s; waited 2.5s for Timer B of unanswered " \
        "PJSIP/agent1001-000000a0"


SITE = {"accounts": {"citizen": {"host": "127.0.0.1", "port": 15070, "dial": "12345"},
                     "agents": [{"id": "1001", "host": "127.0.0.1", "port": 15081},
                                {"id": "1002", "host": "127.0.0.1", "port": 15082}]},
        "targets": {"120": {"platform": "120", "phone": {"host": "127.0.0.1", "port": 15090}},
                    "110": {"platform": "110"}},
        "followup": {"gateway": {"host": "127.0.0.1", "port": 15091}}}


def test_a_legs_address_is_its_endpoints_account_in_the_description() -> None:
    assert leg_address(SITE, "PJSIP/agent1002-0000001d") == ("127.0.0.1", 15082)
    assert leg_address(SITE, "PJSIP/citizen-00000004") == ("127.0.0.1", 15070)
    assert leg_address(SITE, "PJSIP/followup-out-00000008") == ("127.0.0.1", 15091)
    assert leg_address(SITE, "PJSIP/target-120-0000000a") == ("127.0.0.1", 15090)
    # not placed by the description: the drain waits for those itself
    assert leg_address(SITE, "PJSIP/agent2001-00000001") is None
    assert leg_address(SITE, "PJSIP/target-110-00000002") is None
    assert leg_address({}, "PJSIP/agent1002-0000001d") is None


def test_in_flight_addresses_are_waited_for_by_whoever_binds_them_and_then_forgotten() -> None:
    flight = InFlight()
    now = time.time()
    flight.add(("127.0.0.1", 15082), now - TIMER_B - MARGIN + 0.2)  # runs out in 0.2 s
    flight.add(("127.0.0.1", 15082), now - TIMER_B)  # an earlier INVITE to it: the later end is kept
    flight.add(("127.0.0.1", 15081), now - TIMER_B - MARGIN - 1)  # over already
    assert set(flight.pending()) == {("127.0.0.1", 15082)}
    assert flight.wait_sync([("127.0.0.1", 15081), ("127.0.0.1", 15070)]) == (0.0, {})  # nothing on its way there
    waited, pending = flight.wait_sync([("127.0.0.1", 15082)])
    assert waited > 0 and set(pending) == {("127.0.0.1", 15082)}
    assert flight.pending() == {}  # its Timer B is over: forgotten
    flight.add(("127.0.0.1", 15070), time.time() - TIMER_B - MARGIN + 0.1)
    waited, _ = asyncio.run(flight.wait([("127.0.0.1", 15070)]))
    assert waited > 0 and flight.pending() == {} and flight.wait_all() == 0.0


class _Idle:
    """PBXes with no channel left (`core show channels count` says 0)."""

    def rx_argv(self, site: str, command: str) -> list[str]:
        return ["echo", "0 active channels"]


def test_the_drain_leaves_a_placed_leg_to_its_address_and_waits_for_any_other() -> None:
    now = time.time()
    desc = {"sites": {"12345": SITE}}
    events = {"12345": [_dial(now - TIMER_B - MARGIN + 1.5, "PJSIP/agent1002-0000001d"),
                        _dial(now - TIMER_B - MARGIN + 0.2, "PJSIP/phone-0000001e")]}
    drained = asyncio.run(drain(_Idle(), ["12345"], 1.0, events, desc))
    assert drained.deferred == {"PJSIP/agent1002-0000001d": ("127.0.0.1", 15082)}
    assert set(drained.legs) == {"PJSIP/agent1002-0000001d", "PJSIP/phone-0000001e"}
    assert drained.waited_legs > 0  # the unplaced phone's Timer B, here and now
    if IN_FLIGHT.pending([("127.0.0.1", 15082)]) == {}:  # the agent's is for whoever binds its address next
        assert time.time() >= events["12345"][0][0] + TIMER_B + MARGIN  # (unless this machine was that slow)
    assert drained.note("after") == (
        f"lab after: waited {drained.waited_legs:.1f}s for Timer B of unanswered PJSIP/phone-0000001e; Timer B of "
        "unanswered PJSIP/agent1002-0000001d (127.0.0.1:15082) left to whoever binds that address next")
    IN_FLIGHT.wait_sync([("127.0.0.1", 15082)])
    assert IN_FLIGHT.pending([("127.0.0.1", 15082)]) == {}
