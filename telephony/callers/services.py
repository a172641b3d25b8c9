"""The use cases of flagged and repeat callers: flag a number (an agent as itself, or the supervisor), lift a
flag (the supervisor), read the audit, and count the hotline's calls per number for the suggestions.

The flags live in Redis (`flags.py`) and, for the calls being answered, in memory here: one controller per
site writes them, so the copy loaded at start and kept by every change is the whole set. The PBX learns each
change at once (`pbx`: PBX globals, `ami.py` says why) and the whole set again after every AMI login, so a change
made while AMI was away still reaches the dialplan.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from telephony.callers.flags import SUPERVISOR, AuditEntry, Flag, FlagStore
from telephony.callers.metrics import CallerMetrics
from telephony.callers.repeats import RepeatCounter, Suggestion
from telephony.config import SiteConfig
from telephony.errors import NotFound
from telephony.tickets.store import STORE_ERRORS
from telephony.waits import raise_if_cancelled

log = structlog.get_logger("callers")


class FlagPbx(Protocol):
    """Where the dialplan reads flags from (telephony/callers/ami.py PbxFlags)."""

    async def put(self, number: str) -> bool: ...
    async def delete(self, number: str) -> bool: ...
    async def resync(self, numbers: list[str]) -> bool: ...


def _quiet(_: dict[str, Any]) -> None:
    return None


class CallerService:
    def __init__(self, config: SiteConfig, store: FlagStore, pbx: FlagPbx, metrics: CallerMetrics,
                 notify: Callable[[dict[str, Any]], None] = _quiet, clock: Callable[[], float] = time.time) -> None:
        """`notify` hears each change for the supervisor's console (the stream)."""
        self.config = config
        self.store = store
        self.pbx = pbx
        self.metrics = metrics
        self.notify = notify
        self.clock = clock
        h = config.harassment
        self.repeats = RepeatCounter(h.repeat_calls, h.repeat_minutes * 60, clock=clock)
        self.by_number: dict[str, tuple[str, Flag]] = {}  # number -> (its Redis field, the flag)
        self.lock = asyncio.Lock()  # one change at a time: the memory copy and Redis never disagree

    async def load(self) -> None:
        self.by_number = await self.store.load()
        self.metrics.flags.set(len(self.by_number))
        log.info("callers.flags_loaded", flags=len(self.by_number))

    def flag_of(self, number: str) -> Flag | None:
        found = self.by_number.get(number) if number else None
        return found[1] if found else None

    def view(self, number: str) -> dict[str, Any] | None:
        """What a console shows of a caller's flag (reason, who, when), or None."""
        flag = self.flag_of(number)
        return None if flag is None else {"reason": flag.reason, "by": flag.by, "at": flag.at}

    def flags(self) -> list[Flag]:
        return sorted((f for _, f in self.by_number.values()), key=lambda f: -f.at)

    async def flag(self, number: str, reason: str, by: str) -> tuple[Flag, bool, bool]:
        """(the flag, whether it is new, whether the PBX has it). Flagging a flagged number replaces the reason."""
        async with self.lock:
            old = self.by_number.get(number)
            flag = Flag(number, reason, by, round(self.clock(), 3))
            field = await self.store.put(old[0] if old else None, flag)
            self.by_number[number] = (field, flag)
        self.metrics.flags.set(len(self.by_number))
        self.metrics.changes.labels(action="flag").inc()
        self.repeats.dismiss(number)  # acted upon: no longer a suggestion
        log.info("callers.flagged", caller_number=number, by=by, new=old is None)
        synced = await self._pbx(self.pbx.put(number))
        self.notify({"type": "caller_flag", "action": "flag", "by": by})
        return flag, old is None, synced

    async def unflag(self, number: str, reason: str, by: str) -> tuple[Flag, bool]:
        async with self.lock:
            old = self.by_number.get(number)
            if old is None:
                raise NotFound("this number is not flagged", field="number")
            await self.store.delete(old[0], AuditEntry("unflag", number, reason, by, round(self.clock(), 3)))
            del self.by_number[number]
        self.metrics.flags.set(len(self.by_number))
        self.metrics.changes.labels(action="unflag").inc()
        log.info("callers.unflagged", caller_number=number, by=by)
        synced = await self._pbx(self.pbx.delete(number))
        self.notify({"type": "caller_flag", "action": "unflag", "by": by})
        return old[1], synced

    async def audit(self, limit: int) -> list[AuditEntry]:
        return await self.store.audit(limit)

    def called(self, number: str) -> None:
        """A citizen's call from `number` reached the hotline (AMI): counted, maybe suggested."""
        self.metrics.calls.inc()
        recent, suggestion = self.repeats.called(number)
        self.metrics.per_number.observe(recent)
        if self.flag_of(number) is not None:
            self.metrics.flagged_calls.labels(policy=self.config.harassment.policy).inc()
            return  # flagged already: nothing to suggest
        if suggestion is not None:
            self.metrics.suggestions.inc()
            log.info("callers.repeat_suggested", caller_number=number, calls=suggestion.calls)
            self.notify({"type": "caller_suggestion", "calls": suggestion.calls})

    def suggestions(self) -> list[Suggestion]:
        return [s for s in self.repeats.suggestions() if s.number not in self.by_number]

    def counts(self, limit: int) -> list[dict[str, object]]:
        return [{**row, "flagged": row["number"] in self.by_number} for row in self.repeats.counts(limit)]

    async def run(self, login: asyncio.Event) -> None:
        """Owned task: the flags loaded (retried while Redis is away), then after every AMI login the PBX gets
        the whole set and the policy again. A login before the load waits for it: a resync of an empty set
        would lift every flag in the PBX."""
        while True:
            try:
                await self.load()
                break
            except STORE_ERRORS as exc:
                log.warning("callers.load_failed", error=exc.__class__.__name__)
                await asyncio.sleep(1.0)
        while True:
            raise_if_cancelled()  # a stop swallowed by redis-py in the load or the resync (telephony/waits.py)
            await login.wait()
            login.clear()
            if not await self.pbx.resync(list(self.by_number)):
                self.metrics.pbx_failures.inc()

    async def _pbx(self, write: Any) -> bool:
        ok = bool(await write)
        if not ok:
            self.metrics.pbx_failures.inc()  # stored: the next login's resync brings the PBX in line
        return ok


def by_of(agent: str | None) -> str:
    """Who a change is recorded as: the agent whose token made it, or the supervisor (the site token)."""
    return agent or SUPERVISOR
