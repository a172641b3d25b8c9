"""Waits and cancellation for the controller's long-running loops.

A loop that loses its cancellation never stops. redis-py's asyncio client can swallow a CancelledError that
lands during a command (the command then returns normally, the task still marked as being cancelled), so the
loops check `raise_if_cancelled()` each round; and waits use `asyncio.timeout`, not `asyncio.wait_for`, which in
Python 3.11 can also swallow one (the rule holds across the product package and the lab package)."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop and something below swallowed the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set, at most `timeout` seconds; returns whether it is set."""
    raise_if_cancelled()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
