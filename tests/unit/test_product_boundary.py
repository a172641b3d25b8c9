"""The product package stands alone: no module of `telephony/` imports the lab tooling (`linkage_lab`), not even
inside a function, and the production image copies nothing of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = "linkage_lab"


def _lab_imports(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if func in ("import_module", "__import__", "find_spec") and node.args:
                arg = node.args[0]
                names = [arg.value] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else []
        found += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names
                  if n == LAB or n.startswith(LAB + ".")]
    return found


def test_no_module_of_the_product_imports_the_lab_tooling() -> None:
    modules = sorted((ROOT / "telephony").rglob("*.py"))
    assert len(modules) > 20  # the walk really saw the package
    assert [hit for m in modules for hit in _lab_imports(m)] == []


def test_the_boundary_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from linkage_lab.lab.lab import Lab\n    import linkage_lab.harness\n"
                     "    importlib.import_module('linkage_lab.cli')\n    import linkage_laboratory\n")
    assert len(_lab_imports(probe, tmp_path)) == 3


def _copied_sources(dockerfile: str) -> list[str]:
    """The build-context sources of every COPY/ADD without --from (a --from copies from a build stage)."""
    sources = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


def test_the_production_image_copies_nothing_of_the_lab_tooling() -> None:
    dockerfile = (ROOT / "docker" / "controller.Dockerfile").read_text()
    sources = _copied_sources(dockerfile)
    # the parser really read the Dockerfile's COPY lines: the product comes in as its wheel (scripts/images.sh
    # builds it from telephony/ only; tests/images checks the running image has no linkage_lab)
    assert "build/images/wheels/linkage" in sources
    wide = [s for s in sources if s.rstrip("/") in (".", "*", "") or s.startswith(LAB) or "*" in s]
    assert wide == [], f"controller.Dockerfile copies {wide}: the lab tooling would reach the image"
    ignore = (ROOT / "docker" / "controller.Dockerfile.dockerignore").read_text().split()
    assert LAB in ignore  # and the build context does not even carry it


def test_the_copy_parser_catches_a_whole_context_copy() -> None:
    assert _copied_sources("COPY . /src\nCOPY --from=build /opt /opt\n") == ["."]
    assert _copied_sources("COPY pyproject.toml \\\n  linkage_lab ./\n") == ["pyproject.toml", "linkage_lab"]
