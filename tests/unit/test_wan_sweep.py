"""The fault drills' network namespace: one a killed drill left behind is swept before the next drill opens its
own, and a live drill's is never touched."""

from __future__ import annotations

import os
import subprocess

from linkage_lab.harness.wan import sweep_stale


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.split()}


def test_a_dead_drills_namespace_is_swept_and_a_live_ones_kept() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, live = f"linkage-wan-{gone.pid}", f"linkage-wan-{os.getpid()}"
    for name in (dead, live):
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        swept = sweep_stale()
        assert dead in swept and dead not in _namespaces()
        assert live in _namespaces() and live not in swept
    finally:
        for name in (dead, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
