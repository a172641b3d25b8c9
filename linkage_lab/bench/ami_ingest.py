"""AMI ingestion: events per second the controller processes from a recorded AMI transcript, against panoramisk's
bare parsing of the same bytes, measured in the same run (`python -m linkage_lab.bench.ami_ingest`).

Both paths feed the transcript (what Asterisk sent after login, banner first) to
`panoramisk.ami_protocol.AMIProtocol.data_received` in chunks of the sizes a socket read delivers:
- bare: a Manager whose only callback is a no-op `*` handler;
- controller: the real `Controller` composition (AmiSession -> CallRegistry -> queue -> the transfer and
  three-way handlers, as `Controller.run` wires them), with its Redis client pointed at a throwaway redis-server.
  No FastAGI request runs, so the handlers hold no tickets or rooms and return early: this is registry +
  dispatch, not ticket recording. The Redis commands the run caused are counted and reported: since the prepared
  transfers (transfers/prepared.py), an agent's leg of a fresh call bridged is one reservation write and its
  hang-up one drop (the Setvar that publishes it gets no answer from a transcript: it times out in the background).
  The bench appends one counting handler (an await per queued event) to know when the queue is drained.
No lab, no Asterisk: only the transcripts in bench/transcripts/.
"""

from __future__ import annotations

import asyncio
import cProfile
import gzip
import json
import os
import pstats
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from linkage_lab.bench.report import machine as site_machine
from linkage_lab.bench.report import replace_section
from linkage_lab.lab.lab import PLANS, Lab
from telephony import logs
from telephony.ami.session import INTERESTING
from telephony.config import Redis
from telephony.controller import Controller
from telephony.metrics import sample

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIPTS = {"12345": ROOT / "bench" / "transcripts" / "onekey-load-12345.ami.gz",
               "110": ROOT / "bench" / "transcripts" / "onekey-load-110.ami.gz"}
EOL2 = b"\r\n\r\n"
EVENT_LINE = re.compile(rb"^Event: (.*)$", re.MULTILINE)


@dataclass
class Run:
    events: int  # messages with an Event header that reached the `*` callback
    handled: int  # events that went through the queue to every handler (controller only)
    wall: float
    cpu: float


class _Transport:
    """Stands in for the TCP transport: nothing is written back, nothing is closed."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def load(path: Path, max_events: int | None = None) -> bytes:
    """The transcript's bytes; with max_events, cut after that many messages following the login response."""
    data = gzip.decompress(path.read_bytes())
    if max_events is None:
        return data
    end = 0
    for _ in range(max_events + 1):  # +1: the login response
        found = data.find(EOL2, end)
        if found < 0:
            return data
        end = found + len(EOL2)
    return data[:end]


def expected(data: bytes) -> tuple[int, int]:
    """Events and queued ("interesting") events in a transcript, counted without panoramisk."""
    names = [m.group(1).strip().decode() for m in EVENT_LINE.finditer(data)]
    return len(names), sum(1 for n in names if n in INTERESTING)


def chunks(data: bytes, lo: int = 4096, hi: int = 65536, seed: int = 1) -> list[bytes]:
    """Socket-read sized pieces, cut anywhere (mid-message too), the same for every path and repeat."""
    rng, out, i = random.Random(seed), [], 0
    while i < len(data):
        n = rng.randint(lo, hi)
        out.append(data[i:i + n])
        i += n
    return out


def _attach(manager: Any) -> AMIProtocol:
    """What Manager.connection_made does to a fresh protocol, minus the login action."""
    protocol = AMIProtocol()
    protocol.connection_made(_Transport())
    protocol.factory = manager
    protocol.log = manager.log
    protocol.config = manager.config
    protocol.encoding = manager.encoding = manager.config["encoding"]
    manager.protocol = protocol
    manager.responses = protocol.responses
    return protocol


async def bare(pieces: list[bytes]) -> Run:
    manager = Manager(ping_delay=3600, ping_interval=3600)
    seen = 0

    def noop(_: Any, __: Any) -> None:
        nonlocal seen
        seen += 1

    manager.register_event("*", noop)
    protocol = _attach(manager)
    w0, c0 = time.perf_counter(), time.process_time()
    for piece in pieces:
        protocol.data_received(piece)
        await asyncio.sleep(0)  # the loop turn a socket read would give other tasks
    return Run(seen, 0, time.perf_counter() - w0, time.process_time() - c0)


