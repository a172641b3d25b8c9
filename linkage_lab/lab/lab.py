"""`linkage lab up | down | describe`: the built-in two-site lab on loopback.

Site 12345 (the government-service hotline) and site 110 (the police desk), each with its own Asterisk 22
(chroot into the project's Debian sid root filesystem, own etc/run/log/spool directories), its own Redis
(append-only, fsync always) and its own controller, joined by a PJSIP trunk and by HTTP between controllers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from linkage_lab.lab.processes import Proc, alive, spawn, stop
from telephony.config import SiteConfig, parse_site_config
from telephony.errors import LinkageError
from telephony.pbx.render import PbxExtras, render, write
from telephony.sites import SITES_SUBDIR as LAB_SUBDIR
from telephony.sites import rootfs as _rootfs

DIVISION = "370800"  # 济宁市, GB/T 2260


class LabError(LinkageError):
    pass


HOST = "127.0.0.1"
# RTP ports per PBX (below the kernel's ephemeral range): 4000 ports, 2000 streams. 1000 ran out at ~24 transfers/s
# in `make bench-load` ("Unable to create RTP instance"): a lab limit, not the product's.
RTP_PORTS = 4000
# SIP T1 of the lab's PBXes in ms; Timer B/F, after which an unanswered request gives up, is 64 × T1 (6.4 s).
# The test suite's scenarios and drains rely on it (harness/drain.py); the load bench asks for the standard 500.
SIP_TIMER_T1 = 100
SIP_TIMER_T1_RANGE = (100, 4000)  # Asterisk refuses a Timer B under 6.4 s; above T2 (4 s) retransmits get no slower


ROOT = Path(__file__).resolve().parents[2]
# what a running lab was started from
CODE = ("telephony/**/*.py", "linkage_lab/**/*.py", "dialplans/*.in", "config/asterisk/*.in")


def code_fingerprint(root: Path = ROOT) -> str:
    """A digest of the package, the dialplans and the PBX config templates: `lab up` restarts a running lab
    started from other code, so tests never run against yesterday's controller or dialplan."""
    digest = hashlib.sha256()
    for pattern in CODE:
        for path in sorted(root.glob(pattern)):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class SitePlan:
    name: str
    platform: str
    level: str
    division: str
    base: int  # ports: base+60 SIP, +38 AMI, +573 AGI, +80 HTTP, +379 Redis, +70 citizen, +81.. agents
    rtp: int
    agents: tuple[str, ...]
    peers: tuple[str, ...]
    targets: tuple[dict[str, Any], ...]
    parent: str = ""


# city 12345, city 110, and the county 110 of 任城区 (370811) under the city 110 (市级互转)
SITES = (
    SitePlan("12345", "12345", "city", DIVISION, 15000, 16000, ("1001", "1002"), ("110",), (
        {"name": "110", "platform": "110", "key": "*8", "dial": "110", "peer": "110"},
        {"name": "120", "platform": "120", "key": "*2", "dial": "120", "phone": {"host": HOST, "port": 15090}},
    )),
    SitePlan("110", "110", "city", DIVISION, 25000, 20000, ("2001", "2002"), ("12345", "110-370811"), (
        {"name": "12345", "platform": "12345", "key": "*8", "dial": "12345", "peer": "12345"},
    )),
    SitePlan("110-370811", "110", "county", "370811", 35000, 26000, ("3001",), ("110",), (
        {"name": "12345", "platform": "12345", "key": "*8", "dial": "12345", "via": "110"},
    ), parent="110"),
)
PLANS = {p.name: p for p in SITES}


HARNESS_BLOCKS = ("42000-42999", "46000-47999")  # the SIPp media ports of the harness and of the drills


def _reserve_ports(extra: tuple[str, ...] = ()) -> None:
    """The county site's ports (35000+) lie in the kernel's ephemeral range: an outgoing connection that happened
    to get local port 35080 once kept the county controller from binding it (`make test`, 2026-11-29). Reserve
    every site's port block from ephemeral use; values already reserved are kept. The SIPp media ports of the
    harness and the drills too (42000+, 46000-47999): the 110 PBX's PJSIP DNS socket once took 46000, a fault
    drill's far agent could not bind it and the controller SIGKILL drill failed (`make test`, 2026-12-02)."""
    path = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
    try:
        current = path.read_text().strip()
        ours = [f"{p.base}-{p.base + 999}" for p in SITES] + [*HARNESS_BLOCKS, *extra]
        missing = [r for r in ours if r not in current.split(",")]
        if missing:
            path.write_text(",".join([current, *missing] if current else missing))
    except OSError:
        pass  # not root or no such knob: the lab still runs, with the small chance above


