"""A PostgreSQL 15 cluster a test may stop and start again: Debian's binaries, a tmp directory owned by the
`postgres` user (initdb refuses root), trust authentication on loopback, a free port. Stopped by its pid."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from throwaway import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> bool:
    return (BIN / "initdb").exists() and os.geteuid() == 0


class ThrowawayPostgres:
    def __init__(self) -> None:
        # under /tmp itself: pytest's own tmp folders are private to root, and postgres must reach its folder
        self.dir = Path(tempfile.mkdtemp(prefix="linkage-pg-"))
        self.port = free_port()
        self.url = f"postgresql://linkage@127.0.0.1:{self.port}/postgres"
        self.pid: int | None = None

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    def init(self) -> ThrowawayPostgres:
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "linkage")
        return self.start()

    def start(self) -> ThrowawayPostgres:
        opts = f"-k {self.dir} -c listen_addresses=127.0.0.1 -p {self.port}"
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-l",
                          str(self.dir / "log"), "-w", "start")
        self.pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGINT)  # fast shutdown
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
