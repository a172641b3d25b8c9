"""A stock Asterisk with Linkage included runs a one-key transfer; readiness follows Redis and AMI.

The drill stops the lab's own 12345 PBX and its controller, builds a PBX from Debian's sample configuration
(`<rootfs>/etc/asterisk`) plus a centre's own endpoints (linkage_lab/lab/stock.py) plus the lab's directories and
ports, starts it as the "existing" PBX, then runs docs/deploy.md's commands in order (render, include, doctor,
the fixes, doctor again, restart, serve, ready), makes the one-key scenario's transfer through it, reads the
ticket back as the guide does, and checks that every metric the dashboard and the alert rules use is on the
controller's /metrics. The lab's own PBX and controller are back afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from linkage_lab.harness.deployfiles import ROOT, dashboard_exprs, doc_steps, family, metric_names, rule_exprs
from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab import stock
from linkage_lab.lab.lab import PLANS, RTP_PORTS, Lab
from linkage_lab.lab.processes import Proc, alive, spawn, stop

SITE = "12345"
PYTHON = sys.executable


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def _until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_readiness_follows_redis_and_ami(lab: Lab, desc: dict[str, Any]) -> None:
    url = desc["sites"][SITE]["http"]
    assert _get(f"{url}/v1/ready")[0] == 200
    lab.stop_redis(SITE)
    try:
        _, body, headers = _until("503 without Redis", lambda: (r := _get(f"{url}/v1/ready"))[0] == 503 and r,
                                       10)
        assert body["reasons"] == ["redis unreachable"] and body["ready"] is False
        assert headers.get("Retry-After") == "1"
        live = _get(f"{url}/v1/health")
        assert live[0] == 200 and live[1]["alive"] is True and live[1]["redis"] is False
    finally:
        lab.restart_redis(SITE, kill=False)
    _until("ready again with Redis", lambda: _get(f"{url}/v1/ready")[0] == 200, 15)

    lab.stop_asterisk(SITE)
    try:
        _, body, _ = _until("503 without AMI", lambda: (r := _get(f"{url}/v1/ready"))[0] == 503 and r, 15)
        assert body["reasons"] == ["AMI not logged in"]
        assert _get(f"{url}/v1/health")[0] == 200
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=3).read().decode()
        assert "linkage_ami_connected 0.0" in metrics
    finally:
        lab.start_asterisk(SITE)
    assert _get(f"{url}/v1/ready")[1] == {"ready": True, "reasons": [], "site": SITE, "redis": True, "ami": True}


class StockPbx:
    """The "existing" PBX of the drill: Debian's sample files, run in the lab's root filesystem."""

    def __init__(self, lab: Lab, work: Path) -> None:
        self.lab = lab
        self.inside = f"/srv/linkage-stock/{SITE}"
        self.dir = lab.rootfs / self.inside.lstrip("/")
        self.etc = self.dir / "etc"
        self.proc: Proc | None = None
        self.bin = work / "bin"

    def build(self) -> None:
        plan = PLANS[SITE]
        config = self.lab.site_config(plan)
        stock.copy_stock(self.lab.rootfs, self.etc)
        for sub in ("run", "log", "spool", "lib", "cache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        stock.existing_site(self.etc, config)
        stock.lab_environment(self.etc, self.inside, self.lab.secrets()[f"{SITE}.tester"], "127.0.0.1",
                              (plan.rtp, plan.rtp + RTP_PORTS - 2))
        self.bin.mkdir(parents=True, exist_ok=True)
        asterisk = self.bin / "asterisk"  # the guide's `asterisk` is this PBX's
        asterisk.write_text(f"#!/bin/sh\nexec chroot {self.lab.rootfs} /usr/sbin/asterisk "
                            f"-C {self.inside}/etc/asterisk.conf \"$@\"\n")
        asterisk.chmod(0o755)
        linkage = self.bin / "linkage"  # this checkout's linkage
        linkage.write_text(f"#!/bin/sh\ncd {ROOT} && exec {PYTHON} -m telephony \"$@\"\n")
        linkage.chmod(0o755)

    def rx(self, command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "asterisk"), "-rx", command], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self) -> None:
        for stale in (self.dir / "run").glob("*"):
            stale.unlink()
        self.proc = spawn(f"asterisk-stock-{SITE}", ["chroot", str(self.lab.rootfs), "/usr/sbin/asterisk", "-f",
                                                     "-n", "-C", f"{self.inside}/etc/asterisk.conf"],
                          self.dir / "asterisk.out")
        _until("the stock PBX booted", lambda: self.rx("core waitfullybooted").returncode == 0, 40)

    def stop(self) -> None:
        if self.proc is not None and alive(self.proc):
            try:
                self.rx("core stop now", 5)
            except subprocess.TimeoutExpired:
                pass
            stop(self.proc)
        self.proc = None


@pytest.fixture()
def stock_pbx(lab: Lab, tmp_path: Path) -> Iterator[StockPbx]:
    pbx = StockPbx(lab, tmp_path)
    pbx.build()
    lab.stop_controller(SITE)
    lab.stop_asterisk(SITE)
    try:
        pbx.start()
        yield pbx
    finally:
        pbx.stop()
        procs = lab._state()  # the lab's controller first: start_asterisk waits for it to log in
        procs.append(lab._start_controller(PLANS[SITE]))
        lab._save(procs)
        lab.start_asterisk(SITE)


def _step(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-eu", "-c", doc_steps()[name]], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_stock_asterisk_with_linkage_included_runs_a_onekey_transfer(lab: Lab, desc: dict[str, Any],
                                                                      stock_pbx: StockPbx, tmp_path: Path) -> None:
    site = desc["sites"][SITE]
    config = lab.site_config(PLANS[SITE])
    env = {**os.environ, "PATH": f"{stock_pbx.bin}:{os.environ['PATH']}", "ETC": str(stock_pbx.etc),
           "SITE": str(lab.dir / SITE / "linkage.yaml"), "RENDER": str(tmp_path / "render"), "URL": site["http"],
           "TOKEN": site["token"]}
    for name in ("render", "include"):
        done = _step(name, env)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"

    done = _step("doctor", env)
    assert done.returncode == 1, done.stdout + done.stderr
    for check in ("pickupexten (Asterisk's default) = *8",
                  "has no DYNAMIC_FEATURES set_var", "direct_media unset", "context from-trunk",
                  f"port 5038, the site config's pbx.ami.port is {config.pbx.ami.port}", "no AMI user [linkage]"):
        assert check in done.stdout, done.stdout
    assert "22." not in done.stdout or "older than" not in done.stdout

    stock.apply_fixes(stock_pbx.etc, config)  # the guide's fixes (docs/deploy.md, section 2)
    done = _step("doctor-again", env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("nothing stands in Linkage's way"), done.stdout

    done = _step("restart", env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "username: linkage" in done.stdout and "1: allow - 127.0.0.1/255.255.255.255" in done.stdout, done.stdout
    _until("the restarted stock PBX", lambda: stock_pbx.rx("core waitfullybooted").returncode == 0, 40)
    shown = stock_pbx.rx("dialplan show globals").stdout
    assert "LINKAGE_AGI=" in shown, shown  # a second [globals] adds to the stock one
    features = stock_pbx.rx("features show").stdout
    assert "linkage-to-110" in features and "Pickup                    *8      *99" in features, features

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(["bash", "-eu", "-c", "exec " + doc_steps()["serve"].strip()], cwd=ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _until("the controller ready on the stock PBX", lambda: _get(f"{site['http']}/v1/ready")[0] == 200, 40)
        done = _step("ready", env)
        assert done.returncode == 0 and json.loads(done.stdout)["ready"] is True, done.stdout + done.stderr

        result = run_scenario(load(ROOT / "tests" / "scenarios" / "onekey_happy.yaml"), desc, lab)
        assert result.ok, result.report()

        done = _step("first-ticket", env)
        assert done.returncode == 0, done.stderr
        tickets = json.loads(done.stdout)["items"]
        assert tickets and tickets[0]["id"] == result.tickets[SITE][0]["id"]

        page = urllib.request.urlopen(f"{site['http']}/metrics", timeout=3).read().decode()
        families = {f.name: f.type for f in text_string_to_metric_families(page)}
        for name in sorted(metric_names(dashboard_exprs()) | metric_names(rule_exprs())):
            base, kind = family(name)
            assert base in families, f"{name} (dashboard or rules) is not on a real controller's /metrics"
            assert kind is None or families[base] == kind, (name, families[base])
        assert "linkage_ami_connected 1.0" in page and "linkage_redis_up 1.0" in page
        assert 'linkage_delivery_queued{peer="110"}' in page
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(20)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    events = [json.loads(line)["event"] for line in lines]  # every line JSON: what the journal keeps
    assert "ami.logged_in" in events and "controller.started" in events
