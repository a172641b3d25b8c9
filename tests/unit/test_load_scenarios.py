"""The load bench's SIPp agents answer a PBX's retransmissions instead of failing the call (SIPp against SIPp
on loopback, no lab): the strict scenarios of the test suite abort on them. The agent who is rung and not
picked up answers the queue's CANCEL, so the PBX does not retransmit its INVITE into the void."""

from __future__ import annotations

import shutil
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

from linkage_lab.bench.load import SIPP, _stats
from linkage_lab.harness.scenario import fill_sipp

PBXES = Path(__file__).resolve().parents[1] / "scenarios" / "sipp"
PARAMS = {"load_far.xml": {"ring": "100", "linger": "2000"},
          "load_agent.xml": {"talk": "300", "keys_pcap": "/usr/share/sip-tester/dtmf_2833_1.pcap",
                             "linger": "2000"},
          "load_ring.xml": {"linger": "500"}}
PBX = {"load_far.xml": "pbx_retransmits.xml", "load_agent.xml": "pbx_retransmits.xml",
       "load_ring.xml": "pbx_cancels.xml"}


def udp_blocks(n: int) -> list[int]:
    """`n` free UDP ports, each with its next three free too and at least 4 apart: a SIPp media port `-mp P`
    binds P and P + 2, and two roles' ports must not overlap."""
    found: list[int] = []
    while len(found) < n:
        with ExitStack() as held:
            first = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                for extra in range(1, 4):
                    held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind(
                        ("127.0.0.1", port + extra))
            except OSError:
                continue
        if port + 3 < 65536 and all(abs(port - other) >= 4 for other in found):
            found.append(port)
    return found


@pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp is not installed")
@pytest.mark.parametrize("scenario", sorted(PARAMS))
def test_an_agent_takes_a_retransmitted_invite_and_bye_or_a_cancel(tmp_path: Path, scenario: str) -> None:
    if not Path(PARAMS[scenario].get("keys_pcap", "/")).exists():
        pytest.skip("SIPp's DTMF pcaps are not installed")
    agent_port, pbx_port, agent_media, pbx_media = udp_blocks(4)
    common = ["-i", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error", "-trace_stat"]
    agent = subprocess.Popen(["sipp", "-sf", str(fill_sipp(SIPP / scenario, PARAMS[scenario], tmp_path)),
                              "-p", str(agent_port), "-mp", str(agent_media), "-stf", "agent.csv", *common],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pbx = subprocess.run(["sipp", f"127.0.0.1:{agent_port}", "-sf", str(PBXES / PBX[scenario]), "-nr",
                              "-p", str(pbx_port), "-mp", str(pbx_media), "-stf", "pbx.csv", *common], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20, check=False)
        assert agent.wait(timeout=20) == 0
    finally:
        if agent.poll() is None:
            agent.kill()  # ours: by pid
            agent.wait()
    assert pbx.returncode == 0  # every request it sent was answered as it expects
    stats = _stats(tmp_path / "agent.csv")
    assert stats["SuccessfulCall"] == 1 and stats["FailedCall"] == 0

