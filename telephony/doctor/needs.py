"""What a site's Linkage needs from the Asterisk it is included into, read from the site config and from the
files `linkage config render` makes of it (never a second list of keys, endpoints or includes to keep in step).

- the feature codes an agent's call listens for (every target's key, three-way, consult, the bench keys, and
  the atxfer/blindxfer codes linkage-features.conf sets);
- the includable files and the file each goes into: read from the lab's own PBX templates
  (config/asterisk/*.conf.in), which include them exactly as a deployment must;
- the modules: those of the dialplan applications and functions the rendered files use, plus the channel,
  bridge and media modules under them;
- the PJSIP endpoints the rendered dialplan dials, and what each is (agent, trunk, phone-only target, gateway);
- the AMI user's classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telephony.config import SiteConfig
from telephony.config.load import FIXED_FEATURE_KEYS
from telephony.errors import ConfigError
from telephony.pbx.render import ROOT, PbxExtras, dynamic_features, render

MIN_VERSION = (22, 9)  # PJSIP_INHERITABLE_HEADER (the ticket headers on the trunk leg)
TRUNK_CONTEXT = "linkage-from-trunk"
AMI_READ = ("call", "dtmf", "user", "agent")
AMI_WRITE = ("call", "reporting", "agent")  # agent: QueueAdd/QueueRemove/QueuePause (queues/)

# Dialplan application or function -> the module that provides it. Builtins of the core (Set, Goto, GotoIf,
# NoOp, Answer, Hangup, Return's Gosub is app_stack) are not listed. A name the rendered dialplan uses that is
# in neither table is an error of this table (tests/unit/test_doctor.py renders the dialplan and checks).
APP_MODULES = {
    "AGI": "res_agi", "BlindTransfer": "app_blind_transfer", "ConfBridge": "app_confbridge", "Dial": "app_dial",
    "Gosub": "app_stack", "MixMonitor": "app_mixmonitor", "MusicOnHold": "res_musiconhold",
    "Playback": "app_playback", "Read": "app_read", "Queue": "app_queue", "AddQueueMember": "app_queue",
    "RemoveQueueMember": "app_queue", "PauseQueueMember": "app_queue", "UnpauseQueueMember": "app_queue",
    "QueueLog": "app_queue", "Exec": "app_exec", "Verbose": "app_verbose",
    "Log": "app_verbose", "UserEvent": "app_userevent", "Originate": "app_originate",
}
CORE_APPS = {"Set", "Goto", "GotoIf", "NoOp", "Answer", "Hangup", "Return", "Busy", "Congestion", "Progress",
             "Ringing", "Wait", "WaitExten", "ExecIf", "GotoIfTime", "SayNumber", "SayDigits", "MSet"}
FUNCTION_MODULES = {
    "PJSIP_HEADER": "res_pjsip_header_funcs", "PJSIP_INHERITABLE_HEADER": "res_pjsip_header_funcs",
    "FILTER": "func_strings", "REGEX": "func_strings", "LEN": "func_strings", "GLOBAL": "func_global",
    "CHANNEL": "func_channel", "CALLERID": "func_callerid", "CONNECTEDLINE": "func_callerid",
    "QUEUE_MEMBER": "app_queue", "QUEUE_VARIABLES": "app_queue", "IF": "func_logic", "ISNULL": "func_logic",
    "EXISTS": "func_logic", "CUT": "func_cut", "SHARED": "func_global", "STRFTIME": "func_strings",
    "CURL": "func_curl", "DB": "func_db", "MATH": "func_math", "RAND": "func_rand", "DEVICE_STATE": "func_devstate",
    "CDR": "func_cdr", "TIMEOUT": "func_timeout", "DIALPLAN_EXISTS": "func_dialplan",
}
# Under the dialplan: SIP, media, bridges (ConfBridge mixes in bridge_softmix), timing for the conference.
# Music while a feature runs (applicationmap's "default" class); app_queue: the ACD queues (issue 12).
BASE_MODULES = ("chan_pjsip", "res_pjsip", "res_pjsip_session", "res_pjsip_sdp_rtp", "res_rtp_asterisk",
                "bridge_simple", "bridge_softmix", "res_timing_timerfd", "res_musiconhold", "app_queue")
APP_CALL = re.compile(r"(?:^|[,;(\s])([A-Z][A-Za-z]+)\(")
FUNCTION_CALL = re.compile(r"(?:\$\{|Set\()([A-Z][A-Z_]+)\(")
ENDPOINT = re.compile(r"PJSIP/(?:[^@&,()$\s]+@)?([A-Za-z0-9_.-]+)")
INCLUDE_LINE = re.compile(r'^#include\s+"?[^"]*/etc/([^"/]+)"?')


@dataclass(frozen=True)
class Endpoint:
    name: str
    role: str  # agent | trunk | phone | gateway | other


@dataclass(frozen=True)
class Needs:
    keys: dict[str, str]  # code -> what it is in the site config (or the included features file)
    features: tuple[str, ...]  # DYNAMIC_FEATURES names the agents' endpoints must carry
    features_value: str  # the whole set_var value as rendered
    includes: dict[str, tuple[str, ...]]  # host file -> the Linkage files it must include
    rendered: dict[str, str]  # Linkage file -> its rendered text
    modules: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    consult_abort: str
    consult_complete: str
    ami_read: tuple[str, ...]
    ami_write: tuple[str, ...]


def _dialplan_names(text: str) -> tuple[set[str], set[str]]:
    apps: set[str] = set()
    functions: set[str] = set()
    for raw in text.splitlines():
        line = raw.split(";", 1)[0]
        if "=>" not in line:
            continue
        body = line.split("=>", 1)[1]
        apps |= set(APP_CALL.findall(body)) - set(FUNCTION_CALL.findall(body))
        functions |= set(FUNCTION_CALL.findall(body))
    return apps, functions


def modules_of(texts: list[str]) -> tuple[str, ...]:
    apps: set[str] = set()
    functions: set[str] = set()
    for text in texts:
        a, f = _dialplan_names(text)
        apps |= a
        functions |= f
    unknown = sorted(a for a in apps - CORE_APPS if a not in APP_MODULES and a not in FUNCTION_MODULES)
    unknown += sorted(f for f in functions if f not in FUNCTION_MODULES)
    if unknown:
        raise ConfigError(f"doctor: the rendered dialplan uses {', '.join(unknown)}, which "
                          "telephony/doctor/needs.py does not map to a module")
    needed = {APP_MODULES[a] for a in apps if a in APP_MODULES} | {FUNCTION_MODULES[f] for f in functions}
    return tuple(sorted(needed | set(BASE_MODULES)))


def _includes(files: dict[str, str], linkage_files: set[str]) -> dict[str, tuple[str, ...]]:
    """Which lab PBX file includes which Linkage file: a deployment includes them the same way."""
    out: dict[str, tuple[str, ...]] = {}
    for host, text in files.items():
        if host in linkage_files:
            continue
        wanted = tuple(m.group(1) for line in text.splitlines() if (m := INCLUDE_LINE.match(line.strip()))
                       and m.group(1) in linkage_files)
        if wanted:
            out[host] = wanted
    return out


def needs(config: SiteConfig) -> Needs:
    files = render(config, PbxExtras("/linkage", "doctor", "unused", 10000, 10998))
    linkage_files = {t.name.removesuffix(".in") for t in (ROOT / "dialplans").glob("*.conf.in")}
    rendered = {name: files[name] for name in sorted(linkage_files)}
    keys = {code: f"features.conf {what.split()[-1]} (linkage-features.conf)"
            for code, what in FIXED_FEATURE_KEYS.items()}
    for t in config.targets:
        keys[t.key] = f"the transfer key to {t.name}"
    keys[config.keys.threeway] = "the three-way key (keys.threeway)"
    keys[config.keys.consult] = "the consult key (keys.consult)"
    if config.bench.baseline_key:
        keys[config.bench.baseline_key] = "bench.baseline_key"
        if config.bench.agi_floor_key:
            keys[config.bench.agi_floor_key] = "bench.agi_floor_key"
    value = dynamic_features(config) or "none"
    agents = {f"agent{a.id}" for a in config.accounts.agents}
    trunks = {f"trunk-{p.name}" for p in config.peers}
    phones = {f"target-{t.name}" for t in config.targets if t.phone is not None}
    seen: dict[str, Endpoint] = {}
    for name in sorted(agents | trunks):
        seen[name] = Endpoint(name, "agent" if name in agents else "trunk")
    for text in rendered.values():
        for name in ENDPOINT.findall(text):
            role = ("agent" if name in agents else "trunk" if name in trunks else "phone" if name in phones
                    else "gateway" if name == "followup-out" else "other")
            seen.setdefault(name, Endpoint(name, role))
    if config.followup.gateway is not None:
        seen.setdefault("followup-out", Endpoint("followup-out", "gateway"))
    write: tuple[str, ...] = AMI_WRITE
    if any(t.phone is None for t in config.targets) or config.followup.gateway is not None:
        write = (*AMI_WRITE, "originate")  # three-way calls and follow-up calls Originate
    return Needs(keys=keys, features=tuple(value.split("#")) if value != "none" else (), features_value=value,
                 includes=_includes(files, linkage_files), rendered=rendered,
                 modules=modules_of(list(rendered.values())),
                 endpoints=tuple(seen[n] for n in sorted(seen)),
                 consult_abort=config.threeway.consult_abort, consult_complete=config.threeway.consult_complete,
                 ami_read=AMI_READ, ami_write=write)
