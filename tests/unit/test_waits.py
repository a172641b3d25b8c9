"""The controller's loops stop when cancelled, even when something below swallows the cancellation."""

from __future__ import annotations

import asyncio

import pytest

from telephony.waits import raise_if_cancelled, wait_event


async def test_a_loop_stops_even_if_a_call_below_swallows_its_cancellation() -> None:
    rounds = 0

    async def swallows() -> None:  # what redis-py's client sometimes does with a CancelledError
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass

    async def loop() -> None:
        nonlocal rounds
        while True:
            raise_if_cancelled()
            rounds += 1
            await swallows()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 2)
    assert task.cancelled() and rounds == 1  # the swallowed request ends the loop at the next round


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_wait_event_refuses_to_wait_in_a_task_being_cancelled() -> None:
    async def swallow_then_wait() -> bool:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass
        return await wait_event(asyncio.Event(), 10)

    task = asyncio.create_task(swallow_then_wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
