"""Render Asterisk configuration for one site from its SiteConfig.

Templates live in `config/asterisk/*.conf.in` (the lab's whole PBX) and `dialplans/*.conf.in` (the parts an
engineer #includes into an existing Asterisk). Placeholders are `@@NAME@@`; a placeholder left unfilled is
an error, and every value substituted comes from validated config, never from a caller or an agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from telephony.config import SiteConfig
from telephony.config.schema import PAUSE_REASONS
from telephony.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


@dataclass(frozen=True)
class PbxExtras:
    dir: str  # the site's directory as Asterisk sees it (inside the chroot)
    tester_user: str
    tester_secret: str
    rtp_start: int
    rtp_end: int
    # SIP T1 in ms (Timer B, after which an INVITE with no provisional answer gives up, is 64 × T1; Asterisk
    # refuses a shorter B); None keeps Asterisk's 500 ms (B = 32 s). The lab runs on loopback with T1 = 100 ms:
    # a ring towards an agent whose SIPp already exited cannot be CANCELled (no 180), and its INVITE
    # retransmissions would otherwise reach a later scenario's agent for half a minute instead of 6.4 s.
    sip_timer_t1: int | None = None

# The AMI events the controller reads: the call registry (Newchannel, Newstate, BridgeEnter, Hangup) and the
# transfer and three-way services (ami/session.py INTERESTING). Asterisk sends its AMI user nothing else.
AMI_EVENTS = ("Newchannel", "Newstate", "BridgeEnter", "Hangup", "DialBegin", "DialEnd", "BlindTransfer",
              "AttendedTransfer", "ConfbridgeJoin", "ConfbridgeLeave", "OriginateResponse",
              # the dialplan's press of a prepared transfer (transfers/prepared.py)
              "UserEvent",
              # the queue (queues/ami.py): its members' log-ins and pauses, and who waits
              "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause", "QueueCallerJoin",
              "QueueCallerLeave", "QueueCallerAbandon")


def _fill(template: str, values: dict[str, str], name: str) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ConfigError(f"{name}: no value for placeholder @@{key}@@")
        return values[key]

    return PLACEHOLDER.sub(sub, template)


def agent_dials(config: SiteConfig) -> str:
    return "&".join(f"PJSIP/agent{a.id}" for a in config.accounts.agents)


def _agents(config: SiteConfig) -> str:
    out = []
    for a in config.accounts.agents:
        out.append(f"""[agent{a.id}](endpoint-common)
context = linkage-agents
aors = agent{a.id}
callerid = "Agent {a.id}" <{a.id}>
set_var = DYNAMIC_FEATURES={dynamic_features(config) or "none"}

[agent{a.id}]
type = aor
contact = sip:{a.id}@{a.host}:{a.port}
max_contacts = 1

[agent{a.id}]
type = identify
endpoint = agent{a.id}
match = {a.host}:{a.port}
""")
    return "\n".join(out)


def _trunks(config: SiteConfig) -> str:
    out = []
    for p in config.peers:
        out.append(f"""[trunk-{p.name}](endpoint-common)
context = linkage-from-trunk
aors = trunk-{p.name}
trust_id_inbound = yes
trust_id_outbound = yes

[trunk-{p.name}]
type = aor
contact = sip:{p.trunk.host}:{p.trunk.port}
qualify_frequency = 2  ; a PBX that stopped answering fails a transfer at once, not after SIP's 32 s
qualify_timeout = 1.0

[trunk-{p.name}]
type = identify
endpoint = trunk-{p.name}
match = {p.trunk.host}:{p.trunk.port}
""")
    return "\n".join(out)


def _phone_targets(config: SiteConfig) -> str:
    out = []
    for t in config.targets:
        if t.phone is None:
            continue
        out.append(f"""[target-{t.name}](endpoint-common)
context = linkage-agents
aors = target-{t.name}

[target-{t.name}]
type = aor
contact = sip:{t.phone.host}:{t.phone.port}

[target-{t.name}]
type = identify
endpoint = target-{t.name}
match = {t.phone.host}:{t.phone.port}
""")
    return "\n".join(out)


def _followup_gateway(config: SiteConfig) -> str:
    """The outbound route of follow-up calls (智能回访): `PJSIP/<the ticket's number>@followup-out`."""
    g = config.followup.gateway
    if g is None:
        return ""
    return f"""[followup-out](endpoint-common)
context = linkage-agents
aors = followup-out

