"""structlog set-up: JSON lines, context variables first, then masking and escaping of every value.

Phone numbers and personal names never reach a log line in clear; control characters are escaped so a
caller-supplied string cannot forge a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

PHONE = re.compile(r"(?<![0-9])(\+?[0-9]{3})[0-9]{2,10}([0-9]{2})(?![0-9])")  # 7-15 digits (E.164)
SENSITIVE_KEYS = {"caller", "caller_number", "caller_name", "name", "contact", "address", "content",
                  "callerid", "calleridnum", "calleridname", "connectedlinenum", "connectedlinename"}
ID_KEYS = {"ticket_id", "call_id", "linkedid", "uniqueid", "event_id", "id", "message_id"}  # our own ids
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SEVEN_DIGITS = re.compile(r"[0-9]{7}")  # PHONE needs at least this


def mask_phone(text: str) -> str:
    """Keep the first three and last two digits of any run of 7-15 digits: 13912345678 -> 139******78."""
    if SEVEN_DIGITS.search(text) is None:  # most values (every line's level, event, time): nothing to mask,
        return text  # and this plain search is far cheaper than PHONE's (a seventh of a busy controller's time)
    return PHONE.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - len(m.group(1)) - 2) + m.group(2), text)


def mask_name(text: str) -> str:
    if not text:
        return text
    return text[0] + "*" * min(len(text) - 1, 8) if len(text) > 1 else "*"


def escape(text: str) -> str:
    if text.isprintable():  # no control character (str.isprintable is False for every one of them)
        return text
    return CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _clean(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(str(k).lower(), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(key, v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and key in SENSITIVE_KEYS:
        value = str(value)
    if not isinstance(value, str):
        return value
    if key in ID_KEYS:
        return escape(value)
    if key in SENSITIVE_KEYS:
        if key.endswith("name") or key == "name":
            return escape(mask_name(value))
        if key in ("address", "content"):
            return f"<{len(value)} chars>"
        return escape(mask_phone(value))
    return escape(mask_phone(value))


def mask_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _clean(key.lower(), event_dict[key])
    return event_dict


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # before masking, so exception text is masked too
            mask_processor,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
