"""Reading an existing Asterisk configuration with pyst2's `asterisk.config` parser, read-only.

pyst2 parses one file line by line and keeps each line's number, but knows less of the syntax than Asterisk:
`#include`/`#tryinclude`/`#exec` lines, template headers (`[name](!)`, `[name](tpl)`, `[name](+)`), `;-- … --;`
block comments and `\\;` escapes make it raise or mis-split. So the text is prepared first, one line for one
line (numbers stay true): directives and block comments become blank lines (directives remembered by line),
template headers lose their `(…)` (remembered by line), and a line pyst2 refuses is reported with its number and
blanked, and the file parsed again. Asterisk semantics on top: includes expanded where they stand (relative
paths against the etc directory, as Asterisk does), templates resolved for the effective values.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

import asterisk.config as pyst2

DIRECTIVE = re.compile(r'^\s*#\s*(include|tryinclude|exec)\s+"?([^"]*?)"?\s*$')
TEMPLATE_HEADER = re.compile(r"^(\s*\[[^\]]*\])\s*\(([^)]*)\)\s*(;.*)?$")
ESCAPED_SEMICOLON = "\x00"
MAX_FILE_BYTES = 4 * 1024 * 1024  # a configuration file is text; more than this is not one
MAX_DEPTH = 10  # Asterisk's own include depth is bounded too


@dataclass(frozen=True)
class Entry:
    name: str
    value: str
    file: str  # relative to the etc directory when inside it
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    flags: tuple[str, ...] = ()  # "!" = template, "+" = append to the earlier one, else template names
    entries: list[Entry] = field(default_factory=list)

    @property
    def is_template(self) -> bool:
        return "!" in self.flags

    @property
    def templates(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if f not in ("!", "+"))


@dataclass(frozen=True)
class Include:
    file: str
    line: int
    kind: str  # include | tryinclude | exec
    target: str
    resolved: tuple[Path, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str


@dataclass
class ConfFile:
    """One top-level file (e.g. `pjsip.conf`) with everything it includes, in the order Asterisk reads it."""

    name: str
    exists: bool
    last_line: int = 0
    sections: list[Section] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file read for it

    def named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]

    def effective(self, section: Section) -> list[Entry]:
        """The section's entries after its templates (recursively) and any `(+)` additions, in order."""
        return self._effective(section, 0)

    def _effective(self, section: Section, depth: int) -> list[Entry]:
        out: list[Entry] = []
        if depth < MAX_DEPTH:
            for tpl in section.templates:
                base = next((s for s in self.sections if s.name == tpl and s is not section
                             and self.sections.index(s) < self.sections.index(section)), None)
                if base is not None:
                    out += self._effective(base, depth + 1)
        out += section.entries
        if "+" not in section.flags:
            for later in self.sections[self.sections.index(section) + 1:]:
                if later.name == section.name and "+" in later.flags:
                    out += later.entries
        return out

    def value(self, section: Section, name: str) -> Entry | None:
        """The last effective entry of that name (a later line overrides an earlier one or a template's)."""
        found = [e for e in self.effective(section) if e.name == name]
        return found[-1] if found else None


class _Prepared(pyst2.Config):  # type: ignore[misc]
    """pyst2's Config over text we prepared (pyst2's own load() opens the file with the locale's encoding)."""

    def __init__(self, name: str, lines: list[str]) -> None:
        self._prepared = lines
        super().__init__(name)

    def load(self) -> None:
        self.raw_lines = self._prepared


def _decode(data: bytes) -> str:
    # Comments in a centre's files may be GBK or Latin-1; Asterisk reads bytes, so must we, never refuse a file
    # for its comments.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _prepare(text: str) -> tuple[list[str], dict[int, tuple[str, str]], dict[int, tuple[str, ...]]]:
    """Lines for pyst2, the directives by line number, and the template flags by line number."""
    lines: list[str] = []
    directives: dict[int, tuple[str, str]] = {}
    flags: dict[int, tuple[str, ...]] = {}
    in_block = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.replace("\\;", ESCAPED_SEMICOLON)
        if in_block:
            end = line.find("--;")
            if end < 0:
                lines.append("\n")
                continue
            in_block = False
            line = line[end + 3:]
        start = line.find(";--")
        if start >= 0:
            end = line.find("--;", start + 3)
            if end < 0:
                in_block = True
                line = line[:start]
            else:
                line = line[:start] + line[end + 3:]
        m = DIRECTIVE.match(line.split(";", 1)[0])
        if m:
            directives[number] = (m.group(1), m.group(2).strip())
            lines.append("\n")
            continue
        t = TEMPLATE_HEADER.match(line)
        if t:
            flags[number] = tuple(f.strip() for f in t.group(2).split(",") if f.strip())
            line = t.group(1) + (t.group(3) or "")
        lines.append(line + "\n")
    return lines, directives, flags