def controller(rootfs: str, redis_url: str, site: str = "12345") -> Controller:
    """The real composition for a lab site's config, its Redis pointed at redis_url (call it inside the event
    loop: the controller's HTTP client session needs one)."""
    config = msgspec.structs.replace(Lab(rootfs=rootfs).site_config(PLANS[site]), redis=Redis(redis_url))
    return Controller(config)


async def controlled(pieces: list[bytes], ctl: Controller, queued: int) -> Run:
    """Feed the pieces through the controller's AMI session until `queued` events have passed every handler."""
    session = ctl.ami
    handled = 0

    async def last(_: dict[str, str]) -> None:  # counts completions; costs one await per queued event
        nonlocal handled
        handled += 1

    protocol = _attach(session.manager)
    runner = asyncio.create_task(session.run((*ctl.ami_handlers, last)))
    await asyncio.sleep(0)
    w0, c0 = time.perf_counter(), time.process_time()
    for piece in pieces:
        protocol.data_received(piece)
        await asyncio.sleep(0)
    deadline = time.monotonic() + 30  # a handler that never returns must not hang the bench
    while handled < queued and time.monotonic() < deadline:
        await asyncio.sleep(0)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    runner.cancel()
    try:
        await runner
    except asyncio.CancelledError:
        pass
    seen = int(sample(ctl.registry, "linkage_ami_events_total"))  # the session counts every event
    return Run(seen, handled, wall, cpu)


@contextmanager
def throwaway_redis() -> Iterator[str]:
    """A redis-server on a free loopback port outside the lab's range (15000-35999), stopped by its pid."""
    with socket.socket() as s:
        for port in range(41000, 42000):
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 41000-41999 for the throwaway redis-server")
    with tempfile.TemporaryDirectory(prefix="linkage-ami-bench-redis-") as tmp:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def redis_commands(client: Any) -> int:
    return int(client.info("stats")["total_commands_processed"])


async def measure(data: bytes, repeat: int, redis_url: str, rootfs: str, site: str = "12345") -> dict[str, Any]:
    """Interleave bare and controller runs `repeat` times on the same pieces; fresh objects every run."""
    pieces = chunks(data)
    events, queued = expected(data)
    runs: dict[str, list[Run]] = {"bare": [], "controller": []}
    import redis

    counter = redis.Redis.from_url(redis_url)  # one connection: its own handshake is not counted below
    before = redis_commands(counter)
    for _ in range(repeat):
        runs["bare"].append(await bare(pieces))
        ctl = controller(rootfs, redis_url, site)
        runs["controller"].append(await controlled(pieces, ctl, queued))
        await asyncio.sleep(0.05)  # the reservations' writes started during the run finish
        ctl.prepared.close()
        await ctl.session.close()
        await ctl.redis.aclose()
    redis_used = redis_commands(counter) - before - 1  # minus the INFO that read `before`
    counter.close()
    out: dict[str, Any] = {"bytes": len(data), "chunks": len(pieces), "events_in_transcript": events,
                           "queued_in_transcript": queued, "redis_commands_during_runs": redis_used}
    for name, rs in runs.items():
        wall = statistics.median(r.wall for r in rs)
        cpu = statistics.median(r.cpu for r in rs)
        out[name] = {"events": [r.events for r in rs], "handled": [r.handled for r in rs],
                     "events_per_s_median": events / wall, "us_per_event_median": wall / events * 1e6,
                     "cpu_us_per_event_median": cpu / events * 1e6,
                     "wall_s": [round(r.wall, 5) for r in rs], "cpu_s": [round(r.cpu, 5) for r in rs]}
    out["ratio_controller_over_bare_events_per_s"] = (out["controller"]["events_per_s_median"]
                                                      / out["bare"]["events_per_s_median"])
    out["controller_extra_us_per_event"] = (out["controller"]["us_per_event_median"]
                                            - out["bare"]["us_per_event_median"])
    return out


def machine() -> dict[str, str]:
    return {**site_machine(), "panoramisk": version("panoramisk")}


async def run_all(repeat: int, sites: list[str]) -> dict[str, Any]:
    with throwaway_redis() as url, tempfile.TemporaryDirectory(prefix="linkage-ami-bench-") as rootfs:
        return {site: await measure(load(TRANSCRIPTS[site]), repeat, url, rootfs, site) for site in sites}


