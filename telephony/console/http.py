"""HTTP adapter of the browser console: its static files at /console, from a fixed list read once at start.

The page holds no authority: the agent types a token into it, and every API call sends it as a bearer header,
so the files themselves are public. The headers lock the page to its own origin (no inline script, no framing,
no foreign fetch), which keeps hostile ticket text inert even if a rendering mistake slipped through.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from telephony.errors import NotFound

FILES = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "catalogue.json": "application/json; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "sse.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "agent.js": "text/javascript; charset=utf-8",
    "inbox.js": "text/javascript; charset=utf-8",
    "supervisor.js": "text/javascript; charset=utf-8",
    "referral.js": "text/javascript; charset=utf-8",
    "activity.js": "text/javascript; charset=utf-8",
    "search.js": "text/javascript; charset=utf-8",
    "advice.js": "text/javascript; charset=utf-8",
    "callers.js": "text/javascript; charset=utf-8",
    "queue.js": "text/javascript; charset=utf-8",
    "stats.js": "text/javascript; charset=utf-8",
}
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ConsoleHttp:
    def __init__(self) -> None:
        root = resources.files("telephony.console")
        self.files = {name: root.joinpath(name).read_bytes() for name in FILES}

    async def index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["file"])

    def _file(self, name: str) -> web.Response:
        if name not in self.files:
            raise NotFound(f"no console file {name!r}")
        return web.Response(body=self.files[name], headers={**HEADERS, "Content-Type": FILES[name]})
