"""Smoke of the AMI ingestion benchmark on the first few hundred events of a recorded transcript: every event
reaches both paths, every queued event passes the handlers, Redis is touched only by the prepared transfers'
reservations (a write per agent leg bridged, a drop per hang-up). No timing is asserted."""

from __future__ import annotations

from pathlib import Path

from panoramisk.message import Message

from linkage_lab.bench import ami_ingest
from telephony.ami.session import event_dict


async def test_both_paths_see_every_event_of_the_transcript(redis_url: str, tmp_path: Path) -> None:
    data = ami_ingest.load(ami_ingest.TRANSCRIPTS["12345"], max_events=300)
    events, queued = ami_ingest.expected(data)
    assert events == 300 and queued > 0
    result = await ami_ingest.measure(data, 2, redis_url, str(tmp_path))
    assert result["bare"]["events"] == [300, 300]
    assert result["controller"]["events"] == [300, 300]
    assert result["controller"]["handled"] == [queued, queued]
    bridges = data.count(b"Event: BridgeEnter")
    assert 0 < result["redis_commands_during_runs"] <= 2 * 4 * bridges  # reserve + drop (a pipeline: 3), twice


def test_event_dict_matches_the_plain_conversion() -> None:
    data = ami_ingest.load(ami_ingest.TRANSCRIPTS["110"], max_events=200).decode()
    messages = [Message.from_line(block.strip()) for block in data.split("\r\n\r\n")]
    repeated = Message({"Event": "VarSet", "ChanVariable": ["A=1", "B=2"], "Uniqueid": "x.1"})
    for m in [*[m for m in messages if m is not None], repeated]:
        assert event_dict(m) == {str(k): str(v) for k, v in m.items() if isinstance(v, str)}
    assert "ChanVariable" not in event_dict(repeated)


def test_markdown_section_is_replaced_not_duplicated(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nlatency\n\n## Soak\n\nsoak text\n")
    report = {"command": "python -m linkage_lab.bench.ami_ingest", "date": "20260101T000000Z", "repeat": 1,
              "machine": {"cpu": "cpu", "nproc": "2", "kernel": "k", "python": "3", "panoramisk": "1.4",
                          "commit": "abc"},
              "sites": {"110": {"events_in_transcript": 1, "redis_commands_during_runs": 0,
                                "ratio_controller_over_bare_events_per_s": 0.5,
                                **{p: {"events_per_s_median": 1.0, "us_per_event_median": 1.0,
                                       "cpu_us_per_event_median": 1.0} for p in ("bare", "controller")}}}}
    ami_ingest.write_markdown(report, path)
    ami_ingest.write_markdown(report, path)
    text = path.read_text()
    assert text.count(ami_ingest.HEADING) == 1 and "soak text" in text and text.startswith("# Benchmarks")
