"""A stock Asterisk configuration as a deployer meets it, for the doctor's tests and the stock-PBX lab drill.

Debian's sample configuration (`<rootfs>/etc/asterisk`, what `apt-get install asterisk` puts in /etc/asterisk),
then the steps of docs/deploy.md, each a function: the PBX's own endpoints as a centre already has them
(`existing_site`), the Linkage includes appended as the README's short form says (`include_linkage`), and the
fixes the doctor asks for (`apply_fixes`). Lab-only changes (directories, ports of the lab's loopback plan, the
harness's read-only AMI account) are in `lab_environment` and are not Linkage's requirements.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from telephony.config import SiteConfig
from telephony.pbx.render import dynamic_features

LINKAGE_FILES = ("linkage.conf", "linkage-globals.conf", "linkage-features.conf", "linkage-confbridge.conf",
                 "linkage-queues.conf")
HOSTS = {"extensions.conf": ("linkage-globals.conf", "linkage.conf"), "features.conf": ("linkage-features.conf",),
         "confbridge.conf": ("linkage-confbridge.conf",), "queues.conf": ("linkage-queues.conf",)}


def stock_etc(rootfs: Path) -> Path:
    return rootfs / "etc" / "asterisk"


def copy_stock(rootfs: Path, etc: Path) -> None:
    if etc.exists():
        shutil.rmtree(etc)
    shutil.copytree(stock_etc(rootfs), etc, symlinks=True)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def existing_site(etc: Path, config: SiteConfig) -> None:
    """The endpoints a centre's PBX already has before Linkage: a UDP transport, its agents' phones (their
    own context, PJSIP's default direct_media), the trunk to the other centre (its own inbound context), the
    hotline's inbound route (here a SIPp citizen straight into Linkage's hotline context), a phone-only desk
    and the carrier route. Named as the Linkage dialplan dials them (PJSIP/agent<id>, trunk-<peer> …)."""
    sip = config.pbx.sip
    parts = [f"""
; ---- the centre's own SIP set-up (before Linkage) ----
[transport-udp]
type = transport
protocol = udp
bind = {sip.host}:{sip.port}

[centre-phone](!)
type = endpoint
transport = transport-udp
disallow = all
allow = ulaw,alaw
dtmf_mode = rfc4733
rtp_symmetric = yes
send_connected_line = no

[citizen](centre-phone)
context = linkage-citizen

[citizen]
type = identify
endpoint = citizen
match = {config.accounts.citizen.host}:{config.accounts.citizen.port}
"""]
    for a in config.accounts.agents:
        parts.append(f"""
[agent{a.id}](centre-phone)
context = centre-agents
aors = agent{a.id}
callerid = "Agent {a.id}" <{a.id}>

[agent{a.id}]
type = aor
contact = sip:{a.id}@{a.host}:{a.port}
max_contacts = 1

[agent{a.id}]
type = identify
endpoint = agent{a.id}
match = {a.host}:{a.port}
""")
    for p in config.peers:
        parts.append(f"""
[trunk-{p.name}](centre-phone)
context = from-trunk
direct_media = no
aors = trunk-{p.name}
trust_id_inbound = yes
trust_id_outbound = yes

[trunk-{p.name}]
type = aor
contact = sip:{p.trunk.host}:{p.trunk.port}
qualify_frequency = 2

[trunk-{p.name}]
type = identify
endpoint = trunk-{p.name}
match = {p.trunk.host}:{p.trunk.port}
""")
    for t in config.targets:
        if t.phone is not None:
            parts.append(f"""
[target-{t.name}](centre-phone)
context = centre-agents
direct_media = no
aors = target-{t.name}

[target-{t.name}]
type = aor
contact = sip:{t.phone.host}:{t.phone.port}
""")
    if config.followup.gateway is not None:
        g = config.followup.gateway
        parts.append(f"""
[followup-out](centre-phone)
context = centre-agents
direct_media = no
aors = followup-out

