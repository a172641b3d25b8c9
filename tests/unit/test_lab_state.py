"""The lab's own state: which code and SIP T1 a running lab was started with (no lab is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage_lab.lab.lab import SIP_TIMER_T1, Lab, LabError, code_fingerprint, restart_reason
from linkage_lab.lab.processes import Proc


def test_the_lab_knows_which_code_it_was_started_from(tmp_path: Path) -> None:
    """`lab up` restarts a running lab started from other code: a fingerprint of the package, the dialplans and
    the PBX templates, kept in the lab's state when a drill restarts one process."""
    root = tmp_path / "checkout"
    for name, text in (("telephony/a.py", "x = 1\n"), ("telephony/sub/b.py", "y = 2\n"),
                       ("dialplans/linkage.conf.in", "[ctx]\n"), ("config/asterisk/pjsip.conf.in", "[t]\n"),
                       ("README.md", "not code\n")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    first = code_fingerprint(root)
    (root / "README.md").write_text("still not code\n")
    assert code_fingerprint(root) == first
    for name in ("telephony/sub/b.py", "dialplans/linkage.conf.in", "config/asterisk/pjsip.conf.in"):
        before = code_fingerprint(root)
        (root / name).write_text((root / name).read_text() + "; changed\n")
        assert code_fingerprint(root) != before, name
    assert code_fingerprint() == code_fingerprint()  # this checkout: stable

    lab = Lab(rootfs=str(tmp_path))
    lab.dir.mkdir(parents=True, exist_ok=True)
    proc = Proc("redis-12345", 1, "12345")
    lab._save([proc], "abc123")
    lab._save([proc])  # a drill restarted a process: the code it was started from stays
    assert lab.started_from() == "abc123"


def test_a_running_lab_is_restarted_for_other_code_or_another_sip_t1() -> None:
    """The load bench asks for T1 = 500 ms, the test suite for 100 ms: `lab up` keeps a running lab only when
    both its code and its PBXes' T1 are the ones asked for."""
    assert restart_reason({"code": "abc", "sip_timer_t1": 500}, "abc", 500) is None
    assert restart_reason({"code": "abc", "sip_timer_t1": 500}, "abc", 100) == \
        "its PBXes run SIP T1 = 500 ms, 100 ms wanted"
    assert restart_reason({"code": "abc", "sip_timer_t1": 100}, "abc", 500) is not None
    assert restart_reason({"code": "old", "sip_timer_t1": 500}, "abc", 500) == "the code changed since the lab started"
    assert restart_reason({"code": "abc"}, "abc", SIP_TIMER_T1) is None  # a state from before T1 was kept
    assert restart_reason({}, "abc", SIP_TIMER_T1) is not None


def test_the_lab_keeps_the_sip_t1_it_was_started_with(tmp_path: Path) -> None:
    lab = Lab(rootfs=str(tmp_path), sip_timer_t1=500)
    lab.dir.mkdir(parents=True, exist_ok=True)
    assert lab.running_sip_timer_t1() is None
    proc = Proc("redis-12345", 1, "12345")
    lab._save([proc], "abc123")
    Lab(rootfs=str(tmp_path))._save([proc])  # a drill of the test suite's T1 restarted one process
    assert lab.running_sip_timer_t1() == 500 and Lab(rootfs=str(tmp_path)).running_sip_timer_t1() == 500
    assert Lab(rootfs=str(tmp_path)).sip_timer_t1 == SIP_TIMER_T1 == 100  # the test suite's lab


@pytest.mark.parametrize("t1", [50, 99, 4001])
def test_a_sip_t1_asterisk_would_refuse_is_an_error_naming_it(tmp_path: Path, t1: int) -> None:
    with pytest.raises(LabError, match=f"{t1} ms is outside 100..4000 ms"):
        Lab(rootfs=str(tmp_path), sip_timer_t1=t1)
