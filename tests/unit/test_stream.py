"""The console event stream: per-agent filtering, screen pops only to the ringing agent, bounded queues."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web
from throwaway import free_port

from telephony.api.stream import KEEP_ALIVE, StreamHub, Subscriber, sse
from telephony.tickets.models import Event, Party, Ticket

TID = "37080020260101120000123456"


def ticket(**fields: Any) -> Ticket:
    t = Ticket(id=TID, direction="12345->110", source=Party("12345", "12345"), target=Party("110", "110"),
               caller_number="13912345678", agent_id="1001", linkedid="1767268800.1", uniqueids=[],
               created_at="2026-01-01T12:00:00.000Z", status="delivered")
    for key, value in fields.items():
        setattr(t, key, value)
    return t


def event(etype: str, agent: str = "", n: int = 1) -> Event:
    actor = {"platform": "110", "site": "110"}
    if agent:
        actor["agent"] = agent
    return Event(f"{n:032x}", TID, etype, "2026-01-01T12:00:05.000Z", actor)


def drain(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_a_ticket_change_reaches_the_agents_it_concerns_and_the_supervisors() -> None:
    hub = StreamHub("110")
    subs = {name: hub.subscribe(name) for name in ("2001", "2002", "1001")}
    everyone = hub.subscribe(None)
    t = ticket(status="signed_for", offered_to="2001", signed_for_by="2001")
    e = event("signed_for", agent="2001")
    hub.publish(t, e)
    assert [m["type"] for m in drain(subs["2001"])] == ["ticket"]
    assert drain(subs["2002"]) == []
    assert len(drain(subs["1001"])) == 1  # the agent who created the ticket follows it too
    [message] = drain(everyone)
    assert message == {"type": "ticket", "site": "110", "event": e.to_dict(), "ticket": t.to_dict()}


def test_the_actor_of_an_event_receives_it() -> None:
    hub = StreamHub("110")
    sub = hub.subscribe("2002")
    hub.publish(ticket(offered_to="2001"), event("amended", agent="2002"))
    assert [m["event"]["type"] for m in drain(sub)] == ["amended"]


def test_a_screen_pop_goes_only_to_the_agent_whose_phone_rings() -> None:
    hub = StreamHub("110")
    ringing, other, signer = hub.subscribe("2001"), hub.subscribe("2002"), hub.subscribe("2003")
    supervisor = hub.subscribe(None)
    # 2003 signed for it earlier (so the ticket concerns them), but the phone ringing now is 2001's
    hub.publish(ticket(offered_to="2001", signed_for_by="2003"), event("offered", agent="2001"))
    [pop] = drain(ringing)
    assert (pop["type"], pop["event"]["actor"]["agent"], pop["ticket"]["id"]) == ("screen_pop", "2001", TID)
    assert drain(other) == [] and drain(signer) == []
    assert [m["type"] for m in drain(supervisor)] == ["screen_pop"]


def test_a_slow_console_loses_its_oldest_events_and_is_told_how_many() -> None:
    hub = StreamHub("110")
    slow, other = hub.subscribe("2001"), hub.subscribe(None)
    t = ticket(offered_to="2001")
    limit = slow.queue.maxsize
    assert limit == 200
    for n in range(1, limit + 6):
        hub.publish(t, event("amended", agent="2001", n=n))
    assert (slow.dropped, slow.queue.qsize()) == (5, limit)
    messages = drain(slow)
    assert messages[0]["event"]["id"] == f"{6:032x}"
    assert messages[-1]["event"]["id"] == f"{limit + 5:032x}"
    assert other.dropped == 5  # each subscriber has its own queue


def test_unsubscribe_stops_delivery() -> None:
    hub = StreamHub("110")
    sub = hub.subscribe("2001")
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)  # twice is harmless
    hub.publish(ticket(offered_to="2001"), event("offered", agent="2001"))
    assert drain(sub) == [] and hub.subscribers == set()


def test_sse_frames_one_json_line_per_message() -> None:
    t = ticket(content="第一行\n\nevent: forged\ndata: x")
    message = {"type": "ticket", "site": "110", "event": event("amended").to_dict(), "ticket": t.to_dict()}
    frame = sse(message, "42").decode()
    lines = frame.split("\n")
    assert lines[:2] == ["id: 42", "event: ticket"]
    assert lines[2].startswith("data: ") and lines[3:] == ["", ""]
    assert json.loads(lines[2].removeprefix("data: ")) == message
    assert "第一行" in frame  # not \u-escaped


def test_a_referral_nobody_took_yet_reaches_every_agent_of_the_receiving_site() -> None:
    hub = StreamHub("110")
    subs = {name: hub.subscribe(name) for name in ("2001", "2002")}
    referral = ticket(mode="referral", channel="web", linkedid="", agent_id="1001")
    hub.publish(referral, event("delivered"))
    assert [len(drain(s)) for s in subs.values()] == [1, 1]  # the site's inbox: no phone rings for it
    hub.publish(ticket(mode="referral", signed_for_by="2001", status="accepted"), event("accepted", agent="2001"))
    assert [len(drain(subs["2001"])), len(drain(subs["2002"]))] == [1, 0]  # taken: its agent's from now on
    hub.publish(ticket(), event("delivered"))  # a call's ticket waits for its phone to ring
    assert [len(drain(s)) for s in subs.values()] == [0, 0]


async def test_close_ends_every_stream_so_the_http_server_stops_at_once() -> None:
    """A stream's handler waits for the next event; a console gone meanwhile is only noticed at the next write.
    Stopping the controller closes the hub first, so the HTTP server's graceful cleanup has nothing to wait for
    (it waited for the keep-alive: a SIGTERM then took the controller's whole shutdown timeout)."""
    hub = StreamHub("110")
    app = web.Application()
    app.router.add_get("/v1/stream", hub.serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    cleaned = False
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/v1/stream") as r:
            assert await r.content.readline() == b": connected\n"
            while not hub.subscribers:  # the handler subscribes once the response is prepared
                await asyncio.sleep(0.01)
            hub.close()
            assert await r.content.read() == b"\n"  # the rest of ": connected\n\n", then the end of the stream
            assert hub.subscribers == set()
            async with asyncio.timeout(KEEP_ALIVE / 2):  # not the keep-alive: the handler has returned
                await runner.cleanup()
            cleaned = True
    finally:
        if not cleaned:
            await runner.cleanup()
