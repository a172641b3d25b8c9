"""TLS and mutual TLS between sites: a throwaway CA, a real 110 listener (the real API app on Redis) and the
real 12345 PeerClient; wrong or missing certificates are refused as a retriable unreachable peer; bad TLS config
is refused at load time with the key and the file named."""

from __future__ import annotations

import contextlib
import copy
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from linkage_lab.lab.lab import PLANS, Lab
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.calls.registry import CallRegistry
from telephony.config import SiteConfig, build_tls, parse_site_config
from telephony.controller import http_site
from telephony.delivery.client import PeerClient, PeerError
from telephony.errors import ConfigError
from telephony.security.sealing import Sealer
from telephony.threeway.services import ThreewayService
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.models import Event, Party, Ticket, new_event_id, now_iso
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.sending import SendingService

REDIS_DB = 9  # the unit conftest's `redis` fixture gives this database, emptied
TID = "37080020260101120000654321"


# ---- a throwaway PKI -----------------------------------------------------------------------------------

@dataclass
class Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _certificate(subject: str, issuer: Issuer | None, usage: x509.ObjectIdentifier | None
                 ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer = issuer or Issuer(name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(signer.name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()),
                              critical=False))
    if usage is None:  # a CA
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer.key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem signs server.pem (127.0.0.1) and client.pem; rogue-ca.pem signs rogue-server.pem and
    rogue-client.pem. Each certificate's key sits next to it as .key."""
    directory = tmp_path_factory.mktemp("pki")
    for prefix in ("", "rogue-"):
        ca_cert, ca_key = _certificate(f"{prefix}linkage test CA", None, None)
        _write(directory, f"{prefix}ca", ca_cert, ca_key)
        issuer = Issuer(ca_cert.subject, ca_key)
        _write(directory, f"{prefix}server", *_certificate("110 controller", issuer, ExtendedKeyUsageOID.SERVER_AUTH))
        _write(directory, f"{prefix}client", *_certificate("12345 controller", issuer,
                                                           ExtendedKeyUsageOID.CLIENT_AUTH))
    return directory


# ---- the two sites ---------------------------------------------------------------------------------------

