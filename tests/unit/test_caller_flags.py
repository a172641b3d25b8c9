"""Flagged callers (恶意骚扰) on a real server with a real Redis: an agent flags as itself, only the supervisor
lifts a flag, both audited (who, when, why) and sealed at rest; bad input is a 400 that stores nothing; the PBX
gets every change as a global and the whole set under a new generation at each login; the pop and the call
list name a flagged caller; repeat callers are suggested, never acted upon."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry
from throwaway import free_port

from linkage_lab.lab.lab import PLANS, Lab
from telephony.api.app import build_app
from telephony.api.metrics import HttpMetrics
from telephony.api.stream import StreamHub
from telephony.callers.ami import CallerAmi, PbxFlags
from telephony.callers.flags import AUDIT_KEY, FLAGS_KEY, FlagStore
from telephony.callers.metrics import CallerMetrics
from telephony.callers.services import CallerService
from telephony.calls.registry import CallChange, CallRegistry
from telephony.config import SiteConfig
from telephony.security.sealing import Sealer

REDIS_DB = 15  # the unit conftest's `redis` fixture gives this database, emptied
NUMBER = "13912345678"
HOSTILE = '<img src=x onerror="alert(1)">骂人'


class FakePbx:
    """The AMI session's `send` as the PBX answers Setvar; `down` makes it refuse (AMI away)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = False

    async def send(self, action: dict[str, str]) -> Any:
        if self.down:
            raise ConnectionError("AMI not connected")
        assert action["Action"] == "Setvar" and set(action) == {"Action", "Variable", "Value"}
        self.sent.append((action["Variable"], action["Value"]))
        return {"Response": "Success"}

    def globals(self) -> dict[str, str]:
        return dict(self.sent)


class Desk:
    def __init__(self, config: SiteConfig, redis: aioredis.Redis, url: str, callers: CallerService,
                 pbx: FakePbx, hub: StreamHub, registry: CollectorRegistry) -> None:
        self.config, self.redis, self.url, self.callers, self.pbx, self.hub = config, redis, url, callers, pbx, hub
        self.registry = registry
        self.tokens = {a.id: a.token for a in config.accounts.agents}

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.config.controller.api_token if token is None else token}"}
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        async with aiohttp.ClientSession() as s, s.request(method, self.url + path, data=data,
                                                           headers=headers) as resp:
            return resp.status, await resp.json()


def _config(tmp_path: Path, **harassment: Any) -> SiteConfig:
    config = Lab(rootfs=str(tmp_path)).site_config(PLANS["12345"])
    return msgspec.structs.replace(config, harassment=msgspec.structs.replace(config.harassment, **harassment))


@pytest.fixture
async def desk(tmp_path: Path, redis: aioredis.Redis) -> AsyncIterator[Desk]:
    config = _config(tmp_path, repeat_calls=3, repeat_minutes=1.0)
    pbx = FakePbx()
    registry = CollectorRegistry()
    hub = StreamHub(config.site.name)
    callers = CallerService(config, FlagStore(redis, Sealer(config.storage.keys)), PbxFlags(config, pbx.send),
                            CallerMetrics(registry), notify=hub.publish_supervisor)
    hub.flag_of = callers.view
    await callers.load()

    async def health() -> dict[str, Any]:
        return {"ok": True}

    app = build_app(config, tickets=None, transfers=None, threeway=None, returns=None,  # type: ignore[arg-type]
                    calls=CallRegistry(), hub=hub, metrics=HttpMetrics(CollectorRegistry()), health=health,
                    redis=redis, sealer=Sealer(config.storage.keys), wake=lambda peer: None, callers=callers)
    port = free_port()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Desk(config, redis, f"http://127.0.0.1:{port}", callers, pbx, hub, registry)
    await runner.cleanup()


async def test_an_agent_flags_as_itself_and_the_supervisor_lifts_it_both_audited(desk: Desk) -> None:
    status, body = await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": HOSTILE},
                                   desk.tokens["1001"])
    assert status == 201 and body["by"] == "1001" and body["reason"] == HOSTILE and body["number"] == NUMBER
    status, body = await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "再次辱骂"},
                                   desk.tokens["1002"])
    assert status == 200 and body["by"] == "1002"  # flagged already: the reason replaced, one flag
    status, body = await desk.call("GET", "/v1/callers/flags")
    assert status == 200 and [(f["number"], f["reason"]) for f in body["items"]] == [(NUMBER, "再次辱骂")]
    # lifting is the supervisor's: an agent's token is refused and nothing changes
    status, body = await desk.call("POST", "/v1/callers/unflag", {"number": NUMBER, "reason": "误标"},
                                   desk.tokens["1001"])
    assert status == 403 and body["error"] == "forbidden"
    assert desk.callers.flag_of(NUMBER) is not None
    status, body = await desk.call("POST", "/v1/callers/unflag", {"number": NUMBER, "reason": "核实为误标"})
    assert status == 200 and body["number"] == NUMBER
    assert (await desk.call("POST", "/v1/callers/unflag", {"number": NUMBER, "reason": "再撤一次"}))[0] == 404
    status, body = await desk.call("GET", "/v1/audit/flags")
    assert [(e["action"], e["by"], e["reason"]) for e in body["items"]] == [
        ("unflag", "supervisor", "核实为误标"), ("flag", "1002", "再次辱骂"), ("flag", "1001", HOSTILE)]
    assert all(e["number"] == NUMBER and e["at"] > 0 for e in body["items"])
    # sealed at rest: neither the number nor the reason is in Redis in clear
    raw = [*(await desk.redis.lrange(AUDIT_KEY, 0, -1)), *(await desk.redis.hvals(FLAGS_KEY))]
    assert raw and not any(NUMBER.encode() in r or "辱骂".encode() in r for r in raw)
    assert (await desk.redis.hlen(FLAGS_KEY)) == 0