[followup-out]
type = aor
contact = sip:{g.host}:{g.port}
"""


def _out_routes(config: SiteConfig) -> str:
    """One route per target: `<dial>*<ticket id>`; the ticket rides in SIP headers to sites with a controller."""
    out = []
    for t in config.targets:
        skip = len(t.dial) + 1
        if t.phone is not None:
            dial = f"Dial(PJSIP/{t.dial}@target-{t.name},{config.transfer.ring_timeout + 5},r)"
        else:
            trunk = t.peer or t.via
            # the ticket headers are inherited from this (the caller's) channel: a pre-dial handler on the trunk
            # leg would park the caller in autoservice, which costs the transfer 0-20 ms (one RTP frame)
            dial = (f"Gosub(linkage-headers,s,1(${{LINKAGE_ID}}))\n"
                    f" same => n,Dial(PJSIP/{t.dial}@trunk-{trunk},{config.transfer.ring_timeout + 5},r)")
        out.append(
            f"exten => _{t.dial}*X.,1,Set(LINKAGE_ID=${{EXTEN:{skip}}})\n"
            f" same => n,{dial}\n"
            f" same => n,Goto(linkage-recall,${{LINKAGE_ID}},1)\n")
    return "\n".join(out) or "; no transfer targets configured"


def _features(config: SiteConfig) -> str:
    lines = [f"linkage-to-{t.name} => {t.key},self,Gosub(linkage-onekey,s,1({t.name},{t.dial})),default"
             for t in config.targets]
    if config.targets and config.bench.baseline_key:
        lines.append(f"linkage-bench-baseline => {config.bench.baseline_key},self,Gosub(linkage-bench,s,1),default")
    if config.targets and config.bench.baseline_key and config.bench.agi_floor_key:
        lines.append(f"linkage-bench-floor => {config.bench.agi_floor_key},self,Gosub(linkage-bench-floor,s,1),default")
    if config.targets:
        lines.append(f"linkage-threeway => {config.keys.threeway},self,Gosub(linkage-threeway,s,1),default")
        lines.append(f"linkage-consult => {config.keys.consult},self,Gosub(linkage-consult,s,1),default")
    return "\n".join(lines) or "; no transfer targets configured"


def dynamic_features(config: SiteConfig) -> str:
    names = [f"linkage-to-{t.name}" for t in config.targets]
    if names and config.bench.baseline_key:
        names.append("linkage-bench-baseline")
    if names and config.bench.baseline_key and config.bench.agi_floor_key:
        names.append("linkage-bench-floor")
    return "#".join([*names, "linkage-threeway", "linkage-consult"] if names else names)


def _bench(config: SiteConfig) -> str:
    """Bench only: the same blind transfer done by the dialplan alone — no AGI, no ticket, no controller on
    either PBX — so `make bench` can compare against it in the same run."""
    if not config.bench.baseline_key or not config.targets or config.targets[0].phone is not None:
        return "; no bench baseline (bench.baseline_key unset)"
    t = config.targets[0]
    trunk = f"trunk-{t.peer or t.via}"
    text = (f"[linkage-bench]\nexten => s,1,BlindTransfer(bench,linkage-bench-out)\n same => n,Return()\n\n"
            f"[linkage-bench-out]\nexten => bench,1,"
            f"Dial(PJSIP/8{t.dial}@{trunk},{config.transfer.ring_timeout + 5},r)\n"
            f" same => n,Hangup()\n")
    if config.bench.agi_floor_key:  # one bare FastAGI round trip on each PBX (the controller only answers)
        text += (f"exten => floor,1,Dial(PJSIP/9{t.dial}@{trunk},{config.transfer.ring_timeout + 5},r)\n"
                 f" same => n,Hangup()\n\n"
                 f"[linkage-bench-floor]\nexten => s,1,AGI(${{LINKAGE_AGI}}/bench_floor)\n"
                 f" same => n,BlindTransfer(floor,linkage-bench-out)\n same => n,Return()\n")
    # the baseline arriving here: exactly 8 + our own number (a pattern like _8XXX. missed "8110" and sent the
    # baseline through the route_in AGI). It rings the first agent, as one-key does when that agent is idle (and
    # when all are busy). Not every agent: both lab phones would answer, and the load bench could no longer tell
    # one answered call from one per phone.
    ring = f"Dial(PJSIP/agent{config.accounts.agents[0].id},{config.transfer.ring_timeout},r)"
    text += f"\n[linkage-from-trunk]\nexten => 8{config.accounts.citizen.dial},1,{ring}\n same => n,Hangup()\n"
    if config.bench.agi_floor_key:
        text += (f"exten => 9{config.accounts.citizen.dial},1,AGI(${{LINKAGE_AGI}}/bench_floor)\n"
                 f" same => n,{ring}\n same => n,Hangup()\n")
    return text


def queue_name(config: SiteConfig) -> str:
    return f"linkage-{config.site.name}"


def _queue_pauses(config: SiteConfig) -> str:
    """The pause code alone (the first reason) and with a reason's digit: one extension each."""
    q = config.queue
    member = "PJSIP/${CHANNEL(endpoint)}"
    codes = [(q.pause_code, PAUSE_REASONS[0])] + [(f"{q.pause_code}{digit}", reason)
                                                  for digit, reason in enumerate(PAUSE_REASONS, start=1)]
    lines = [f"exten => {code},1,Gosub(linkage-queue-agent,s,1)\n"
             f" same => n,PauseQueueMember({queue_name(config)},{member},,{reason})\n"
             f" same => n,Goto(linkage-queue-done,s,1)" for code, reason in codes]
    return "\n".join(lines)


