"""Start and stop the lab's processes by pid, never by name.

Each started process is recorded with its start time (from /proc) so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Proc:
    name: str
    pid: int
    start: str  # /proc/<pid>/stat field 22, to tell a recycled pid apart

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(proc: Proc) -> bool:
    start = proc_start(proc.pid)
    if start is None or start != proc.start:
        return False
    state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def spawn(name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env, cwd=cwd)
    start = None
    for _ in range(50):
        start = proc_start(child.pid)
        if start:
            break
        time.sleep(0.01)
    return Proc(name, child.pid, start or "")


def stop(proc: Proc, timeout: float = 5.0) -> None:
    if not alive(proc):
        _reap(proc.pid)
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.05)
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        _reap(proc.pid)
        if not alive(proc):
            return
        time.sleep(0.02)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
