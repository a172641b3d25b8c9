"""`linkage doctor` against Debian's stock Asterisk configuration (the sample files inside the lab's root
filesystem), the Linkage includes and a centre's own endpoints: exactly the expected findings, then none after
docs/deploy.md's fixes; never a byte changed; malformed, partial and foreign directories."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from linkage_lab.lab import stock
from linkage_lab.lab.lab import PLANS, Lab
from telephony.config import SiteConfig, load_site_config
from telephony.doctor import NotAsteriskEtc, diagnose
from telephony.doctor.needs import APP_MODULES, FUNCTION_MODULES, needs
from telephony.pbx.render import PbxExtras, render
from telephony.sites import rootfs

ROOTFS = rootfs()
pytestmark = pytest.mark.skipif(not (ROOTFS / "etc/asterisk/extensions.conf").is_file(),
                                reason="no Asterisk root filesystem (scripts/setup.sh builds it)")


def _site(tmp: Path) -> tuple[SiteConfig, Path]:
    lab = Lab(rootfs=str(tmp / "labroot"))  # its own secrets: never the running lab's
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(lab.site_raw(PLANS["12345"])), encoding="utf-8")
    return load_site_config(str(path)), path


def _deployment(tmp: Path) -> tuple[SiteConfig, Path, Path]:
    """Stock files + the centre's endpoints + `linkage config render`'s files included at the ends."""
    config, path = _site(tmp)
    etc = tmp / "etc"
    stock.copy_stock(ROOTFS, etc)
    stock.existing_site(etc, config)
    render_dir = tmp / "render"
    subprocess.run([sys.executable, "-m", "telephony", "config", "render", "--config", str(path),
                    "--out", str(render_dir)], check=True, capture_output=True)
    stock.copy_render(render_dir / "etc", etc)
    stock.include_linkage(etc)
    return config, path, etc


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == text)


def _digest(etc: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(etc)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(etc.rglob("*")) if p.is_file()}


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "telephony", "doctor", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_stock_config_with_the_includes_gives_exactly_the_expected_findings(tmp_path: Path) -> None:
    config, path, etc = _deployment(tmp_path)
    before = _digest(etc)
    report = diagnose(etc, config, version="22.10.1")
    got = sorted((f.file, f.line, f.severity, f.check) for f in report.findings)
    trunk = _line(etc / "pjsip.conf", "[trunk-110](centre-phone)")
    expected = sorted([
        # Asterisk's default pickupexten is the one-key code
        ("features.conf", _line(etc / "features.conf", "[general]"), "error", "feature-clash"),
        # the centre's agents: no one-key features, PJSIP's default direct media
        *[("pjsip.conf", _line(etc / "pjsip.conf", f"[agent{a}](centre-phone)"), "error", check)
          for a in ("1001", "1002") for check in ("agent-dynamic-features", "agent-direct-media")],
        ("pjsip.conf", trunk + 1, "error", "trunk-context"),
        ("manager.conf", _line(etc / "manager.conf", "port = 5038"), "error", "ami-port"),
        ("manager.conf", len((etc / "manager.conf").read_text().splitlines()), "error", "ami-user-missing"),
        ("asterisk.conf", _line(etc / "asterisk.conf", "[options]"), "warning", "transmit-silence"),
    ])
    assert got == expected, report.to_text()
    assert not report.ok
    assert _digest(etc) == before

    cli = _doctor("--asterisk-etc", str(etc), "--config", str(path), "--asterisk-version", "22.10.1", "--json")
    assert cli.returncode == 1, cli.stderr
    out = json.loads(cli.stdout)
    assert out["ok"] is False and out["counts"] == {"error": len(expected) - 1, "warning": 1}
    assert {f["check"] for f in out["findings"]} == {e[3] for e in expected}
    assert _digest(etc) == before


def test_after_the_documented_fixes_nothing_is_reported(tmp_path: Path) -> None:
    config, path, etc = _deployment(tmp_path)
    stock.apply_fixes(etc, config)
    before = _digest(etc)
    report = diagnose(etc, config, root=ROOTFS)  # the version from the root filesystem's binary
    assert report.findings == (), report.to_text()
    assert report.version is not None and report.version.startswith("22.")
    cli = _doctor("--asterisk-etc", str(etc), "--config", str(path), "--root", str(ROOTFS))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.strip().endswith("nothing stands in Linkage's way")
    assert _digest(etc) == before


def test_each_blocker_is_found_at_its_line(tmp_path: Path) -> None:
    config, _, etc = _deployment(tmp_path)
    stock.apply_fixes(etc, config)
    modules = etc / "modules.conf"  # into [modules]: the stock file ends with a [global] section
    noload = "[modules]\nnoload => app_queue.so\nnoload = res_agi\n"
    modules.write_text(modules.read_text().replace("[modules]\n", noload))
    with (etc / "features.conf").open("a") as f:
        f.write("[featuremap](+)\ndisconnect => *9\n")
    text = (etc / "manager.conf").read_text().replace("permit = 127.0.0.1/255.255.255.255",
                                                       "permit = 127.0.0.0/255.0.0.0")
    (etc / "manager.conf").write_text(text.replace("write = call,reporting,originate",
                                                   "write = call,reporting,originate,system"))
    report = diagnose(etc, config, version="22.8.0")
    got = {(f.file, f.check, f.severity) for f in report.findings}
    mods = _line(modules, "[modules]")
    assert got == {("modules.conf", "module-noload", "error"), ("features.conf", "feature-clash", "error"),
                   ("manager.conf", "ami-permit", "error"), ("manager.conf", "ami-write-extra", "warning"),
                   ("--asterisk-version", "version", "error")}, report.to_text()
    noload = sorted(f.line for f in report.findings if f.check == "module-noload")
    assert noload == [mods + 1, mods + 2]
    clash = next(f for f in report.findings if f.check == "feature-clash")
    assert "disconnect = *9" in clash.what and "*9" in clash.what


def test_every_dialplan_application_is_mapped_to_a_module(tmp_path: Path) -> None:
    config, _ = _site(tmp_path)
    n = needs(config)  # raises naming any application or function the table lacks
    for module in {*APP_MODULES.values(), *FUNCTION_MODULES.values(), *n.modules}:
        found = list((ROOTFS / "usr/lib/x86_64-linux-gnu/asterisk/modules").glob(f"{module}.so"))
        assert found, f"{module}.so is not a module of the root filesystem's Asterisk"
    files = render(config, PbxExtras("/x", "t", "s", 1, 3))
    assert n.includes == {"extensions.conf": ("linkage-globals.conf", "linkage.conf"),
                          "features.conf": ("linkage-features.conf",),
                          "confbridge.conf": ("linkage-confbridge.conf",)} or set(n.includes) <= set(files)


def test_malformed_and_partial_configuration(tmp_path: Path) -> None:
    config, path, etc = _deployment(tmp_path)
    stock.apply_fixes(etc, config)
    with (etc / "pjsip.conf").open("a") as f:
        f.write("\n[broken\nthis line has no equals sign\n")
    (etc / "confbridge.conf").unlink()
    (etc / "junk.conf").write_bytes(b"\x00\x01binary")
    with (etc / "extensions.conf").open("a") as f:
        f.write('#include "junk.conf"\n')
    before = _digest(etc)
    cli = _doctor("--asterisk-etc", str(etc), "--config", str(path), "--asterisk-version", "22.10.1")
    assert cli.returncode == 1
    lines = len((etc / "pjsip.conf").read_text().splitlines())
    assert f"pjsip.conf:{lines - 1}: error: Asterisk cannot read this line" in cli.stdout
    assert f"pjsip.conf:{lines}: error: Asterisk cannot read this line" in cli.stdout
    assert "confbridge.conf: error: there is no confbridge.conf" in cli.stdout
    assert "junk.conf:1: error: Asterisk cannot read this line or file: a NUL byte" in cli.stdout
    assert _digest(etc) == before


def test_refuses_a_directory_that_is_not_an_asterisk_configuration(tmp_path: Path) -> None:
    config, path = _site(tmp_path)
    (tmp_path / "notetc").mkdir()
    (tmp_path / "notetc" / "README").write_text("hello")
    for target in (tmp_path / "notetc", tmp_path / "missing", path):
        with pytest.raises(NotAsteriskEtc):
            diagnose(target, config)
        cli = _doctor("--asterisk-etc", str(target), "--config", str(path))
        assert cli.returncode == 2 and "not" in cli.stderr and str(target) in cli.stderr, cli.stderr
        assert cli.stdout == ""
    assert os.listdir(tmp_path / "notetc") == ["README"]


def test_the_stock_etc_itself_is_read_and_left_as_it_was(tmp_path: Path) -> None:
    config, _ = _site(tmp_path)
    etc = stock.stock_etc(ROOTFS)
    before = _digest(etc)
    report = diagnose(etc, config, version="22.10.1")
    assert {f.check for f in report.findings} >= {"include-missing", "feature-clash", "endpoint-missing"}
    assert _digest(etc) == before
