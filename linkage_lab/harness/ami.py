"""The harness's AMI watcher: every event of one site (tester account) with the time it happened.

That time is Asterisk's own `Timestamp` (the lab sets `timestampevents`), on the same wall clock as the RTP
packets' kernel times: the time the harness's event loop got round to an event is later by however busy the
loop was, and a media window between two such times could miss the packets it was meant to hold."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from panoramisk import Manager

from linkage_lab.lab.lab import LabError


class AmiWatcher:
    def __init__(self, site: str, ami: dict[str, Any]) -> None:
        self.site = site
        self.events: list[tuple[float, dict[str, str]]] = []
        self.ready = asyncio.Event()
        self.manager = Manager(host=ami["host"], port=ami["port"], username=ami["username"],
                               secret=ami["secret"], ping_delay=60, ping_interval=60,
                               log=logging.getLogger("harness.ami"), on_login=lambda _: self.ready.set())
        self.manager.register_event("*", self._on_event)

    def _on_event(self, _: Any, message: Any) -> None:
        event = {str(k): str(v) for k, v in message.items() if isinstance(v, str)}
        self.events.append((happened_at(event, time.time()), event))

    async def start(self) -> None:
        self.manager.connect()
        try:
            async with asyncio.timeout(5):
                await self.ready.wait()
        except TimeoutError as exc:
            self.close()
            raise LabError(f"cannot log in to the AMI of site {self.site}: is the lab up?") from exc

    def close(self) -> None:
        self.manager.close()


def happened_at(event: dict[str, str], received: float) -> float:
    """Asterisk's time of the event, or when it was received if it carries none (or an implausible one)."""
    try:
        stamped = float(event.get("Timestamp", ""))
    except ValueError:
        return received
    return stamped if 0 <= received - stamped < 60 else received


async def channels(site: str, ami: dict[str, Any]) -> list[dict[str, str]]:
    """The channels a site's PBX has now (AMI CoreShowChannels, tester account): what a test counts to see that
    nothing of a call is held, such as a trunk leg after a return."""
    watcher = AmiWatcher(site, ami)
    await watcher.start()
    try:
        reply = await watcher.manager.send_action({"Action": "CoreShowChannels"}, as_list=True)
    finally:
        watcher.close()
    return [{str(k): str(v) for k, v in m.items()} for m in reply if m.get("Event") == "CoreShowChannel"]
