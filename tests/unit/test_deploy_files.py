"""deploy/: the alert rules pass `promtool check rules` and `promtool test rules`, the systemd unit passes
`systemd-analyze verify` with its hardening in place, the dashboard is well-formed; and every command of
docs/deploy.md is run by a test (this module or tests/lab/test_deploy_stock.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linkage_lab.harness.deployfiles import (
    DASHBOARD,
    ROOT,
    dashboard_exprs,
    doc_steps,
    fenced_blocks,
    metric_names,
    rule_exprs,
)

UNIT = ROOT / "deploy" / "systemd" / "linkage-controller.service"
LAB_TEST = ROOT / "tests" / "lab" / "test_deploy_stock.py"
# run here; the others by the lab test
HERE = ("promtool", "systemd")


def _bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_every_command_of_the_deploy_guide_is_run_by_a_test() -> None:
    steps = doc_steps()
    assert len(fenced_blocks()) == len(steps), "a shell block in docs/deploy.md has no <!-- step: … --> mark"
    lab = LAB_TEST.read_text(encoding="utf-8")
    here = Path(__file__).read_text(encoding="utf-8")
    for name in steps:
        runner = here if name in HERE else lab
        assert f'"{name}"' in runner, f"step {name} of docs/deploy.md is run by no test"
    assert set(HERE) <= set(steps)


def test_alert_rules_pass_promtool() -> None:
    assert shutil.which("promtool"), "promtool missing: scripts/setup.sh installs Debian's prometheus package"
    done = _bash(doc_steps()["promtool"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout and done.stdout.rstrip().endswith("SUCCESS")


def test_a_broken_rule_fails_promtool(tmp_path: Path) -> None:
    text = (ROOT / "deploy/prometheus/linkage-rules.yml").read_text().replace("linkage_ami_connected == 0",
                                                                              "linkage_ami_connected ==")
    (tmp_path / "bad.yml").write_text(text)
    done = subprocess.run(["promtool", "check", "rules", str(tmp_path / "bad.yml")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode != 0


def _sandbox(tmp: Path, unit_text: str) -> Path:
    """A root with the unit installed, the host's own systemd units, and /opt/linkage/bin/linkage."""
    root = tmp / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    # the host's units, as they are (their links are absolute: /lib is usr/lib, as on Debian)
    shutil.copytree(Path("/lib/systemd/system").resolve(), root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "opt/linkage/bin").mkdir(parents=True)
    entry = root / "opt/linkage/bin/linkage"
    entry.write_text(f"#!/bin/sh\nexec {sys.executable} -m telephony \"$@\"\n")
    entry.chmod(0o755)
    (root / "etc/systemd/system/linkage-controller.service").write_text(unit_text)
    return root


def _verify(tmp: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    root = _sandbox(tmp, unit_text)
    # the guide's command, with systemd-analyze pointed at the sandbox root instead of this host's /
    shim = f'systemd-analyze() {{ command systemd-analyze "$1" --root="{root}" "${{@:2}}"; }}\n'
    return _bash(shim + doc_steps()["systemd"])


def test_systemd_unit_verifies_clean(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: scripts/setup.sh installs systemd"
    done = _verify(tmp_path, UNIT.read_text())
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


def test_a_bad_unit_is_caught(tmp_path: Path) -> None:
    done = _verify(tmp_path, UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    assert "Failed to parse protect system value" in done.stdout + done.stderr


def test_systemd_unit_is_hardened_and_logs_json_to_the_journal() -> None:
    options = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    want = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "PrivateDevices": "yes", "CapabilityBoundingSet": "", "User": "linkage", "StandardError": "journal",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictSUIDSGID": "yes",
            "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "LockPersonality": "yes"}
    assert {k: options.get(k) for k in want} == want
    assert options["ReadWritePaths"] == "/var/lib/linkage-controller"
    assert options["ExecStart"].split()[1:] == ["serve", "--config", "/etc/linkage/site.yaml"]
    # the process it starts writes JSON lines to stderr (the journal keeps them as they are)
    from telephony.cli import main  # noqa: F401  (the entry point the unit names)
    logs = (ROOT / "telephony" / "logs.py").read_text()
    assert "JSONRenderer" in logs and "sys.stderr" in logs


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    root = _sandbox(tmp_path, UNIT.read_text())
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}",
                           "linkage-controller.service"], capture_output=True, text=True, timeout=60, check=False)
    m = re.search(r"Overall exposure level for linkage-controller.service: ([0-9.]+)", done.stdout)
    assert m, done.stdout + done.stderr
    assert float(m.group(1)) <= 2.5, done.stdout


def test_dashboard_is_well_formed_and_uses_only_declared_metrics() -> None:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert data["uid"] == "linkage-controller" and data["panels"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for p in data["panels"]:
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    names = metric_names(dashboard_exprs()) | metric_names(rule_exprs())
    needed = {"linkage_ami_connected", "linkage_redis_up", "linkage_delivery_dead_letters",
              "linkage_delivery_queued", "linkage_delivery_oldest_age_seconds", "linkage_tickets_created_total",
              "linkage_agi_handling_seconds_bucket", "linkage_tickets_overdue_total"}
    assert needed <= names
    declared = set(re.findall(r'"(linkage_[a-z_]+)"', "".join(
        p.read_text() for p in (ROOT / "telephony").rglob("metrics.py"))))
    for name in names:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert base in declared or base.removesuffix("_total") in declared, f"{name} is no metric of the product"


@pytest.mark.parametrize("tool", ["promtool", "systemd-analyze"])
def test_setup_installs_the_checkers(tool: str) -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    package = {"promtool": "prometheus", "systemd-analyze": "systemd"}[tool]
    packages = re.search(r'^DEB_PACKAGES="([^"]*)"', setup, re.MULTILINE)
    assert packages and package in packages.group(1).split()
