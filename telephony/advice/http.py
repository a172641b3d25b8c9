"""HTTP adapter of scope advice: POST /v1/advice {content, category?} → the advice (services.py `Advice`).

The console asks as the agent types, so the body is small and bounded: content at most MAX_CONTENT characters
(the ticket's own limit) — any Unicode, nothing is stored or echoed into markup — and a category only from the
catalogue. An agent's token or the site's may ask (the middleware checks which)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from telephony.advice.services import AdviceService
from telephony.errors import InvalidInput, PayloadTooLarge
from telephony.http_request import read_json

MAX_CONTENT = 5000  # characters: the ticket's content limit (tickets/models.py Text5000)


class AdviceRequest(msgspec.Struct, forbid_unknown_fields=True):
    content: str
    category: Annotated[str, Meta(max_length=32)] = ""


class AdviceHttp:
    def __init__(self, advice: AdviceService | None) -> None:
        """`advice` None: the built-in catalogue and model, loaded at the first request (an app built for a test
        of other routes does not pay for jieba's dictionary)."""
        self._advice = advice

    @property
    def advice(self) -> AdviceService:
        if self._advice is None:
            self._advice = AdviceService.build()
        return self._advice

    async def advise(self, request: web.Request) -> web.Response:
        body = parse(await read_json(request))  # 413 past MAX_BODY (64 KiB: 5000 characters as \u escapes fit)
        if len(body.content) > MAX_CONTENT:
            raise PayloadTooLarge(f"field 'content' is longer than {MAX_CONTENT} characters", field="content",
                                  limit=MAX_CONTENT)
        if body.category and body.category not in self.advice.catalogue.names:
            raise InvalidInput(f"field 'category' must be one of {', '.join(self.advice.catalogue.names)} (or empty)",
                               field="category")
        if not body.content.strip():
            raise InvalidInput("field 'content' is empty: type what the caller says", field="content")
        return web.json_response(msgspec.to_builtins(self.advice.advise(body.content, body.category)))


def parse(data: object) -> AdviceRequest:
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object {content, category?}")
    try:
        return msgspec.convert(data, AdviceRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = "category" if "category" in text else "content" if "content" in text else ""
        message = {"category": "field 'category' must be a category key (at most 32 characters)",
                   "content": "field 'content' (text) is required"}.get(field, "the body is {content, category?}")
        raise InvalidInput(message, field=field) if field else InvalidInput(message) from exc
