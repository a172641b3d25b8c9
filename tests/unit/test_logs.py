"""Log masking: phone numbers and names never in clear, text reduced to a length, control characters
escaped."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from telephony.logs import configure, mask_phone, mask_processor


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure("debug", stream=out)
    structlog.contextvars.clear_contextvars()
    yield out
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    return [json.loads(line) for line in text.splitlines()]


def process(**event: Any) -> dict[str, Any]:
    return dict(mask_processor(None, "info", dict(event)))


@pytest.mark.parametrize("text, masked", [
    ("13912345678", "139******78"),
    ("call from 13912345678 now", "call from 139******78 now"),
    ("+8613912345678", "+861********78"),
    ("0537-2345678", "0537-234**78"),
    ("1234567", "123**67"),
    ("123456789012345", "123**********45"),
])
def test_mask_phone_keeps_three_and_two(text: str, masked: str) -> None:
    assert mask_phone(text) == masked


@pytest.mark.parametrize("text", ["37080020260101120000123456", "ticket 37080020260101120000123456 created",
                                  "110", "12345", "123456", "1234567890123456", "dial 110*8", ""])
def test_mask_phone_leaves_ids_and_short_numbers(text: str) -> None:
    assert mask_phone(text) == text


def test_processor_masks_caller_fields() -> None:
    out = process(caller_number="13912345678", caller_name="张三丰", CallerIDNum="13800000001",
                  ConnectedLineName="Zhang San")
    assert out["caller_number"] == "139******78"
    assert out["caller_name"] == "张**"
    assert out["CallerIDNum"] == "138******01"
    assert out["ConnectedLineName"] == "Z********"  # first letter and at most 8 stars


def test_processor_reduces_content_and_address_to_a_length() -> None:
    out = process(content="my number is 13912345678, call me", address="1 Main St\r\nFake: line")
    assert out["content"] == "<33 chars>"
    assert out["address"] == "<21 chars>"


def test_processor_masks_phones_in_any_string_and_nested_values() -> None:
    out = process(event="caller 13912345678 hung up", detail={"Caller": "13912345678", "ok": 1},
                  legs=["13800000001", "110"])
    assert out["event"] == "caller 139******78 hung up"
    assert out["detail"] == {"Caller": "139******78", "ok": 1}
    assert out["legs"] == ["138******01", "110"]


def test_processor_leaves_ids_readable() -> None:
    out = process(ticket_id="37080020260101120000123456", call_id="1767268800.12", uniqueid="1767268800.13",
                  linkedid="1767268800.12", count=3)
    assert out == {"ticket_id": "37080020260101120000123456", "call_id": "1767268800.12",
                   "uniqueid": "1767268800.13", "linkedid": "1767268800.12", "count": 3}
    # a delivery message id is hex and can hold a run of digits that looks like a phone number
    assert process(message_id="event-d2fdb20ffa5745fa8861234567888e0e")["message_id"] == \
        "event-d2fdb20ffa5745fa8861234567888e0e"


@pytest.mark.parametrize("key", ["event", "error", "caller_name", "ticket_id", "reason", "caller_number"])
def test_processor_escapes_cr_lf_in_any_value(key: str) -> None:
    value = process(**{key: "a\r\nb"})[key]
    assert "\n" not in value and "\r" not in value
    assert "\\x0a" in value or key == "caller_name"  # a name keeps only its first letter


def test_processor_escapes_control_characters() -> None:
    assert process(error="a\r\nb\x00c\x1b[2J\x7f")["error"] == "a\\x0d\\x0ab\\x00c\\x1b[2J\\x7f"
    assert process(ticket_id="1\n{\"level\":\"error\"}")["ticket_id"] == '1\\x0a{"level":"error"}'


def test_configured_logger_writes_masked_single_json_lines(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(call_id="1767268800.12", caller_number="13912345678")
    log = structlog.get_logger("test")
    log.info("agi.request\nforged: line", caller_name="Zhang", content="hello", reason="x\r\ny")
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "13912345678" not in text and "Zhang" not in text and "hello" not in text
    [line] = lines(stream)
    assert line["event"] == "agi.request\\x0aforged: line"
    assert line["call_id"] == "1767268800.12"
    assert line["caller_number"] == "139******78"  # context variables are masked too
    assert line["caller_name"] == "Z****"
    assert line["content"] == "<5 chars>"
    assert line["reason"] == "x\\x0d\\x0ay"
    assert line["level"] == "info"
    assert "timestamp" in line


def test_configured_level_filters(stream: io.StringIO) -> None:
    configure("warning", stream=stream)
    log = structlog.get_logger("test")
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_exception_text_is_masked(stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    try:
        raise ValueError("no route for caller 13912345678\nforged: line")
    except ValueError:
        log.exception("agi.crashed")
    assert "13912345678" not in stream.getvalue()
    [line] = lines(stream)
    assert "ValueError: no route for caller 139******78\\x0aforged: line" in line["exception"]
    assert "Traceback" in line["exception"]
    assert "\n" not in line["exception"]  # the traceback is escaped onto the one line


@pytest.mark.parametrize("key, value, masked", [("caller_number", 13912345678, "139******78"),
                                                ("CallerIDNum", 8613912345678, "861********78"),
                                                ("contact", 13800000001, "138******01"),
                                                ("caller_name", 42, "4*")])
def test_numeric_values_under_sensitive_keys_are_masked(key: str, value: int, masked: str) -> None:
    assert process(**{key: value})[key] == masked


def test_numbers_under_other_keys_stay_numbers() -> None:
    assert process(count=13912345678, ok=True, ratio=0.5, caller_number=True) == {
        "count": 13912345678, "ok": True, "ratio": 0.5, "caller_number": True}
