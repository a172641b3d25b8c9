"""Tickets at rest: every stored ticket and every queued message is sealed with AES-256-GCM, so the Redis data
and its append-only file hold no caller number, name, address or content in clear.

Keys come from the site config (`storage.keys`, base64 of 32 bytes, newest first). The newest seals; every listed
key opens, so a key is rotated by putting the new one first, letting the controller rewrite what it touches (or
re-saving the open tickets), then dropping the old one. Without keys, data is stored in clear (lab/dev only)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from telephony.errors import ConfigError

PREFIX = "enc:v1:"


class Sealer:
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys: list[tuple[str, AESGCM]] = []
        for i, key in enumerate(keys):
            raw = base64.b64decode(key)
            if len(raw) != 32:
                raise ConfigError(f"storage.keys[{i}] must be base64 of 32 bytes")
            self.keys.append((hashlib.sha256(raw).hexdigest()[:8], AESGCM(raw)))

    def seal(self, text: str) -> str:
        if not self.keys:
            return text
        kid, aead = self.keys[0]
        nonce = os.urandom(12)
        sealed = aead.encrypt(nonce, text.encode(), kid.encode())
        return f"{PREFIX}{kid}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, stored: str | bytes) -> str:
        text = stored.decode() if isinstance(stored, bytes) else stored
        if not text.startswith(PREFIX):
            return text  # written before keys were configured
        kid, _, blob = text[len(PREFIX):].partition(":")
        aead = next((a for k, a in self.keys if k == kid), None)
        if aead is None:
            raise ConfigError(f"stored data is sealed with key {kid}, which is not in storage.keys")
        raw = base64.b64decode(blob)
        try:
            return aead.decrypt(raw[:12], raw[12:], kid.encode()).decode()
        except InvalidTag as exc:
            raise ConfigError(f"stored data sealed with key {kid} does not open: tampered or wrong key") from exc
