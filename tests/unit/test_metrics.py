"""The /metrics page from prometheus-client: every series the page has always had, with its labels, and the
latency histograms observed where the work is done (FastAGI, AMI, ticket delivery, screen pop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_agi_server import connect, headers, read_until_closed

from linkage_lab.lab.lab import PLANS, Lab
from telephony.agi.metrics import AgiMetrics
from telephony.agi.server import AgiRequest, FastAgiServer
from telephony.ami.metrics import AmiMetrics
from telephony.ami.session import AmiSession
from telephony.calls.registry import CallRegistry
from telephony.config import AmiConfig, SiteConfig
from telephony.controller import Controller
from telephony.metrics import sample, scraped_sample
from telephony.tickets.hooks import TicketHooks
from telephony.tickets.metrics import TicketMetrics, delivery_lag
from telephony.tickets.models import Event, Party, Ticket, new_event_id
from telephony.tickets.services import TicketService
from telephony.tickets.store import TicketStore
from telephony.transfers.ami import TransferAmi
from telephony.transfers.arrivals import Arrivals
from telephony.transfers.metrics import TransferMetrics
from telephony.transfers.receiving import ReceivingService

REDIS_DB = 14  # the unit conftest's `redis` fixture gives this database, emptied

# Every series the hand-written page exposed, with its type and label names: scrapers and dashboards read them.
SERIES = {
    "linkage_tickets_created_total": ("counter", {"target"}),
    "linkage_ticket_events_total": ("counter", {"type", "origin"}),
    "linkage_tickets_overdue_total": ("counter", {"state"}),
    "linkage_delivery_sent_total": ("counter", {"peer"}),
    "linkage_delivery_retries_total": ("counter", {"peer"}),
    "linkage_delivery_dead_total": ("counter", {"peer"}),
    "linkage_delivery_batches_total": ("counter", {"peer"}),
    "linkage_delivery_batched_messages_total": ("counter", {"peer"}),
    "linkage_agi_requests_total": ("counter", {"script"}),
    "linkage_ami_events_total": ("counter", set()),
    "linkage_http_refused_total": ("counter", {"status"}),
    "linkage_delivery_dead_letters": ("gauge", {"peer"}),
}
HISTOGRAMS = {
    "linkage_agi_handling_seconds": {"script"},
    "linkage_ami_event_lag_seconds": set(),
    "linkage_push_delivery_lag_seconds": set(),
    "linkage_screen_pop_seconds": set(),
}


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, SiteConfig]:
    lab = Lab(rootfs=str(tmp_path))
    return {name: lab.site_config(plan) for name, plan in PLANS.items()}


@pytest.fixture
async def controller(configs: dict[str, SiteConfig]) -> AsyncIterator[Controller]:
    ctl = Controller(configs["110"])
    yield ctl
    ctl.ami.close()
    await ctl.session.close()
    await ctl.redis.aclose()


def page(ctl: Controller) -> str:
    body, content_type = ctl.http_metrics.render()
    assert content_type == CONTENT_TYPE_LATEST
    return body.decode()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def received_ticket(created_at: float, tid: str = "37080020260101120000123456") -> Ticket:
    """A ticket from 12345 as its push brings it to 110: only the sender's `created` in its history."""
    created = Event(new_event_id(), tid, "created", iso(created_at), {"platform": "12345", "site": "12345"}, seq=1)
    return Ticket(id=tid, direction="12345->110", source=Party("12345", "12345"), target=Party("110", "110"),
                  caller_number="13912345678", agent_id="1001", linkedid="1767268800.1", uniqueids=[],
                  created_at=created.at, version=1, history=[created], path=["12345", "110"])


# ---- the page ------------------------------------------------------------------------------------------

async def test_the_page_declares_every_series_before_anything_happens(controller: Controller) -> None:
    text = page(controller)
    for name, (kind, _) in SERIES.items():
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text
    for name in HISTOGRAMS:
        assert f"# TYPE {name} histogram\n" in text
    assert "linkage_ami_events_total 0.0\n" in text


