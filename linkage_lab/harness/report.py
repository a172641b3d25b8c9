"""A scenario's result: its failures, the timeline of SIPp, AMI, console and ticket events, and JUnit XML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from linkage_lab.harness.scenario import Scenario

TIMELINE_EVENTS = {"Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BlindTransfer", "Hangup",
                   "DTMFEnd", "MusicOnHoldStart", "AgentCalled"}


@dataclass
class Result:
    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    tickets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ami: dict[str, list[tuple[float, dict[str, str]]]] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self) -> str:
        lines = [f"scenario {self.scenario.name}: {'PASS' if self.ok else 'FAIL'} in {self.duration:.1f}s"]
        start = self.timeline[0][0] if self.timeline else 0.0
        for at, site, text in self.timeline:
            lines.append(f"  +{at - start:7.3f}s  {site:>6}  {text}")
        for f in self.failures:
            lines.append(f"  FAILED: {f}")
        return "\n".join(lines)


def describe_ami(e: dict[str, str]) -> str:
    name = e.get("Event", "")
    chan = e.get("Channel", "")
    extra = {"DialBegin": f"-> {e.get('DestChannel', '')}", "DialEnd": f"-> {e.get('DestChannel', '')} "
             f"{e.get('DialStatus', '')}", "BlindTransfer": f"to {e.get('Extension', '')}@{e.get('Context', '')} "
             f"{e.get('Result', '')}", "Hangup": e.get("Cause-txt", ""), "DTMFEnd": f"digit {e.get('Digit', '')}",
             }.get(name, "")
    return f"AMI {name} {chan} {extra}".rstrip()


def write_junit(results: list[Result], path: str | Path) -> None:
    suite = ET.Element("testsuite", name="linkage-scenarios", tests=str(len(results)),
                       failures=str(sum(1 for r in results if not r.ok)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="scenarios", name=r.scenario.name,
                             time=f"{r.duration:.3f}")
        if not r.ok:
            ET.SubElement(case, "failure", message=r.failures[0]).text = "\n".join(r.failures)
        ET.SubElement(case, "system-out").text = r.report()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(out, encoding="utf-8", xml_declaration=True)