def reserve_ports(extra: tuple[str, ...] = ()) -> None:
    """The lab's port blocks (and `extra` ones, "lo-hi") kept from ephemeral use before the lab is up: scripts/test.sh
    runs the unit tests beside the image tests, and neither may take a port the lab binds later."""
    _reserve_ports(extra)


def restart_reason(running: dict[str, Any], code: str, sip_timer_t1: int) -> str | None:
    """Why a running lab (its state: the code and SIP T1 it was started with) cannot serve a caller that wants
    this code and this T1; None when it can. A lab whose state does not say its T1 was started before the T1
    was kept: it ran the default."""
    if running.get("code") != code:
        return "the code changed since the lab started"
    t1 = running.get("sip_timer_t1", SIP_TIMER_T1)
    if t1 != sip_timer_t1:
        return f"its PBXes run SIP T1 = {t1} ms, {sip_timer_t1} ms wanted"
    return None


class Lab:
    def __init__(self, rootfs: str | None = None, sip_timer_t1: int = SIP_TIMER_T1) -> None:
        low, high = SIP_TIMER_T1_RANGE
        if not low <= sip_timer_t1 <= high:
            raise LabError(f"SIP T1 of the lab's PBXes: {sip_timer_t1} ms is outside {low}..{high} ms")
        self.rootfs = _rootfs(rootfs)
        self.dir = self.rootfs / LAB_SUBDIR
        self.state_file = self.dir / "state.json"
        # what `up` starts the PBXes with, and restarts a running lab of another T1 for
        self.sip_timer_t1 = sip_timer_t1

    # ---- description ---------------------------------------------------------------------------------
    def secrets(self) -> dict[str, str]:
        path = self.dir / "secrets.json"
        data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = {f"{s.name}.{kind}" for s in SITES for kind in ("ami", "tester", "token")} - set(data)
        missing |= {f"pair.{a}.{b}" for a in PLANS for b in PLANS if a < b} - set(data)
        missing |= {f"agent.{a}.token" for s in SITES for a in s.agents} - set(data)
        missing |= {f"{s.name}.storage" for s in SITES} - set(data)
        if missing:
            for key in missing:
                data[key] = ("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode() if key.startswith("pair.")
                             else base64.b64encode(secrets.token_bytes(32)).decode() if key.endswith(".storage")
                             else secrets.token_urlsafe(24) if key.endswith(".token") else secrets.token_hex(12))
            self.dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
            path.chmod(0o600)
        return data

    def site_raw(self, plan: SitePlan, wan: dict[str, str] | None = None) -> dict[str, Any]:
        """The site's config; `wan` maps site names to the address their HTTP is reached at by the other
        sites (fault drills route the controllers' link through a network namespace, see harness/wan.py)."""
        sec = self.secrets()
        b = plan.base
        wan = wan or {}
        peers = []
        for name in plan.peers:
            other = PLANS[name]
            peers.append({"name": other.name, "platform": other.platform, "level": other.level,
                          "division": other.division, "url": f"http://{wan.get(other.name, HOST)}:{other.base + 80}",
                          "trunk": {"host": HOST, "port": other.base + 60},
                          "secrets": [sec["pair." + ".".join(sorted((plan.name, other.name)))]],
                          "dial": other.platform})
        return {
            "site": {"name": plan.name, "platform": plan.platform, "level": plan.level, "division": plan.division,
                     "parent": plan.parent},
            "pbx": {"sip": {"host": HOST, "port": b + 60},
                    "ami": {"host": HOST, "port": b + 38, "username": "linkage", "secret": sec[f"{plan.name}.ami"],
                            "ping_interval": 2},
                    "agi": {"host": HOST, "port": b + 573}},
            "controller": {"http": {"host": HOST, "port": b + 80},
                           "public_url": f"http://{wan.get(plan.name, HOST)}:{b + 80}",
                           "api_token": sec[f"{plan.name}.token"]},
            "redis": {"url": f"redis://{HOST}:{b + 379}/0"},
            "keys": {"onekey": plan.targets[0]["key"]},
            "targets": [dict(t) for t in plan.targets],
            "accounts": {"citizen": {"host": HOST, "port": b + 70, "dial": plan.platform},
                         "agents": [{"id": a, "host": HOST, "port": b + 81 + i, "token": sec[f"agent.{a}.token"]}
                                    for i, a in enumerate(plan.agents)]},
            "peers": peers,
            "transfer": {"ring_timeout": 8, **({"overflow": "110-370811"} if plan.name == "110" else {})},
            "bench": {"baseline_key": "*5", "agi_floor_key": "*4"},
            # 智能回访 through a lab "carrier" (a SIPp role at base+91): always open, quick retries; an hour after
            # the resolve, so the many tickets other tests resolve never call anyone during a test session — the
            # follow-up scenarios set LINKAGE_FOLLOWUP__DELAY=1 for their run (controller_env)
            "followup": {"gateway": {"host": HOST, "port": b + 91}, "delay": 3600, "retry_seconds": 2,
                         "ring_seconds": 5, "hours": "00:00-24:00"},
            "storage": {"keys": [sec[f"{plan.name}.storage"]]},
            # the lab's phones are SIPp processes that take many calls at once (the load bench): the queue rings
            # an agent in a call, as the plain Dial did. Surge at the city 110 only under a real pile-up; the
            # surge scenarios lower the bounds for their run (controller_env)
            # the reporting database reads the PBX's own queue_log (issue 16: the file, not AMI events)
            "reporting": {"queue_log": str(self.dir / plan.name / "log" / "queue_log")},
            "queue": {"ringinuse": True, "max_wait": 60,
                      **({"surge": {"to": ["110-370811"], "waiting_on": 4, "oldest_on": 45, "waiting_off": 1,
                                    "oldest_off": 10}} if plan.name == "110" else {})},
        }

    def site_config(self, plan: SitePlan) -> SiteConfig:
        return parse_site_config(self.site_raw(plan), f"lab:{plan.name}")

    def describe(self) -> dict[str, Any]:
        sec = self.secrets()
        sites: dict[str, Any] = {}
        for plan in SITES:
            c = self.site_config(plan)
            sites[plan.name] = {
                "platform": c.site.platform,
                "level": c.site.level,
                "division": c.site.division,
                "sip": {"host": c.pbx.sip.host, "port": c.pbx.sip.port},
                "ami": {"host": c.pbx.ami.host, "port": c.pbx.ami.port, "username": "tester",
                        "secret": sec[f"{plan.name}.tester"]},
                "http": c.controller.public_url,
                "token": c.controller.api_token,
                "redis": c.redis.url,
                "accounts": {
                    "citizen": {"host": c.accounts.citizen.host, "port": c.accounts.citizen.port,
                                "dial": c.accounts.citizen.dial},
                    "agents": [{"id": a.id, "host": a.host, "port": a.port, "token": a.token}
                               for a in c.accounts.agents],
                },
                "keys": {"onekey": c.onekey, "threeway": c.keys.threeway, "accept": c.threeway.accept_key,
                         "leave": c.threeway.leave_key, "consult": c.keys.consult,
                         "consult_abort": c.threeway.consult_abort, "consult_complete": c.threeway.consult_complete,
                         **({"bench_baseline": c.bench.baseline_key} if c.bench.baseline_key else {}),
                         **({"bench_floor": c.bench.agi_floor_key}
                            if c.bench.baseline_key and c.bench.agi_floor_key else {}),
                         "targets": {t.name: t.key for t in c.targets}},
                "targets": {t.name: {"platform": t.platform, "key": t.key, "dial": t.dial,
                                     **({"phone": {"host": t.phone.host, "port": t.phone.port}} if t.phone else {}),
                                     **({"via": t.via} if t.via else {})} for t in c.targets},
                "parent": c.site.parent,
                **({"followup": {"gateway": {"host": c.followup.gateway.host, "port": c.followup.gateway.port}}}
                   if c.followup.gateway else {}),
                "dir": str(self.dir / plan.name),
                "logs": {"asterisk": str(self.dir / plan.name / "log" / "full.log"),
                         "controller": str(self.dir / plan.name / "controller.log")},
            }
        return {"version": 1, "running": self.is_up(), "sip_timer_t1": self.running_sip_timer_t1(), "sites": sites}

    # ---- processes ----------------------------------------------------------------------------------
    def _state(self) -> list[Proc]:
        if not self.state_file.exists():
            return []
        return [Proc(**p) for p in json.loads(self.state_file.read_text()).get("procs", [])]

    def _save(self, procs: list[Proc], code: str | None = None) -> None:
        """The lab's processes, and the code and SIP T1 they were started with (kept when a drill restarts one)."""
        started = {"code": code, "sip_timer_t1": self.sip_timer_t1}
        if code is None:
            started = {k: v for k, v in self._started().items() if k in started}
        self.state_file.write_text(json.dumps({"procs": [p.to_dict() for p in procs], **started}))

    def _started(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def started_from(self) -> str | None:
        """The code fingerprint the running lab was started from (None: unknown, or not up)."""
        code = self._started().get("code")
        return code if isinstance(code, str) else None

    def running_sip_timer_t1(self) -> int | None:
        """The SIP T1 the running lab's PBXes were started with (None: not up, or started before it was kept)."""
        t1 = self._started().get("sip_timer_t1")
        return t1 if isinstance(t1, int) else None

    def is_up(self) -> bool:
        procs = self._state()
        return bool(procs) and all(alive(p) for p in procs) and self._healthy()

    def _healthy(self) -> bool:
        for plan in SITES:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{plan.base + 80}/v1/health", timeout=1) as r:
                    if json.loads(r.read()).get("ok") is not True:
                        return False
            except (OSError, ValueError):
                return False
        return True

    def up(self, log: Any = print) -> dict[str, Any]:
        if not (self.rootfs / "usr/sbin/asterisk").exists():
            raise LabError(f"no Asterisk root filesystem at {self.rootfs}: run `make setup` first")
        code = code_fingerprint()
        if self.is_up():
            # a lab started from other code (or dialplans) would test that code, not this checkout's; one of
            # another T1 would time its retransmissions differently
            reason = restart_reason(self._started(), code, self.sip_timer_t1)
            if reason is None:
                log("lab already up")
                return self.describe()
            log(f"lab up: {reason}; restarting it")
        self.down(quiet=True)  # leftovers of a crashed run, or a lab of other code
        _reserve_ports()
        started: list[Proc] = []
        try:
            for plan in SITES:
                started += self._start_site_backends(plan)
            self._save(started, code)
            for plan in SITES:
                self._wait_asterisk(plan)
            for plan in SITES:
                started.append(self._start_controller(plan))
                self._save(started)
            self._wait(lambda: self._healthy(), 30, "controllers did not become healthy")
        except Exception:
            self._save(started)
            self.down(quiet=True)
            raise
        log("lab up: " + ", ".join(f"{p.name}={p.pid}" for p in started))
        return self.describe()

    def _start_site_backends(self, plan: SitePlan) -> list[Proc]:
        config = self.site_config(plan)
        sdir = self.dir / plan.name
        for sub in ("etc", "run", "log", "spool", "lib", "cache", "redis"):
            (sdir / sub).mkdir(parents=True, exist_ok=True)
        for stale in (sdir / "run").glob("*"):
            stale.unlink()
        for old in (sdir / "redis").glob("*"):  # every `lab up` starts with empty stores
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        inside = "/" + LAB_SUBDIR + "/" + plan.name
        sec = self.secrets()
        files = render(config, PbxExtras(inside, "tester", sec[f"{plan.name}.tester"], plan.rtp,
                                         plan.rtp + RTP_PORTS - 2, sip_timer_t1=self.sip_timer_t1))
        write(files, sdir / "etc")
        (sdir / "linkage.yaml").write_text(yaml.safe_dump(self.site_raw(plan), sort_keys=False))
        (sdir / "linkage.yaml").chmod(0o600)
        return [self._spawn_redis(plan), self._spawn_asterisk(plan)]

    def _spawn_redis(self, plan: SitePlan) -> Proc:
        sdir = self.dir / plan.name
        return spawn(f"redis-{plan.name}", [
            "redis-server", "--port", str(plan.base + 379), "--bind", HOST, "--dir", str(sdir / "redis"),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            "--protected-mode", "yes", "--logfile", ""], sdir / "redis.log")

    def restart_redis(self, site: str, kill: bool = True) -> None:
        """Fault drills: stop one site's Redis (SIGKILL by default: no chance to flush anything more) and start
        it again on the same append-only file."""
        plan = PLANS[site]
        procs = self._state()
        for p in procs:
            if p.name == f"redis-{site}":
                if kill and alive(p):
                    os.kill(p.pid, signal.SIGKILL)
                stop(p)
        procs = [p for p in procs if p.name != f"redis-{site}"]
        procs.append(self._spawn_redis(plan))
        self._save(procs)
        self._wait(lambda: self._redis_up(plan), 20, f"Redis of {site} did not come back")

    def stop_redis(self, site: str) -> None:
        """Readiness drills: stop one site's Redis by pid (restart_redis brings it back on its file)."""
        self._stop_named(f"redis-{site}")

    @staticmethod
    def _redis_up(plan: SitePlan) -> bool:
        try:
            with socket.create_connection((HOST, plan.base + 379), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _spawn_asterisk(self, plan: SitePlan) -> Proc:
        inside = "/" + LAB_SUBDIR + "/" + plan.name
        return spawn(f"asterisk-{plan.name}", [
            "chroot", str(self.rootfs), "/usr/sbin/asterisk", "-f", "-n", "-C", f"{inside}/etc/asterisk.conf"],
            self.dir / plan.name / "asterisk.out")

    def _stop_named(self, name: str) -> None:
        procs = self._state()
        for p in procs:
            if p.name == name:
                stop(p)
        self._save([p for p in procs if p.name != name])

    def stop_asterisk(self, site: str) -> None:
        """Fault drills: stop one site's PBX by pid (its trunk peers see it go unreachable)."""
        self._stop_named(f"asterisk-{site}")

    def start_asterisk(self, site: str) -> None:
        plan = PLANS[site]
        procs = [p for p in self._state() if p.name != f"asterisk-{site}"]
        for stale in (self.dir / site / "run").glob("*"):
            stale.unlink()
        procs.append(self._spawn_asterisk(plan))
        self._save(procs)
        self._wait_asterisk(plan)
        self._wait(self._healthy, 20, f"the controller of {site} did not log in to the restarted PBX")

    def rx_argv(self, site: str, command: str) -> list[str]:
        """`asterisk -rx COMMAND` on one site's PBX, for callers that run it themselves (the harness, async)."""
        inside = "/" + LAB_SUBDIR + "/" + site
        return ["chroot", str(self.rootfs), "/usr/sbin/asterisk", "-C", f"{inside}/etc/asterisk.conf", "-rx", command]

    def _asterisk_rx(self, plan: SitePlan, command: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.rx_argv(plan.name, command), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def _wait_asterisk(self, plan: SitePlan) -> None:
        def booted() -> bool:
            try:
                return self._asterisk_rx(plan, "core waitfullybooted", 20).returncode == 0
            except subprocess.TimeoutExpired:
                return False
        self._wait(booted, 40, f"Asterisk of site {plan.name} did not boot (see {self.dir / plan.name / 'log'})")

    def _start_controller(self, plan: SitePlan, extra_env: dict[str, str] | None = None) -> Proc:
        sdir = self.dir / plan.name
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
        return spawn(f"controller-{plan.name}",
                     [sys.executable, "-m", "telephony", "serve", "--config", str(sdir / "linkage.yaml")],
                     sdir / "controller.log", env=env)

    def stop_controller(self, site: str) -> None:
        """Stop one site's controller by pid (fault drills); `restart_controller` brings it back."""
        self._stop_named(f"controller-{site}")

    def kill_controller(self, site: str) -> None:
        """Fault drills: SIGKILL one site's controller by pid (no shutdown code runs)."""
        for p in self._state():
            if p.name == f"controller-{site}" and alive(p):
                os.kill(p.pid, signal.SIGKILL)
        self._stop_named(f"controller-{site}")  # reaps it

    def reroute(self, wan: dict[str, str] | None = None) -> None:
        """Rewrite the controllers' configs so the sites in `wan` are reached at those addresses (or back to
        loopback with None) and restart the controllers of the two cities."""
        for plan in SITES:
            (self.dir / plan.name / "linkage.yaml").write_text(
                yaml.safe_dump(self.site_raw(plan, wan), sort_keys=False))
        for site in ("12345", "110"):
            self.restart_controller(site)

    def restart_controller(self, site: str, env: dict[str, str] | None = None, kill: bool = False) -> None:
        """Stop one site's controller by pid (SIGKILL with kill=True) and start it again (with extra LINKAGE_*
        overrides, for drills)."""
        if kill:
            self.kill_controller(site)
        self.stop_controller(site)
        procs = self._state()
        plan = next(p for p in SITES if p.name == site)
        procs.append(self._start_controller(plan, env))
        self._save(procs)
        self._wait(self._healthy, 20, "controller did not come back")

    @staticmethod
    def _wait(check: Any, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise LabError(message)

    def down(self, quiet: bool = False, log: Any = print) -> None:
        procs = self._state()
        for p in reversed(procs):
            if p.name.startswith("asterisk-") and alive(p):
                plan = next((s for s in SITES if p.name == f"asterisk-{s.name}"), None)
                if plan is not None:
                    try:
                        self._asterisk_rx(plan, "core stop now", 5)
                    except subprocess.TimeoutExpired:
                        pass
            stop(p)
        if self.state_file.exists():
            self.state_file.unlink()
        if not quiet:
            log(f"lab down: stopped {len(procs)} processes")