async def test_every_series_keeps_its_labels(controller: Controller) -> None:
    ctl = controller
    created = received_ticket(time.time()).history[0]
    local = Event(new_event_id(), created.ticket_id, "created", created.at, {"site": "110"}, seq=1)
    ctl.ticket_metrics.on_ticket_change(received_ticket(time.time()), created)
    ctl.ticket_metrics.on_ticket_change(received_ticket(time.time()), local)
    ctl.supervisor.metrics.overdue.labels(state="signed_for").inc()
    d = ctl.delivery_metrics
    for counter in (d.sent, d.retries, d.dead, d.batches, d.batched_messages):
        counter.labels(peer="12345").inc()
    d.dead_letters.labels(peer="12345").set(2)
    ctl.agi.metrics.requests.labels(script="onekey").inc()
    ctl.agi.metrics.handling.labels(script="onekey").observe(0.002)
    ctl.ami.metrics.events.inc()
    ctl.ami.metrics.event_lag.observe(0.001)
    ctl.http_metrics.refused.labels(status="401").inc()
    ctl.ticket_metrics.push_delivery_lag.observe(0.01)
    ctl.transfer_metrics.screen_pop.observe(0.003)

    families = {f.name: f for f in text_string_to_metric_families(page(ctl))}
    for name, (kind, labels) in {**SERIES, **{h: ("histogram", ls) for h, ls in HISTOGRAMS.items()}}.items():
        family = families[name.removesuffix("_total")]
        assert family.type == kind
        values = [s for s in family.samples if s.name in (name, f"{name}_count")]
        # the outbox workers bind their peer's series at 0 when the controller is built: one peer counted here
        assert values and all(set(v.labels) == labels for v in values), name
        assert any(v.value > 0 for v in values), name
    assert scraped_sample(page(ctl), "linkage_ticket_events_total", type="created", origin="remote") == 1
    assert scraped_sample(page(ctl), "linkage_tickets_created_total", target="110") == 1  # the local one only


async def test_label_values_are_escaped_and_the_page_parses(controller: Controller) -> None:
    for value in ('say "hi"', "a\\b", "a\nb", '\\"\n'):
        controller.http_metrics.refused.labels(status=value).inc()
    text = page(controller)
    assert 'linkage_http_refused_total{status="say \\"hi\\""} 1.0\n' in text
    assert 'linkage_http_refused_total{status="a\\nb"} 1.0\n' in text
    for value in ('say "hi"', "a\\b", "a\nb", '\\"\n'):
        assert scraped_sample(text, "linkage_http_refused_total", status=value) == 1


async def test_large_counters_keep_every_digit(controller: Controller) -> None:
    controller.agi.metrics.requests.labels(script="onekey").inc(1234567)
    assert scraped_sample(page(controller), "linkage_agi_requests_total", script="onekey") == 1234567


async def test_two_controllers_in_one_process_count_apart(configs: dict[str, SiteConfig]) -> None:
    a, b = Controller(configs["110"]), Controller(configs["12345"])
    try:
        a.ami.metrics.events.inc(3)
        assert (sample(a.registry, "linkage_ami_events_total"), sample(b.registry, "linkage_ami_events_total")) \
            == (3, 0)
    finally:
        for ctl in (a, b):
            ctl.ami.close()
            await ctl.session.close()
            await ctl.redis.aclose()


# ---- histograms where the work is done -----------------------------------------------------------------

async def test_agi_handling_is_timed_per_routed_script() -> None:
    registry = CollectorRegistry()
    srv = FastAgiServer("127.0.0.1", 0, AgiMetrics(registry))

    async def onekey(request: AgiRequest) -> None:
        await asyncio.sleep(0.02)
        await request.set_variable("LINKAGE_RESULT", "ok")

    srv.route("onekey", onekey)
    await srv.start()
    assert srv.server is not None
    srv.port = srv.server.sockets[0].getsockname()[1]
    try:
        for script in ("onekey", "nonsense"):
            reader, writer = await connect(srv)
            writer.write(headers(srv.port, script))
            if script == "onekey":
                assert (await reader.readline()).startswith(b"SET VARIABLE LINKAGE_RESULT")
                writer.write(b"200 result=1\n")
            await read_until_closed(reader)
            writer.close()
    finally:
        await srv.stop()
    count = sample(registry, "linkage_agi_handling_seconds_count", script="onekey")
    assert count == 1 and sample(registry, "linkage_agi_handling_seconds_sum", script="onekey") >= 0.02
    assert sample(registry, "linkage_agi_handling_seconds_bucket", script="onekey", le="0.01") == 0
    assert sample(registry, "linkage_agi_requests_total", script="unknown") == 1
    assert registry.get_sample_value("linkage_agi_handling_seconds_count", {"script": "nonsense"}) is None