[followup-out]
type = aor
contact = sip:{g.host}:{g.port}
""")
    _append(etc / "pjsip.conf", "".join(parts))
    _append(etc / "extensions.conf", "\n[centre-agents]\nexten => i,1,Hangup()\n\n[from-trunk]\n"
                                     "exten => _X.,1,Hangup()\n")


def copy_render(render_etc: Path, etc: Path) -> None:
    for name in LINKAGE_FILES:
        shutil.copyfile(render_etc / name, etc / name)


def include_linkage(etc: Path) -> None:
    """The README's short form: `#include` the files at the end of extensions.conf, features.conf,
    confbridge.conf and queues.conf."""
    for host, files in HOSTS.items():
        _append(etc / host, "\n" + "".join(f'#include "{name}"\n' for name in files))


def _sub(path: Path, pattern: str, repl: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(pattern, repl, text, count=count, flags=re.MULTILINE)
    if n != count:
        raise AssertionError(f"{path.name}: {pattern!r} matched {n} times, expected {count}")
    path.write_text(new, encoding="utf-8")


def apply_fixes(etc: Path, config: SiteConfig, controller: str = "127.0.0.1") -> None:
    """docs/deploy.md's fixes, in its order."""
    # 1. features.conf: pickup off the one-key code
    _sub(etc / "features.conf", r"^\[general\]", "[general]\npickupexten = *99")
    # 2. the agents' phones: the one-key codes on their calls, media through Asterisk
    pjsip = etc / "pjsip.conf"
    for a in config.accounts.agents:
        _sub(pjsip, rf"^\[agent{a.id}\]\(centre-phone\)\n",
             f"[agent{a.id}](centre-phone)\nset_var = DYNAMIC_FEATURES={dynamic_features(config) or 'none'}\n"
             "direct_media = no\n")
    # 3. the trunk into Linkage's inbound context
    for p in config.peers:
        _sub(pjsip, rf"^(\[trunk-{re.escape(p.name)}\]\(centre-phone\)\n)context = from-trunk",
             r"\1context = linkage-from-trunk")
    # 4. AMI: the port of the site config, and the controller's user
    ami = config.pbx.ami
    _sub(etc / "manager.conf", r"^port = \d+", f"port = {ami.port}")
    write = "call,reporting" + (",originate" if any(t.phone is None for t in config.targets)
                                or config.followup.gateway else "") + ",agent"  # agent: the queue's members
    _append(etc / "manager.conf", f"""
[{ami.username}]
secret = {ami.secret}
deny = 0.0.0.0/0.0.0.0
permit = {controller}/255.255.255.255
read = call,dtmf,user,agent
write = {write}
writetimeout = 1000
""")
    # 5. comfort silence while a caller waits
    _sub(etc / "asterisk.conf", r"^\[options\]", "[options]\ntransmit_silence = yes")


def lab_environment(etc: Path, inside: str, tester_secret: str, host: str, rtp: tuple[int, int]) -> None:
    """The lab, not Linkage: the PBX's directories inside the root filesystem (several PBXes on one machine),
    the site's RTP range, and the harness's read-mostly AMI account."""
    conf = etc / "asterisk.conf"
    # Debian ships [directories](!): a template, which Asterisk does not apply (its built-in /etc/asterisk …
    # stand), so the lab's own directories need a plain section
    text = conf.read_text(encoding="utf-8").replace("[directories](!)", "[directories]")
    for key, sub in (("astetcdir", "etc"), ("astvarlibdir", "lib"), ("astdbdir", "lib"), ("astkeydir", "lib"),
                     ("astspooldir", "spool"), ("astrundir", "run"), ("astlogdir", "log"), ("astcachedir", "cache")):
        text, n = re.subn(rf"^{key} => .*$", f"{key} => {inside}/{sub}", text, flags=re.MULTILINE)
        if n != 1:
            raise AssertionError(f"asterisk.conf: no {key} line")
    conf.write_text(text, encoding="utf-8")
    _sub(etc / "rtp.conf", r"^rtpstart=\d+", f"rtpstart={rtp[0]}")
    _sub(etc / "rtp.conf", r"^rtpend=\d+", f"rtpend={rtp[1]}")
    _append(etc / "manager.conf", f"""
[tester]
secret = {tester_secret}
deny = 0.0.0.0/0.0.0.0
permit = {host}/255.255.255.255
read = call,dtmf,user,agent,dialplan,reporting
write = reporting
""")
