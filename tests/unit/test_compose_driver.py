"""docker/compose.py without Podman: interpolation, the keys it refuses, start order, the `podman run` it builds
from the real docker/compose.yaml; and `linkage config render --rtp-ports`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("linkage_compose_driver", ROOT / "docker" / "compose.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compose = _driver()
ENV = {"LINKAGE_SITE_DIR": "/srv/s", "LINKAGE_TESTER_SECRET": "abcdef123", "LINKAGE_REDIS_PORT": "45379"}


def test_interpolation_defaults_required_and_escapes() -> None:
    assert compose.interpolate("${A:-x}-${B}-$$", {"B": "b"}) == "x-b-$"
    with pytest.raises(compose.ComposeError, match="A: needed"):
        compose.interpolate(["${A:?needed}"], {})
    assert compose.interpolate("${A:?needed}", {}, strict=False) == ""


def test_the_real_file_starts_render_first_and_the_controller_last() -> None:
    loaded = compose.load(ROOT / "docker" / "compose.yaml", ENV)
    assert compose.order(loaded["services"]) == ["render", "asterisk", "redis", "controller"]
    assert "recordings" in loaded["volumes"] and "redis-data" in loaded["volumes"]


def test_run_argv_is_hardened_and_names_volumes_by_project() -> None:
    loaded = compose.load(ROOT / "docker" / "compose.yaml", ENV)
    argv = compose.run_argv("p1", "asterisk", loaded["services"]["asterisk"], loaded["volumes"])
    assert {"--network", "host", "--read-only", "--cap-drop=ALL", "--group-add=10001"} <= set(argv)
    assert "--volume=p1_recordings:/srv/linkage-asterisk/spool/monitor" in argv
    assert "--volume=p1_asterisk-etc:/srv/linkage-asterisk/etc:ro" in argv
    redis = compose.run_argv("p1", "redis", loaded["services"]["redis"], loaded["volumes"])
    assert redis[redis.index("--port") + 1] == "45379"


def test_keys_it_does_not_implement_are_refused(tmp_path: Path) -> None:
    doc: dict[str, Any] = {"services": {"a": {"image": "x", "ports": ["80:80"]}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(compose.ComposeError, match="ports"):
        compose.load(tmp_path / "c.yaml", {})
    doc = {"services": {"a": {"image": "x", "network_mode": "bridge"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(compose.ComposeError, match="network_mode"):
        compose.load(tmp_path / "c.yaml", {})


def test_render_takes_the_rtp_range(tmp_path: Path) -> None:
    from telephony.cli import main

    site = {"site": {"name": "12345", "platform": "12345", "level": "city", "division": "370800"},
            "pbx": {"sip": {"host": "127.0.0.1", "port": 45060},
                    "ami": {"host": "127.0.0.1", "port": 45038, "username": "linkage", "secret": "abcdef123456"},
                    "agi": {"host": "127.0.0.1", "port": 45573}},
            "controller": {"http": {"host": "127.0.0.1", "port": 45080}, "public_url": "http://127.0.0.1:45080",
                           "api_token": "tok0123456789abcdef0123"},
            "redis": {"url": "redis://127.0.0.1:45379/0"},
            "accounts": {"citizen": {"host": "127.0.0.1", "port": 45070, "dial": "12345"},
                         "agents": [{"id": "1001", "host": "127.0.0.1", "port": 45081}]}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    assert main(["config", "render", "--config", str(tmp_path / "site.yaml"), "--out", str(tmp_path / "out"),
                 "--rtp-ports", "31000-31998"]) == 0
    rtp = (tmp_path / "out" / "etc" / "rtp.conf").read_text()
    assert "31000" in rtp and "31998" in rtp
    with pytest.raises(SystemExit):
        main(["config", "render", "--config", str(tmp_path / "site.yaml"), "--out", str(tmp_path / "o2"),
              "--rtp-ports", "99-10"])
