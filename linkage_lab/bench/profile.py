"""Where a controller's busy time goes, from a py-spy raw (collapsed-stack) profile written by
`python -m linkage_lab.bench.load --profile`: the functions with the largest share of the sampled busy time,
inclusive (the function or anything it called) and self (the function's own frame on top).

    python -m linkage_lab.bench.profile bench/results/profile-onekey-32-12345.txt [--top 25] [--match telephony]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")


def _name(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `module.py:func` (the line dropped, so one function is one row)."""
    found = FRAME.match(frame.strip())
    if found is None:
        return frame.strip()
    path = found.group("file")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if "site-packages" in path or "telephony" in path else parts[-1]
    return f"{short}:{found.group('func')}"


def read(path: Path, within: str = "") -> tuple[int, Counter[str], Counter[str]]:
    """(samples, inclusive samples per function, self samples per function); with `within`, only the samples
    of stacks with a function whose name contains it (e.g. `_run_once`: the event loop, not start-up)."""
    total, inclusive, own = 0, Counter[str](), Counter[str]()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames or (within and not any(within in f for f in frames)):
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    return total, inclusive, own


def main() -> int:
    parser = argparse.ArgumentParser(prog="linkage bench profile")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only functions whose name contains this")
    parser.add_argument("--within", default="", help="only stacks through a function whose name contains this")
    args = parser.parse_args()
    for file in args.files:
        total, inclusive, own = read(Path(file), args.within)
        print(f"## {file}: {total} samples")
        for title, counts in (("inclusive", inclusive), ("self", own)):
            print(f"### {title}")
            rows = [(n, c) for n, c in counts.most_common() if args.match in n][:args.top]
            for name, count in rows:
                print(f"{100 * count / max(1, total):5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the listing quietly
    raise SystemExit(main())
