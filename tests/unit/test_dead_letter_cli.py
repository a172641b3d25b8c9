"""`linkage dead list|replay|drop` through the CLI's main function, with a temporary site config whose Redis is
the tests' real one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from throwaway import free_port

from linkage_lab.lab.lab import SITES, Lab
from telephony.cli import main
from telephony.config import load_site_config
from telephony.delivery import deadletters
from telephony.security.sealing import Sealer
from telephony.tickets.store import outbox_key

DB = 12
TID = "37080020260101120000123456"


@pytest.fixture
def site(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, redis.Redis]]:
    import os

    for name in list(os.environ):
        if name.startswith("LINKAGE_"):
            monkeypatch.delenv(name)
    raw = Lab(rootfs=str(tmp_path)).site_raw(SITES[0])
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    raw["redis"]["url"] = url
    path = tmp_path / "linkage.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    client = redis.Redis.from_url(url)
    client.flushdb()
    sealer = Sealer(load_site_config(path).storage.keys)
    for n in (1, 2, 3):
        message = {"kind": "event", "body": {"id": f"{n:032x}", "ticket_id": TID, "type": "accepted",
                                             "payload": {"result": "call 13912345678"}}}
        client.rpush(deadletters.dead_key("110"), deadletters.envelope(sealer, message, "peer answered 400:\n x"))
    yield str(path), client
    client.close()


def queued(client: redis.Redis, config: str) -> list[str]:
    sealer = Sealer(load_site_config(config).storage.keys)
    return [json.loads(sealer.open(m))["body"]["id"] for m in client.lrange(outbox_key("110"), 0, -1)]


def test_list_as_text_and_json(site: tuple[str, redis.Redis], capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = site
    assert main(["dead", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "peer 110: 3 dead letter(s)" in out and f"[2] event ticket {TID} event accepted {3:032x}" in out
    assert "13912345678" not in out and "\\x0a" in out and len(out.splitlines()) == 4
    assert main(["dead", "list", "--config", config, "--peer", "110", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [i["index"] for i in listing["peers"][0]["items"]] == [0, 1, 2]


def test_replay_one_then_all(site: tuple[str, redis.Redis], capsys: pytest.CaptureFixture[str]) -> None:
    config, client = site
    assert main(["dead", "replay", "--config", config, "--peer", "110", "--index", "2"]) == 0
    assert main(["dead", "replay", "--config", config, "--peer", "110", "--all"]) == 0
    assert queued(client, config) == [f"{n:032x}" for n in (3, 1, 2)]
    assert client.llen(deadletters.dead_key("110")) == 0
    assert "replayed 2 message(s)" in capsys.readouterr().out


def test_drop_needs_yes(site: tuple[str, redis.Redis], capsys: pytest.CaptureFixture[str]) -> None:
    config, client = site
    assert main(["dead", "drop", "--config", config, "--peer", "110", "--index", "0"]) == 2
    assert "--yes" in capsys.readouterr().err and client.llen(deadletters.dead_key("110")) == 3
    assert main(["dead", "drop", "--config", config, "--peer", "110", "--index", "0", "--yes"]) == 0
    assert client.llen(deadletters.dead_key("110")) == 2 and client.llen(outbox_key("110")) == 0


@pytest.mark.parametrize("argv", [
    ["dead", "replay", "--index", "0"],  # no --peer
    ["dead", "replay", "--peer", "110"],  # neither --index nor --all
    ["dead", "replay", "--peer", "110", "--index", "0", "--all"],
    ["dead", "list", "--peer", "nowhere"],
    ["dead", "replay", "--peer", "110", "--index", "9"],  # no such entry
    ["dead", "drop", "--peer", "110", "--all", "--yes"],
])
def test_refusals_change_nothing(site: tuple[str, redis.Redis], argv: list[str]) -> None:
    config, client = site
    assert main([*argv, "--config", config]) == 2
    assert client.llen(deadletters.dead_key("110")) == 3 and client.llen(outbox_key("110")) == 0


def test_redis_down_is_said_plainly(site: tuple[str, redis.Redis], capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = site
    raw = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    raw["redis"]["url"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    Path(config).write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["dead", "list", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "127.0.0.1" not in err