async def test_the_supervisors_views_are_the_site_tokens_and_an_agent_flags_only_as_itself(desk: Desk) -> None:
    agent = desk.tokens["1001"]
    for path in ("/v1/callers/flags", "/v1/audit/flags", "/v1/callers/suggestions", "/v1/callers/counts"):
        assert (await desk.call("GET", path, token=agent))[0] == 403
    status, body = await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "x", "agent": "1002"},
                                   agent)
    assert status == 403 and await desk.redis.exists(FLAGS_KEY, AUDIT_KEY) == 0
    status, body = await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "x", "agent": "1002"})
    assert status == 201 and body["by"] == "1002"  # the supervisor's console may say for whom
    assert (await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "x"}, "not-a-token"))[0] == 401


@pytest.mark.parametrize(("body", "field"), [
    ({"number": "139-1234-5678", "reason": "x"}, "number"),
    ({"number": "1" * 21, "reason": "x"}, "number"),
    ({"number": "", "reason": "x"}, "number"),
    ({"number": 13912345678, "reason": "x"}, "number"),
    ({"number": "13912345678\r\nAction: Originate", "reason": "x"}, "number"),
    ({"reason": "x"}, "number"),
    ({"number": NUMBER}, "reason"),
    ({"number": NUMBER, "reason": ""}, "reason"),
    ({"number": NUMBER, "reason": "   "}, "reason"),
    ({"number": NUMBER, "reason": "长" * 201}, "reason"),
    ({"number": NUMBER, "reason": "a\x00b"}, "reason"),
    ({"number": NUMBER, "reason": "x", "extra": 1}, "extra"),
])
async def test_bad_input_is_a_clear_400_and_stores_nothing(desk: Desk, body: dict[str, Any], field: str) -> None:
    status, answer = await desk.call("POST", "/v1/callers/flags", body)
    assert status == 400 and answer["error"] == "invalid_input", answer
    assert answer["details"]["field"] == field and field in answer["message"]
    assert await desk.redis.exists(FLAGS_KEY, AUDIT_KEY) == 0 and desk.pbx.sent == []
    assert (await desk.call("POST", "/v1/callers/flags", b"[1, 2]"))[0] == 400
    assert (await desk.call("POST", "/v1/callers/flags", b"{not json"))[0] == 400
    assert (await desk.call("GET", "/v1/audit/flags?limit=0"))[0] == 400


async def test_the_pbx_gets_each_change_and_everything_again_under_a_new_generation(desk: Desk) -> None:
    await desk.callers.pbx.resync([])  # the first login
    gen = desk.pbx.globals()["LINKAGE_FLAG_GEN"]
    assert desk.pbx.globals()["LINKAGE_FLAG_POLICY"] == "warn"
    await desk.call("POST", "/v1/callers/flags", {"number": "+86" + NUMBER, "reason": "骚扰"})
    await desk.call("POST", "/v1/callers/flags", {"number": "86" + NUMBER, "reason": "骚扰"})
    assert desk.pbx.globals()["LINKAGE_FLAGGED_86" + NUMBER] == gen  # digits only: one caller to the PBX
    await desk.call("POST", "/v1/callers/unflag", {"number": "86" + NUMBER, "reason": "误标"})
    assert desk.pbx.globals()["LINKAGE_FLAGGED_86" + NUMBER] == gen  # "+86…" is still flagged
    # AMI away: the flag is stored and answered `pending`; the next login's resync brings the PBX in line
    desk.pbx.down = True
    status, body = await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "骚扰"})
    assert status == 201 and body["pbx"] == "pending"
    await desk.call("POST", "/v1/callers/unflag", {"number": "+86" + NUMBER, "reason": "误标"})
    desk.pbx.down = False
    desk.pbx.sent.clear()
    await desk.callers.pbx.resync(list(desk.callers.by_number))
    names = [name for name, _ in desk.pbx.sent]
    assert names[-1] == "LINKAGE_FLAG_GEN" and desk.pbx.globals()["LINKAGE_FLAG_GEN"] != gen
    new = desk.pbx.globals()["LINKAGE_FLAG_GEN"]
    assert desk.pbx.globals()["LINKAGE_FLAGGED_" + NUMBER] == new
    assert "LINKAGE_FLAGGED_86" + NUMBER not in desk.pbx.globals()  # stale: its old generation no longer counts


