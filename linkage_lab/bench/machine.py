"""Facts about the machine a benchmark ran on, for its report: CPU model, kernel, Python."""

from __future__ import annotations

import platform
from pathlib import Path


def facts() -> dict[str, str]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "kernel": platform.release(), "python": platform.python_version()}
