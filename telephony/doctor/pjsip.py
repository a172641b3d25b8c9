"""The doctor's PJSIP checks: the endpoints the Linkage dialplan dials, the agents' one-key features and
media path, the trunk's inbound context."""

from __future__ import annotations

from collections.abc import Iterator

from telephony.doctor.checks import FALSE, Conf, Finding
from telephony.doctor.confread import ConfFile, Entry, Section
from telephony.doctor.needs import TRUNK_CONTEXT, Needs


def _endpoints(conf: Conf) -> dict[str, tuple[ConfFile, Section, dict[str, list[Entry]]]]:
    """PJSIP endpoints (pjsip.conf, and pjsip_wizard.conf's endpoint/ options) with their effective options."""
    out: dict[str, tuple[ConfFile, Section, dict[str, list[Entry]]]] = {}
    for f in (conf["pjsip.conf"], conf["pjsip_wizard.conf"]):
        for s in f.sections:
            if s.is_template:
                continue
            entries = f.effective(s)
            kind = [e.value for e in entries if e.name == "type"]
            if kind[-1:] == ["endpoint"]:
                opts: dict[str, list[Entry]] = {}
                for e in entries:
                    opts.setdefault(e.name, []).append(e)
            elif kind[-1:] == ["wizard"]:
                opts = {}
                for e in entries:
                    if e.name.startswith("endpoint/"):
                        opts.setdefault(e.name.removeprefix("endpoint/"), []).append(e)
            else:
                continue
            out.setdefault(s.name, (f, s, opts))
    return out


def endpoints(conf: Conf, needs: Needs) -> Iterator[Finding]:
    found = _endpoints(conf)
    pjsip = conf["pjsip.conf"]
    for ep in needs.endpoints:
        if ep.name not in found:
            hint = {"agent": f"context = <your agents' context>, set_var = DYNAMIC_FEATURES={needs.features_value},"
                             " direct_media = no",
                    "trunk": f"context = {TRUNK_CONTEXT}, the other site's PBX as its aor and identify"}.get(
                        ep.role, "an aor with its address")
            yield Finding("pjsip.conf", pjsip.last_line, "error", "endpoint-missing",
                          f"no PJSIP endpoint [{ep.name}] ({ep.role}): the Linkage dialplan dials PJSIP/…{ep.name}",
                          f"add the endpoint [{ep.name}] (type = endpoint; {hint})")
            continue
        _, section, opts = found[ep.name]
        if ep.role == "agent":
            values = [e.value for e in opts.get("set_var", [])]
            have = next((v.split("=", 1)[1] for v in values if v.split("=", 1)[0].strip() == "DYNAMIC_FEATURES"),
                        None)
            missing = [n for n in needs.features if have is None or n not in have.split("#")]
            if missing:
                yield Finding(section.file, section.line, "error", "agent-dynamic-features",
                              f"agent endpoint [{ep.name}] has " + ("no DYNAMIC_FEATURES set_var" if have is None
                                                                    else f"DYNAMIC_FEATURES={have} without "
                                                                    + ", ".join(missing))
                              + ": the one-key codes are not enabled on the agent's calls",
                              f"add set_var = DYNAMIC_FEATURES={needs.features_value} (keep your own features "
                              "after a #)" if have is None else
                              f"make it set_var = DYNAMIC_FEATURES={'#'.join([have, *missing])}")
            direct = opts.get("direct_media", [])
            if not direct or direct[-1].value.lower() not in FALSE:
                at = direct[-1] if direct else None
                yield Finding(at.file if at else section.file, at.line if at else section.line, "error",
                              "agent-direct-media",
                              f"agent endpoint [{ep.name}] has direct_media "
                              + (f"= {at.value}" if at else "unset (PJSIP's default is yes)")
                              + ": with media outside Asterisk it never hears the transfer key",
                              "set direct_media = no on the endpoint (or its template)")
        if ep.role == "trunk":
            ctx = opts.get("context", [])
            if not ctx or ctx[-1].value != TRUNK_CONTEXT:
                at = ctx[-1] if ctx else None
                yield Finding(at.file if at else section.file, at.line if at else section.line, "error",
                              "trunk-context", f"trunk endpoint [{ep.name}] has context "
                              + (at.value if at else "unset") + f", not {TRUNK_CONTEXT}: linked calls from the "
                              "other site would not reach the Linkage route_in",
                              f"set context = {TRUNK_CONTEXT} on [{ep.name}]")
