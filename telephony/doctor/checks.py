"""The doctor's checks: each reads the parsed configuration and what Linkage needs, and yields findings with
the file and line, what is wrong and how to fix it. `error` blocks Linkage; `warning` does not (exit 0)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from telephony.doctor.confread import ConfFile, Entry, Section
from telephony.doctor.needs import MIN_VERSION, Needs

FALSE = {"no", "false", "0", "off", "n", "f"}
TRUE = {"yes", "true", "1", "on", "y", "t"}
FEATUREMAP = ("blindxfer", "disconnect", "automon", "atxfer", "parkcall", "automixmon")


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 0: the file as a whole (it is missing, or unreadable)
    severity: str  # error | warning
    check: str
    what: str
    fix: str

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "severity": self.severity, "check": self.check,
                "what": self.what, "fix": self.fix}


@dataclass(frozen=True)
class Conf:
    """The top-level files the checks read, by name."""

    files: dict[str, ConfFile]

    def __getitem__(self, name: str) -> ConfFile:
        return self.files[name]


def _first(conf: ConfFile, name: str) -> Section | None:
    return next((s for s in conf.sections if s.name == name and not s.is_template and "+" not in s.flags), None)


def _val(conf: ConfFile, section: Section | None, name: str) -> Entry | None:
    return conf.value(section, name) if section is not None else None


def parse_problems(conf: Conf) -> Iterator[Finding]:
    for f in conf.files.values():
        for p in f.problems:
            yield Finding(p.file, p.line, "error", "parse", f"Asterisk cannot read this line or file: {p.message}",
                          "correct or remove the line (Asterisk refuses a file with such a line as a whole)")


def includes(conf: Conf, needs: Needs) -> Iterator[Finding]:
    for host, wanted in needs.includes.items():
        f = conf[host]
        if not f.exists:
            yield Finding(host, 0, "error", "include-missing", f"there is no {host}",
                          f"create {host} with " + " and ".join(f'#include "{w}"' for w in wanted))
            continue
        read = {p.name for p in f.files}
        for name in wanted:
            if name not in read:
                yield Finding(host, f.last_line, "error", "include-missing",
                              f"{name} (rendered by `linkage config render`) is not included",
                              f'add the line #include "{name}" to {host} and copy {name} from the render\'s etc/ '
                              "into this directory")
            else:
                path = next(p for p in f.files if p.name == name)
                text = path.read_text(encoding="utf-8", errors="replace")
                if text != needs.rendered[name]:
                    yield Finding(name, 1, "warning", "include-stale",
                                  f"{name} differs from what `linkage config render` makes of the site config now",
                                  f"render again and copy the new {name} here (then `core reload`)")


def _codes(conf: Conf, needs: Needs) -> Iterator[tuple[str, str, Entry | None, str]]:
    """(code, what, entry or None for a default, where) of every DTMF code that is not Linkage's."""
    f = conf["features.conf"]
    general = _first(f, "general")
    pickup = _val(f, general, "pickupexten")
    if pickup is None:
        yield "*8", "pickupexten (Asterisk's default)", None, "general"
    elif pickup.value:
        yield pickup.value, "pickupexten", pickup, "general"
    featuremap = _first(f, "featuremap")
    for name in FEATUREMAP:
        e = _val(f, featuremap, name)
        if e is not None and e.value and not e.file.startswith("linkage-"):
            yield e.value, f"featuremap {name}", e, "featuremap"
    appmap = _first(f, "applicationmap")
    for e in f.effective(appmap) if appmap is not None else []:
        if not e.file.startswith("linkage-") and e.value:
            yield e.value.split(",", 1)[0].strip(), f"applicationmap {e.name}", e, "applicationmap"


def _clashes(code: str, key: str, prefix: bool) -> bool:
    return code == key or (prefix and (code.startswith(key) or key.startswith(code)))


def _free_code(needs: Needs, prefix: bool) -> str:
    return next(c for c in ("*99", "*#9", "*#98", "*#97", "#99") if not any(_clashes(c, k, prefix) for k in needs.keys))