async def test_designated_agents_reach_the_pbx_only_under_that_policy(tmp_path: Path) -> None:
    pbx = FakePbx()
    flags = PbxFlags(_config(tmp_path, policy="designated", designated=("1002",)), pbx.send)
    assert await flags.resync([NUMBER])
    assert pbx.globals()["LINKAGE_FLAG_POLICY"] == "designated"
    assert pbx.globals()["LINKAGE_FLAG_AGENTS"] == "PJSIP/agent1002"
    pbx = FakePbx()
    assert await PbxFlags(_config(tmp_path, designated=("1002",)), pbx.send).resync([])
    assert pbx.globals()["LINKAGE_FLAG_AGENTS"] == ""


async def test_a_flagged_caller_is_named_on_the_call_messages_and_the_pop(desk: Desk) -> None:
    sup, agent = desk.hub.subscribe(None), desk.hub.subscribe("1001")
    await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "多次辱骂坐席"}, desk.tokens["1001"])
    assert sup.queue.get_nowait()["type"] == "caller_flag" and agent.queue.empty()  # the supervisor's notice
    desk.hub.publish_call(CallChange("ringing", "1001", "1.1", NUMBER, 1.0, None, None))
    desk.hub.publish_call(CallChange("ringing", "1001", "1.2", "13800000000", 1.0, None, None))
    flagged, plain = agent.queue.get_nowait(), agent.queue.get_nowait()
    assert flagged["call"]["caller_flag"]["reason"] == "多次辱骂坐席" and flagged["call"]["caller_flag"]["by"] == "1001"
    assert "caller_flag" not in plain["call"]


async def test_repeat_callers_are_suggested_counted_and_never_blocked(desk: Desk) -> None:
    ami = CallerAmi(desk.config, desk.callers)
    hotline = desk.config.accounts.citizen.dial

    async def newchannel(number: str, **over: str) -> None:
        await ami.on_event({"Event": "Newchannel", "Context": "linkage-citizen", "Exten": hotline,
                            "CallerIDNum": number, **over})

    for _ in range(2):
        await newchannel(NUMBER)
    await newchannel(NUMBER, Exten="9999")  # not the hotline
    await newchannel(NUMBER, Context="linkage-from-trunk")  # a linked call, not a citizen's
    await newchannel("<unknown>")
    assert (await desk.call("GET", "/v1/callers/suggestions"))[1]["items"] == []
    await newchannel(NUMBER)  # the third within the minute
    status, body = await desk.call("GET", "/v1/callers/suggestions")
    assert status == 200 and body["calls"] == 3 and body["minutes"] == 1.0
    assert [(s["number"], s["calls"]) for s in body["items"]] == [(NUMBER, 3)]
    assert desk.callers.flag_of(NUMBER) is None and desk.pbx.sent == []  # a suggestion, nothing more
    status, body = await desk.call("GET", "/v1/callers/counts")
    assert body["items"][0] == {"number": NUMBER, "recent": 3, "total": 3, "last": body["items"][0]["last"],
                                "flagged": False}
    # the metrics count calls per number without the number anywhere
    text = "\n".join(str(s) for m in desk.registry.collect() for s in m.samples)
    assert NUMBER not in text
    assert desk.registry.get_sample_value("linkage_hotline_calls_total") == 3
    assert desk.registry.get_sample_value("linkage_repeat_caller_suggestions_total") == 1
    assert desk.registry.get_sample_value("linkage_hotline_calls_per_number_bucket", {"le": "3.0"}) == 3
    # flagged: no longer suggested, its calls counted as flagged
    await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "频繁骚扰"})
    assert (await desk.call("GET", "/v1/callers/suggestions"))[1]["items"] == []
    await newchannel(NUMBER)
    assert desk.registry.get_sample_value("linkage_flagged_calls_total", {"policy": "warn"}) == 1


async def test_flags_survive_a_restart_and_a_duplicate_keeps_the_newest(desk: Desk) -> None:
    await desk.call("POST", "/v1/callers/flags", {"number": NUMBER, "reason": "旧"})
    sealer = Sealer(desk.config.storage.keys)
    store = FlagStore(desk.redis, sealer)
    newer = desk.callers.flags()[0]
    await store.put(None, msgspec.structs.replace(newer, reason="新", at=newer.at + 1))  # a retried write
    assert await desk.redis.hlen(FLAGS_KEY) == 2
    again = CallerService(desk.config, store, PbxFlags(desk.config, FakePbx().send), CallerMetrics(CollectorRegistry()))
    await again.load()
    assert [f.reason for f in again.flags()] == ["新"] and await desk.redis.hlen(FLAGS_KEY) == 1
