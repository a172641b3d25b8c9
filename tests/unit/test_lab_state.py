"""The lab's own state: which code a running lab was started from (no lab is started here)."""

from __future__ import annotations

from pathlib import Path

from linkage_lab.lab.lab import Lab, code_fingerprint
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
