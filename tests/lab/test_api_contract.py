"""The OpenAPI document in the repo and the controller's real routes agree; the query, export, metrics and
stream routes work against a real controller."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from test_bad_input import call

from linkage_lab.harness.runner import run_scenario
from linkage_lab.harness.scenario import load
from linkage_lab.lab.lab import PLANS, Lab
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.security.sealing import Sealer

ROOT = Path(__file__).parents[2]


def test_openapi_matches_the_router(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    documented = {(method.upper(), path) for path, ops in spec["paths"].items()
                  for method in ops if method in ("get", "post", "put", "patch", "delete")}
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    # only the router is needed: build it without a controller's services
    app = build_app(config, tickets=None, transfers=None, threeway=None, returns=None, calls=None,  # type: ignore[arg-type]
                    hub=StreamHub(config.site.name), metrics=HttpMetrics(CollectorRegistry()), health=None, redis=None,  # type: ignore[arg-type]
                    sealer=Sealer(config.storage.keys), wake=lambda peer: None)
    routes = {(r.method, re.sub(r"\{(\w+)\}", r"{\1}", r.resource.canonical))
              for r in app.router.routes() if r.method != "HEAD" and r.resource is not None}
    assert routes == documented


def _read(url: str, token: str) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def test_queries_export_metrics_and_screen_pop(desc: dict[str, Any]) -> None:
    s110 = desc["sites"]["110"]
    received: list[dict[str, Any]] = []

    def listen() -> None:
        req = urllib.request.Request(f"{s110['http']}/v1/stream?agent=2001",
                                     headers={"Authorization": f"Bearer {s110['token']}"})
        with urllib.request.urlopen(req, timeout=20) as resp:
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    # signed_for and the agent's "answered" both follow the answer, in either order
                    seen = {("call", m["state"]) if m["type"] == "call" else ("event", m["event"]["type"])
                            for m in received}
                    if {("event", "signed_for"), ("call", "answered")} <= seen:
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.3)
    start = time.time()
    result = run_scenario(load(ROOT / "tests" / "scenarios" / "onekey_happy.yaml"), desc)
    assert result.ok, result.report()
    listener.join(10)
    ticket_id = result.tickets["110"][0]["id"]
    kinds = [(m["type"], m["event"]["type"]) for m in received
             if m["type"] != "call" and m["ticket"]["id"] == ticket_id]
    assert ("screen_pop", "offered") in kinds
    calls = [(m["state"], m["call"]["agent"]) for m in received if m["type"] == "call"]
    assert ("ringing", "2001") in calls and ("answered", "2001") in calls  # the agent's call, pushed
    # the receiving site's call messages name the linked call's ticket from the first ring on
    assert {m["call"]["ticket_id"] for m in received if m["type"] == "call"} == {ticket_id}
    assert kinds.index(("screen_pop", "offered")) < kinds.index(("ticket", "signed_for"))
    pop = next(m for m in received if m["type"] == "screen_pop")
    assert pop["ticket"]["division"] == "370800" and pop["ticket"]["content"]  # the ticket is there at ring time

    base = f"{s110['http']}/v1/tickets"
    status, page = call("GET", f"{base}?status=signed_for&direction=12345->110&division=370800&from={start - 1}"
                               f"&page=1&page_size=1", s110["token"])
    assert status == 200 and page["total"] >= 1 and len(page["items"]) == 1
    assert all(t["status"] == "signed_for" for t in page["items"])
    status, none = call("GET", f"{base}?status=closed&from={start - 1}&division=370800&category=report", s110["token"])
    assert status == 200 and all(t["id"] != ticket_id for t in none["items"])
    for bad in ("status=flying", "division=12", "page=0", "nonsense=1", "from=yesterday"):
        assert call("GET", f"{base}?{bad}", s110["token"])[0] == 400

    status, ctype, body = _read(f"{base}/export?format=jsonl&from={start - 1}", s110["token"])
    assert "ndjson" in ctype and ticket_id in {json.loads(line)["id"] for line in body.splitlines()}
    status, ctype, body = _read(f"{base}/export?format=csv&from={start - 1}", s110["token"])
    rows = list(csv.DictReader(io.StringIO(body)))
    assert "text/csv" in ctype and any(r["id"] == ticket_id and r["status"] == "signed_for" for r in rows)

    with urllib.request.urlopen(f"{s110['http']}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert re.search(r'linkage_ticket_events_total\{origin="local",type="signed_for"\} [1-9]', metrics)
    assert "# TYPE linkage_tickets_overdue_total counter" in metrics
    assert re.search(r'linkage_delivery_sent_total\{peer="12345"\} [1-9]', metrics)  # feedback went back
    # the linked call was routed here: by the route published at the push (prepared transfers) or by route_in
    assert re.search(r'linkage_agi_requests_total\{script="route_in"\} [1-9]', metrics) or re.search(
        r"linkage_published_routes_taken_total [1-9]", metrics)
    assert re.search(r"linkage_ami_events_total [1-9]", metrics)
