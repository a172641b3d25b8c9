"""Asterisk configuration rendered from the lab's site 12345 config."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import msgspec
import pytest

from linkage_lab.lab.lab import PLANS, SITES, Lab, SitePlan
from telephony.config import SiteConfig
from telephony.errors import ConfigError
from telephony.pbx.render import ROOT, PbxExtras, _fill, dynamic_features, render, write

EXTRAS = PbxExtras("/srv/linkage-lab/12345", "tester", "TesterSecret1", 30000, 30998)


@pytest.fixture
def config(tmp_path: Path) -> SiteConfig:
    return Lab(rootfs=str(tmp_path)).site_config(SITES[0])


@pytest.fixture
def files(config: SiteConfig) -> dict[str, str]:
    return render(config, EXTRAS)


def test_every_template_is_rendered(files: dict[str, str]) -> None:
    templates = {p.name.removesuffix(".in") for folder in ("config/asterisk", "dialplans")
                 for p in (ROOT / folder).glob("*.conf.in")}
    assert set(files) == templates
    expected = {"extensions.conf", "manager.conf", "pjsip.conf", "linkage.conf", "linkage-features.conf"}
    assert expected <= templates


def test_no_placeholder_is_left(files: dict[str, str]) -> None:
    left = {name: re.findall(r"@@\w*@@?", text) for name, text in files.items() if "@@" in text}
    assert left == {}


def test_dialplan_routes_out_to_110(files: dict[str, str], config: SiteConfig) -> None:
    dialplan = files["linkage.conf"]
    assert "exten => _110*X.,1,Set(LINKAGE_ID=${EXTEN:4})" in dialplan
    # the ticket headers are inherited from the caller's channel: no pre-dial handler (autoservice) on the trunk
    assert (" same => n,Gosub(linkage-headers,s,1(${LINKAGE_ID}))\n"
            f" same => n,Dial(PJSIP/110@trunk-110,{config.transfer.ring_timeout + 5},r)\n") in dialplan
    assert "PJSIP_INHERITABLE_HEADER(add,X-Linkage-Id)=${ARG1}" in dialplan
    assert "PJSIP_INHERITABLE_HEADER(update,X-Linkage-Id)=${ARG1}" in dialplan  # the press after a recall
    assert "(remove," not in dialplan  # removing inheritable headers crashed Asterisk 22.10.1
    assert "exten => 12345,1," in dialplan  # the hotline
    # the hotline's callers wait in the site's queue; t: the agent may be the transferer of the consult key's
    # attended transfer; r: ringback; no pre-dial handler: the agents' endpoints carry DYNAMIC_FEATURES (set_var)
    assert f"(queue),Queue(linkage-12345,tr,,,{config.queue.max_wait})" in dialplan
    assert ("exten => *623,1,Gosub(linkage-queue-agent,s,1)\n"
            " same => n,PauseQueueMember(linkage-12345,PJSIP/${CHANNEL(endpoint)},,training)") in dialplan
    assert dialplan.count("Gosub(linkage-queue-agent,s,1)") == 9  # every code: only an agent's phone
    queues = files["linkage-queues.conf"]
    assert "[linkage-12345]" in queues and "strategy = ringall" in queues and "ringinuse = yes" in queues
    assert "b(" not in "".join(line for line in dialplan.splitlines() if "Dial(" in line and "recall" not in line)
    assert "Goto(linkage-recall,${LINKAGE_ID},1)" in dialplan  # a failed transfer recalls the caller


def test_applicationmap_has_one_feature_per_target(files: dict[str, str]) -> None:
    features = files["linkage-features.conf"].splitlines()
    assert "[applicationmap]" in features
    assert [line for line in features if line.startswith("linkage-")] == [
        "linkage-to-110 => *8,self,Gosub(linkage-onekey,s,1(110,110)),default",
        "linkage-to-120 => *2,self,Gosub(linkage-onekey,s,1(120,120)),default",
        "linkage-bench-baseline => *5,self,Gosub(linkage-bench,s,1),default",  # the lab enables the bench keys
        "linkage-bench-floor => *4,self,Gosub(linkage-bench-floor,s,1),default",
        "linkage-threeway => *9,self,Gosub(linkage-threeway,s,1),default",
        "linkage-consult => *7,self,Gosub(linkage-consult,s,1),default",
    ]


def test_feature_keys_come_from_the_targets(config: SiteConfig) -> None:
    targets = (msgspec.structs.replace(config.targets[0], key="#9"),)
    files = render(msgspec.structs.replace(config, targets=targets), EXTRAS)
    assert "linkage-to-110 => #9,self,Gosub(linkage-onekey,s,1(110,110)),default" in files["linkage-features.conf"]
    assert "*8,self" not in files["linkage-features.conf"]
    assert "linkage-to-120" not in files["linkage-features.conf"]


def test_agent_legs_enable_every_target_feature(files: dict[str, str], config: SiteConfig) -> None:
    features = ("linkage-to-110#linkage-to-120#linkage-bench-baseline#linkage-bench-floor#linkage-threeway"
                "#linkage-consult")
    assert dynamic_features(config) == features
    assert f"exten => s,1,Set(DYNAMIC_FEATURES={features})" in files["linkage.conf"]


def test_phone_only_target_gets_an_endpoint_and_a_direct_route(files: dict[str, str], config: SiteConfig) -> None:
    pjsip = files["pjsip.conf"]
    assert "[target-120](endpoint-common)" in pjsip
    assert "contact = sip:127.0.0.1:15090" in pjsip
    assert "endpoint = target-120" in pjsip and "match = 127.0.0.1:15090" in pjsip
    dialplan = files["linkage.conf"]
    assert "exten => _120*X.,1,Set(LINKAGE_ID=${EXTEN:4})" in dialplan
    # no ticket headers: a phone-only desk has no controller to fetch them from
    assert f" same => n,Dial(PJSIP/120@target-120,{config.transfer.ring_timeout + 5},r)\n" in dialplan
    assert "trunk-120" not in pjsip + dialplan


def test_a_target_reached_via_a_peer_dials_that_peers_trunk(tmp_path: Path) -> None:
    county = Lab(rootfs=str(tmp_path)).site_config(PLANS["110-370811"])
    dialplan = render(county, EXTRAS)["linkage.conf"]
    assert "exten => _12345*X.,1,Set(LINKAGE_ID=${EXTEN:6})" in dialplan
    assert f"Dial(PJSIP/12345@trunk-110,{county.transfer.ring_timeout + 5},r)" in dialplan


@pytest.mark.parametrize("plan", SITES, ids=lambda p: p.name)
def test_every_lab_site_renders_completely(tmp_path: Path, plan: SitePlan) -> None:
    config = Lab(rootfs=str(tmp_path)).site_config(plan)
    files = render(config, EXTRAS)
    assert [name for name, text in files.items() if "@@" in text] == []
    for t in config.targets:
        assert f"linkage-to-{t.name} => {t.key},self,Gosub(linkage-onekey,s,1({t.name},{t.dial})),default" \
            in files["linkage-features.conf"]
        assert f"exten => _{t.dial}*X.,1," in files["linkage.conf"]
    for p in config.peers:
        assert f"[trunk-{p.name}](endpoint-common)" in files["pjsip.conf"]


def test_manager_denies_all_and_permits_the_ami_host(files: dict[str, str], config: SiteConfig) -> None:
    manager = files["manager.conf"]
    lines = [line.strip() for line in manager.splitlines()]
    assert "deny = 0.0.0.0/0.0.0.0" in lines
    assert f"permit = {config.pbx.ami.host}/255.255.255.255" in lines
    assert f"bindaddr = {config.pbx.ami.host}" in lines
    assert f"port = {config.pbx.ami.port}" in lines
    assert f"[{config.pbx.ami.username}]" in lines and f"secret = {config.pbx.ami.secret}" in lines
    assert "[tester]" in lines and "secret = TesterSecret1" in lines
    # every user section denies first, then permits
    permit = f"permit = {config.pbx.ami.host}/255.255.255.255"
    assert lines.count("deny = 0.0.0.0/0.0.0.0") == lines.count(permit) == 2


def test_agents_and_trunk_in_pjsip(files: dict[str, str]) -> None:
    pjsip = files["pjsip.conf"]
    assert "contact = sip:1001@127.0.0.1:15081" in pjsip
    assert "contact = sip:1002@127.0.0.1:15082" in pjsip
    # only agents' channels get the transfer keys, set by their endpoints (not by a pre-dial handler)
    features = "set_var = DYNAMIC_FEATURES=linkage-to-110#linkage-to-120#linkage-bench-baseline#"
    assert pjsip.count(features) == 2
    assert "[trunk-110](endpoint-common)" in pjsip
    assert "match = 127.0.0.1:25060" in pjsip


def test_globals_point_at_the_agi_server(files: dict[str, str]) -> None:
    assert "LINKAGE_AGI=agi://127.0.0.1:15573" in files["linkage-globals.conf"]
    assert "LINKAGE_URL=http://127.0.0.1:15080" in files["linkage-globals.conf"]


def test_includes_use_the_site_directory(files: dict[str, str]) -> None:
    assert '#include "/srv/linkage-lab/12345/etc/linkage.conf"' in files["extensions.conf"]


def test_site_without_targets_has_no_out_route_and_no_feature(config: SiteConfig) -> None:
    files = render(msgspec.structs.replace(config, peers=(), targets=()), EXTRAS)
    assert "; no transfer targets configured" in files["linkage.conf"]
    assert "; no transfer targets configured" in files["linkage-features.conf"]
    assert "Set(DYNAMIC_FEATURES=none)" in files["linkage.conf"]
    assert "_110*X." not in files["linkage.conf"]
    assert "trunk-110" not in files["pjsip.conf"]


def test_fill_substitutes_values() -> None:
    assert _fill("a=@@A@@ b=@@B_C@@ @@ x", {"A": "1", "B_C": "2"}, "t.conf.in") == "a=1 b=2 @@ x"


def test_fill_with_a_missing_value_raises() -> None:
    with pytest.raises(ConfigError) as info:
        _fill("host = @@AMI_HOST@@\nport = @@AMI_PORT@@\n", {"AMI_HOST": "127.0.0.1"}, "manager.conf.in")
    assert "manager.conf.in" in info.value.message
    assert "@@AMI_PORT@@" in info.value.message


def test_write_creates_the_files(files: dict[str, str], tmp_path: Path) -> None:
    etc = tmp_path / "site" / "etc"
    write(files, etc)
    assert sorted(p.name for p in etc.iterdir()) == sorted(files)
    assert (etc / "manager.conf").read_text(encoding="utf-8") == files["manager.conf"]


def test_the_bench_baseline_reaches_the_far_agent_without_any_agi(tmp_path: Path) -> None:
    """The baseline 12345 sends (8 + the far number) must meet its own extension at 110, not the linked-call
    pattern `_X.` with its route_in AGI: the comparison is meant to be against the dialplan alone."""
    lab = Lab(rootfs=str(tmp_path))
    sender = lab.site_config(PLANS["12345"])
    far = lab.site_config(PLANS["110"])
    out = render(sender, PbxExtras("/x", "tester", "secret123", 30000, 30998))["linkage.conf"]
    sent = re.search(r"exten => bench,1,Dial\(PJSIP/(\d+)@trunk-110", out)
    assert sent is not None
    inbound = render(far, PbxExtras("/x", "tester", "secret123", 31000, 31998))["linkage.conf"]
    line = next(ln for ln in inbound.splitlines() if ln.startswith(f"exten => {sent.group(1)},1,"))
    dial = f"Dial(PJSIP/agent{far.accounts.agents[0].id},{far.transfer.ring_timeout},r)"
    assert "AGI" not in line and line.endswith(dial)


def test_the_controller_is_sent_only_the_events_it_reads(files: dict[str, str]) -> None:
    """manager.conf filters the controller's AMI user to the events its code handles; the tester sees all."""
    from telephony.ami.session import INTERESTING
    from telephony.pbx.render import AMI_EVENTS

    assert INTERESTING | {"Newchannel", "Newstate", "BridgeEnter", "Hangup"} == set(AMI_EVENTS)
    sections = {part.split("]", 1)[0]: part for part in files["manager.conf"].split("\n[")[1:]}
    controller, tester = sections["linkage"], sections["tester"]
    assert {f"eventfilter(action(include),name({e})) =" for e in AMI_EVENTS} <= set(controller.splitlines())
    assert "eventfilter" not in tester