async def profile(site: str, top: int) -> None:
    data = load(TRANSCRIPTS[site])
    pieces, (_, queued) = chunks(data), expected(data)
    with throwaway_redis() as url, tempfile.TemporaryDirectory(prefix="linkage-ami-bench-") as rootfs:
        ctl = controller(rootfs, url, site)
        prof = cProfile.Profile()
        prof.enable()
        await controlled(pieces, ctl, queued)
        prof.disable()
        await ctl.session.close()
        await ctl.redis.aclose()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m linkage_lab.bench.ami_ingest")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sites", default="12345,110", help="which transcripts (bench/transcripts)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--profile", metavar="SITE", help="cProfile the controller path once, print, exit")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed (make setup)")
    with open(os.devnull, "w") as devnull:
        logs.configure("info", devnull)  # as the controller logs, but to nowhere
        if args.profile:
            asyncio.run(profile(args.profile, 30))
            return 0
        t0 = time.monotonic()
        sites = asyncio.run(run_all(args.repeat, args.sites.split(",")))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = "python -m linkage_lab.bench.ami_ingest " + " ".join(sys.argv[1:])
    report = {"date": stamp, "command": command.strip(), "repeat": args.repeat, "machine": machine(),
              "chunk_bytes": "4096..65536 (seeded)", "wall_seconds": round(time.monotonic() - t0, 1),
              "scope": __doc__, "sites": sites}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ami-ingest-{stamp}.json").write_text(json.dumps(report, indent=2))
    for site, r in sites.items():
        print(f"{site}: {r['events_in_transcript']} events; bare {r['bare']['events_per_s_median']:,.0f}/s "
              f"({r['bare']['us_per_event_median']:.1f} us), controller {r['controller']['events_per_s_median']:,.0f}"
              f"/s ({r['controller']['us_per_event_median']:.1f} us); ratio "
              f"{r['ratio_controller_over_bare_events_per_s']:.2f}; redis commands {r['redis_commands_during_runs']}")
    print(f"results: {out / f'ami-ingest-{stamp}.json'}")
    if not args.no_markdown:
        write_markdown(report, ROOT / "BENCHMARKS.md")
    return 0


HEADING = "## AMI ingestion"


def section(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = []
    for site, r in report["sites"].items():
        b, c = r["bare"], r["controller"]
        rows.append(f"| {site} | {r['events_in_transcript']} | {b['events_per_s_median']:,.0f} | "
                    f"{c['events_per_s_median']:,.0f} | {r['ratio_controller_over_bare_events_per_s']:.2f} | "
                    f"{b['us_per_event_median']:.1f} / {c['us_per_event_median']:.1f} | "
                    f"{b['cpu_us_per_event_median']:.1f} / {c['cpu_us_per_event_median']:.1f} | "
                    f"{r['redis_commands_during_runs']} |")
    table = "\n".join(rows)
    return f"""{HEADING} (`{report['command']}`, bench/results/ami-ingest-{report['date']}.json)

The recorded AMI byte streams in `bench/transcripts/` (30 one-key + 30 pure-dialplan transfers at 2/s, both PBXes)
are fed to panoramisk's `AMIProtocol.data_received` in socket-read sized pieces (4–64 KiB, cut mid-message), in
one process, no network. Bare: a Manager with a no-op `*` callback. Controller: the real `Controller`
composition — `AmiSession._on_event` (copy, metric, `CallRegistry.on_event`, queue) and its `run()` task
calling the transfer and three-way handlers until every queued event is handled. No FastAGI request runs, so
the handlers hold no ticket or conference and return early: registry + dispatch, not ticket recording; Redis
is a throwaway redis-server and the commands it received are counted. Medians of {report['repeat']} interleaved
runs. Date {report['date']}; {m['cpu']}, nproc {m['nproc']}, kernel {m['kernel']}, Python {m['python']},
panoramisk {m['panoramisk']}, commit {m['commit']}.

| transcript | events | bare events/s | controller events/s | ratio | µs/event bare / ctl | CPU µs bare / ctl | Redis |
|---|---|---|---|---|---|---|---|
{table}

Profile of the controller path: `python -m linkage_lab.bench.ami_ingest --profile 12345` (cProfile, top 30).
"""


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """Replace this benchmark's section of BENCHMARKS.md (up to the next `## ` heading), or append it."""
    replace_section(path, HEADING, section(report))

if __name__ == "__main__":
    raise SystemExit(main())
