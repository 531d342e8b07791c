"""The keyframe stage on real parts: a tiny random-weight FLUX.2 [klein] (tests/tiny_flux2.py) draws the start
frames, a tiny SkyReels-V2 diffusion-forcing model (tests/tiny_skyreels.py) makes the shots from them, and
the checks are what a user notices: which shots got a keyframe, the exact picture each shot started from,
the manifest and the plan, and what a second render or an edited reference draws and generates again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("ftfy")

from tiny_flux2 import build_tiny_flux2  # noqa: E402
from tiny_skyreels import build_tiny_skyreels  # noqa: E402

from storyreel.cli import app  # noqa: E402
from storyreel.errors import ModelNotFound  # noqa: E402
from storyreel.generate import (  # noqa: E402
    Clip,
    Generator,
    GeneratorOptions,
    ProgressCallback,
    PromptRequest,
    ShotRequest,
    load_start_image,
    open_generator,
)
from storyreel.rendering import RenderProgress, render, render_keyframes  # noqa: E402

from conftest import torch_threads  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

runner = CliRunner()
TINY = {"resolution": "64x64", "fps": 16, "steps": 2, "base_num_frames": 17, "overlap_history": 5}
KEYFRAMED = ["arrival", "lamp", "watch"]  # fresh shots showing a character with a reference


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny_klein(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_flux2(tmp_path_factory.mktemp("tiny") / "klein")


@pytest.fixture(scope="module")
def tiny_df(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_skyreels(tmp_path_factory.mktemp("tiny") / "df")


def picture(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (80, 96)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def film(folder: Path, klein: Path, df: Path | None, **keyframes: Any) -> Path:
    """The keeper's night at 64x64: two characters with references (one with two pictures), one without,
    a continuation, a shot without characters, and a shot with its own image."""
    picture(folder / "refs" / "keeper-front.png", (230, 190, 40))
    picture(folder / "refs" / "keeper-side.png", (200, 160, 30))
    picture(folder / "refs" / "pip.png", (240, 240, 240))
    picture(folder / "own.png", (20, 40, 120), (64, 64))
    generation: dict[str, Any] = {**TINY, "seed": 7}
    if df is not None:
        generation["model"] = str(df)
    board = {
        "storyreel": 1,
        "title": "The Keeper",
        "style": "painterly",
        "generation": generation,
        "characters": {
            "keeper": {
                "description": "an old keeper",
                "reference": ["refs/keeper-front.png", "refs/keeper-side.png"],
            },
            "pip": {"description": "a small terrier", "reference": "refs/pip.png"},
            "gull": {"description": "a herring gull"},
        },
        "keyframes": {"model": str(klein), "steps": 2, **keyframes},
        "scenes": [
            {
                "id": "rock",
                "setting": "a rocky island at dusk",
                "shots": [
                    {"id": "arrival", "prompt": "{{ keeper }} walks with {{ pip }}", "duration": "1s"},
                    {"id": "climb", "prompt": "{{ keeper }} opens the door", "duration": "0.5s"},
                ],
            },
            {
                "id": "sea",
                "shots": [
                    {"id": "gulls", "prompt": "{{ gull }} circles over the waves", "duration": "1s"},
                ],
            },
            {
                "id": "lamp-room",
                "setting": "the lamp room at night",
                "shots": [
                    {"id": "lamp", "prompt": "{{ keeper }} lights the lamp", "duration": "1s"},
                    {"id": "watch", "prompt": "{{ pip }} sleeps", "duration": "1s", "transition": "cut"},
                    {
                        "id": "own",
                        "prompt": "{{ keeper }} at the window",
                        "duration": "1s",
                        "transition": "cut",
                        "image": "own.png",
                    },
                ],
            },
        ],
    }
    path = folder / "story.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False), encoding="utf-8")
    return path


class Recording(Generator):
    """Hands every request to another generator and keeps the start image each shot was given."""

    def __init__(self, inner: Generator):
        super().__init__(inner.options)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.images: dict[str, np.ndarray | None] = {}

    def prepare_prompts(self, prompts: Sequence[PromptRequest], progress: ProgressCallback) -> None:
        self.inner.prepare_prompts(prompts, progress)

    def generate(self, request: ShotRequest, progress: ProgressCallback) -> Clip:
        self.images[request.shot.id] = None if request.image is None else request.image.copy()
        return self.inner.generate(request, progress)

    def close(self) -> None:
        self.inner.close()


class Notes(RenderProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.stages: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def stage(self, name: str, detail: str = "") -> None:
        self.stages.append(f"{name} {detail}".strip())


def render_recorded(story: Path, out: Path, df: Path) -> tuple[Any, Recording, Notes]:
    generator = Recording(open_generator("skyreels", GeneratorOptions(model=str(df), base_dir=story.parent)))
    notes = Notes()
    with generator:
        manifest = render(story, out, generator=generator, enhancer="template", progress=notes)
    return manifest, generator, notes


def test_keyframed_shots_start_from_their_keyframes_and_a_second_render_reuses_everything(
    tmp_path: Path, tiny_klein: Path, tiny_df: Path
) -> None:
    story = film(tmp_path / "film", tiny_klein, tiny_df)
    out = tmp_path / "out"

    plan = json.loads(runner.invoke(app, ["plan", str(story), "--json"]).output)
    assert {s["id"]: s["keyframe"] for s in plan["shots"]} == {
        "arrival": True,
        "climb": False,  # continues arrival
        "gulls": False,  # its one character has no reference (shots: auto)
        "lamp": True,
        "watch": True,
        "own": False,  # its own image wins
    }
    assert plan["keyframes"] == {
        "model": str(tiny_klein),
        "shots": KEYFRAMED,
        "steps": 2,
        "transformer_passes": 6,
    }
    assert {s["id"]: s["mode"] for s in plan["shots"]}["arrival"] == "image"

    manifest, generator, notes = render_recorded(story, out, tiny_df)
    assert "keyframes flux2" in notes.stages
    assert "drawing 3 keyframe(s) with flux2" in notes.notes
    assert sorted(p.name for p in (out / "keyframes").iterdir()) == [f"{s}.png" for s in sorted(KEYFRAMED)]
    entries = {entry.id: entry for entry in manifest.shots}
    assert {s: e.keyframe for s, e in entries.items()} == {
        s: f"keyframes/{s}.png" if s in KEYFRAMED else None for s in entries
    }
    # The video model got exactly the keyframes as start frames, and no start frame where none belongs.
    for shot_id in KEYFRAMED:
        keyframe = load_start_image(out / "keyframes" / f"{shot_id}.png", 64, 64)
        assert np.array_equal(generator.images[shot_id], keyframe)
    assert generator.images["climb"] is None and generator.images["gulls"] is None
    assert np.array_equal(generator.images["own"], load_start_image(story.parent / "own.png", 64, 64))
    before = {s: (out / "keyframes" / f"{s}.png").read_bytes() for s in KEYFRAMED}

    again, generator, notes = render_recorded(story, tmp_path / "out2", tiny_df)
    assert [entry.cached for entry in again.shots] == [True] * 6
    assert generator.images == {}
    assert not any(note.startswith("drawing") for note in notes.notes)  # no keyframe model loaded
    assert {s: (tmp_path / "out2" / "keyframes" / f"{s}.png").read_bytes() for s in KEYFRAMED} == before
    assert [e.cache_key for e in again.shots] == [e.cache_key for e in manifest.shots]


def test_editing_one_reference_redraws_only_the_keyframes_and_shots_showing_that_character(
    tmp_path: Path, tiny_klein: Path, tiny_df: Path
) -> None:
    story = film(tmp_path / "film", tiny_klein, tiny_df)
    first, _, _ = render_recorded(story, tmp_path / "out", tiny_df)
    before = {s: (tmp_path / "out" / "keyframes" / f"{s}.png").read_bytes() for s in KEYFRAMED}

    picture(story.parent / "refs" / "pip.png", (30, 30, 30))  # the terrier's reference, repainted
    second, generator, notes = render_recorded(story, tmp_path / "out", tiny_df)
    after = {s: (tmp_path / "out" / "keyframes" / f"{s}.png").read_bytes() for s in KEYFRAMED}

    assert "drawing 2 keyframe(s) with flux2" in notes.notes
    assert [s for s in KEYFRAMED if after[s] != before[s]] == ["arrival", "watch"]  # pip is in these
    made = sorted(entry.id for entry in second.shots if not entry.cached)
    assert made == ["arrival", "climb", "watch"]  # climb continues arrival
    assert sorted(generator.images) == made
    unchanged = {e.id: e.cache_key for e in first.shots if e.id not in made}
    assert {e.id: e.cache_key for e in second.shots if e.id not in made} == unchanged


def test_keyframes_command_draws_only_the_keyframes_and_the_render_reuses_them(
    tmp_path: Path, tiny_klein: Path, tiny_df: Path
) -> None:
    story = film(tmp_path / "film", tiny_klein, tiny_df)
    result = runner.invoke(app, ["keyframes", str(story), "--out", str(tmp_path / "approve")])
    assert result.exit_code == 0, result.output
    for shot_id in KEYFRAMED:
        assert f"{shot_id}: {tmp_path / 'approve' / 'keyframes' / f'{shot_id}.png'}" in result.output
    assert not (tmp_path / "approve" / "shots").exists() or not any(
        (tmp_path / "approve" / "shots").iterdir()
    )

    _, generator, notes = render_recorded(story, tmp_path / "out", tiny_df)
    assert not any(note.startswith("drawing") for note in notes.notes)
    assert sorted(generator.images) == ["arrival", "climb", "gulls", "lamp", "own", "watch"]
    for shot_id in KEYFRAMED:
        approved = (tmp_path / "approve" / "keyframes" / f"{shot_id}.png").read_bytes()
        assert (tmp_path / "out" / "keyframes" / f"{shot_id}.png").read_bytes() == approved


def test_shots_all_and_none(tmp_path: Path, tiny_klein: Path) -> None:
    every = film(tmp_path / "all", tiny_klein, None, shots="all")
    board = yaml.safe_load(every.read_text())
    board["characters"]["gull"]["reference"] = "refs/pip.png"  # shots: all needs every shown character's
    every.write_text(yaml.safe_dump(board, sort_keys=False))
    drawn = render_keyframes(every, tmp_path / "out-all", enhancer="template")
    assert sorted(drawn) == ["arrival", "gulls", "lamp", "watch"]

    none = film(tmp_path / "none", tiny_klein, None, shots="none")
    plan = json.loads(runner.invoke(app, ["plan", str(none), "--json"]).output)
    assert plan["keyframes"] is None and not any(s["keyframe"] for s in plan["shots"])
    result = runner.invoke(app, ["keyframes", str(none)])
    assert result.exit_code == 1 and "no shot gets a keyframe" in result.output


def test_an_animatic_render_draws_the_references_where_the_characters_stand(
    tmp_path: Path, tiny_klein: Path
) -> None:
    story = film(tmp_path / "film", tiny_klein, None)  # no video model: an animatic
    notes = Notes()
    manifest = render(story, tmp_path / "out", enhancer="template", progress=notes)
    assert "keyframes animatic" in notes.stages
    assert [e.id for e in manifest.shots if e.keyframe] == KEYFRAMED
    keyframe = load_start_image(tmp_path / "out" / "keyframes" / "watch.png", 64, 64)
    # pip's reference (white) stands on the middle mark, in front of the set's colours.
    assert (keyframe[30:45, 28:36] == 240).all()


def test_a_shot_that_no_longer_gets_a_keyframe_loses_its_old_one_from_the_render_folder(
    tmp_path: Path, tiny_klein: Path
) -> None:
    story = film(tmp_path / "film", tiny_klein, None)  # an animatic render draws the keyframes
    out = tmp_path / "out"
    render(story, out, enhancer="template")
    assert sorted(p.stem for p in (out / "keyframes").iterdir()) == sorted(KEYFRAMED)
    board = yaml.safe_load(story.read_text())
    board["keyframes"]["shots"] = "none"
    story.write_text(yaml.safe_dump(board, sort_keys=False))
    manifest = render(story, out, enhancer="template")
    assert not any(entry.keyframe for entry in manifest.shots)
    assert list((out / "keyframes").iterdir()) == []


def test_a_keyframe_model_folder_of_another_kind_is_refused_at_its_line(
    tmp_path: Path, tiny_df: Path
) -> None:
    story = film(tmp_path / "film", tiny_df, None)  # the video model's folder given as the keyframe model
    result = runner.invoke(app, ["validate", str(story)])
    assert result.exit_code == 1
    line = next(
        i for i, text in enumerate(story.read_text().splitlines(), 1) if text.strip().startswith("model:")
    )
    assert f"{story}:{line}:" in result.output
    assert "keyframes.model" in result.output
    assert "SkyReelsV2DiffusionForcingPipeline, which no keyframe backend loads" in result.output
    assert "Flux2KleinPipeline" in result.output


def test_a_keyframe_model_is_found_in_the_local_hub_cache_offline(
    tmp_path: Path, tiny_klein: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    hub = tmp_path / "hub"
    repo = hub / "models--someone--tiny-klein"
    shutil.copytree(tiny_klein, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    story = film(tmp_path / "film", tiny_klein, None)
    board = yaml.safe_load(story.read_text())
    board["keyframes"]["model"] = "someone/tiny-klein"
    story.write_text(yaml.safe_dump(board, sort_keys=False))

    drawn = render_keyframes(story, tmp_path / "out", enhancer="template")
    assert sorted(drawn) == sorted(KEYFRAMED)

    board["keyframes"]["model"] = "someone/not-downloaded"
    story.write_text(yaml.safe_dump(board, sort_keys=False))
    result = runner.invoke(app, ["keyframes", str(story), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 1
    assert "hf download someone/not-downloaded" in result.output


def test_a_missing_keyframe_model_stops_a_render_before_any_prompt_is_enhanced(
    tmp_path: Path, tiny_df: Path
) -> None:
    story = film(tmp_path / "film", tmp_path / "no-such-klein", tiny_df)
    notes = Notes()
    with pytest.raises(ModelNotFound, match="no-such-klein"):
        render(story, tmp_path / "out", enhancer="template", progress=notes)
    assert notes.stages == ["plan"]  # nothing enhanced, no shot generated
    assert not (story.parent / "story.lock.yaml").exists()
