"""How the transformer runs: `attention`, `compile` and `precision`, film-wide settings a user chooses.

They are read from the storyboard's top-level `generation:` (or `--attention`, `--compile/--no-compile`,
`--precision`, or render()'s arguments), refused with their position when wrong, shown by `plan`, handed to
the generator in its GeneratorOptions (never in a shot's settings, so no shot's cache key changes) and
written per shot in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.generate import Clip, GeneratorOptions, ProgressCallback, ShotRequest, ignore_progress
from storyreel.generators.animatic import AnimaticGenerator
from storyreel.manifest import Manifest

from conftest import small_board

runner = CliRunner()
MODEL = "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"  # never loaded: plan only names it


class OptionsRecorder(AnimaticGenerator):
    """The animatic under another name, keeping the options render() constructed it with; it reports in
    Clip.info whatever ``reported`` holds, as a generator saying which kernel actually ran would."""

    name = "recorder"  # type: ignore[assignment]
    constructed: ClassVar[list[GeneratorOptions]] = []
    reported: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: GeneratorOptions):
        super().__init__(options)
        OptionsRecorder.constructed.append(options)

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        clip = super().generate(request, progress)
        clip.info.update(self.reported)
        return clip


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[OptionsRecorder]:
    """`--generator recorder` constructs an OptionsRecorder, through the path every named backend takes."""
    real = storyreel.rendering.load_backend
    monkeypatch.setattr(
        "storyreel.rendering.load_backend",
        lambda group, name: OptionsRecorder if name == "recorder" else real(group, name),
    )
    monkeypatch.setattr(OptionsRecorder, "constructed", [])
    monkeypatch.setattr(OptionsRecorder, "reported", {})
    return OptionsRecorder


def position(path: Path, token: str) -> str:
    """``path:line:col`` of the first ``token`` in the file."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if token in line:
            return f"{path}:{number}:{line.index(token) + 1}"
    raise AssertionError(f"{token!r} not in {path}")