class Reader:
    """Reads top-level files of one etc directory; `root` maps absolute include paths of another machine's
    filesystem (a root filesystem, an image) to where they are here."""

    def __init__(self, etc: Path, root: Path | None = None, etc_inside: str | None = None) -> None:
        self.etc = etc
        self.root = root
        self.etc_inside = etc_inside  # asterisk.conf's astetcdir: absolute includes under it are in `etc`

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.etc))
        except ValueError:
            return str(path)

    def resolve(self, target: str) -> tuple[Path, ...]:
        if target.startswith("/"):
            if self.etc_inside and (target + "/").startswith(self.etc_inside.rstrip("/") + "/"):
                pattern = str(self.etc / target[len(self.etc_inside.rstrip("/")):].lstrip("/"))
            elif self.root is not None:
                pattern = str(self.root / target.lstrip("/"))
            else:
                pattern = target
        else:
            pattern = str(self.etc / target)
        if glob.has_magic(pattern):
            return tuple(Path(p) for p in sorted(glob.glob(pattern)))
        return (Path(pattern),)

    def read(self, name: str) -> ConfFile:
        path = self.etc / name
        conf = ConfFile(name, path.is_file())
        if conf.exists:
            self._read_into(conf, path, None, 0, set())
        return conf

    def _read_into(self, conf: ConfFile, path: Path, current: Section | None, depth: int,
                   seen: set[Path]) -> Section | None:
        shown = self.display(path)
        conf.files.append(path)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            conf.problems.append(Problem(shown, 0, f"cannot read it: {exc.strerror or exc}"))
            return current
        if len(data) > MAX_FILE_BYTES:
            conf.problems.append(Problem(shown, 0, f"larger than {MAX_FILE_BYTES} bytes: not a configuration file"))
            return current
        if b"\x00" in data:
            line = data[:data.index(b"\x00")].count(b"\n") + 1
            conf.problems.append(Problem(shown, line, "a NUL byte: this is not a text configuration file"))
            return current
        lines, directives, flags = _prepare(_decode(data))
        if path.resolve() == (self.etc / conf.name).resolve():
            conf.last_line = len(lines)
        parsed = self._parse(conf, shown, lines)
        for item in parsed.lines:
            number = item.number
            if number in directives:
                kind, target = directives[number]
                resolved = self.resolve(target) if kind != "exec" else ()
                conf.includes.append(Include(shown, number, kind, target, resolved))
                if depth >= MAX_DEPTH:
                    conf.problems.append(Problem(shown, number, f"includes nested deeper than {MAX_DEPTH}"))
                    continue
                for sub in resolved:
                    key = sub.resolve()
                    if key in seen:
                        conf.problems.append(Problem(shown, number, f"{target} includes itself"))
                    elif sub.is_file():
                        current = self._read_into(conf, sub, current, depth + 1, seen | {key})
                continue
            if isinstance(item, pyst2.Category):
                current = Section(item.name.strip(), shown, number, flags.get(number, ()))
                conf.sections.append(current)
            elif isinstance(item, pyst2.Item):
                name = item.name.rstrip("+").strip()
                value = item.value.strip().replace(ESCAPED_SEMICOLON, ";")
                entry = Entry(name, value, shown, number)
                if current is None:
                    conf.problems.append(Problem(shown, number, f"'{name}' comes before any [section]"))
                else:
                    current.entries.append(entry)
        return current

    @staticmethod
    def _parse(conf: ConfFile, shown: str, lines: list[str]) -> pyst2.Config:
        """pyst2 stops at the first line it cannot parse: report it, blank it, parse the rest again."""
        for _ in range(len(lines) + 1):
            try:
                return _Prepared(shown, lines)
            except pyst2.ParseError as exc:
                number, message = (*exc.args, 0, "cannot parse")[:2]
                if not isinstance(number, int) or not 1 <= number <= len(lines):
                    raise
                conf.problems.append(Problem(shown, number, f"{message}: {lines[number - 1].strip()[:80]!r}"))
                lines = [*lines[:number - 1], "\n", *lines[number:]]
        return _Prepared(shown, ["\n"])
