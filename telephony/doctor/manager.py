"""The doctor's AMI checks (manager.conf): enabled on the site config's address and port, the controller's
user with its secret, the classes it needs and no more, and an ACL that admits the controller only."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from telephony.doctor.checks import TRUE, Conf, Finding, _first, _val
from telephony.doctor.confread import ConfFile, Section
from telephony.doctor.needs import Needs


def _classes(value: str) -> set[str]:
    return {c.strip().lower() for c in value.split(",") if c.strip()}


def _networks(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def manager(conf: Conf, needs: Needs, username: str, secret: str, ami_host: str, ami_port: int,
            controller: str | None) -> Iterator[Finding]:
    f = conf["manager.conf"]
    if not f.exists:
        yield Finding("manager.conf", 0, "error", "ami-missing", "there is no manager.conf: AMI is off",
                      f"create manager.conf with [general] enabled = yes, port = {ami_port}, bindaddr = {ami_host} "
                      f"and the user [{username}]")
        return
    general = _first(f, "general")
    line = general.line if general else 1
    enabled = _val(f, general, "enabled")
    if enabled is None or enabled.value.lower() not in TRUE:
        yield Finding(enabled.file if enabled else f.name, enabled.line if enabled else line, "error",
                      "ami-disabled", "AMI is not enabled", "set enabled = yes under [general]")
    port = _val(f, general, "port")
    if (int(port.value) if port and port.value.isdigit() else 5038) != ami_port:
        yield Finding(port.file if port else f.name, port.line if port else line, "error", "ami-port",
                      f"AMI listens on port {port.value if port else '5038 (the default)'}, the site config's "
                      f"pbx.ami.port is {ami_port}", f"set port = {ami_port} (or change pbx.ami.port)")
    bind = _val(f, general, "bindaddr")
    bound = bind.value if bind else "0.0.0.0"
    if bound not in (ami_host, "0.0.0.0", "::"):
        yield Finding(bind.file if bind else f.name, bind.line if bind else line, "error", "ami-bindaddr",
                      f"AMI listens on {bound}, the controller connects to {ami_host} (pbx.ami.host)",
                      f"set bindaddr = {ami_host}")
    elif bound != ami_host:
        yield Finding(bind.file if bind else f.name, bind.line if bind else line, "warning", "ami-bindaddr",
                      f"AMI listens on every address ({bound}); the controller needs only {ami_host}",
                      f"set bindaddr = {ami_host}")
    user = _first(f, username)
    if user is None:
        yield Finding(f.name, f.last_line, "error", "ami-user-missing",
                      f"no AMI user [{username}] (pbx.ami.username)",
                      f"add [{username}] with secret = <pbx.ami.secret>, deny = 0.0.0.0/0.0.0.0, "
                      f"permit = {controller or '<the controller address>'}/255.255.255.255, "
                      f"read = {','.join(needs.ami_read)}, write = {','.join(needs.ami_write)}")
        return
    yield from _ami_user(f, user, needs, secret, controller)


def _ami_user(f: ConfFile, user: Section, needs: Needs, secret: str, controller: str | None) -> Iterator[Finding]:
    name = user.name
    sec = f.value(user, "secret")
    if sec is None or sec.value != secret:
        yield Finding(sec.file if sec else user.file, sec.line if sec else user.line, "error", "ami-secret",
                      f"[{name}]'s secret is not the site config's pbx.ami.secret: the controller cannot log in",
                      "set secret = the value of pbx.ami.secret (or the LINKAGE_PBX__AMI__SECRET it is given)")
    for kind, need in (("read", needs.ami_read), ("write", needs.ami_write)):
        e = f.value(user, kind)
        have = _classes(e.value) if e else set()
        at = (e.file, e.line) if e else (user.file, user.line)
        want = ",".join(need)
        if "all" not in have and not set(need) <= have:
            yield Finding(*at, "error", f"ami-{kind}",
                          f"[{name}] {kind} lacks {', '.join(c for c in need if c not in have)}",
                          f"set {kind} = {want}")
        extra = sorted(have - set(need))
        if extra:
            yield Finding(*at, "warning", f"ami-{kind}-extra",
                          f"[{name}] {kind} grants more than Linkage needs: {', '.join(extra)}",
                          f"set {kind} = {want}")
    rules = [e for e in f.effective(user) if e.name in ("deny", "permit", "acl")]
    named = [e for e in rules if e.name == "acl"]
    for e in named:
        yield Finding(e.file, e.line, "warning", "ami-acl", f"[{name}] uses the named ACL {e.value}, which the "
                      "doctor does not read (acl.conf)", "check that it permits the controller's address only")
    denies_all = any(e.name == "deny" and (n := _networks(e.value)) is not None and n.prefixlen == 0 for e in rules)
    if not denies_all and not named:
        yield Finding(user.file, user.line, "error", "ami-permit",
                      f"[{name}] does not deny all addresses first: any host that reaches the AMI port may log in",
                      "add deny = 0.0.0.0/0.0.0.0 before the permit line")
    permits = [e for e in rules if e.name == "permit"]
    if not permits and not named:
        yield Finding(user.file, user.line, "error", "ami-permit", f"[{name}] permits no address",
                      f"add permit = {controller or '<the controller address>'}/255.255.255.255")
    for e in permits:
        n = _networks(e.value)
        single = n is not None and n.num_addresses == 1
        if controller is None:
            if not single:
                yield Finding(e.file, e.line, "error", "ami-permit",
                              f"[{name}] permits {e.value}, more than one address",
                              "permit the controller's address only (…/255.255.255.255)")
        elif n is None or not single or str(n.network_address) != controller:
            yield Finding(e.file, e.line, "error", "ami-permit",
                          f"[{name}] permits {e.value}, wider than the controller's address {controller}",
                          f"set permit = {controller}/255.255.255.255")
