"""The production images, built and run for real with Podman: two sites from docker/compose.yaml (Asterisk,
controller and Redis each, host network, ports 45xxx and 55xxx, clear of the lab's 15xxx-35xxx), a one-key
transfer from SIPp citizens on the host through the containers with its ticket, and a restart of the controller
container that loses no queued message.

The images come from `scripts/images.sh` (cached by a digest of their inputs: seconds when nothing changed).
Every container is started through docker/compose.py and stopped by its id at the end, with its volumes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkage_lab.harness.runner import run_scenario_async
from linkage_lab.harness.scenario import load

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = str(ROOT / "docker" / "podman" / "containers.conf")
HOST = "127.0.0.1"
ASTERISK_CONF = "/srv/linkage-asterisk/etc/asterisk.conf"
UP_TIMEOUT = 120.0
MEDIA_BASE = 45900


@dataclass(frozen=True)
class Plan:
    name: str
    base: int  # +60 SIP, +38 AMI, +573 AGI, +80 HTTP, +379 Redis, +70 citizen, +81 the agent
    rtp: str
    agent: str
    peer: str


PLANS = (Plan("12345", 45000, "30000-30998", "1001", "110"), Plan("110", 55000, "31000-31998", "2001", "12345"))


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout,
                          check=check, env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF))


def site_raw(plan: Plan, pair_secret: str) -> dict[str, Any]:
    b = plan.base
    other = next(p for p in PLANS if p.name == plan.peer)
    return {
        "site": {"name": plan.name, "platform": plan.name, "level": "city", "division": "370800"},
        "pbx": {"sip": {"host": HOST, "port": b + 60},
                "ami": {"host": HOST, "port": b + 38, "username": "linkage", "secret": secrets.token_hex(12),
                        "ping_interval": 2},
                "agi": {"host": HOST, "port": b + 573}},
        "controller": {"http": {"host": HOST, "port": b + 80}, "public_url": f"http://{HOST}:{b + 80}",
                       "api_token": secrets.token_urlsafe(24)},
        "redis": {"url": f"redis://{HOST}:{b + 379}/0"},
        "keys": {"onekey": "*8"},
        "targets": [{"name": other.name, "platform": other.name, "key": "*8", "dial": other.name,
                     "peer": other.name}],
        "accounts": {"citizen": {"host": HOST, "port": b + 70, "dial": plan.name},
                     "agents": [{"id": plan.agent, "host": HOST, "port": b + 81,
                                 "token": secrets.token_urlsafe(24)}]},
        "peers": [{"name": other.name, "platform": other.name, "level": "city", "division": "370800",
                   "url": f"http://{HOST}:{other.base + 80}", "trunk": {"host": HOST, "port": other.base + 60},
                   "secrets": [pair_secret], "dial": other.name}],
        "transfer": {"ring_timeout": 8},
        "storage": {"keys": [base64.b64encode(secrets.token_bytes(32)).decode()]},
    }


def describe(raw: dict[str, Any], tester: str) -> dict[str, Any]:
    """The part of `linkage lab describe` the scenario harness reads, for one container site."""
    return {
        "platform": raw["site"]["platform"],
        "sip": raw["pbx"]["sip"],
        "ami": {"host": HOST, "port": raw["pbx"]["ami"]["port"], "username": "tester", "secret": tester},
        "http": raw["controller"]["public_url"],
        "token": raw["controller"]["api_token"],
        "accounts": raw["accounts"],
        "keys": {"onekey": "*8", "targets": {t["name"]: t["key"] for t in raw["targets"]}},
        "targets": {t["name"]: {k: t[k] for k in ("platform", "key", "dial")} for t in raw["targets"]},
    }


def reserve_ports() -> None:
    """45xxx and 55xxx are in the kernel's ephemeral range: keep outgoing connections off them (as the lab does
    for its own blocks)."""
    path = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
    try:
        current = path.read_text().strip()
        missing = [f"{p.base}-{p.base + 999}" for p in PLANS if f"{p.base}-{p.base + 999}" not in current.split(",")]
        if missing:
            path.write_text(",".join([current, *missing] if current else missing))
    except OSError:
        pass


def http(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", **({"Content-Type": "application/json"} if data else {})})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def wait(check: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{message} (last seen: {last!r})")


def healthy(site: dict[str, Any]) -> bool:
    try:
        with urllib.request.urlopen(f"{site['http']}/v1/health", timeout=2) as r:
            return json.loads(r.read()).get("ok") is True
    except (OSError, ValueError):
        return False


def listening(ports: set[int]) -> set[int]:
    out = subprocess.run(["ss", "-Htuln"], capture_output=True, text=True, check=True).stdout
    bound = {int(line.split()[4].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}
    return bound & ports


@dataclass
class Sites:
    desc: dict[str, Any]
    ids: dict[str, dict[str, str]]  # site -> service -> container id
    images: dict[str, str]

    def rx_argv(self, site: str, command: str) -> list[str]:
        """`asterisk -rx` inside a site's Asterisk container (the harness's drain)."""
        return ["env", f"CONTAINERS_CONF={CONTAINERS_CONF}", "podman", "--runtime", "runc", "exec",
                self.ids[site]["asterisk"], "asterisk", "-C", ASTERISK_CONF, "-rx", command]


def compose(project: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "docker" / "compose.py"), "-p", project, *args],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {})),
                          check=False)
    assert proc.returncode == 0, f"compose.py -p {project} {' '.join(args)}: {proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    started = time.monotonic()
    build = subprocess.run(["bash", str(ROOT / "scripts" / "images.sh"), "build"], capture_output=True, text=True,
                           timeout=1200, check=False)
    assert build.returncode == 0, f"scripts/images.sh build failed:\n{build.stderr[-4000:]}"
    images = dict(line.split("=", 1) for line in build.stdout.split())
    print(f"\nimages ready in {time.monotonic() - started:.1f} s: {images}", file=sys.stderr)
    reserve_ports()
    pair = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    # SIPp's media ports in the 12345 site's reserved block, clear of the lab harness's (42000+)
    desc: dict[str, Any] = {"version": 1, "running": True, "media_base": MEDIA_BASE, "sites": {}}
    ids: dict[str, dict[str, str]] = {}
    projects = []
    try:
        for plan in PLANS:
            sdir = tmp_path_factory.mktemp(f"site-{plan.name}")
            raw = site_raw(plan, pair)
            (sdir / "site.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            os.chown(sdir / "site.yaml", 10001, 10001)  # the controller's user in the image
            (sdir / "site.yaml").chmod(0o600)
            tester = secrets.token_hex(12)
            project = f"linkage-img-{plan.name}"
            compose(project, "down", "-v")  # leftovers of a crashed run of this test: its own project only
            projects.append(project)
            out = compose(project, "up", env={
                "LINKAGE_SITE_DIR": str(sdir), "LINKAGE_TESTER_SECRET": tester, "LINKAGE_RTP_PORTS": plan.rtp,
                "LINKAGE_REDIS_PORT": str(plan.base + 379), "LINKAGE_ASTERISK_IMAGE": images["ASTERISK_IMAGE"],
                "LINKAGE_CONTROLLER_IMAGE": images["CONTROLLER_IMAGE"], "LINKAGE_REDIS_IMAGE": images["REDIS_IMAGE"]})
            ids[plan.name] = json.loads(out)
            desc["sites"][plan.name] = describe(raw, tester)
        for name, site in desc["sites"].items():
            wait(lambda s=site: healthy(s), UP_TIMEOUT, f"controller {name} not healthy")
        print(f"two sites up in {time.monotonic() - started:.1f} s: {ids}", file=sys.stderr)
        yield Sites(desc, ids, images)
    finally:
        for project in reversed(projects):
            compose(project, "down", "-v")
        left = podman("ps", "-a", "--filter", "label=org.linkage.compose.project", "--format", "{{.ID}}").stdout
        assert not left.strip(), f"containers left behind: {left}"
        ports = {p.base + off for p in PLANS for off in (60, 38, 573, 80, 379)}
        assert not listening(ports), f"still listening once the sites are down: {sorted(listening(ports))}"


def test_containers_run_as_their_users_on_read_only_root_filesystems(sites: Sites) -> None:
    want_user = {"asterisk": "asterisk", "controller": "linkage", "redis": "redis"}
    for site, services in sites.ids.items():
        for service, cid in services.items():
            if service == "render":
                continue
            info = json.loads(podman("inspect", cid).stdout)[0]
            assert info["State"]["Running"], f"{site}/{service} is not running"
            assert info["HostConfig"]["ReadonlyRootfs"] is True, f"{site}/{service}: root filesystem writable"
            status = podman("exec", cid, "cat", "/proc/1/status").stdout
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            assert uid != "0", f"{site}/{service}: pid 1 runs as root"
            assert podman("exec", cid, "id", "-un").stdout.strip() == want_user[service]
            mounts = {m["Destination"]: m for m in info["Mounts"]}
            if service == "asterisk":
                for path in ("spool", "spool/monitor", "lib", "log"):
                    assert mounts[f"/srv/linkage-asterisk/{path}"]["Type"] == "volume", path
                assert mounts["/srv/linkage-asterisk/etc"]["RW"] is False
            if service == "redis":
                assert mounts["/var/lib/redis"]["Type"] == "volume"
    # the controller image has the product only: no lab package, no test tooling
    probe = podman("exec", sites.ids["12345"]["controller"], "python", "-c",
                   "import importlib.util as u; print(u.find_spec('linkage_lab'), u.find_spec('pytest'))")
    assert probe.stdout.split() == ["None", "None"]
    version = podman("exec", sites.ids["110"]["asterisk"], "asterisk", "-V").stdout
    assert version.startswith("Asterisk 22."), version


def test_onekey_transfer_passes_through_the_containers(sites: Sites) -> None:
    scenario = load(str(ROOT / "tests" / "scenarios" / "onekey_happy.yaml"))
    result = asyncio.run(run_scenario_async(scenario, sites.desc, sites))
    print(result.report(), file=sys.stderr)
    assert result.ok, "\n".join(result.failures)
    # the recording of the call is on the recordings volume of the 12345 PBX
    monitor = podman("exec", sites.ids["12345"]["asterisk"], "ls", "/srv/linkage-asterisk/spool/monitor").stdout
    assert any(name.startswith("linkage-") and name.endswith(".wav") for name in monitor.split()), monitor


def _queued(site: dict[str, Any], peer: str) -> int:
    peers = http("GET", f"{site['http']}/v1/delivery", site["token"])["peers"]
    return int(next(p for p in peers if p["peer"] == peer)["queued"])


def test_controller_container_restart_loses_no_queued_message(sites: Sites) -> None:
    s12345, s110 = sites.desc["sites"]["12345"], sites.desc["sites"]["110"]
    far = sites.ids["110"]["controller"]
    podman("stop", "-t", "15", far)
    try:
        ticket = http("POST", f"{s12345['http']}/v1/transfers", s12345["token"], {
            "target": "110", "channel": "web", "agent": "1001", "caller_number": "13912345678",
            "category": "report", "division": "370800", "title": "网络渠道转办：容器重启",
            "content": "来信反映小区门口夜间有人聚集斗殴，请求警方处置。"})
        tid = ticket["id"]
        wait(lambda: _queued(s12345, "110") == 1, 20, "the referral is not queued for the stopped 110")
        # the sending controller's container restarts while the message waits in its outbox (Redis)
        podman("restart", "-t", "15", sites.ids["12345"]["controller"], timeout=90)
        wait(lambda: healthy(s12345), UP_TIMEOUT, "the restarted 12345 controller is not healthy")
        assert _queued(s12345, "110") == 1, "the queued message did not survive the controller's restart"
        # and Redis's own container restarts too: the append-only file is on its named volume
        podman("restart", "-t", "15", sites.ids["12345"]["redis"], timeout=90)
        wait(lambda: _queued(s12345, "110") == 1, 30, "the queued message did not survive Redis's restart")
    finally:
        podman("start", far, timeout=60)
    wait(lambda: healthy(s110), UP_TIMEOUT, "the 110 controller did not come back")
    wait(lambda: _queued(s12345, "110") == 0, 90, "the queued message was not delivered once 110 came back")

    def far_ticket() -> Any:
        try:
            return http("GET", f"{s110['http']}/v1/tickets/{tid}", s110["token"])
        except urllib.error.HTTPError:
            return None

    wait(far_ticket, 10, f"110 has no ticket {tid}")

    def near_delivered() -> Any:  # 110's "delivered" event travels back through its own outbox
        ticket = http("GET", f"{s12345['http']}/v1/tickets/{tid}", s12345["token"])
        return ticket if "delivered" in [e["type"] for e in ticket["history"]] else None

    wait(near_delivered, 60, "12345 never heard that 110 has the ticket")
    time.sleep(2)  # room for a duplicate, were one still on its way
    far_types = [e["type"] for e in far_ticket()["history"]]
    near_types = [e["type"] for e in near_delivered()["history"]]
    assert far_types.count("created") == 1 and far_types.count("delivered") == 1, far_types
    assert near_types.count("delivered") == 1, near_types
    assert all(_queued(sites.desc["sites"][a], b) == 0 for a, b in (("12345", "110"), ("110", "12345")))
    listed = http("GET", f"{s110['http']}/v1/tickets?since={time.time() - 600:.3f}", s110["token"])["items"]
    assert [t["id"] for t in listed].count(tid) == 1

