"""What the command line says is true and complete: every default in --help, where a shot came from, how to
resume after Ctrl-C."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.generators.animatic import AnimaticGenerator
from storyreel.manifest import Manifest

from conftest import small_board

runner = CliRunner()


def one_line(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def story(tmp_path: Path) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(small_board(), sort_keys=False))
    return path


def all_commands() -> list[tuple[list[str], Any]]:
    """Every command and subcommand, as (the words that name it, the command object)."""

    def walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
        found = [(path, command)]
        for name, sub in (getattr(command, "commands", None) or {}).items():
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize(
    "path, command", all_commands(), ids=lambda v: " ".join(v) or "storyreel" if isinstance(v, list) else ""
)
def test_help_shows_every_default(path: list[str], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    shown = one_line(result.output)
    options = [p for p in command.params if p.param_type_name == "option" and not p.hidden and not p.is_flag]
    for option in options:
        assert "[default" not in (option.help or ""), f"{option.name}: give the default with show_default="
        if isinstance(option.show_default, str):
            assert f"[default: ({option.show_default})]" in shown, option.name
        elif option.default is not None and option.show_default is not False:
            assert f"[default: {option.default}]" in shown, option.name


def test_a_reused_shot_says_it_came_from_the_cache(tmp_path: Path) -> None:
    path = story(tmp_path)
    first = runner.invoke(app, ["render", str(path), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0 and "from the shot cache" not in first.output
    second = runner.invoke(app, ["render", str(path), "--out", str(tmp_path / "b")])
    assert second.exit_code == 0
    lines = [line.strip() for line in second.output.splitlines() if line.strip().startswith("✓")]
    frames = {"glide": 25, "dip": 16, "heron": 17, "rise": 16}
    assert lines == [f"✓ {shot}  {count} frames, from the shot cache" for shot, count in frames.items()]


class Interrupting(AnimaticGenerator):
    """The animatic, with Ctrl-C pressed while shot 'heron' is being made; notes what it generated."""

    generated: list[str] = []

    def generate(self, request, progress=None):  # type: ignore[no-untyped-def, override]
        if request.shot.id == "heron" and os.environ.get("PRESS_CTRL_C"):
            raise KeyboardInterrupt
        Interrupting.generated.append(request.shot.id)
        return super().generate(request, progress)


@pytest.mark.parametrize("no_cache", [False, True], ids=["cache", "no-cache"])
def test_ctrl_c_says_how_to_resume_and_it_is_true(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cache: bool
) -> None:
    monkeypatch.setattr("storyreel.rendering.load_backend", lambda group, name: Interrupting)
    path, out = story(tmp_path), tmp_path / "out"
    flag = ["--no-cache"] if no_cache else []
    monkeypatch.setenv("PRESS_CTRL_C", "1")
    stopped = runner.invoke(app, ["render", str(path), "--out", str(out), *flag])
    assert stopped.exit_code == 130
    advice = one_line(stopped.output)
    monkeypatch.delenv("PRESS_CTRL_C")
    Interrupting.generated = []
    if no_cache:
        assert "run again without --no-cache to resume from there" in advice
        resumed = runner.invoke(app, ["render", str(path), "--out", str(out)])  # as the advice says
    else:
        assert "run the same command again to resume from there" in advice
        resumed = runner.invoke(app, ["render", str(path), "--out", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert Interrupting.generated == ["heron", "rise"]  # resumed: the finished shots were not made again
    if no_cache:  # and the same command again would not have resumed
        Interrupting.generated = []
        assert runner.invoke(app, ["render", str(path), "--out", str(out), "--no-cache"]).exit_code == 0
        assert Interrupting.generated == ["glide", "dip", "heron", "rise"]
    assert [s.id for s in Manifest.read(out / "manifest.json").shots] == ["glide", "dip", "heron", "rise"]
