"""The TLS contexts of a site, built at start from the files its configuration names (reading them is I/O,
which parsing the configuration does not do). A file that is missing or does not load is a ConfigError naming
the key and the file, as any other configuration error."""

from __future__ import annotations

import ssl

import msgspec

from telephony.config.load import fail
from telephony.config.schema import SiteConfig
from telephony.security.tls import TlsFileError, client_context, server_context


class SiteTls(msgspec.Struct, frozen=True):
    peers: dict[str, ssl.SSLContext]  # per https:// peer (by name): its CA, our client certificate
    listener: ssl.SSLContext | None = None  # controller.http.tls, when set


def build_tls(config: SiteConfig) -> SiteTls:
    peers = {}
    for i, peer in enumerate(config.peers):
        if peer.tls is None:
            continue
        try:
            peers[peer.name] = client_context(peer.tls.ca, peer.tls.cert, peer.tls.key)
        except TlsFileError as exc:
            raise fail(config.source_file, f"peers[{i}].tls.{exc.key}", exc.problem) from exc
    tls = config.controller.http.tls
    listener = None
    if tls is not None:
        try:
            listener = server_context(tls.cert, tls.key, tls.client_ca)
        except TlsFileError as exc:
            raise fail(config.source_file, f"controller.http.tls.{exc.key}", exc.problem) from exc
    return SiteTls(peers, listener)