def _conf_routes(config: SiteConfig) -> str:
    """The other platform dialled into a three-way conference: Local/<dial>*<ticket id>@linkage-conf-out."""
    out = []
    for t in config.targets:
        if t.phone is not None:
            continue
        skip = len(t.dial) + 1
        out.append(f"exten => _{t.dial}*X.,1,Gosub(linkage-headers,s,1(${{EXTEN:{skip}}}))\n"
                   f" same => n,Dial(PJSIP/{t.dial}@trunk-{t.peer or t.via},{config.transfer.ring_timeout})\n"
                   f" same => n,Hangup()\n")
    return "\n".join(out) or "; no targets with a controller"


def values(config: SiteConfig, extras: PbxExtras) -> dict[str, str]:
    return {
        "SITE": config.site.name, "PLATFORM": config.site.platform, "DIR": extras.dir,
        "SIP_HOST": config.pbx.sip.host, "SIP_PORT": str(config.pbx.sip.port),
        "AMI_HOST": config.pbx.ami.host, "AMI_PORT": str(config.pbx.ami.port),
        "AMI_USER": config.pbx.ami.username, "AMI_SECRET": config.pbx.ami.secret,
        "AMI_EVENT_FILTERS": "\n".join(f"eventfilter(action(include),name({name})) =" for name in AMI_EVENTS),
        "TESTER_USER": extras.tester_user, "TESTER_SECRET": extras.tester_secret,
        "AGI_HOST": config.pbx.agi.host, "AGI_PORT": str(config.pbx.agi.port),
        "PUBLIC_URL": config.controller.public_url,
        "RTP_START": str(extras.rtp_start), "RTP_END": str(extras.rtp_end),
        "SIP_SYSTEM": "" if extras.sip_timer_t1 is None else
        f"[system]\ntype = system\ntimer_t1 = {extras.sip_timer_t1}\ntimer_b = {64 * extras.sip_timer_t1}\n",
        "CITIZEN_HOST": config.accounts.citizen.host, "CITIZEN_PORT": str(config.accounts.citizen.port),
        "HOTLINE": config.accounts.citizen.dial, "ONEKEY": config.onekey,
        "RING_TIMEOUT": str(config.transfer.ring_timeout),
        "AGENT_DIALS": agent_dials(config), "AGENTS": _agents(config),
        "TRUNKS": _trunks(config) + "\n" + _phone_targets(config) + "\n" + _followup_gateway(config),
        "FEATURES": _features(config), "DYNAMIC_FEATURES": dynamic_features(config) or "none",
        "CONF_ROUTES": _conf_routes(config), "BENCH": _bench(config), "ACCEPT_KEY": config.threeway.accept_key,
        "LEAVE_KEY": config.threeway.leave_key, "ATXFER_ABORT": config.threeway.consult_abort,
        "ATXFER_COMPLETE": config.threeway.consult_complete,
        "OUT_ROUTES": _out_routes(config), "FLAG_PROMPT": config.harassment.prompt,
        "QUEUE": queue_name(config), "QUEUE_STRATEGY": config.queue.strategy,
        "QUEUE_RINGINUSE": "yes" if config.queue.ringinuse else "no", "QUEUE_MAX_WAIT": str(config.queue.max_wait),
        "QUEUE_LINKED_PRIO": str(config.queue.linked_priority), "QUEUE_LOGIN": config.queue.login_code,
        "QUEUE_LOGOUT": config.queue.logout_code, "QUEUE_UNPAUSE": config.queue.unpause_code,
        "QUEUE_PAUSES": _queue_pauses(config),
    }


def render(config: SiteConfig, extras: PbxExtras) -> dict[str, str]:
    """File name -> contents for the site's etc directory."""
    vals = values(config, extras)
    if not (ROOT / "dialplans").is_dir():
        raise ConfigError(f"templates not found under {ROOT} (dialplans/, config/asterisk/): "
                          "run from a checkout or an image that ships them")
    files: dict[str, str] = {}
    for folder in (ROOT / "config" / "asterisk", ROOT / "dialplans"):
        for template in sorted(folder.glob("*.conf.in")):
            name = template.name.removesuffix(".in")
            files[name] = _fill(template.read_text(encoding="utf-8"), vals, template.name)
    return files


def write(files: dict[str, str], etc_dir: Path) -> None:
    etc_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (etc_dir / name).write_text(text, encoding="utf-8")