def feature_codes(conf: Conf, needs: Needs) -> Iterator[Finding]:
    f = conf["features.conf"]
    if not f.exists:
        yield Finding("features.conf", 0, "error", "features-missing", "there is no features.conf",
                      f"create features.conf with [general] pickupexten = {_free_code(needs, False)} and "
                      '#include "linkage-features.conf"')
        return
    general = _first(f, "general")
    for code, what, entry, section in _codes(conf, needs):
        # in-call codes (featuremap, applicationmap) run the first that matches, so one that begins another
        # clashes too; pickupexten is dialled, and only the same code clashes (the lab runs *99 beside *9)
        prefix = section != "general"
        for key, ours in needs.keys.items():
            if _clashes(code, key, prefix):
                how = "is" if code == key else "overlaps (one begins the other)"
                where = entry or general
                name = what.split(" (")[0]
                yield Finding(where.file if where else "features.conf", where.line if where else f.last_line,
                              "error", "feature-clash",
                              f"{what} = {code} {how} {key}, {ours}: Asterisk runs the first code that matches",
                              f"set {name} to another code, e.g. {name.split()[-1]} = {_free_code(needs, prefix)}"
                              + (f" under [{section}]" if entry is None else ""))
    for name, want in (("atxferabort", needs.consult_abort), ("atxfercomplete", needs.consult_complete)):
        e = _val(f, general, name)
        default = {"atxferabort": "*1", "atxfercomplete": "*2"}[name]
        have = e.value if e is not None else default
        if have != want:
            where = e or general
            yield Finding(where.file if where else "features.conf", where.line if where else f.last_line, "error",
                          "consult-keys", f"{name} is {have}, but the site config's threeway."
                          f"{'consult_abort' if name == 'atxferabort' else 'consult_complete'} is {want}",
                          f"set {name} = {want} under [general]")


def _module(value: str) -> str:
    return value.strip().removesuffix(".so")


def modules(conf: Conf, needs: Needs) -> Iterator[Finding]:
    f = conf["modules.conf"]
    if not f.exists:
        yield Finding("modules.conf", 0, "error", "modules-missing",
                      "there is no modules.conf: Asterisk loads no module without one",
                      "create modules.conf with [modules] autoload = yes")
        return
    section = _first(f, "modules")
    if section is None:
        yield Finding(f.name, 1, "error", "modules-missing", "modules.conf has no [modules] section",
                      "add [modules] with autoload = yes")
        return
    entries = f.effective(section)
    autoload = _val(f, section, "autoload")
    auto = autoload is not None and autoload.value.lower() in TRUE
    for mod in needs.modules:
        said = [e for e in entries if _module(e.value) == mod and e.name in ("load", "noload", "require",
                                                                           "preload", "preload-require")]
        last = said[-1] if said else None
        if last is not None and last.name == "noload":
            yield Finding(last.file, last.line, "error", "module-noload",
                          f"{mod}.so is set to noload; Linkage's dialplan needs it",
                          f"delete this line (or write load => {mod}.so)")
        elif last is None and not auto:
            yield Finding(section.file, section.line, "error", "module-not-loaded",
                          f"autoload is off and {mod}.so is not loaded; Linkage's dialplan needs it",
                          f"add load => {mod}.so under [modules]")


def version(found: str | None, source: str) -> Iterator[Finding]:
    if found is None:
        yield Finding(source, 0, "warning", "version-unknown", "the Asterisk version was not checked",
                      "pass --asterisk-version, --asterisk-bin or --root so the doctor can read it")
        return
    digits = [int(p) for p in found.split(".")[:2] if p.isdigit()]
    if len(digits) < 2 or tuple(digits) < MIN_VERSION:
        want = ".".join(map(str, MIN_VERSION))
        yield Finding(source, 0, "error", "version",
                      f"Asterisk {found} is older than {want}: the ticket headers need PJSIP_INHERITABLE_HEADER",
                      f"upgrade Asterisk to {want} or later (Debian sid's asterisk package is 22.10)")


def options(conf: Conf) -> Iterator[Finding]:
    f = conf["asterisk.conf"]
    if not f.exists:
        return
    opts = _first(f, "options")
    silence = _val(f, opts, "transmit_silence")
    if silence is None or silence.value.lower() not in TRUE:
        where = silence or opts
        yield Finding(where.file if where else f.name, where.line if where else f.last_line, "warning",
                      "transmit-silence", "transmit_silence is off: a caller waiting on the controller hears dead "
                      "air instead of comfort silence (a phone may hang up on no media)",
                      "set transmit_silence = yes under [options]")
