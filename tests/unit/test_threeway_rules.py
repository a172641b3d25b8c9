"""The plan's negotiation rules for a three-way call, and the site's configuration of them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from linkage_lab.lab.lab import SITES, Lab
from telephony.config import parse_site_config
from telephony.errors import ConfigError
from telephony.threeway import rules
from telephony.threeway.rules import Facts, Outcome, Policy

POLICY = Policy(frozenset({"report"}), "110")
AGENT, FAR, CALLER = "PJSIP/agent1001-00000002", "PJSIP/trunk-110-00000003", "PJSIP/citizen-00000001"


# ---- who keeps the caller ---------------------------------------------------------------------------

@pytest.mark.parametrize("platform", ["12345", "110"])
@pytest.mark.parametrize("category", ["report", "complaint", ""])
def test_an_agent_who_accepts_keeps_the_caller_for_their_platform_whatever_the_matter(
        platform: str, category: str) -> None:
    facts = Facts(rules.ACCEPTED, category=category, first_receiver="12345", accepted_by=platform, by="x/1001")
    assert rules.decide(facts, POLICY) == Outcome(platform, "agreed", "x/1001")


@pytest.mark.parametrize("why", [rules.TIMEOUT, rules.BOTH_LEFT])
def test_undecided_the_first_receiving_platform_keeps_the_caller(why: str) -> None:
    facts = Facts(why, category="complaint", first_receiver="12345")
    assert rules.decide(facts, POLICY) == Outcome("12345", "first_receiver", why)


@pytest.mark.parametrize("why", [rules.TIMEOUT, rules.BOTH_LEFT])
def test_undecided_an_emergency_stays_with_the_emergency_platform(why: str) -> None:
    facts = Facts(why, category="report", first_receiver="12345")
    assert rules.decide(facts, POLICY) == Outcome("110", "emergency_110", why)


def test_the_emergency_platform_is_the_configured_one_and_the_rule_keeps_its_name() -> None:
    policy = Policy(frozenset({"report", "fire"}), "119")
    facts = Facts(rules.TIMEOUT, category="fire", first_receiver="12345")
    assert rules.decide(facts, policy) == Outcome("119", "emergency_110", "timeout")


def test_an_emergency_first_received_by_the_emergency_platform_stays_there_by_the_emergency_rule() -> None:
    facts = Facts(rules.TIMEOUT, category="report", first_receiver="110")
    assert rules.decide(facts, POLICY) == Outcome("110", "emergency_110", "timeout")


def test_no_emergency_categories_means_the_first_receiver_always_keeps_it() -> None:
    facts = Facts(rules.BOTH_LEFT, category="report", first_receiver="12345")
    assert rules.decide(facts, Policy(frozenset(), "110")) == Outcome("12345", "first_receiver", "both_left")


@pytest.mark.parametrize("category", ["report", "complaint"])
def test_when_the_caller_leaves_nobody_keeps_anything(category: str) -> None:
    facts = Facts(rules.CALLER_LEFT, category=category, first_receiver="12345", accepted_by="110")
    assert rules.decide(facts, POLICY) == Outcome("", "caller_left", "caller")


def test_an_unknown_trigger_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        rules.decide(Facts("shrug"), POLICY)


def test_every_trigger_is_decided() -> None:
    assert {rules.decide(Facts(t, first_receiver="12345", accepted_by="110"), POLICY).rule
            for t in rules.TRIGGERS} == {"agreed", "first_receiver", "caller_left"}


def test_the_outcome_is_the_decided_events_payload() -> None:
    assert Outcome("110", "agreed", "110").payload() == {"keeper": "110", "rule": "agreed", "by": "110"}


# ---- who pressed, who left --------------------------------------------------------------------------

@pytest.mark.parametrize(("channel", "far", "who"), [
    (AGENT, FAR, rules.OURS),
    (AGENT, "", rules.OURS),  # our agent may decide before the other platform has joined
    (FAR, FAR, rules.THEIRS),
    (CALLER, FAR, ""),  # the caller's key decides nothing
    ("", FAR, ""),  # a uniqueid that is not in the conference
    ("", "", ""),  # ... even before the other platform joined
])
def test_who_pressed_accept(channel: str, far: str, who: str) -> None:
    assert rules.presser(channel, AGENT, far) == who


@pytest.mark.parametrize(("far", "left", "both"), [
    (FAR, {AGENT, FAR}, True),
    (FAR, {AGENT}, False),
    (FAR, {FAR}, False),
    (FAR, {AGENT, FAR, CALLER}, True),
    ("", {AGENT}, False),  # the other platform never joined: that is not "both left"
    ("", {AGENT, ""}, False),
])
def test_both_agents_left(far: str, left: set[str], both: bool) -> None:
    assert rules.both_agents_left(AGENT, far, left) is both


# ---- after the decision -----------------------------------------------------------------------------

@pytest.mark.parametrize(("ours", "members", "kick"), [
    (True, {CALLER: "1", AGENT: "2", FAR: "3"}, FAR),  # we keep it: their agent goes
    (False, {CALLER: "1", AGENT: "2", FAR: "3"}, AGENT),  # they keep it: ours goes
    (True, {CALLER: "1", AGENT: "2"}, ""),  # their agent already left: nobody to release
    (False, {CALLER: "1", FAR: "3"}, ""),
])
def test_the_other_platforms_agent_is_released(ours: bool, members: dict[str, str], kick: str) -> None:
    assert rules.release(ours, AGENT, FAR, members) == kick


def test_nobody_is_released_when_the_other_platform_never_joined() -> None:
    assert rules.release(True, AGENT, "", {CALLER: "1", AGENT: "2", "": "4"}) == ""


@pytest.mark.parametrize(("ours", "far", "members", "where"), [
    (True, FAR, {CALLER: "1", AGENT: "2", FAR: "3"}, ""),  # the keeper's agent is there: nothing to do
    (False, FAR, {CALLER: "1", AGENT: "2", FAR: "3"}, ""),
    (True, FAR, {CALLER: "1", FAR: "3"}, rules.HERE),  # we keep it, our agent left: ring our agents
    (False, FAR, {CALLER: "1", AGENT: "2"}, rules.THERE),  # they keep it, theirs left: dial them again
    (False, "", {CALLER: "1", AGENT: "2"}, rules.THERE),  # they keep it and never joined
    (True, FAR, {FAR: "3"}, ""),  # the caller is gone too: nobody to bring
    (False, FAR, {AGENT: "2"}, ""),
])
def test_a_caller_left_alone_is_brought_to_the_keeper(ours: bool, far: str, members: dict[str, str],
                                                      where: str) -> None:
    assert rules.rescue(ours, AGENT, far, CALLER, members) == where


# ---- the site's configuration -----------------------------------------------------------------------

@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Any]:
    return copy.deepcopy(Lab(rootfs=str(tmp_path)).site_raw(SITES[0]))


def test_the_emergency_platform_defaults_to_110(raw: dict[str, Any]) -> None:
    raw.get("threeway", {}).pop("emergency_platform", None)
    config = parse_site_config(raw, "site.yaml")
    assert config.threeway.emergency_platform == "110"
    assert config.threeway.emergency_categories == ("report",)


@pytest.mark.parametrize("value", ["119", 119, "110-370811"])
def test_the_emergency_platform_is_read_from_the_threeway_section(raw: dict[str, Any], value: Any) -> None:
    raw.setdefault("threeway", {})["emergency_platform"] = value
    assert parse_site_config(raw, "site.yaml").threeway.emergency_platform == str(value)


@pytest.mark.parametrize("value", ["", "1 10", "-110", ["110"], True])
def test_a_bad_emergency_platform_is_named(raw: dict[str, Any], value: Any) -> None:
    raw.setdefault("threeway", {})["emergency_platform"] = value
    with pytest.raises(ConfigError) as info:
        parse_site_config(raw, "site.yaml")
    assert info.value.details["key"] == "threeway.emergency_platform"