def _port() -> int:
    """A free port outside 15000-35999, which the lab owns."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not 15000 <= port <= 35999:
            return port


def _raw(tmp_path: Path, site: str) -> dict[str, Any]:
    return copy.deepcopy(Lab(rootfs=str(tmp_path)).site_raw(PLANS[site]))


def _listener_config(tmp_path: Path, pki: Path, server: str = "server", client_ca: str | None = "ca") -> SiteConfig:
    raw = _raw(tmp_path, "110")
    port = _port()
    raw["controller"]["http"] = {"host": "127.0.0.1", "port": port,
                                 "tls": {"cert": str(pki / f"{server}.pem"), "key": str(pki / f"{server}.key"),
                                         **({"client_ca": str(pki / f"{client_ca}.pem")} if client_ca else {})}}
    raw["controller"]["public_url"] = f"https://127.0.0.1:{port}"
    return parse_site_config(raw, str(tmp_path / "110.yaml"))


def _sender_config(tmp_path: Path, listener: SiteConfig, tls: dict[str, str] | None) -> SiteConfig:
    raw = _raw(tmp_path, "12345")
    peer = next(p for p in raw["peers"] if p["name"] == "110")
    peer["url"] = listener.controller.public_url
    if tls is not None:
        peer["tls"] = tls
    return parse_site_config(raw, str(tmp_path / "12345.yaml"))


@dataclass
class Desk:
    """The 110 site: its config, its ticket service on Redis, its real API listening."""

    config: SiteConfig
    tickets: TicketService


async def _no_pbx(action: dict[str, str]) -> Any:
    raise AssertionError(f"no AMI action expected here: {action}")


@contextlib.asynccontextmanager
async def _serve(config: SiteConfig, redis: aioredis.Redis) -> AsyncIterator[Desk]:
    store = TicketStore(redis, Sealer(config.storage.keys))
    tickets = TicketService(config, store, TicketHooks())
    calls = CallRegistry()
    transfers = SendingService(config, calls, tickets, _no_pbx)
    app = build_app(config, tickets=tickets, transfers=transfers,
                    threeway=ThreewayService(config, calls, tickets, transfers, None), returns=None,  # type: ignore[arg-type]
                    calls=calls,
                    hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()),
                    health=_healthy, redis=redis,
                    sealer=store.sealer, wake=lambda peer: None)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await http_site(runner, config, build_tls(config)).start()
    try:
        yield Desk(config, tickets)
    finally:
        await runner.cleanup()


async def _healthy() -> dict[str, Any]:
    return {"ok": True}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _ticket_message() -> dict[str, Any]:
    created = Event(new_event_id(), TID, "created", now_iso(), {"platform": "12345", "site": "12345"}, seq=1)
    ticket = Ticket(id=TID, direction="12345->110", source=Party("12345", "12345"), target=Party("110", "110"),
                    caller_number="13912345678", agent_id="1001", linkedid="1.1", uniqueids=[], created_at=now_iso(),
                    version=1, history=[created], path=["12345", "110"])
    return {"kind": "ticket", "body": ticket.to_dict()}


def _client(session: aiohttp.ClientSession, sender: SiteConfig) -> PeerClient:
    peer = sender.peer("110")
    assert peer is not None
    return PeerClient(session, peer, sender.site.name, timeout=5.0, ssl_context=build_tls(sender).peers.get("110"))


# ---- over the wire -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mutual", [True, False])
async def test_a_ticket_pushed_over_tls_reaches_the_peer_and_can_be_fetched_back(
        tmp_path: Path, pki: Path, redis: aioredis.Redis, session: aiohttp.ClientSession, mutual: bool) -> None:
    listener = _listener_config(tmp_path, pki, client_ca="ca" if mutual else None)
    ours = {"ca": str(pki / "ca.pem")}
    if mutual:
        ours |= {"cert": str(pki / "client.pem"), "key": str(pki / "client.key")}
    client = _client(session, _sender_config(tmp_path, listener, ours))
    assert client.peer.url.startswith("https://")
    async with _serve(listener, redis) as desk:
        await client.send(_ticket_message())
        stored = await desk.tickets.store.get(TID)
        assert stored is not None and stored.caller_number == "13912345678"
        fetched = await client.fetch_ticket(f"{client.peer.url}/v1/tickets/{TID}")
        assert fetched["id"] == TID


@pytest.mark.parametrize("ours", [None, "rogue-client"], ids=["no client cert", "client cert of another CA"])
async def test_mutual_tls_refuses_a_client_without_the_right_certificate(
        tmp_path: Path, pki: Path, redis: aioredis.Redis, session: aiohttp.ClientSession, ours: str | None) -> None:
    listener = _listener_config(tmp_path, pki, client_ca="ca")
    tls = {"ca": str(pki / "ca.pem")}
    if ours:
        tls |= {"cert": str(pki / f"{ours}.pem"), "key": str(pki / f"{ours}.key")}
    client = _client(session, _sender_config(tmp_path, listener, tls))
    async with _serve(listener, redis) as desk:
        with pytest.raises(PeerError) as info:
            await client.send(_ticket_message())
        assert str(info.value).startswith("peer unreachable: ")
        assert not info.value.permanent and not info.value.not_found  # the outbox retries it
        assert await desk.tickets.store.get(TID) is None
        with pytest.raises(PeerError) as fetch:
            await client.fetch_ticket(f"{client.peer.url}/v1/tickets/{TID}")
        assert not fetch.value.permanent


@pytest.mark.parametrize("trust", ["ca", "system"])
async def test_a_server_certificate_from_an_unknown_ca_is_refused(
        tmp_path: Path, pki: Path, redis: aioredis.Redis, session: aiohttp.ClientSession, trust: str) -> None:
    listener = _listener_config(tmp_path, pki, server="rogue-server", client_ca=None)
    client = _client(session, _sender_config(tmp_path, listener, {"ca": str(pki / "ca.pem")} if trust == "ca"
                                              else None))
    async with _serve(listener, redis) as desk:
        with pytest.raises(PeerError, match=r"peer unreachable: .*TLS certificate verify failed") as info:
            await client.send(_ticket_message())
        assert not info.value.permanent
        assert await desk.tickets.store.get(TID) is None


async def test_a_plain_http_client_gets_nothing_from_a_tls_listener(
        tmp_path: Path, pki: Path, redis: aioredis.Redis, session: aiohttp.ClientSession) -> None:
    listener = _listener_config(tmp_path, pki, client_ca=None)
    async with _serve(listener, redis):
        with pytest.raises(aiohttp.ClientError):
            async with session.get(listener.controller.public_url.replace("https", "http") + "/v1/health",
                                   timeout=aiohttp.ClientTimeout(total=5)) as resp:
                await resp.read()


# ---- configuration -------------------------------------------------------------------------------------

def _config_error(tmp_path: Path, site: str, change: Callable[[dict[str, Any]], None]) -> ConfigError:
    raw = _raw(tmp_path, site)
    change(raw)
    source = str(tmp_path / f"{site}.yaml")
    with pytest.raises(ConfigError) as info:
        build_tls(parse_site_config(raw, source))  # the files are read when the contexts are built, at start
    assert info.value.details["file"] == source
    return info.value


def _peer(raw: dict[str, Any]) -> dict[str, Any]:
    peer: dict[str, Any] = raw["peers"][0]
    peer["url"] = peer["url"].replace("http://", "https://")
    return peer


def test_an_https_peer_without_a_tls_mapping_verifies_against_the_system_store(tmp_path: Path) -> None:
    raw = _raw(tmp_path, "12345")
    _peer(raw)
    config = parse_site_config(raw, str(tmp_path / "12345.yaml"))
    tls = config.peers[0].tls
    assert tls is not None and (tls.ca, tls.cert) == ("", "")
    context = build_tls(config).peers["110"]
    assert context.check_hostname and context.minimum_version.name == "TLSv1_2"
    assert parse_site_config(_raw(tmp_path, "12345"), "lab").peers[0].tls is None  # http://: no TLS


def test_relative_paths_are_read_from_the_config_file_directory(tmp_path: Path, pki: Path) -> None:
    raw = _raw(tmp_path, "12345")
    _peer(raw)["tls"] = {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}
    tls = parse_site_config(raw, str(pki / "site.yaml")).peers[0].tls
    assert tls is not None and tls.ca == str(pki / "ca.pem")


@pytest.mark.parametrize(("tls", "key", "problem"), [
    ({"ca": "/nonexistent/ca.pem"}, "peers[0].tls.ca", "/nonexistent/ca.pem does not exist"),
    ({"cert": "{pki}/client.pem"}, "peers[0].tls.key", "cert and key go together"),
    ({"key": "{pki}/client.key"}, "peers[0].tls.cert", "cert and key go together"),
    ({"ca": "{pki}/client.key"}, "peers[0].tls.ca", "holds no usable PEM CA certificate"),
    ({"cert": "{pki}/client.pem", "key": "{pki}/server.key"}, "peers[0].tls.cert", "does not load"),
    ({"ca": "{pki}/ca.pem", "crt": "x"}, "peers[0].tls.crt", "unknown key"),
    ("yes", "peers[0].tls", "must be a mapping"),
])
def test_peer_tls_errors_name_the_key(tmp_path: Path, pki: Path, tls: Any, key: str, problem: str) -> None:
    if isinstance(tls, dict):
        tls = {k: v.format(pki=pki) for k, v in tls.items()}
    err = _config_error(tmp_path, "12345", lambda raw: _peer(raw).__setitem__("tls", tls))
    assert err.details["key"] == key
    assert problem in err.message and err.message.startswith(f"{tmp_path / '12345.yaml'}: {key}: ")


def test_tls_on_an_http_peer_url_is_refused(tmp_path: Path, pki: Path) -> None:
    err = _config_error(tmp_path, "12345", lambda raw: raw["peers"][0].__setitem__("tls", {"ca": str(pki / "ca.pem")}))
    assert err.details["key"] == "peers[0].tls"
    assert "is http://: use an https:// url for TLS" in err.message


@pytest.mark.parametrize(("tls", "key", "problem"), [
    ({"cert": "{pki}/server.pem"}, "controller.http.tls.key", "needs both cert and key"),
    ({"key": "{pki}/server.key"}, "controller.http.tls.cert", "needs both cert and key"),
    ({"cert": "/nonexistent/s.pem", "key": "{pki}/server.key"}, "controller.http.tls.cert", "does not exist"),
    ({"cert": "{pki}/server.pem", "key": "{pki}/server.key", "client_ca": "/nonexistent/ca.pem"},
     "controller.http.tls.client_ca", "does not exist"),
    ({"cert": "{pki}/server.pem", "key": "{pki}/client.key"}, "controller.http.tls.cert", "does not load"),
])
def test_listener_tls_errors_name_the_key(tmp_path: Path, pki: Path, tls: dict[str, str], key: str,
                                          problem: str) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["controller"]["http"]["tls"] = {k: v.format(pki=pki) for k, v in tls.items()}
        raw["controller"]["public_url"] = raw["controller"]["public_url"].replace("http://", "https://")

    err = _config_error(tmp_path, "110", change)
    assert err.details["key"] == key and problem in err.message


def test_a_tls_listener_needs_an_https_public_url(tmp_path: Path, pki: Path) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["controller"]["http"]["tls"] = {"cert": str(pki / "server.pem"), "key": str(pki / "server.key")}

    err = _config_error(tmp_path, "110", change)
    assert err.details["key"] == "controller.public_url" and "must be https://" in err.message


def test_listener_with_client_ca_requires_client_certificates(tmp_path: Path, pki: Path) -> None:
    listener = _listener_config(tmp_path, pki, client_ca="ca")
    context = build_tls(listener).listener
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    # only the client CA is trusted, never the system store: a publicly signed certificate is no pass
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "linkage test CA"),),)]


async def test_an_https_public_url_on_a_plain_listener_is_allowed_with_a_warning(tmp_path: Path) -> None:
    raw = _raw(tmp_path, "110")
    raw["controller"]["public_url"] = "https://127.0.0.1:8443"  # a proxy in front terminates TLS
    config = parse_site_config(raw, str(tmp_path / "110.yaml"))
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        with capture_logs() as logs:
            http_site(runner, config, build_tls(config))  # built, not started: the lab owns this port
    finally:
        await runner.cleanup()
    assert [e["event"] for e in logs] == ["http.plain_behind_https_url"]
