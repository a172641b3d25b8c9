"""BENCHMARKS.md is assembled from sections: each benchmark replaces its own (from its `## ` heading up to the
next one) and leaves the others, and the hand-written notes, as they are."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from linkage_lab.bench.machine import facts

ROOT = Path(__file__).resolve().parents[2]


def replace_section(path: Path, heading: str, new: str) -> None:
    """Replace the section that starts with `heading` (up to the next `## ` heading), or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + new
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + new + ("\n" + text[end + 1:] if end >= 0 else "")
    path.write_text(text, encoding="utf-8")


def machine() -> dict[str, str]:
    """Machine facts plus the commit the figures were taken at."""
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return {**facts(), "nproc": str(len(os.sched_getaffinity(0))), "commit": commit or "unknown"}
