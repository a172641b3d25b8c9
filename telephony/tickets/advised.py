"""The ticket's `advice` (智能转办 record): what the scope advisor suggested for the ticket's content when the
agent transferred it, and whether the agent did that — read by the quarterly review. Part of the ticket schema
(docs/ticket-schema.md); declared here to keep models.py within its size."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from telephony import ids

ClauseId = Annotated[str, Meta(pattern=r"^[a-z0-9_.-]{1,80}$")]
Version = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]


class Advised(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    platform: Literal["110", "12345", "other"]
    category: Annotated[str, Meta(pattern=ids.CATEGORY.pattern)]
    clause: ClauseId  # the annex line's id in the scope catalogue
    confidence: Annotated[float, Meta(ge=0, le=1)]
    danger: bool
    suggest_threeway: bool
    followed: bool  # the agent sent it where advised (or into the suggested three-way call)
    catalogue: Version  # the scope catalogue's version
    model: Version
