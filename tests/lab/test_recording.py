"""One recording per call: made on the caller's channel from the first answer, referenced on the ticket, and it
keeps growing across a three-way call (the caller's channel moves, the recording goes with it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def test_three_way_call_has_one_recording_on_the_ticket(desc: dict[str, Any]) -> None:
    result = run_scenario(load(SCENARIOS / "threeway_local_accepts.yaml"), desc)
    assert result.ok, result.report()
    ticket = result.tickets["12345"][0]
    assert ticket["recording"].startswith("linkage-pbx12345-") and ticket["recording"].endswith(".wav")
    assert result.tickets["110"][0]["recording"] == ticket["recording"]  # the far side knows where it is
    path = Path(desc["sites"]["12345"]["dir"]) / "spool" / "monitor" / ticket["recording"]
    deadline = time.time() + 5
    while time.time() < deadline and not path.exists():
        time.sleep(0.1)
    assert path.exists() and path.stat().st_size > 8000 * 2  # over a second of 8 kHz 16-bit audio
    # still written after the conference phase: the 110 agent's leg left the conference before the caller hung up
    left = next(at for at, e in result.ami["12345"]
                if e.get("Event") == "ConfbridgeLeave" and e.get("Channel", "").startswith("Local/"))
    assert path.stat().st_mtime >= left
