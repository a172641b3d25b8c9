"""The queue context's own logic, with the PBX and Redis as small fakes (the lab tests use the real ones):
surge's hysteresis, the members mirrored from app_queue's events, the resync after a login, and requests refused
before anything reaches the PBX."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from linkage_lab.lab.lab import PLANS, Lab
from telephony.config import parse_site_config
from telephony.errors import ConfigError, InvalidInput, NotFound, Unavailable
from telephony.queues.services import QueueService


class FakeRedis:
    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {}

    async def sadd(self, key: str, value: str) -> int:
        self.sets.setdefault(key, set()).add(value)
        return 1

    async def srem(self, key: str, value: str) -> int:
        self.sets.setdefault(key, set()).discard(value)
        return 1

    async def smembers(self, key: str) -> set[bytes]:
        return {v.encode() for v in self.sets.get(key, set())}  # as the real client gives them: bytes


class FakePbx:
    def __init__(self, status: list[dict[str, str]] | None = None, reply: str = "Success") -> None:
        self.sent: list[dict[str, str]] = []
        self.status = status or []
        self.reply = reply

    async def send(self, action: dict[str, str]) -> dict[str, str]:
        self.sent.append(action)
        return {"Response": self.reply, "Message": "refused" if self.reply != "Success" else ""}

    async def list(self, action: dict[str, str]) -> list[dict[str, str]]:
        self.sent.append(action)
        return self.status


def _service(tmp_path: Path, site: str = "110", pbx: FakePbx | None = None, **surge: Any) -> QueueService:
    lab = Lab(rootfs=str(tmp_path))
    raw = lab.site_raw(PLANS[site])
    if surge:
        raw["queue"]["surge"].update(surge)
    config = parse_site_config(raw, "test")
    pbx = pbx or FakePbx()
    return QueueService(config, FakeRedis(), pbx.send, pbx.list, tickets=None)  # type: ignore[arg-type]


def _join(service: QueueService, uid: str, trunk: bool = False) -> None:
    service.on_event({"Event": "QueueCallerJoin", "Queue": service.queue, "Uniqueid": uid,
                      "Channel": "PJSIP/trunk-12345-00000001" if trunk else "PJSIP/citizen-00000001"})


def test_surge_comes_on_at_the_on_bound_and_goes_off_only_below_the_off_bound(tmp_path: Path) -> None:
    service = _service(tmp_path, waiting_on=3, waiting_off=1, oldest_on=30, oldest_off=10)
    surge = service.surge
    for uid in ("a", "b"):
        _join(service, uid)
    assert not surge.due()
    _join(service, "c")
    assert surge.due()
    surge.state.active = True
    service.on_event({"Event": "QueueCallerLeave", "Queue": service.queue, "Uniqueid": "a"})
    assert surge.due()  # 2 waiting: above the off bound, it stays on (no flapping at the on bound)
    service.on_event({"Event": "QueueCallerAbandon", "Queue": service.queue, "Uniqueid": "b"})
    service.waiting["c"].joined = time.time() - 15
    assert surge.due()  # 1 waiting but the oldest waited 15 s > 10
    service.waiting["c"].joined = time.time() - 5
    assert not surge.due()
    surge.state.active = False
    service.waiting["c"].joined = time.time() - 31
    assert surge.due()  # the oldest wait alone turns it on


def test_surge_is_off_without_county_seats(tmp_path: Path) -> None:
    service = _service(tmp_path, site="12345")
    for uid in "abcdefgh":
        _join(service, uid)
    assert not service.surge.due()


def test_other_queues_events_are_ignored_and_members_follow_the_events(tmp_path: Path) -> None:
    service = _service(tmp_path)
    assert not service.on_event({"Event": "QueueMemberPause", "Queue": "other", "Interface": "PJSIP/agent2001",
                                 "Paused": "1"})
    assert service.on_event({"Event": "QueueMemberPause", "Queue": service.queue, "Interface": "PJSIP/agent2001",
                             "MemberName": "2001", "Paused": "1", "PausedReason": "meal"})
    assert (service.members["2001"].paused, service.members["2001"].reason) == (True, "meal")
    service.known = True
    assert not service.available("2001") and service.available("2002") is False  # 2002 not yet seen in the queue
    async def added() -> None:  # the out-set is written in the background: inside a running loop
        service.on_event({"Event": "QueueMemberAdded", "Queue": service.queue, "Interface": "PJSIP/agent2002",
                          "Paused": "0"})
        await asyncio.sleep(0)
    asyncio.run(added())
    assert service.available("2002")


def test_resync_adds_the_configured_agents_but_not_one_who_logged_out(tmp_path: Path) -> None:
    pbx = FakePbx(status=[{"Event": "QueueMember", "Queue": "linkage-110", "Location": "PJSIP/agent2001",
                           "Name": "2001", "Paused": "1", "PausedReason": "training", "CallsTaken": "4"},
                          {"Event": "QueueEntry", "Queue": "linkage-110", "Uniqueid": "u1", "Wait": "12",
                           "Channel": "PJSIP/trunk-12345-0001"}])
    service = _service(tmp_path, pbx=pbx)
    asyncio.run(service.redis.sadd(service.out_key, "2002"))
    asyncio.run(service.resync())
    assert service.known
    assert (service.members["2001"].paused, service.members["2001"].reason, service.members["2001"].calls_taken) \
        == (True, "training", 4)
    assert service.members["2002"].logged_in is False
    assert not any(a.get("Action") == "QueueAdd" for a in pbx.sent)  # 2002 went home: not put back
    assert service.waiting["u1"].linked and 11 < service.oldest_wait() < 14
    assert {"Action": "Setvar", "Variable": "LINKAGE_SURGE", "Value": ""} in pbx.sent


def test_requests_are_checked_before_the_pbx_hears_of_them(tmp_path: Path) -> None:
    pbx = FakePbx()
    service = _service(tmp_path, pbx=pbx)
    with pytest.raises(NotFound):
        asyncio.run(service.act("9999", "login"))
    with pytest.raises(InvalidInput):
        asyncio.run(service.act("2001", "pause", "Action: Originate"))
    with pytest.raises(InvalidInput):
        asyncio.run(service.act("2001", "unpause", "meal"))
    with pytest.raises(InvalidInput):
        asyncio.run(service.act("2001", "sleep"))
    assert pbx.sent == []
    member = asyncio.run(service.act("2001", "pause"))
    assert (member.paused, member.reason) == (True, "break")
    assert pbx.sent[-1] == {"Action": "QueuePause", "Queue": "linkage-110", "Interface": "PJSIP/agent2001",
                            "Paused": "true", "Reason": "break"}
    refusing = _service(tmp_path, pbx=FakePbx(reply="Error"))
    with pytest.raises(Unavailable):
        asyncio.run(refusing.act("2001", "logout"))


@pytest.mark.parametrize(("override", "key"), [
    ({"surge": {"to": ["nowhere"]}}, "queue.surge.to[0]"),
    ({"surge": {"to": ["110-370811"], "waiting_on": 2, "waiting_off": 2}}, "queue.surge.waiting_off"),
    ({"surge": {"to": ["110-370811"], "oldest_on": 10, "oldest_off": 20}}, "queue.surge.oldest_off"),
    ({"login_code": "*61"}, "queue.logout_code"),
    ({"strategy": "loudest"}, "queue.strategy"),
])
def test_bad_queue_config_is_named(tmp_path: Path, override: dict[str, Any], key: str) -> None:
    raw = Lab(rootfs=str(tmp_path)).site_raw(PLANS["110"])
    raw["queue"] = {**raw["queue"], **override}
    with pytest.raises(ConfigError) as err:
        parse_site_config(raw, "test")
    assert key in err.value.message


def test_a_pbx_that_fails_mid_resync_does_not_end_the_queue_task(tmp_path: Path) -> None:
    class Failing(FakePbx):
        async def send(self, action: dict[str, str]) -> dict[str, str]:
            raise TimeoutError("AMI action timed out")

    service = _service(tmp_path, pbx=Failing())

    async def one_login() -> None:
        login = asyncio.Event()
        login.set()
        task = asyncio.create_task(service.run(login))
        await asyncio.sleep(0.2)
        assert not task.done()  # resync failed (QueueAdd unreachable): logged, the task goes on
        task.cancel()
    asyncio.run(one_login())
