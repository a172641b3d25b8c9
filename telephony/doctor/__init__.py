"""`linkage doctor`: what in an existing Asterisk configuration stands in Linkage's way, and how to fix it.

Read-only: files are opened for reading and nothing else (tests/unit/test_doctor.py compares checksums). The
configuration is parsed with pyst2's `asterisk.config` (confread.py), what the site needs is derived from the
site config and its render (needs.py), and each check (checks.py) yields findings with file and line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from telephony.config import SiteConfig
from telephony.doctor import checks, manager, pjsip
from telephony.doctor.checks import Conf, Finding
from telephony.doctor.confread import Reader
from telephony.doctor.needs import needs as site_needs
from telephony.errors import LinkageError

FILES = ("asterisk.conf", "extensions.conf", "features.conf", "confbridge.conf", "pjsip.conf",
         "pjsip_wizard.conf", "manager.conf", "modules.conf")
LOOPBACK = ("127.0.0.1", "::1")
WILDCARD = ("0.0.0.0", "::")
VERSION_OUTPUT = re.compile(r"Asterisk\s+(\d+\.\d+\.\d+\S*)")
VERSION_IN_BINARY = re.compile(rb"\x00(\d{1,2}\.\d{1,2}\.\d{1,2}(?:[-+~][0-9A-Za-z.+~-]*)?)\x00")


class NotAsteriskEtc(LinkageError):
    error_id = "not_asterisk_etc"


@dataclass(frozen=True)
class Report:
    etc: str
    version: str | None
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_json(self) -> str:
        counts = {s: sum(f.severity == s for f in self.findings) for s in ("error", "warning")}
        return json.dumps({"ok": self.ok, "asterisk_etc": self.etc, "asterisk_version": self.version,
                           "counts": counts, "findings": [f.to_dict() for f in self.findings]},
                          ensure_ascii=False, indent=2)

    def to_text(self) -> str:
        lines = [f"{f.file}{':' + str(f.line) if f.line else ''}: {f.severity}: {f.what}\n    fix: {f.fix}"
                 for f in self.findings]
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = len(self.findings) - errors
        verdict = ("nothing stands in Linkage's way" if not self.findings else
                   f"{errors} error(s) block Linkage, {warnings} warning(s)" if errors else
                   f"nothing blocks Linkage; {warnings} warning(s)")
        return "\n".join([*lines, f"linkage doctor: {self.etc}: {verdict}"])


def check_etc(etc: Path) -> None:
    """Refuse what is not an Asterisk etc directory, before reading anything in it."""
    if not etc.is_dir():
        raise NotAsteriskEtc(f"{etc} is not a directory (--asterisk-etc names Asterisk's etc directory, "
                             "e.g. /etc/asterisk)")
    present = [n for n in ("asterisk.conf", "extensions.conf", "modules.conf") if (etc / n).is_file()]
    if "extensions.conf" not in present or len(present) < 2:
        raise NotAsteriskEtc(f"{etc} is not an Asterisk configuration: it lacks "
                             + ", ".join(n for n in ("asterisk.conf", "extensions.conf", "modules.conf")
                                         if n not in present) + " (an Asterisk etc directory has extensions.conf "
                             "and asterisk.conf or modules.conf)")


def asterisk_version(flag: str | None, binary: str | None, root: Path | None) -> tuple[str | None, str]:
    """The version, and where it was read: the flag, `BINARY -V`, the root filesystem's /usr/sbin/asterisk
    (`chroot ROOT asterisk -V` as root, else the version string inside the binary), or `asterisk -V` on PATH."""
    if flag:
        return flag, "--asterisk-version"
    if root is not None:
        path = root / "usr/sbin/asterisk"
        if not path.is_file():
            raise LinkageError(f"--root {root}: there is no usr/sbin/asterisk in it")
        if os.geteuid() == 0:
            return _run_v(["chroot", str(root), "/usr/sbin/asterisk", "-V"]), str(path)
        found = [m.decode() for m in VERSION_IN_BINARY.findall(path.read_bytes())]
        best = max(found, key=lambda v: [int(p) for p in re.findall(r"\d+", v)[:3]], default=None)
        return best, str(path)
    command = binary or shutil.which("asterisk")
    if command is None:
        return None, "asterisk"
    return _run_v([command, "-V"]), command


def _run_v(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = VERSION_OUTPUT.search(out)
    return m.group(1) if m else None


def controller_address(config: SiteConfig, flag: str | None) -> str | None:
    """The address the controller's AMI connection comes from: given, or loopback when AMI is on loopback, or
    the controller's listening address when it names one."""
    if flag:
        return flag
    if config.pbx.ami.host in LOOPBACK:
        return config.pbx.ami.host
    host = config.controller.http.host
    return None if host in WILDCARD else host


def diagnose(etc: Path, config: SiteConfig, *, version: str | None = None, binary: str | None = None,
             root: Path | None = None, controller: str | None = None) -> Report:
    check_etc(etc)
    need = site_needs(config)
    top = Reader(etc, root).read("asterisk.conf")
    # a template [directories](!) (Debian's) is not applied: Asterisk's built-in /etc/asterisk stands
    dirs = next((s for s in top.sections if s.name == "directories" and not s.is_template), None)
    inside = top.value(dirs, "astetcdir") if dirs else None
    reader = Reader(etc, root, inside.value if inside else "/etc/asterisk")
    conf = Conf({name: reader.read(name) for name in sorted({*FILES, *need.includes})})
    found, source = asterisk_version(version, binary, root)
    address = controller_address(config, controller)
    ami = config.pbx.ami
    findings = [*checks.parse_problems(conf), *checks.includes(conf, need),
                *checks.feature_codes(conf, need), *pjsip.endpoints(conf, need),
                *manager.manager(conf, need, ami.username, ami.secret, ami.host, ami.port, address),
                *checks.modules(conf, need), *checks.options(conf), *checks.version(found, source)]
    if address is None:
        findings.append(Finding("manager.conf", 0, "warning", "controller-address",
                                "the controller's address is not known (controller.http.host is a wildcard)",
                                "pass --controller-address so the AMI permit lines can be checked"))
    return Report(str(etc), found, tuple(sorted(findings, key=lambda f: (f.file, f.line))))
