"""render() end to end: every example becomes a film whose files agree with the plan and the manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.errors import UserError
from storyreel.generate import Clip, GeneratorOptions, ShotRequest
from storyreel.generators.animatic import AnimaticGenerator
from storyreel.manifest import Manifest
from storyreel.rendering import RenderProgress
from storyreel.video import count_frames, probe

from conftest import REPO, small_board

EXAMPLES = sorted(p.name for p in (REPO / "examples").iterdir() if p.name.endswith((".yaml", ".yaml.j2")))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Manifest]]:
    """Every example rendered once (animatic, at its own size and fps), shared by the tests below."""
    films = {}
    for name in EXAMPLES:
        out = tmp_path_factory.mktemp(name.split(".")[0])
        films[name] = out, storyreel.render(REPO / "examples" / name, out=out)
    return films


def test_there_are_examples_of_each_kind() -> None:
    assert {"swan_lake.yaml", "crosscut.yaml", "festival.yaml.j2"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_renders_to_the_files_spec_describes(rendered, name: str) -> None:
    out, manifest = rendered[name]
    board = storyreel.load_storyboard(REPO / "examples" / name)
    plan = storyreel.plan_film(board)
    assert manifest.film is not None and manifest.generator == "animatic"
    assert Manifest.read(out / "manifest.json") == manifest

    # the film: frame count and duration as planned, and as the file really holds them
    frames, seconds, has_audio = probe(out / "film.mp4")
    assert manifest.film.frames == frames == plan.film_frames
    assert manifest.film.seconds == round(frames / plan.fps, 2) == plan.film_seconds
    assert seconds == pytest.approx(frames / plan.fps, abs=0.05)
    assert (manifest.film.width, manifest.film.height, manifest.film.fps) == (
        plan.width,
        plan.height,
        plan.fps,
    )
    with av.open(str(out / "film.mp4")) as container:
        video = container.streams.video[0].codec_context
        assert (video.name, video.pix_fmt, video.width, video.height) == (
            "h264",
            "yuv420p",
            plan.width,
            plan.height,
        )

    # music: present exactly when the storyboard has some
    assert manifest.film.has_audio is has_audio is (board.audio is not None)

    # every shot: its own file, its planned frames, its conditioning edge
    assert [s.id for s in manifest.shots] == plan.timeline
    for entry in manifest.shots:
        shot = plan.shot(entry.id)
        assert count_frames(out / entry.path) == entry.frames == shot.frames
        assert entry.seconds == round(shot.frames / plan.fps, 2)
        assert (entry.conditioned_on, entry.transition, entry.mode) == (
            shot.conditioned_on,
            shot.transition,
            shot.mode,
        )
        assert entry.enhanced_prompt and entry.enhanced_by == board.enhancer.backend
        assert entry.cached is False and entry.dit_passes == 0 and len(entry.cache_key) == 64

    # captions: the srt exists exactly when some shot has one, and names them in timeline order
    captions = [s.caption for s in plan.shots if s.caption]
    srt = out / "film.srt"
    assert srt.exists() is bool(captions) and manifest.film.captions == ("film.srt" if captions else None)
    if captions:
        text = srt.read_text()
        assert [line for line in text.splitlines() if line in captions] == captions


def test_swan_lake_conditions_the_cut_away_return_on_the_shot_it_continues(rendered) -> None:
    _, manifest = rendered["swan_lake.yaml"]
    edges = {s.id: s.conditioned_on for s in manifest.shots}
    assert edges["dip"] == "glide" and edges["heron"] is None
    assert manifest.shot("heron").mode == "image"
    assert any(
        s.conditioned_on and s.conditioned_on != prev.id
        for prev, s in zip(manifest.shots, manifest.shots[1:], strict=False)
    )


def test_crosscut_continues_each_thread_across_the_cuts(rendered) -> None:
    _, manifest = rendered["crosscut.yaml"]
    continued = [s for s in manifest.shots if s.conditioned_on]
    assert len(continued) >= 2
    timeline = [s.id for s in manifest.shots]
    assert any(timeline.index(s.id) - timeline.index(s.conditioned_on) > 1 for s in continued)


class RecordingAnimatic(AnimaticGenerator):
    """The animatic, keeping every request it was given and every clip it returned."""

    def __init__(self, options: GeneratorOptions | None = None):
        super().__init__(options or GeneratorOptions())
        self.requests: dict[str, ShotRequest] = {}
        self.clips: dict[str, np.ndarray] = {}

    def generate(self, request: ShotRequest, progress=None) -> Clip:  # type: ignore[no-untyped-def, override]
        clip = super().generate(request)
        self.requests[request.shot.id] = request
        self.clips[request.shot.id] = clip.frames.copy()
        return clip


def test_continuing_shots_receive_their_parents_exact_last_frames(tmp_path: Path, write_story) -> None:
    board = small_board(overlap_history=5)
    board["scenes"][0]["shots"][1]["duration"] = (
        "0.5s"  # `dip` is shorter than the overlap: `rise` needs glide too
    )
    recorder = RecordingAnimatic()
    manifest = storyreel.render(write_story(board), out=tmp_path / "out", generator=recorder)
    assert manifest.film is not None
    req, clips = recorder.requests, recorder.clips
    assert req["glide"].tail_frames is None and req["heron"].tail_frames is None
    assert np.array_equal(req["dip"].tail_frames, clips["glide"][-5:])
    footage_before_rise = np.concatenate([req["dip"].tail_frames, clips["dip"]])
    assert len(clips["dip"]) < 5  # so the tail reaches back into glide, through dip's own conditioning
    assert np.array_equal(req["rise"].tail_frames, footage_before_rise[-5:])
    assert manifest.shot("rise").conditioned_on == "dip"


def test_render_order_puts_parents_before_their_continuations(tmp_path: Path, write_story) -> None:
    board = small_board()
    board["scenes"].reverse()  # `rise` now comes first on the timeline but continues `dip`
    board["scenes"][0]["after"] = ["lake"]
    recorder = RecordingAnimatic()
    storyreel.render(write_story(board), out=tmp_path / "out", generator=recorder)
    order = list(recorder.requests)
    assert order.index("dip") < order.index("rise")


class Events(RenderProgress):
    def __init__(self) -> None:
        self.log: list[str] = []

    def note(self, message: str) -> None:
        self.log.append(f"note {message}")

    def stage(self, name: str, detail: str = "") -> None:
        self.log.append(f"stage {name}")

    def shot_started(self, shot, index, total) -> None:  # type: ignore[no-untyped-def]
        self.log.append(f"start {shot.id} {index}/{total}")

    def shot_finished(self, shot, entry) -> None:  # type: ignore[no-untyped-def]
        self.log.append(f"done {shot.id}")


def test_only_renders_the_shots_asked_for_and_what_they_continue(tmp_path: Path, write_story) -> None:
    events = Events()
    out = tmp_path / "out"
    manifest = storyreel.render(write_story(small_board()), out=out, only=["rise"], progress=events)
    assert [s.id for s in manifest.shots] == ["glide", "dip", "rise"]
    assert manifest.film is None and not (out / "film.mp4").exists()
    assert sorted(p.name for p in (out / "shots").iterdir()) == ["dip.mp4", "glide.mp4", "rise.mp4"]
    assert any("film.mp4 was not assembled" in line for line in events.log)
    assert [line for line in events.log if line.startswith("stage")] == [
        "stage plan",
        "stage enhance",
        "stage generate",
    ]
    with pytest.raises(UserError, match="--only names unknown shot\\(s\\): nope"):
        storyreel.render(write_story(small_board()), out=out, only=["nope"])


def test_the_manifest_is_written_after_every_shot(tmp_path: Path, write_story) -> None:
    out = tmp_path / "out"

    class Watching(RecordingAnimatic):
        seen: list[list[str]] = []

        def generate(self, request, progress=None):  # type: ignore[no-untyped-def]
            manifest = out / "manifest.json"
            done = [s["id"] for s in json.loads(manifest.read_text())["shots"]] if manifest.exists() else []
            self.seen.append(done)
            return super().generate(request)

    storyreel.render(write_story(small_board()), out=out, generator=Watching())
    assert Watching.seen == [[], ["glide"], ["glide", "dip"], ["glide", "dip", "heron"]]


def test_a_storyboard_built_in_code_renders_and_the_film_matches(tmp_path: Path) -> None:
    board = storyreel.Storyboard.model_validate(small_board())
    manifest = storyreel.render(board, out=tmp_path / "out")
    assert manifest.storyboard is None and manifest.film is not None
    assert count_frames(tmp_path / "out" / "film.mp4") == manifest.film.frames


def test_renders_are_reproducible(tmp_path: Path, write_story) -> None:
    story = write_story(small_board())
    first = storyreel.render(story, out=tmp_path / "a")
    second = storyreel.render(
        story, out=tmp_path / "b", reuse=False
    )  # generated again, not copied from the cache
    assert not any(s.cached for s in second.shots)
    assert [s.cache_key for s in first.shots] == [s.cache_key for s in second.shots]
    for shot in first.shots:
        with av.open(str(tmp_path / "a" / shot.path)) as a, av.open(str(tmp_path / "b" / shot.path)) as b:
            assert all(
                np.array_equal(x.to_ndarray(format="rgb24"), y.to_ndarray(format="rgb24"))
                for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True)
            )


# --- the command line ------------------------------------------------------------------------------------------


def test_cli_render_says_it_is_an_animatic_and_writes_the_film(tmp_path: Path, write_story) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", str(write_story(small_board())), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "animatic" in result.output and "no model is set" in result.output
    assert (out / "film.mp4").exists() and (out / "film.srt").exists()
    manifest = Manifest.read(out / "manifest.json")
    assert manifest.film is not None and manifest.film.frames == count_frames(out / "film.mp4")


def test_cli_render_json_prints_the_manifest(tmp_path: Path, write_story) -> None:
    result = CliRunner().invoke(
        app,
        [
            "render",
            str(write_story(small_board())),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--only",
            "glide",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [s["id"] for s in document["shots"]] == ["glide"] and document["film"] is None


def test_cli_render_of_a_broken_storyboard_renders_nothing(tmp_path: Path, write_story) -> None:
    board = small_board()
    board["scenes"][1]["shots"][1]["continues"] = "dipp"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", str(write_story(board)), "--out", str(out)])
    assert result.exit_code == 1
    assert "story.yaml:" in result.output and "dipp" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_scripted_film_example_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "scripted_film.py"), "--out", str(tmp_path / "film")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    manifest = Manifest.read(tmp_path / "film" / "manifest.json")
    assert manifest.film is not None and manifest.film.frames == count_frames(tmp_path / "film" / "film.mp4")
    assert [s.conditioned_on for s in manifest.shots][:3] == [None, "crab-1", "crab-2"]
