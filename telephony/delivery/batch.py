"""The batch form of peer delivery (POST /v1/batch), shared by the sender and the receiver.

A batch carries queued messages in outbox order, each under the message id a single request would have been
signed with (`ticket-<id>-<version>`, `event-<event id>`): the receiver keeps its replay memory per message id,
so a message is processed once whether it came alone or in a batch. Each result is the HTTP status the single
route would have answered; what that status means for the sender (delivered, refused for good, retry later)
is decided here, once, for both sides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telephony.errors import InvalidInput
from telephony.ids import BATCH_MESSAGE_ID

MAX_MESSAGES = 100
RETRIABLE_4XX = (404, 408, 409, 425, 429)  # the peer may know better later: everything else 4xx is for good
DELIVERED_409 = ("replayed", "duplicate")  # an earlier attempt got through; its answer was lost


def message_id(message: dict[str, Any]) -> str:
    """The id a message is signed (single) or listed (batch) under: the same on every retry."""
    body = message["body"]
    if message.get("kind") == "ticket":
        return f"ticket-{body['id']}-{body.get('version', 0)}"
    return f"event-{body['id']}"


def delivered(status: int, error: str | None) -> bool:
    return status < 300 or (status == 409 and error in DELIVERED_409)


def retriable(status: int, error: str | None) -> bool:
    return not delivered(status, error) and (status in RETRIABLE_4XX or status >= 500)


@dataclass(frozen=True)
class Outgoing:
    """One queued message in batch form, encoded once: its size decides how many fit in a request."""

    id: str
    data: bytes

    @classmethod
    def of(cls, message: dict[str, Any]) -> Outgoing:
        mid = message_id(message)
        item = {"id": mid, "kind": message["kind"], "body": message["body"]}
        return cls(mid, json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())


def encode(items: Sequence[Outgoing]) -> bytes:
    return b'{"messages":[' + b",".join(i.data for i in items) + b"]}"


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Result:
    id: str
    status: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, **({"error": self.error} if self.error else {})}


def parse(data: Any) -> list[Item]:
    """The receiver's strict reading of a batch body; anything malformed refuses the whole batch (400) before
    a single message is looked at. A message whose body is wrong in content gets its own 400 in the results."""
    if not isinstance(data, dict) or set(data) != {"messages"} or not isinstance(data["messages"], list):
        raise InvalidInput('body is {"messages": [{"id", "kind", "body"}, …]}')
    messages = data["messages"]
    if not 1 <= len(messages) <= MAX_MESSAGES:
        raise InvalidInput(f"a batch has 1 to {MAX_MESSAGES} messages", count=len(messages))
    return [_item(i, m) for i, m in enumerate(messages)]


def _item(index: int, m: Any) -> Item:
    if not isinstance(m, dict) or set(m) != {"id", "kind", "body"}:
        raise InvalidInput("each message is exactly {id, kind, body}", index=index)
    mid, kind, body = m["id"], m["kind"], m["body"]
    if kind not in ("ticket", "event") or not isinstance(body, dict):
        raise InvalidInput("kind is ticket or event, and body an object", index=index)
    # The id must be the one the body implies: a sender cannot spend the replay memory of another message.
    if not isinstance(mid, str) or not BATCH_MESSAGE_ID.match(mid) or not _implied(mid, kind, body):
        raise InvalidInput("id is not the message id its body implies", index=index)
    return Item(mid, kind, body)


def _implied(mid: str, kind: str, body: dict[str, Any]) -> bool:
    version = body.get("version", 0)
    if kind == "ticket" and (type(version) is not int or not isinstance(body.get("id"), str)):
        return False
    if kind == "event" and not isinstance(body.get("id"), str):
        return False
    return mid == message_id({"kind": kind, "body": body})


def parse_results(data: Any, sent: Sequence[Outgoing]) -> list[Result]:
    """The sender's reading of a 200 answer: a prefix of what was sent, in the same order. Raises ValueError
    when the answer is not that (a peer speaking another protocol on this route)."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) > len(sent):
        raise ValueError("the answer to a batch is not a list of results no longer than the batch")
    out = []
    for result, item in zip(results, sent, strict=False):
        if not isinstance(result, dict) or result.get("id") != item.id:
            raise ValueError("the results of a batch are not in the order it was sent")
        status, error = result.get("status"), result.get("error")
        if type(status) is not int or not 100 <= status <= 599 or not (error is None or isinstance(error, str)):
            raise ValueError("a batch result needs an HTTP status and at most an error id")
        out.append(Result(item.id, status, error[:60] if error else None))
    return out