def test_the_bench_floor_is_the_baseline_plus_one_bare_agi_on_each_pbx(tmp_path: Path) -> None:
    """The floor path: the baseline's blind transfer with one FastAGI to the controller's bench_floor script on
    the sending PBX before the transfer and one on the far PBX before it rings; no ticket, no headers."""
    lab = Lab(rootfs=str(tmp_path))
    sender, far = lab.site_config(PLANS["12345"]), lab.site_config(PLANS["110"])
    assert sender.bench.agi_floor_key == "*4"
    files = render(sender, PbxExtras("/x", "tester", "secret123", 30000, 30998))
    out = files["linkage.conf"]
    floor = out[out.index("[linkage-bench-floor]"):].split("\n\n", 1)[0].splitlines()
    assert floor[1:] == ["exten => s,1,AGI(${LINKAGE_AGI}/bench_floor)",
                         " same => n,BlindTransfer(floor,linkage-bench-out)", " same => n,Return()"]
    assert "exten => floor,1,Dial(PJSIP/9110@trunk-110,13,r)" in out
    assert "linkage-bench-floor => *4,self,Gosub(linkage-bench-floor,s,1),default" in files["linkage-features.conf"]
    inbound = render(far, PbxExtras("/x", "tester", "secret123", 31000, 31998))["linkage.conf"]
    lines = inbound.splitlines()
    i = lines.index("exten => 9110,1,AGI(${LINKAGE_AGI}/bench_floor)")
    assert lines[i + 1] == f" same => n,Dial(PJSIP/agent{far.accounts.agents[0].id},{far.transfer.ring_timeout},r)"
    without = msgspec.structs.replace(sender, bench=msgspec.structs.replace(sender.bench, agi_floor_key=""))
    assert "bench_floor" not in render(without, PbxExtras("/x", "tester", "secret123", 30000, 30998))["linkage.conf"]


@pytest.mark.parametrize(("t1", "timer_b"), [(500, 32000), (100, 6400)])
def test_sip_t1_is_rendered_into_pjsip_system_with_timer_b_64_times_it(config: SiteConfig, t1: int,
                                                                       timer_b: int) -> None:
    """The load bench's PBXes run the standard T1 (500 ms), the test suite's 100 ms; Timer B follows T1."""
    extras = dataclasses.replace(EXTRAS, sip_timer_t1=t1)
    pjsip = render(config, extras)["pjsip.conf"]
    system = pjsip[pjsip.index("[system]"):].split("\n\n", 1)[0].splitlines()
    assert system == ["[system]", "type = system", f"timer_t1 = {t1}", f"timer_b = {timer_b}"]


def test_without_a_sip_t1_asterisk_keeps_its_own(files: dict[str, str]) -> None:
    assert "[system]" not in files["pjsip.conf"] and "timer_t1" not in files["pjsip.conf"]
