"""The dead-air check over RTP packets a role received: gaps in the flow and too little sound."""

from __future__ import annotations

import pytest

from linkage_lab.harness.media import Packet, check_window

START = 1000.0


def flow(first: float, last: float, audible: bool = True, step: float = 0.02) -> list[Packet]:
    """One packet every `step` seconds from START+first to START+last inclusive (20 ms of G.711 each)."""
    count = round((last - first) / step) + 1
    return [Packet(START + first + i * step, audible) for i in range(count)]


def test_a_steady_audible_flow_has_no_problem() -> None:
    assert check_window(flow(0, 1), START, START + 1, max_gap_ms=300, min_audible_ms=200) == []


def test_an_empty_window_is_one_problem() -> None:
    packets = flow(2, 3)  # all after the window
    assert check_window(packets, START, START + 1.5, 300, 200) == [
        "no RTP reached the caller in the 1500 ms window"]
    assert check_window([], START, START + 1.5, 300, 200) == ["no RTP reached the caller in the 1500 ms window"]


def test_a_gap_in_the_middle_is_reported_with_its_length() -> None:
    packets = flow(0, 0.3) + flow(0.8, 1.5)
    assert check_window(packets, START, START + 1.5, 300, 200) == [
        "the caller heard nothing for 500 ms (bound 300 ms)"]
    assert check_window(packets, START, START + 1.5, 501, 200) == []


@pytest.mark.parametrize("first, last, silent_ms", [(0.4, 1.0, 400), (0.0, 0.6, 400)])
def test_silence_at_the_edges_of_the_window_counts(first: float, last: float, silent_ms: int) -> None:
    problems = check_window(flow(first, last), START, START + 1.0, 300, 200)
    assert problems == [f"the caller heard nothing for {silent_ms} ms (bound 300 ms)"]


def test_packets_of_silence_keep_the_flow_but_not_the_sound() -> None:
    packets = flow(0, 1, audible=False)
    packets[10].audible = packets[11].audible = True
    assert check_window(packets, START, START + 1, 300, 200) == [
        "only 40 ms of audible tone or music reached the caller (want 200)"]


def test_a_gap_and_too_little_sound_are_both_reported() -> None:
    packets = flow(0, 0.1) + flow(0.9, 1.0)
    problems = check_window(packets, START, START + 1, 300, 500)
    assert problems == ["the caller heard nothing for 800 ms (bound 300 ms)",
                        "only 240 ms of audible tone or music reached the caller (want 500)"]


def test_packets_outside_the_window_are_ignored_and_the_bounds_are_inclusive() -> None:
    packets = [Packet(START - 5, True), *flow(0, 1), Packet(START + 50, True)]
    assert check_window(packets, START, START + 1, 300, 1020) == []  # 51 packets inside, both ends included
    assert check_window(packets, START, START + 1, 300, 1021) == [
        "only 1020 ms of audible tone or music reached the caller (want 1021)"]
