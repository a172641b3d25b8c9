"""The lab drain: the channel count as Asterisk prints it, and which outgoing legs may still have an INVITE
retransmitting (their far end never answered anything) according to the AMI events a scenario recorded."""

from __future__ import annotations

from linkage_lab.harness.drain import TIMER_B, Drained, channel_count, unanswered_legs


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