async def test_ami_event_lag_is_observed_from_asterisks_timestamp_only() -> None:
    registry = CollectorRegistry()
    session = AmiSession(AmiConfig("127.0.0.1", 1, "linkage", "secret123"), CallRegistry(), AmiMetrics(registry))
    handled: list[str] = []

    async def handler(event: dict[str, str]) -> None:
        handled.append(event["Uniqueid"])

    runner = asyncio.create_task(session.run((handler,)))
    base = {"Event": "DialBegin", "Linkedid": "1.1", "Channel": "PJSIP/trunk-1", "DestChannel": "PJSIP/agent1001-2"}
    session._on_event(None, {**base, "Uniqueid": "1.1", "Timestamp": f"{time.time() - 0.05:.6f}"})
    session._on_event(None, {**base, "Uniqueid": "1.2"})  # timestampevents off: nothing to measure
    session._on_event(None, {**base, "Uniqueid": "1.3", "Timestamp": "not-a-time"})
    while len(handled) < 3:
        await asyncio.sleep(0.001)
    runner.cancel()
    session.close()
    assert sample(registry, "linkage_ami_events_total") == 3
    assert sample(registry, "linkage_ami_event_lag_seconds_count") == 1
    assert 0.05 <= sample(registry, "linkage_ami_event_lag_seconds_sum") < 1.0


def test_delivery_lag_is_from_created_to_delivered() -> None:
    ticket = received_ticket(1767268800.0)
    delivered = Event(new_event_id(), ticket.id, "delivered", iso(1767268800.25), {"site": "110"}, seq=1)
    assert delivery_lag(ticket, delivered) == pytest.approx(0.25)
    early = Event(new_event_id(), ticket.id, "delivered", iso(1767268799.9), {"site": "110"}, seq=1)
    assert delivery_lag(ticket, early) == 0  # the sender's clock ahead of ours
    ticket.history = []
    assert delivery_lag(ticket, delivered) is None


async def test_push_delivery_lag_and_screen_pop_on_the_receiving_site(configs: dict[str, SiteConfig],
                                                                     redis: aioredis.Redis) -> None:
    registry = CollectorRegistry()
    config = configs["110"]
    published: list[str] = []
    metrics = TicketMetrics(registry, config.site.name)
    hooks = TicketHooks(changed=(lambda ticket, event: published.append(event.type),  # the stream's place
                                 metrics.on_ticket_change))
    tickets = TicketService(config, TicketStore(redis), hooks)
    receiving = ReceivingService(config, CallRegistry(), tickets, {}, Arrivals(0.0))
    transfers = TransferAmi(receiving, TransferMetrics(registry))

    stored, _ = await tickets.receive(received_ticket(time.time() - 0.2), via="push")
    assert sample(registry, "linkage_push_delivery_lag_seconds_count") == 1
    assert 0.19 <= sample(registry, "linkage_push_delivery_lag_seconds_sum") < 2.0
    receiving.inbound["1767268900.5"] = stored.id
    await transfers.on_event({"Event": "DialBegin", "Uniqueid": "1767268900.5", "Linkedid": "1767268900.5",
                                  "DestChannel": "PJSIP/agent1001-00000002"})
    await transfers.lanes.idle()  # the record runs in the ticket's lane, off the AMI event queue
    assert published == ["delivered", "offered"]
    assert sample(registry, "linkage_screen_pop_seconds_count") == 1
    assert sample(registry, "linkage_ticket_events_total", type="offered", origin="local") == 1
    assert sample(registry, "linkage_push_delivery_lag_seconds_count") == 1  # only `delivered` is timed
