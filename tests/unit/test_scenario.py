"""Scenario files: every shipped scenario loads; a broken one fails with a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from linkage_lab.harness.scenario import load
from telephony.errors import ConfigError

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 2


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path: Path) -> None:
    s = load(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert s.name == raw["name"]
    assert s.path == path
    assert [r.name for r in s.roles] == [r["name"] for r in raw["roles"]]
    for role in s.roles:
        assert role.sipp.is_file()
        assert role.calls is (role.account == "citizen" or role.dial is not None)
    assert s.tickets  # every scenario checks the tickets it leaves on the controllers
    assert s.budget == float(raw.get("budget", 30))


def test_happy_path_details() -> None:
    s = load(next(p for p in SCENARIOS if p.stem == "onekey_happy"))
    agent = next(r for r in s.roles if r.name == "agent-12345")
    assert (agent.site, agent.account, agent.dtmf) == ("12345", "agents[0]", "onekey")
    assert agent.params == {"talk": "1000"}
    citizen = next(r for r in s.roles if r.name == "citizen")
    assert citizen.params == {"caller": "13912345678", "hold": "4000"}
    assert citizen.dtmf is None
    blind = [e for e in s.ami if e.match == {"Event": "BlindTransfer", "Result": "Success"}]
    assert [(e.site, e.count) for e in blind] == [("12345", 1)]
    t110 = next(t for t in s.tickets if t.site == "110")
    assert t110.status == "signed_for"
    assert t110.history == ["created", "delivered", "offered", "signed_for"]
    assert t110.payload == {"delivered": {"via": "push"}}
    [action] = s.actions
    assert (action.at, action.site, action.transition, action.amend, action.expect) == (0.8, "12345", None, None,
                                                                                        None)
    assert action.draft["category"] == "report"
    # what the 12345 agent typed is what both sites must hold
    assert action.draft["division"] == t110.fields["division"] == "370800"
    assert action.draft["address"] == t110.fields["address"]
    [media] = s.media
    assert (media.role, media.site, media.max_gap_ms) == ("citizen", "12345", 300.0)
    assert media.start == {"Event": "DTMFEnd", "Digit": "8"}


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny", "description": "one role", "budget": 5,
        "roles": [{"name": "citizen", "site": "12345", "account": "citizen", "sipp": "sipp/call.xml",
                   "params": {"caller": "13912345678"}}],
        "expect": {"ami": {"12345": [{"match": {"Event": "DialBegin"}, "count": 2}]},
                   "tickets": {"12345": {"status": "created"}}},
    }
    data.update(overrides)
    return data


def write(tmp_path: Path, data: Any) -> Path:
    (tmp_path / "sipp").mkdir(exist_ok=True)
    (tmp_path / "sipp" / "call.xml").write_text("<scenario/>", encoding="utf-8")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def failure(tmp_path: Path, data: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in info.value.message
    return info.value.message


def test_minimal_scenario_loads(tmp_path: Path) -> None:
    s = load(write(tmp_path, base()))
    assert s.roles[0].sipp == (tmp_path / "sipp" / "call.xml").resolve()
    assert (s.budget, s.settle) == (5.0, 3.0)
    assert [(e.site, e.match, e.count) for e in s.ami] == [("12345", {"Event": "DialBegin"}, 2)]
    assert s.tickets[0].status == "created" and s.tickets[0].count == 1


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    assert "expects: unknown key" in failure(tmp_path, base(expects={}))


def test_missing_sipp_file_is_refused(tmp_path: Path) -> None:
    data = base()
    data["roles"][0]["sipp"] = "sipp/nope.xml"
    assert "roles[0].sipp" in failure(tmp_path, data)


@pytest.mark.parametrize("account", ["supervisor", "agents[10]", "agents[x]", "agents", "citizen "])
def test_bad_account_is_refused(tmp_path: Path, account: str) -> None:
    data = base()
    data["roles"][0]["account"] = account
    assert "roles[0].account" in failure(tmp_path, data)


@pytest.mark.parametrize("value", ["two words", "a\"b", "<tag>", "x" * 65, "a\nb"])
def test_param_with_bad_characters_is_refused(tmp_path: Path, value: str) -> None:
    data = base()
    data["roles"][0]["params"] = {"caller": value}
    assert "roles[0].params.caller" in failure(tmp_path, data)


def test_role_missing_fields_is_refused(tmp_path: Path) -> None:
    data = base()
    del data["roles"][0]["sipp"]
    assert "roles[0]" in failure(tmp_path, data)


def test_no_roles_is_refused(tmp_path: Path) -> None:
    assert "roles:" in failure(tmp_path, base(roles=[]))


def test_missing_name_is_refused(tmp_path: Path) -> None:
    data = base()
    del data["name"]
    assert "name:" in failure(tmp_path, data)


def test_ami_expectation_without_match_is_refused(tmp_path: Path) -> None:
    assert "expect.ami.12345[0]" in failure(tmp_path, base(expect={"ami": {"12345": [{"count": 1}]}}))


def test_action_without_a_draft_is_refused(tmp_path: Path) -> None:
    assert "actions[0]" in failure(tmp_path, base(actions=[{"at": 1, "site": "12345"}]))


def test_media_expectation_for_an_unknown_role_is_refused(tmp_path: Path) -> None:
    media = [{"role": "ghost", "site": "12345", "from": {"Event": "A"}, "to": {"Event": "B"}}]
    assert "expect.media[0].role" in failure(tmp_path, base(expect={"media": media}))


def test_unreadable_or_invalid_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load(bad)


@pytest.mark.parametrize("overrides, problem", [
    ({"budget": "soon"}, "malformed scenario"), ({"expect": ["ami"]}, "expect: must be a mapping"),
    ({"expect": {"ami": {"12345": [{"match": {"Event": "X"}, "count": "two"}]}}}, "malformed scenario"),
])
def test_bad_numbers_and_shapes_raise_config_error(tmp_path: Path, overrides: dict[str, Any], problem: str) -> None:
    assert problem in failure(tmp_path, base(**overrides))


def test_make_run_says_where_each_console_is_without_printing_a_token(tmp_path: Path) -> None:
    from linkage_lab.harness.demo import console_help
    from linkage_lab.lab.lab import Lab
    desc = Lab(rootfs=str(tmp_path)).describe()
    text = console_help(desc)
    for name, site in desc["sites"].items():
        assert f"{site['http']}/console" in text and name in text
        assert site["token"] not in text
        assert all(a["token"] not in text for a in site["accounts"]["agents"])


def test_make_run_waits_in_a_terminal_for_the_viewer_and_never_in_a_pipe() -> None:
    """The demo call popped up before anyone could sign in to watch it: in a terminal it now waits for Enter
    (at most its timeout); in a pipe (CI, tests) it does not wait. A real pseudo-terminal, not a stub."""
    import io
    import os
    import pty
    import time

    from linkage_lab.harness.demo import wait_for_viewer

    assert wait_for_viewer(io.StringIO(""), 60) == "not a terminal"
    r, w = os.pipe()
    try:
        with os.fdopen(r, closefd=False) as piped:
            started = time.monotonic()
            assert wait_for_viewer(piped, 60) == "not a terminal" and time.monotonic() - started < 1
    finally:
        os.close(r)
        os.close(w)
    controller, terminal = pty.openpty()
    try:
        with os.fdopen(terminal, closefd=False) as tty:
            assert wait_for_viewer(tty, 0.2) == "timeout"
            os.write(controller, b"\n")
            assert wait_for_viewer(tty, 5) == "enter"
    finally:
        os.close(controller)
        os.close(terminal)
