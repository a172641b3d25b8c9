"""msgspec's validation errors, said as the project's InvalidInput: the field named, the message for a person.

msgspec reports a path (`$.history[2].actor`) and what it expected; the people who read our 400s expect
"field 'content' is longer than 5000 characters". `translate` turns one into the other; a schema may give a
field its own message (a list's bound, the allowed values) where the generic one would say too little.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import msgspec

from telephony.errors import InvalidInput
from telephony.ids import TEXT

_PATH = re.compile(r" - at `(?:key` in `)?([^`]*)`$")
_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_QUOTED = re.compile(r"`([^`]*)`")
_ENDS_IN_INDEX = re.compile(r"(^\$$)|(\]$)")

Message = str | Callable[[str], str]  # a field's own message, or one made from msgspec's whole text


def field_of(text: str) -> tuple[str | None, str]:
    """(the field an error is about, msgspec's message without the path)."""
    match = _PATH.search(text)
    path = match.group(1) if match else "$"
    detail = text[:match.start()] if match else text
    names = _NAME.findall(path)
    if detail.startswith(("Object contains unknown field", "Object missing required field")):
        # An unknown or missing field of a record (the top level, an event in a list) is that field; of a
        # named sub-object (a ticket's target, an event's actor) it is the sub-object.
        named = _QUOTED.search(detail)
        if _ENDS_IN_INDEX.search(path) and named:
            return named.group(1), detail
    return (names[-1] if names else None), detail


def generic(key: str, detail: str, what: str) -> str:
    if detail.startswith("Object contains unknown field"):
        return f"unknown field {_QUOTED.search(detail).group(1)!r} in {what}"  # type: ignore[union-attr]
    if detail.startswith("Object missing required field"):
        return f"field {key!r} is required"
    if detail.startswith("Expected `str` of length >= 1"):
        return f"field {key!r} is required"
    if detail.startswith("Expected `str` of length <="):
        return f"field {key!r} is longer than {detail.rsplit(' ', 1)[-1]} characters"
    if detail.startswith("Expected `str` matching regex"):
        if repr(TEXT.pattern) in detail:
            return f"field {key!r} contains control characters"
        return f"field {key!r} has an invalid format"
    if detail.startswith("Expected `str`"):
        return f"field {key!r} must be a string"
    if detail.startswith("Expected `int`"):
        return f"field {key!r} must be a non-negative integer"
    if detail.startswith("Expected `object`"):
        return f"field {key!r} must be an object"
    if detail.startswith("Expected `array`"):
        return f"field {key!r} must be a list"
    return f"field {key!r}: {detail[0].lower()}{detail[1:]}"


def translate(exc: msgspec.ValidationError, what: str, messages: Mapping[str, Message] | None = None,
              top: str | None = None) -> InvalidInput:
    """The InvalidInput for a failed decode of `what` (a ticket, an event, …). `top` is said when the input is
    not an object at all."""
    key, detail = field_of(str(exc))
    if key is None:
        return InvalidInput(top or f"{what} must be a JSON object")
    own = (messages or {}).get(key)
    if own is None:
        path = _PATH.search(str(exc))
        where = what if path is None or path.group(1) == "$" else f"{what} at {path.group(1)}"
        return InvalidInput(generic(key, detail, where), field=key)
    return InvalidInput(own_message(own, str(exc)), field=key)


def own_message(own: Message, text: str) -> str:
    return own if isinstance(own, str) else own(text)
