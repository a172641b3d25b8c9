"""Site configuration: a valid lab mapping parses; every error names the key and the file."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkage_lab.lab.lab import PLANS, SITES, Lab
from telephony.config import Deadlines, HostPort, Target, _apply_env, load_site_config, parse_site_config
from telephony.errors import ConfigError

SOURCE = "/etc/linkage/site.yaml"


@pytest.fixture
def raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import os

    for name in list(os.environ):
        if name.startswith("LINKAGE_"):
            monkeypatch.delenv(name)
    # deep copy: site_raw shares the nested target mappings (phone) with the module-level lab plans
    return copy.deepcopy(Lab(rootfs=str(tmp_path)).site_raw(SITES[0]))


def config_error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_site_config(raw, SOURCE)
    return info.value


def assert_names(err: ConfigError, key: str) -> None:
    assert err.details["key"] == key
    assert err.details["file"] == SOURCE
    assert err.message.startswith(f"{SOURCE}: {key}: ")


def test_valid_lab_mapping_parses(raw: dict[str, Any]) -> None:
    c = parse_site_config(copy.deepcopy(raw), SOURCE)
    assert (c.site.name, c.site.platform, c.site.level, c.site.division) == ("12345", "12345", "city", "370800")
    assert (c.pbx.sip.host, c.pbx.sip.port) == ("127.0.0.1", 15060)
    assert (c.pbx.ami.port, c.pbx.ami.username, c.pbx.ami.secret) == (15038, "linkage", raw["pbx"]["ami"]["secret"])
    assert c.pbx.ami.ping_interval == 2.0
    assert (c.pbx.agi.port, c.controller.http.port) == (15573, 15080)
    assert c.controller.api_token == raw["controller"]["api_token"]
    assert c.redis.url == "redis://127.0.0.1:15379/0"
    assert c.onekey == "*8"
    assert c.accounts.citizen.dial == "12345"
    assert [a.id for a in c.accounts.agents] == ["1001", "1002"]
    assert c.transfer.ring_timeout == raw["transfer"]["ring_timeout"]
    assert c.transfer.fetch_timeout == 0.5  # default
    assert c.source_file == SOURCE
    assert len(c.peers) == 1
    peer = c.peer("110")
    assert peer is not None and peer.platform == "110"
    assert (peer.url, peer.dial, peer.trunk.port) == ("http://127.0.0.1:25080", "110", 25060)
    assert (peer.level, peer.division) == ("city", "370800")
    assert c.peer("nope") is None
    assert c.targets == (Target("110", "110", "*8", "110", peer="110"),
                         Target("120", "120", "*2", "120", phone=HostPort("127.0.0.1", 15090)))
    assert c.target("120") is c.targets[1] and c.target("nope") is None
    assert c.site.parent == ""


def test_defaults_apply_when_optional_sections_are_missing(raw: dict[str, Any]) -> None:
    del raw["keys"], raw["transfer"], raw["peers"], raw["targets"]
    del raw["site"]["parent"]
    c = parse_site_config(raw, SOURCE)
    assert (c.onekey, c.transfer.ring_timeout, c.peers, c.targets, c.site.parent) == ("*8", 30, (), (), "")
    assert c.supervision == Deadlines()
    assert (c.supervision.signed_for, c.supervision.accepted, c.supervision.resolved_days) == (60.0, 1800.0, 5.0)
    assert c.supervision.working_days == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("section", ["site", "pbx", "controller", "redis", "accounts"])
def test_missing_section_is_named(raw: dict[str, Any], section: str) -> None:
    del raw[section]
    assert_names(config_error(raw), section)


def test_unknown_top_level_key_is_named(raw: dict[str, Any]) -> None:
    raw["pxb"] = {}
    err = config_error(raw)
    assert_names(err, "pxb")
    assert "unknown key" in err.message


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_site_config(["site"], SOURCE)


@pytest.mark.parametrize("port", [0, 65536, -1, "5060", True, 50.5])
def test_bad_port_is_named(raw: dict[str, Any], port: Any) -> None:
    raw["pbx"]["sip"]["port"] = port
    assert_names(config_error(raw), "pbx.sip.port")


def test_bad_agent_port_is_named(raw: dict[str, Any]) -> None:
    raw["accounts"]["agents"][1]["port"] = 70000
    assert_names(config_error(raw), "accounts.agents[1].port")


@pytest.mark.parametrize("host", ["localhost", "256.0.0.1", "127.0.0.1; rm", ""])
def test_bad_ip_is_named(raw: dict[str, Any], host: str) -> None:
    raw["pbx"]["ami"]["host"] = host
    err = config_error(raw)
    assert_names(err, "pbx.ami.host")
    assert "IP address" in err.message


def test_ipv6_host_is_accepted(raw: dict[str, Any]) -> None:
    raw["pbx"]["agi"]["host"] = "::1"
    assert parse_site_config(raw, SOURCE).pbx.agi.host == "::1"


@pytest.mark.parametrize("division", ["37080", "3708000", "37080a", "370 800"])
def test_bad_division_is_named(raw: dict[str, Any], division: str) -> None:
    raw["site"]["division"] = division
    assert_names(config_error(raw), "site.division")


@pytest.mark.parametrize("key", ["*8x", "", "*8888", "8 ", "${X}"])
def test_bad_feature_key_is_named(raw: dict[str, Any], key: str) -> None:
    raw["keys"]["onekey"] = key
    assert_names(config_error(raw), "keys.onekey")


def test_other_feature_key_is_accepted_in_the_short_form(raw: dict[str, Any]) -> None:
    del raw["targets"]  # the short form: keys.onekey goes to the first peer
    raw["keys"]["onekey"] = "#9"
    c = parse_site_config(raw, SOURCE)
    assert c.onekey == "#9"
    assert c.targets == (Target("110", "110", "#9", "110", peer="110"),)


def test_the_first_target_key_is_the_onekey_code(raw: dict[str, Any]) -> None:
    raw["targets"][0]["key"] = "#9"
    assert parse_site_config(raw, SOURCE).onekey == "#9"


def test_duplicate_agent_ids_are_refused(raw: dict[str, Any]) -> None:
    raw["accounts"]["agents"][1]["id"] = raw["accounts"]["agents"][0]["id"]
    err = config_error(raw)
    assert_names(err, "accounts.agents")
    assert "unique" in err.message


def test_empty_agent_list_is_refused(raw: dict[str, Any]) -> None:
    raw["accounts"]["agents"] = []
    assert_names(config_error(raw), "accounts.agents")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:25080", "http://127.0.0.1:25080/x?a=1", "http://a b",
                                 "127.0.0.1:25080", "http://user@127.0.0.1"])
def test_bad_peer_url_is_named(raw: dict[str, Any], url: str) -> None:
    raw["peers"][0]["url"] = url
    assert_names(config_error(raw), "peers[0].url")


def test_peer_url_trailing_slash_is_stripped(raw: dict[str, Any]) -> None:
    raw["peers"][0]["url"] = "http://127.0.0.1:25080/"
    assert parse_site_config(raw, SOURCE).peers[0].url == "http://127.0.0.1:25080"


def test_short_api_token_is_named(raw: dict[str, Any]) -> None:
    raw["controller"]["api_token"] = "short"
    assert_names(config_error(raw), "controller.api_token")


def test_bad_level_is_named(raw: dict[str, Any]) -> None:
    raw["site"]["level"] = "province"
    assert_names(config_error(raw), "site.level")


def write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_load_site_config_reads_the_file(raw: dict[str, Any], tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "site.yaml", raw)
    c = load_site_config(path)
    assert c.source_file == str(path)
    assert c.site.name == "12345"


def test_load_site_config_errors_name_the_file(raw: dict[str, Any], tmp_path: Path) -> None:
    raw["pbx"]["sip"]["port"] = 0
    path = write_yaml(tmp_path / "site.yaml", raw)
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    assert info.value.details == {"key": "pbx.sip.port", "file": str(path)}


@pytest.mark.parametrize("make", [lambda d: d / "missing.yaml", lambda d: d])
def test_load_unreadable_path_raises_config_error(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_site_config(path)
    assert info.value.details["file"] == str(path)
    assert isinstance(info.value.__cause__, OSError)


def test_load_invalid_yaml_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("site: [unclosed\n  pbx: {", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_site_config(path)
    assert info.value.details["file"] == str(path)
    assert isinstance(info.value.__cause__, yaml.YAMLError)


def test_env_overrides_api_token(raw: dict[str, Any], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "site.yaml", raw)
    token = "Env-Token_0123456789abcdef"
    assert raw["controller"]["api_token"] != token
    monkeypatch.setenv("LINKAGE_CONTROLLER__API_TOKEN", token)
    assert load_site_config(path).controller.api_token == token


def test_env_overrides_a_nested_port_as_an_integer(raw: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "site.yaml", raw)
    monkeypatch.setenv("LINKAGE_PBX__AMI__PORT", "15100")
    assert load_site_config(path).pbx.ami.port == 15100


def test_env_override_is_validated_like_the_file(raw: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "site.yaml", raw)
    monkeypatch.setenv("LINKAGE_CONTROLLER__API_TOKEN", "short")
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    assert info.value.details["key"] == "controller.api_token"


def test_apply_env_ignores_unrelated_variables(raw: dict[str, Any]) -> None:
    before = copy.deepcopy(raw)
    env = {"LINKAGE_ROOTFS": "/x", "HOME__DIR": "/y", "PATH": "/bin", "LINKAGECONTROLLER__API_TOKEN": "z"}
    assert _apply_env(raw, env) == before


def test_apply_env_sets_one_scalar(raw: dict[str, Any]) -> None:
    out = _apply_env(raw, {"LINKAGE_CONTROLLER__API_TOKEN": "Env-Token_0123456789abcdef"})
    assert out["controller"]["api_token"] == "Env-Token_0123456789abcdef"
    assert out["controller"]["http"] == {"host": "127.0.0.1", "port": 15080}  # siblings untouched


def test_apply_env_leaves_a_non_mapping_alone() -> None:
    assert _apply_env(["x"], {"LINKAGE_A__B": "1"}) == ["x"]


# ---- fixed bugs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("keys", "*8"), ("transfer", 5), ("delivery", [1]), ("supervision", "x")])
def test_non_mapping_optional_section_raises_config_error(raw: dict[str, Any], key: str, value: Any) -> None:
    raw[key] = value
    err = config_error(raw)
    assert_names(err, key)
    assert "must be a mapping" in err.message


def test_non_list_peers_raises_config_error(raw: dict[str, Any]) -> None:
    raw["peers"] = 5
    assert_names(config_error(raw), "peers")


def test_load_non_utf8_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("site: {name: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_site_config(path)
    assert info.value.details == {"file": str(path)}
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize("remove, key", [(lambda r: r["pbx"].pop("ami"), "pbx.ami"),
                                         (lambda r: r["pbx"].pop("sip"), "pbx.sip"),
                                         (lambda r: r["peers"][0].pop("trunk"), "peers[0].trunk"),
                                         (lambda r: r["accounts"].pop("citizen"), "accounts.citizen"),
                                         (lambda r: r["controller"].pop("http"), "controller.http")])
def test_missing_nested_section_is_named_by_its_full_path(raw: dict[str, Any], remove: Callable[[Any], Any],
                                                          key: str) -> None:
    remove(raw)
    assert_names(config_error(raw), key)


def test_env_override_keeps_a_numeric_looking_secret(raw: dict[str, Any], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "site.yaml", raw)
    monkeypatch.setenv("LINKAGE_PBX__AMI__SECRET", "0123456701")
    assert load_site_config(path).pbx.ami.secret == "0123456701"


def test_apply_env_numbers_replace_numbers_and_strings_stay_strings(raw: dict[str, Any]) -> None:
    out = _apply_env(raw, {"LINKAGE_PBX__AMI__PORT": "15100", "LINKAGE_TRANSFER__FETCH_TIMEOUT": "0.25",
                           "LINKAGE_SITE__DIVISION": "370811", "LINKAGE_SUPERVISION__SIGNED_FOR": "30"})
    assert out["pbx"]["ami"]["port"] == 15100
    assert out["transfer"]["fetch_timeout"] == 0.25
    assert out["site"]["division"] == "370811"  # replaced a string: stays one
    assert out["supervision"] == {"signed_for": 30}  # a missing section is created
    c = parse_site_config(out, SOURCE)
    assert (c.pbx.ami.port, c.transfer.fetch_timeout, c.site.division, c.supervision.signed_for) == (
        15100, 0.25, "370811", 30.0)


# ---- targets -------------------------------------------------------------------------------------------

def test_every_lab_site_parses(tmp_path: Path) -> None:
    lab = Lab(rootfs=str(tmp_path))
    configs = {plan.name: lab.site_config(plan) for plan in SITES}
    assert set(configs) == {"12345", "110", "110-370811"} == set(PLANS)
    county = configs["110-370811"]
    site = county.site
    assert (site.level, site.division, site.parent, site.platform) == ("county", "370811", "110", "110")
    assert county.targets == (Target("12345", "12345", "*8", "12345", via="110"),)
    city = configs["110"]
    assert [(p.name, p.level, p.division) for p in city.peers] == [("12345", "city", "370800"),
                                                                    ("110-370811", "county", "370811")]
    assert [t.peer for t in city.targets] == ["12345"]
    ports = [c.pbx.sip.port for c in configs.values()] + [c.controller.http.port for c in configs.values()]
    assert len(set(ports)) == len(ports)


@pytest.mark.parametrize("change", [{}, {"phone": {"host": "127.0.0.1", "port": 5060}}, {"via": "110"}])
def test_target_needs_exactly_one_of_peer_via_phone(raw: dict[str, Any], change: dict[str, Any]) -> None:
    target = raw["targets"][0]
    if not change:
        del target["peer"]
    target.update(change)
    err = config_error(raw)
    assert_names(err, "targets[0]")
    assert "exactly one of peer, via or phone" in err.message


@pytest.mark.parametrize("attr", ["peer", "via"])
def test_target_must_name_a_configured_peer(raw: dict[str, Any], attr: str) -> None:
    del raw["targets"][0]["peer"]
    raw["targets"][0][attr] = "119"
    err = config_error(raw)
    assert_names(err, f"targets[0].{attr}")
    assert "'119'" in err.message


@pytest.mark.parametrize("attr", ["name", "key", "dial"])
def test_targets_need_their_own_name_key_and_dial(raw: dict[str, Any], attr: str) -> None:
    raw["targets"][1][attr] = raw["targets"][0][attr]
    err = config_error(raw)
    assert_names(err, "targets")
    assert f"own {attr}" in err.message


def test_unknown_target_key_is_named(raw: dict[str, Any]) -> None:
    raw["targets"][1]["trunk"] = "x"
    assert_names(config_error(raw), "targets[1].trunk")


@pytest.mark.parametrize("phone", ["127.0.0.1:5060", 5060])
def test_phone_target_needs_a_mapping(raw: dict[str, Any], phone: Any) -> None:
    raw["targets"][1]["phone"] = phone
    assert_names(config_error(raw), "targets[1].phone")


def test_phone_target_address_is_validated(raw: dict[str, Any]) -> None:
    raw["targets"][1]["phone"]["host"] = "phone.local"
    assert_names(config_error(raw), "targets[1].phone.host")


@pytest.mark.parametrize("field, value", [("key", "*8x"), ("dial", "1"), ("name", "1 20")])
def test_target_values_are_validated(raw: dict[str, Any], field: str, value: str) -> None:
    raw["targets"][1][field] = value
    assert_names(config_error(raw), f"targets[1].{field}")


@pytest.mark.parametrize("value", [{"name": "110"}, "110"])
def test_targets_must_be_a_list_of_mappings(raw: dict[str, Any], value: Any) -> None:
    raw["targets"] = value
    assert_names(config_error(raw), "targets")
    raw["targets"] = [value]
    if isinstance(value, str):
        assert_names(config_error(raw), "targets[0]")


# ---- supervision, parent, peer levels ------------------------------------------------------------------

def test_supervision_section_is_read(raw: dict[str, Any]) -> None:
    raw["supervision"] = {"signed_for": 30, "accepted": 600.5, "resolved_days": 3, "working_days": [5, 0, 1, 0]}
    assert parse_site_config(raw, SOURCE).supervision == Deadlines(30.0, 600.5, 3.0, (0, 1, 5))


@pytest.mark.parametrize("key, value", [("signed_for", 0), ("signed_for", 86401), ("accepted", "600"),
                                        ("resolved_days", 0), ("working_days", []), ("working_days", [7]),
                                        ("working_days", [True]), ("working_days", "mon")])
def test_bad_supervision_value_is_named(raw: dict[str, Any], key: str, value: Any) -> None:
    raw["supervision"] = {key: value}
    assert_names(config_error(raw), f"supervision.{key}")


@pytest.mark.parametrize("parent", ["1 10", "-110", "x" * 33])
def test_bad_parent_is_named(raw: dict[str, Any], parent: str) -> None:
    raw["site"]["parent"] = parent
    assert_names(config_error(raw), "site.parent")


@pytest.mark.parametrize("field, value", [("level", "province"), ("division", "37081")])
def test_bad_peer_level_or_division_is_named(raw: dict[str, Any], field: str, value: str) -> None:
    raw["peers"][0][field] = value
    assert_names(config_error(raw), f"peers[0].{field}")


def test_peer_level_and_division_default(raw: dict[str, Any]) -> None:
    del raw["peers"][0]["level"], raw["peers"][0]["division"]
    peer = parse_site_config(raw, SOURCE).peers[0]
    assert (peer.level, peer.division) == ("city", "")


def test_lab_sites_share_signing_secrets_pairwise_and_keep_them(tmp_path: Path) -> None:
    lab = Lab(rootfs=str(tmp_path))
    raws = {plan.name: lab.site_raw(plan) for plan in SITES}
    for name, raw in raws.items():
        for peer in raw["peers"]:
            other = raws[peer["name"]]
            back = next(p for p in other["peers"] if p["name"] == name)
            assert peer["secrets"] == back["secrets"] and peer["secrets"][0].startswith("whsec_"), (name, peer["name"])
            assert (peer["level"], peer["division"]) == (other["site"]["level"], other["site"]["division"])
            assert name in [p["name"] for p in other["peers"]]  # peering is mutual
    assert Lab(rootfs=str(tmp_path)).site_raw(SITES[0]) == raws["12345"]  # secrets survive a new Lab


# ---- resilience settings ---------------------------------------------------------------------------------

def test_reconnect_and_replay_window_defaults(raw: dict[str, Any]) -> None:
    c = parse_site_config(raw, SOURCE)
    assert (c.pbx.ami.reconnect_min, c.pbx.ami.reconnect_max) == (0.5, 5.0)
    assert c.security.replay_window == 8 * 86400  # longer than the sender retries
    assert c.delivery.delivered_linger == 0.02


def test_reconnect_and_replay_window_are_read(raw: dict[str, Any]) -> None:
    raw["pbx"]["ami"].update(reconnect_min=1, reconnect_max=60)
    raw["security"] = {"replay_window": 30 * 86400}
    raw["delivery"] = {"delivered_linger": 0}
    c = parse_site_config(raw, SOURCE)
    assert (c.pbx.ami.reconnect_min, c.pbx.ami.reconnect_max, c.security.replay_window) == (1.0, 60.0, 30 * 86400)
    assert c.delivery.delivered_linger == 0.0


@pytest.mark.parametrize("ami, security, key", [
    ({"reconnect_min": 0}, {}, "pbx.ami.reconnect_min"),
    ({"reconnect_max": "30"}, {}, "pbx.ami.reconnect_max"),
    ({"reconnect_min": 5, "reconnect_max": 2}, {}, "pbx.ami.reconnect_max"),
    ({}, {"replay_window": 60}, "security.replay_window"),  # shorter than the signature tolerance allows
    ({}, {"replay_window": True}, "security.replay_window"),
])
def test_bad_reconnect_or_replay_window_names_the_key(raw: dict[str, Any], ami: dict[str, Any],
                                                      security: dict[str, Any], key: str) -> None:
    raw["pbx"]["ami"].update(ami)
    raw["security"] = security
    assert_names(config_error(raw), key)


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.02", True])
def test_a_bad_delivered_linger_names_the_key(raw: dict[str, Any], value: Any) -> None:
    raw["delivery"] = {"delivered_linger": value}
    assert_names(config_error(raw), "delivery.delivered_linger")


@pytest.mark.parametrize("section, key, value, named", [
    ("keys", "threeway", "*8", "keys.threeway"),  # the same code as the 110 target
    ("keys", "consult", "*9", "keys.consult"),  # the same code as the three-way key
    ("keys", "consult", "*81", "keys.consult"),  # begins with *8: *8 would always fire first
    ("keys", "consult", "*", "keys.consult"),  # begins every other code
    ("keys", "threeway", "*#", "keys.threeway"),  # begins features.conf's *#7 and *#6
    ("bench", "baseline_key", "*9", "bench.baseline_key"),  # the same code as the three-way key
    ("bench", "agi_floor_key", "*55", "bench.agi_floor_key"),  # begins with the baseline's *5
])
def test_an_agents_feature_codes_may_not_overlap(raw: dict[str, Any], section: str, key: str, value: str,
                                                  named: str) -> None:
    raw.setdefault(section, {})[key] = value
    err = config_error(raw)
    assert_names(err, named)
    assert "an agent could never press one of them" in str(err)


def test_the_short_form_names_the_onekey_code(raw: dict[str, Any]) -> None:
    del raw["targets"]
    raw["keys"]["onekey"] = "*#6"
    assert_names(config_error(raw), "keys.onekey")

