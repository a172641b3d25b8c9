"""Lanes: work handed off the AMI event queue, in order within a key, concurrently across keys.

The AMI session hands events to its handlers one at a time (ami/session.py), so a handler that awaits a durable
Redis write holds up every event behind it. Under load that made the event queue the bottleneck: a prepared
press's ticket write (draft read, fsync'd Lua write) or a far side's offered / signed_for record waited behind the
previous one, and the 12345 controller fell ~25 s behind its PBX (load bench at 64/s, BENCHMARKS.md session 7).
A handler now does its in-memory part at once and runs the awaited part in the lane of its key (a ticket id, a
call): a lane's work runs in the order it was handed in; different lanes overlap.

Back-pressure: beyond MAX_RUNNING pieces of work in flight, `run` awaits the new piece itself (the caller — the
event queue — waits, as before this module), so memory stays bounded and a Redis that cannot keep up slows the
queue instead of piling up tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("lanes")
MAX_RUNNING = 512


class Lanes:
    def __init__(self, name: str, max_running: int = MAX_RUNNING) -> None:
        self.name = name
        self.max_running = max_running
        self.tails: dict[str, asyncio.Task[Any]] = {}  # key -> the last piece of work handed in for it
        self.running: set[asyncio.Task[Any]] = set()

    async def run(self, key: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Hand `work` to the lane of `key`: it starts once the lane's previous work is done. Returns at once,
        unless MAX_RUNNING pieces are in flight (then once this one is done)."""
        previous = self.tails.get(key)

        async def chained() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # its outcome is its own (logged below), not ours
            await work()

        # the task runs in a copy of this context: the log fields bound for the event (call, ticket) go with it
        task = asyncio.get_running_loop().create_task(chained())
        self.tails[key] = task
        self.running.add(task)
        task.add_done_callback(lambda done: self._done(key, done))
        if len(self.running) > self.max_running:
            await asyncio.wait([task])

    def _done(self, key: str, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if self.tails.get(key) is task:
            del self.tails[key]
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("lanes.work_failed", lanes=self.name, error=repr(exc), exc_info=exc)

    async def idle(self) -> None:
        """Until every piece of work handed in so far is done (tests, shutdown)."""
        while self.running:
            await asyncio.wait(list(self.running))

    def close(self) -> None:
        for task in list(self.running):
            task.cancel()
