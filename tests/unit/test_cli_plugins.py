"""`linkage` loads its lab sub-commands from the `linkage.cli` entry points; without the lab tooling they say
that it is not installed, and a broken plugin is not hidden."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from telephony import cli


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *values: tuple[str, str]) -> None:
    eps = [EntryPoint(name, value, cli.PLUGIN_GROUP) for name, value in values]
    monkeypatch.setattr(cli, "entry_points", lambda group: eps if group == cli.PLUGIN_GROUP else [])


def test_the_lab_sub_commands_come_from_the_lab_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, ("lab", "linkage_lab.cli:add_lab"), ("scenario", "linkage_lab.cli:add_scenario"),
                       ("demo", "linkage_lab.cli:add_demo"))
    seen: dict[str, Any] = {}
    import linkage_lab.cli as lab_cli

    monkeypatch.setattr(lab_cli, "_lab", lambda args: seen.setdefault("lab", args.lab_cmd) and 0)
    monkeypatch.setattr(lab_cli, "_scenario", lambda args: seen.setdefault("scenario", args.files) and 0)
    assert cli.main(["lab", "describe"]) == 0
    assert cli.main(["scenario", "run", "a.yaml", "b.yaml"]) == 0
    assert seen == {"lab": "describe", "scenario": ["a.yaml", "b.yaml"]}


def test_without_the_lab_tooling_the_lab_commands_say_so(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # the production image: the entry points are in the metadata, the package was never copied
    _with_entry_points(monkeypatch, ("lab", "no_such_lab_package.cli:add_lab"))
    for argv in (["lab", "up"], ["scenario", "run", "x.yaml"], ["demo", "--exit-after"]):
        assert cli.main(argv) == 2
        assert f"`linkage {argv[0]}` comes with the lab tooling (package linkage_lab), which is not installed" \
            in capsys.readouterr().err


def test_a_plugin_that_fails_to_import_for_another_reason_is_not_hidden(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    (tmp_path / "broken_lab_plugin.py").write_text("import no_such_dependency_of_the_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _with_entry_points(monkeypatch, ("lab", "broken_lab_plugin:add"))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_the_plugin"):
        cli.main(["lab", "up"])


def test_serve_site_finds_the_config_where_the_lab_writes_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from linkage_lab.lab.lab import Lab
    from telephony.sites import site_config_path

    monkeypatch.setenv("LINKAGE_ROOTFS", str(tmp_path))
    expected = tmp_path / "srv/linkage-lab/110/linkage.yaml"
    assert site_config_path("110") == Lab().dir / "110" / "linkage.yaml" == expected
