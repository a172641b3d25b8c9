"""The repeat-caller counter (N calls in M minutes) on a fake clock: the window, bounded memory, and how long a
suggestion stays; the harassment config's checks; the flagged path in the rendered dialplan."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage_lab.lab.lab import PLANS, Lab
from telephony.callers.repeats import RepeatCounter
from telephony.config import _apply_env, parse_site_config
from telephony.errors import ConfigError
from telephony.pbx.render import PbxExtras, render


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_n_calls_within_m_minutes_is_a_suggestion_and_older_calls_do_not_count() -> None:
    clock = Clock()
    counter = RepeatCounter(calls=3, window=600, clock=clock)
    assert counter.called("139") == (1, None)
    clock.now += 400
    assert counter.called("139") == (2, None)
    clock.now += 300  # the first call is now 700 s old: outside the window
    assert counter.called("139") == (2, None)
    clock.now += 10
    recent, suggestion = counter.called("139")
    assert recent == 3 and suggestion is not None and suggestion.calls == 3
    assert suggestion.first == 1_000_000.0 + 400 and suggestion.last == clock.now
    assert [s.number for s in counter.suggestions()] == ["139"]
    clock.now += counter.keep + 1  # quiet for a day: the suggestion goes
    assert counter.suggestions() == []


def test_memory_is_bounded_whatever_the_traffic() -> None:
    clock = Clock()
    counter = RepeatCounter(calls=2, window=60, max_numbers=100, max_suggestions=10, clock=clock)
    for i in range(1000):
        for _ in range(3):
            counter.called(f"1390000{i:04d}")
        clock.now += 0.01
    assert len(counter.tallies) == 100 and len(counter.suggested) == 10
    assert all(len(t.times) <= 2 for t in counter.tallies.values())
    assert next(s.number for s in counter.suggestions()) == "13900000999"  # newest first
    top = counter.counts(5)
    assert len(top) == 5 and top[0]["recent"] == 2 and top[0]["total"] == 3


def _raw(tmp_path: Path) -> dict[str, object]:
    return Lab(rootfs=str(tmp_path)).site_raw(PLANS["110"])


def test_the_policy_is_checked_against_the_agents(tmp_path: Path) -> None:
    config = parse_site_config(_raw(tmp_path), "lab:110")
    assert config.harassment.policy == "warn" and config.harassment.repeat_calls == 5
    for over, problem in (({"policy": "designated"}, "harassment.designated: policy designated needs"),
                          ({"policy": "designated", "designated": ["9999"]}, "harassment.designated[0]: '9999'"),
                          ({"policy": "block"}, "harassment.policy: does not match"),
                          ({"repeat_calls": 1}, "harassment.repeat_calls"),
                          ({"prompt": "../../etc/passwd"}, "harassment.prompt: does not match")):
        with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
            parse_site_config({**_raw(tmp_path), "harassment": over}, "lab:110")


def test_a_list_can_be_set_from_the_environment(tmp_path: Path) -> None:
    raw = _apply_env(_raw(tmp_path), {"LINKAGE_HARASSMENT__POLICY": "designated",
                                      "LINKAGE_HARASSMENT__DESIGNATED": "[2002]"})
    config = parse_site_config(raw, "lab:110")
    assert config.harassment.policy == "designated" and config.harassment.designated == ("2002",)


def test_the_dialplan_reads_one_global_and_every_flagged_path_ends_ringing_every_agent(tmp_path: Path) -> None:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["110"])
    text = render(config, PbxExtras("/srv/x", "tester", "secretsecret", 20000, 20100))["linkage.conf"]
    citizen = text.split("[linkage-citizen]")[1].split("\n[")[0]
    assert "AGI(" not in citizen  # no FastAGI round trip on a citizen's call
    assert "GLOBAL(LINKAGE_FLAGGED_${FILTER(0123456789,${CALLERID(num)})})" in citizen
    flagged = text.split("[linkage-flagged]")[1].split("\n[")[0]
    assert "Playback(custom/linkage/harassment-warning)" in flagged
    assert "Hangup()" in flagged and flagged.count("Dial(PJSIP/agent2001&PJSIP/agent2002,") == 1
    # the only Hangup follows the Dial of every agent; the designated Dial falls through to it
    lines = [line.strip() for line in flagged.splitlines() if line.strip().startswith(("exten", "same"))]
    hangup = next(i for i, line in enumerate(lines) if "Hangup" in line)
    assert "Dial(PJSIP/agent2001&PJSIP/agent2002" in lines[hangup - 1]
    assert lines[-1].endswith("Goto(all)   ; not answered (busy, no answer, unavailable): every agent rings")
