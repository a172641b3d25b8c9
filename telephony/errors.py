"""Domain errors: each has a stable id, an HTTP status and a message meant for the person who sees it."""

from __future__ import annotations

from typing import Any


class LinkageError(Exception):
    error_id = "linkage_error"
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error_id, "message": self.message, "details": self.details}


class ConfigError(LinkageError):
    error_id = "config_invalid"


class InvalidInput(LinkageError):
    error_id = "invalid_input"
    status = 400


class PayloadTooLarge(LinkageError):
    error_id = "payload_too_large"
    status = 413


class NotFound(LinkageError):
    error_id = "not_found"
    status = 404


class Unauthorized(LinkageError):
    error_id = "unauthorized"
    status = 401


class Conflict(LinkageError):
    error_id = "conflict"
    status = 409


class Forbidden(LinkageError):
    error_id = "forbidden"
    status = 403


class Replayed(LinkageError):
    error_id = "replayed"
    status = 409


class TooManyRequests(LinkageError):
    error_id = "rate_limited"
    status = 429


class Unavailable(LinkageError):
    """A part the request needs (the PBX) is away: the caller may try again."""

    error_id = "unavailable"
    status = 503