def plan_json(*arguments: str) -> dict[str, Any]:
    result = runner.invoke(app, ["plan", *arguments, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- read, defaulted, overridden -------------------------------------------------------------------------------


def test_defaults_are_auto_attention_auto_compile_and_bf16(write_story):
    plan = plan_json(str(write_story(small_board())))
    assert plan["transformer"] == {"attention": "auto", "compile": "auto", "precision": "bf16"}


def test_the_storyboard_sets_them_for_the_film(write_story):
    story = write_story(
        "storyreel: 1\n"
        "generation: {attention: SDPA, compile: false, precision: fp8}\n"
        "scenes:\n  - id: a\n    shots: [{id: x, prompt: p, duration: 1}]\n"
    )
    assert plan_json(str(story))["transformer"] == {
        "attention": "sdpa",
        "compile": "false",
        "precision": "fp8",
    }
    assert storyreel.plan_film(storyreel.load_storyboard(story)).transformer.compile == "false"
    story.write_text(story.read_text().replace("compile: false", "compile: true"))
    assert plan_json(str(story))["transformer"]["compile"] == "true"


def test_command_line_flags_replace_the_storyboard_and_absent_flags_keep_it(write_story):
    story = write_story(small_board(attention="cudnn", compile=False, precision="fp8"))
    assert plan_json(str(story))["transformer"] == {
        "attention": "cudnn",
        "compile": "false",
        "precision": "fp8",
    }
    replaced = plan_json(str(story), "--attention", "flash3", "--compile", "--precision", "bf16")
    assert replaced["transformer"] == {"attention": "flash3", "compile": "true", "precision": "bf16"}
    assert plan_json(str(story), "--precision", "bf16")["transformer"] == {
        "attention": "cudnn",
        "compile": "false",
        "precision": "bf16",
    }
    board = yaml.safe_load(story.read_text())
    board["generation"]["compile"] = True
    story.write_text(yaml.safe_dump(board))
    assert plan_json(str(story), "--no-compile")["transformer"]["compile"] == "false"


def test_they_are_in_no_shots_settings(write_story):
    """A shot's settings (and so its cache key) are the same whatever the transformer settings."""
    story = write_story(small_board())
    plain = plan_json(str(story))
    other = plan_json(str(story), "--attention", "sage", "--no-compile", "--precision", "fp8")
    assert plain["shots"] == other["shots"]
    assert not {"attention", "compile", "precision"} & set(plain["shots"][0]["settings"])


def test_plan_shows_them_and_says_fp8_and_sage_are_lossy_for_a_model(write_story):
    story = write_story(small_board(model=MODEL, fps=24, precision="fp8", attention="sage"))
    result = runner.invoke(app, ["plan", str(story)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "transformer: attention sage, compile auto, precision fp8" in output
    assert "note: precision fp8: the transformer's weights and matrix products are 8-bit floats" in output
    assert "lossy: the frames differ from a bf16 render's" in output
    assert "note: attention sage: SageAttention computes attention in 8 bits, which is lossy" in output

    bf16 = runner.invoke(app, ["plan", str(story), "--precision", "bf16", "--attention", "auto"])
    assert "lossy" not in bf16.output
    animatic = runner.invoke(app, ["plan", str(write_story(small_board(precision="fp8"), "animatic.yaml"))])
    assert animatic.exit_code == 0, animatic.output
    assert "transformer:" not in animatic.output and "lossy" not in animatic.output  # no transformer to run


# --- refused with positions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            "attention: flash2",
            "'flash2' is not an attention kernel; did you mean 'flash'? use one of: auto, flash3, sage, flash, "
            "cudnn, sdpa",
        ),
        ("compile: yes", "'yes' is not a compile setting; use one of: auto, true, false"),
        ("compile: 1", "1 is not a compile setting; use one of: auto, true, false"),
        ("precision: fp16", "'fp16' is not a precision; did you mean 'bf16'? use one of: bf16, fp8"),
    ],
)
def test_a_wrong_value_is_refused_at_its_position_with_the_choices(write_story, written: str, message: str):
    story = write_story(
        f"storyreel: 1\ngeneration:\n  {written}\nscenes:\n  - id: a\n    shots: [{{id: x, prompt: p, duration: 1}}]\n"
    )
    result = runner.invoke(app, ["validate", str(story)])
    assert result.exit_code == 1
    key = written.split(":")[0]
    line, column = position(story, written).rsplit(":", 2)[1:]
    where = f"{story}:{line}:{int(column) + len(key) + 2}"  # the value, after "key: "
    assert f"error: {where}: generation.{key}: {message}" in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize("key", ["attention", "compile", "precision"])
def test_a_scene_or_a_shot_cannot_set_them(write_story, key: str):
    value = {"attention": "sdpa", "compile": "false", "precision": "fp8"}[key]
    story = write_story(
        "storyreel: 1\nscenes:\n"
        f"  - id: a\n    generation: {{{key}: {value}}}\n"
        f"    shots: [{{id: x, prompt: p, duration: 1, generation: {{{key}: {value}}}}}]\n"
    )
    result = runner.invoke(app, ["validate", str(story)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    lines = story.read_text().splitlines()
    scene_column = lines[3].index(key) + 1
    shot_column = lines[4].index(key) + 1
    film_wide = (
        f"`{key}` applies to the whole film and cannot change per scene or shot; set it once under the "
        "top-level `generation:` and remove it here"
    )
    assert f"error: {story}:4:{scene_column}: scenes[0].generation.{key}: {film_wide}" in output
    assert f"error: {story}:5:{shot_column}: scenes[0].shots[0].generation.{key}: {film_wide}" in output


def test_a_wrong_flag_is_refused_with_the_choices(write_story, tmp_path: Path):
    story = write_story(small_board())
    result = runner.invoke(app, ["render", str(story), "--out", str(tmp_path / "out"), "--attention", "fa3"])
    assert result.exit_code == 1
    assert (
        "error: --attention: 'fa3' is not an attention kernel; did you mean 'flash3'? use one of: auto, "
        "flash3, sage, flash, cudnn, sdpa" in " ".join(result.output.split())
    )
    assert not (tmp_path / "out" / "manifest.json").exists()
    result = runner.invoke(app, ["plan", str(story), "--precision", "int4"])
    assert result.exit_code == 1 and "error: --precision: 'int4' is not a precision" in result.output
    with pytest.raises(storyreel.StoryboardError, match=r"--compile: 'sometimes' is not a compile setting"):
        storyreel.plan_film(storyreel.load_storyboard(story), compile="sometimes")


def test_the_schema_offers_the_choices() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = storyreel.storyboard.storyboard_schema()
    board = small_board(attention="flash3", compile=True, precision="fp8")
    jsonschema.validate(board, schema)
    board["generation"]["attention"] = "fast"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(board, schema)


# --- they reach the generator and the manifest --------------------------------------------------------------


def test_the_storyboards_settings_reach_the_generator_options(write_story, recorder, tmp_path: Path):
    story = write_story(small_board(attention="cudnn", compile=True, precision="fp8"))
    manifest = storyreel.render(story, tmp_path / "out", generator="recorder")
    (options,) = recorder.constructed
    assert (options.attention, options.compile, options.precision) == ("cudnn", "true", "fp8")
    # The recorder reports nothing of its own, so each shot records what it was asked for.
    assert {(s.attention, s.compile, s.precision) for s in manifest.shots} == {("cudnn", "true", "fp8")}


def test_command_line_flags_reach_the_generator_options_and_the_manifest(write_story, recorder, tmp_path):
    story = write_story(small_board(attention="cudnn", compile=True))
    out = tmp_path / "out"
    command = ["render", str(story), "--out", str(out), "--generator", "recorder"]
    result = runner.invoke(app, [*command, "--attention", "sdpa", "--no-compile", "--precision", "fp8"])
    assert result.exit_code == 0, result.output
    (options,) = recorder.constructed
    assert (options.attention, options.compile, options.precision) == ("sdpa", "false", "fp8")
    shots = json.loads((out / "manifest.json").read_text())["shots"]
    assert [(s["attention"], s["compile"], s["precision"]) for s in shots] == [("sdpa", "false", "fp8")] * 4


def test_render_arguments_replace_the_storyboards(write_story, recorder, tmp_path: Path):
    story = write_story(small_board(attention="cudnn", precision="fp8"))
    storyreel.render(story, tmp_path / "out", generator="recorder", attention="flash", compile=False)
    (options,) = recorder.constructed
    assert (options.attention, options.compile, options.precision) == ("flash", "false", "fp8")


def test_the_manifest_records_what_the_generator_says_it_ran(write_story, recorder, tmp_path: Path):
    """A generator that reports the kernel it ran (attention auto resolved to flash3, say) is believed; what it
    does not report is what it was asked for. A shot reused from the cache keeps what made it."""
    recorder.reported = {"attention": "flash3", "compile": True}
    story = write_story(small_board())
    first = storyreel.render(story, tmp_path / "out", generator="recorder")
    assert {(s.attention, s.compile, s.precision) for s in first.shots} == {("flash3", "true", "bf16")}
    recorder.reported = {}
    again = storyreel.render(story, tmp_path / "out", generator="recorder")
    assert all(shot.cached for shot in again.shots)
    saved = Manifest.read(tmp_path / "out" / "manifest.json")
    assert {(s.attention, s.compile, s.precision) for s in saved.shots} == {("flash3", "true", "bf16")}


def test_the_animatic_records_none_and_ignores_them(write_story, tmp_path: Path):
    """The animatic has no transformer: null in the manifest, and other settings reuse every cached shot."""
    story = write_story(small_board())
    first = storyreel.render(story, tmp_path / "out")
    assert first.generator == "animatic"
    assert {(s.attention, s.compile, s.precision) for s in first.shots} == {(None, None, None)}
    again = storyreel.render(story, tmp_path / "out", attention="sage", compile=True, precision="fp8")
    assert all(shot.cached for shot in again.shots)
    assert [s.cache_key for s in again.shots] == [s.cache_key for s in first.shots]
    shots = json.loads((tmp_path / "out" / "manifest.json").read_text())["shots"]
    assert all(s["attention"] is None and s["compile"] is None and s["precision"] is None for s in shots)
