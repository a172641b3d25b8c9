"""TLS between sites: the client context for one peer and the server context for the peer listener.

Both are built once, when the site config is loaded, so a missing, unreadable or mismatched file stops the start
with an error naming the key instead of failing the first transfer. TLS 1.2 is the floor on both sides. The
HMAC signatures stay on: TLS hides the traffic and, with client certificates, refuses strangers before any
request is read; the signature still says which site wrote each message.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFileError(Exception):
    """A TLS file named under `key` (relative to its tls mapping) is missing or does not load."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def client_context(ca: str = "", cert: str = "", key: str = "") -> ssl.SSLContext:
    """Verify the peer's server certificate and host name against `ca` (else the system store); present our
    certificate when the peer asks for one (mutual TLS)."""
    if ca:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks the chain and host name; trusts `ca` only
        _load_ca(context, "ca", ca)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert or key:
        _cert_chain(context, cert, key)
    return context


def server_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """Serve `cert`; with `client_ca`, refuse every client whose certificate that CA did not sign."""
    # Not create_default_context: it would load the system store, and any publicly signed certificate would
    # then pass as a client.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _cert_chain(context, cert, key)
    if client_ca:
        _load_ca(context, "client_ca", client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _readable(key: str, path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise TlsFileError(key, f"{path} does not exist or is not a file")
    try:
        p.open("rb").close()
    except OSError as exc:
        raise TlsFileError(key, f"{path} cannot be read: {exc.strerror}") from exc


def _load_ca(context: ssl.SSLContext, key: str, path: str) -> None:
    _readable(key, path)
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsFileError(key, f"{path} holds no usable PEM CA certificate ({_reason(exc)})") from exc


def _cert_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    if not cert or not key:
        raise TlsFileError("cert" if not cert else "key", "cert and key go together: give both or neither")
    _readable("cert", cert)
    _readable("key", key)
    try:
        # An encrypted key would make OpenSSL prompt on the terminal; an empty password fails it instead.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise TlsFileError("cert", f"{cert} with key {key} does not load as a PEM certificate and its "
                                   f"unencrypted private key ({_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else exc.__class__.__name__
