"""The console's static files: served without a token from a fixed list with a same-origin CSP, and the page's
scripts never turn data into markup (every server value goes in as text)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from throwaway import free_port

from linkage_lab.lab.lab import PLANS, Lab
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.console.http import FILES
from telephony.security.sealing import Sealer

CONSOLE = Path(__file__).parents[2] / "telephony" / "console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'")


async def test_console_files_are_public_with_strict_headers(tmp_path: Path) -> None:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    app = build_app(config, tickets=None, transfers=None, threeway=None, returns=None, calls=None,  # type: ignore[arg-type]
                    hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()),
                    health=None, redis=None,  # type: ignore[arg-type]
                    sealer=Sealer(config.storage.keys), wake=lambda peer: None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/console") as r:
                page = await r.text()
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
                assert r.headers["Content-Security-Policy"] == CSP
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Cache-Control"] == "no-store"
                assert 'lang="zh-CN"' in page
            for name, kind in FILES.items():
                async with session.get(f"{base}/console/{name}") as r:
                    assert r.status == 200, name
                    assert r.headers["Content-Type"] == kind
                    assert r.headers["Content-Security-Policy"] == CSP
            async with session.get(f"{base}/console/secret.py") as r:
                assert r.status == 404
            async with session.get(f"{base}/console/..%2Fhttp.py") as r:
                assert r.status in (401, 404)
            async with session.get(f"{base}/v1/calls") as r:
                assert r.status == 401  # the API still wants a token
    finally:
        await runner.cleanup()


def test_every_console_file_is_listed_and_packaged() -> None:
    on_disk = {p.name for p in CONSOLE.iterdir() if p.suffix in (".html", ".js", ".css", ".json")}
    assert on_disk == set(FILES)
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"telephony.console" = ["*.html", "*.js", "*.css", "*.json"]' in pyproject


def test_console_scripts_never_render_markup() -> None:
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                       r"setTimeout\(\s*['\"`]")
    for path in CONSOLE.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        assert not sinks.search(text), f"{path.name} builds markup from strings"
    page = (CONSOLE / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP would refuse it
    assert not re.search(r"<[^>]+\son[a-z]+=", page)  # no inline event handlers
