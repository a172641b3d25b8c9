"""The AMI adapters of callers: the hotline's calls counted from Newchannel, and the flags handed to the
dialplan as global variables.

How the dialplan learns a number is flagged, without a FastAGI round trip on every citizen's call: the
controller sets a global variable per flagged number over AMI (`Setvar` without a channel: write class `call`,
which the controller's AMI user has anyway), and `[linkage-citizen]` reads `${GLOBAL(...)}` — a lookup in the
PBX's memory. AstDB would survive a PBX restart, but AMI's `DBPut` needs write class `system`, which next to
`originate` lets an AMI user run shell commands through Originate(System); and the dialplan's `DB()` function
is refused to AMI sessions as a dangerous function. A restarted PBX loses the globals and the controller's next
login puts them back; until then flagged callers are treated as everyone else — the safe direction.

A flag lifted while AMI was away cannot be cleared from a list (no AMI action lists globals), so each value is a
generation: every login's resync writes the flags under a new generation and then `LINKAGE_FLAG_GEN`; the
dialplan counts a number as flagged only when its value equals the current generation.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from telephony.callers.services import CallerService
from telephony.config import SiteConfig
from telephony.ids import CALLER_NUMBER

log = structlog.get_logger("callers.ami")
Send = Callable[[dict[str, str]], Awaitable[Any]]
PREFIX = "LINKAGE_FLAGGED_"  # + the number's digits (the dialplan filters the caller id the same way)


def pbx_key(number: str) -> str:
    """The digits of a number: "+8613912345678" and "8613912345678" are one caller to the PBX."""
    return number.lstrip("+")


class PbxFlags:
    def __init__(self, config: SiteConfig, send: Send) -> None:
        self.send = send
        h = config.harassment
        agents = h.designated if h.policy == "designated" else ()
        self.settings = {"LINKAGE_FLAG_POLICY": h.policy,
                         "LINKAGE_FLAG_AGENTS": "&".join(f"PJSIP/agent{a}" for a in agents)}
        self.generation = ""  # unknown until the first resync: nothing is flagged in the PBX before it
        self.flagged: dict[str, int] = {}  # PBX key -> how many flagged numbers share it

    async def put(self, number: str) -> bool:
        key = pbx_key(number)
        self.flagged[key] = self.flagged.get(key, 0) + 1
        # before the first login's resync the PBX knows no generation: that resync brings this flag along
        return bool(self.generation) and await self._set(PREFIX + key, self.generation)

    async def delete(self, number: str) -> bool:
        key = pbx_key(number)
        left = self.flagged.get(key, 1) - 1
        if left > 0:
            self.flagged[key] = left  # "+86…" and "86…" both flagged: one lifted, the caller still is
            return True
        self.flagged.pop(key, None)
        return bool(self.generation) and await self._set(PREFIX + key, "")

    async def resync(self, numbers: list[str]) -> bool:
        """After a login: the policy, every flag under a new generation, then the generation itself."""
        self.flagged = {}
        for number in numbers:
            key = pbx_key(number)
            self.flagged[key] = self.flagged.get(key, 0) + 1
        generation = secrets.token_hex(4)
        ok = True
        for name, value in self.settings.items():
            ok = await self._set(name, value) and ok
        for key in self.flagged:
            ok = await self._set(PREFIX + key, generation) and ok
        ok = await self._set("LINKAGE_FLAG_GEN", generation) and ok
        if ok:
            self.generation = generation
        log.info("callers.pbx_resynced", flags=len(self.flagged), ok=ok)
        return ok

    async def _set(self, name: str, value: str) -> bool:
        # only digits from a validated number and values from the site config reach the PBX here
        try:
            reply = await self.send({"Action": "Setvar", "Variable": name, "Value": value})
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.warning("callers.pbx_write_failed", error=str(exc) or exc.__class__.__name__)
            return False
        ok = reply is not None and str(reply.get("Response", "")).lower() == "success"
        if not ok:
            log.warning("callers.pbx_write_refused", message=str(reply.get("Message", "")) if reply else "")
        return ok


class CallerAmi:
    """A citizen's new channel into the hotline (the citizen endpoint's context, the hotline's number) is a call
    to count; the agents', trunks' and local channels are not."""

    def __init__(self, config: SiteConfig, callers: CallerService) -> None:
        self.callers = callers
        self.hotline = config.accounts.citizen.dial

    async def on_event(self, event: dict[str, str]) -> None:
        if event.get("Event") != "Newchannel" or event.get("Context") != "linkage-citizen":
            return
        number = event.get("CallerIDNum", "")
        if event.get("Exten") == self.hotline and CALLER_NUMBER.match(number):
            self.callers.called(number)
