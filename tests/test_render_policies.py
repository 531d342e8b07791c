"""What render() promises around the shots it makes: the cache keeps every paid-for shot, keys name what
decides the frames, the out-of-memory ladder records what a shot gave up, and nothing is spent before
every check has run."""

from __future__ import annotations

import errno
import json
import multiprocessing
import tempfile
from pathlib import Path
from typing import Any

import pytest

import storyreel
from storyreel.cache import ShotCache
from storyreel.degrade import smaller_windows
from storyreel.errors import OutOfMemory, UserError
from storyreel.fingerprint import ShotKeys
from storyreel.generate import Clip, GeneratorOptions, ShotRequest
from storyreel.generators.animatic import AnimaticGenerator
from storyreel.rendering import RenderProgress

from conftest import small_board


def entries(cache: Path) -> dict[str, dict[str, Any]]:
    """{key: entry.json} of every entry in the shot cache at ``cache``."""
    return {p.parent.name: json.loads(p.read_text()) for p in (cache / "shots").glob("*/*/entry.json")}


class Notes(RenderProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.stages: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def stage(self, name: str, detail: str = "") -> None:
        self.stages.append(name)


# --- the cache keeps what was paid for ---------------------------------------------------------------------------


def test_no_cache_replaces_the_cached_shots(write_story, tmp_path: Path, shot_cache: Path) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "first")
    before = {key: entry["created"] for key, entry in entries(shot_cache).items()}
    storyreel.render(story, out=tmp_path / "second", reuse=False)
    after = {key: entry["created"] for key, entry in entries(shot_cache).items()}
    assert set(after) == set(before)
    assert all(after[key] > before[key] for key in before)  # every entry is the one just generated


def test_a_cache_that_cannot_take_an_entry_only_warns(
    write_story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shot_cache: Path
) -> None:
    story = write_story(small_board())
    made = tempfile.mkdtemp

    def full(*args: Any, **kwargs: Any) -> str:
        if str(shot_cache) in str(kwargs.get("dir", "")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return made(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    notes = Notes()
    manifest = storyreel.render(story, out=tmp_path / "out", progress=notes)
    assert manifest.film is not None and len(manifest.shots) == 4
    assert sum("could not cache shot" in n and "No space left on device" in n for n in notes.notes) == 4


def test_ctrl_c_while_a_shot_is_written_keeps_it_in_the_cache(
    write_story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shot_cache: Path
) -> None:
    import storyreel.video

    story = write_story(small_board())
    write = storyreel.video.write_shot

    def interrupted(frames: Any, path: Any, fps: int) -> Path:
        if Path(path).name == "dip.mp4":
            raise KeyboardInterrupt
        return write(frames, path, fps)

    monkeypatch.setattr(storyreel.video, "write_shot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storyreel.render(story, out=tmp_path / "out")
    assert {entry["shot_id"] for entry in entries(shot_cache).values()} == {"glide", "dip"}
    monkeypatch.setattr(storyreel.video, "write_shot", write)
    again = storyreel.render(story, out=tmp_path / "out")
    assert again.shot("dip").cached


def _record_use(root: str, key: str, storyboards: list[str]) -> None:
    cache = ShotCache(root)
    for storyboard in storyboards:
        assert cache.get(key, used_by=storyboard) is not None


def test_renders_recording_their_storyboards_at_once_lose_none(
    write_story, tmp_path: Path, shot_cache: Path
) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "out")
    key = next(key for key, entry in entries(shot_cache).items() if entry["shot_id"] == "glide")
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(
            target=_record_use, args=(str(shot_cache), key, [f"/films/{w}-{i}.yaml" for i in range(15)])
        )
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    used_by = entries(shot_cache)[key]["used_by"]
    assert {f"/films/{w}-{i}.yaml" for w in range(4) for i in range(15)} <= set(used_by)


def test_an_entry_of_another_format_is_left_alone(write_story, tmp_path: Path, shot_cache: Path) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "out")
    path = next((shot_cache / "shots").glob("*/*/entry.json"))
    document = json.loads(path.read_text())
    document["version"] = 2
    document["made_by_a_newer_storyreel"] = True
    path.write_text(json.dumps(document))
    manifest = storyreel.render(story, out=tmp_path / "again")
    assert not manifest.shot(document["shot_id"]).cached  # not usable here: made again
    assert json.loads(path.read_text()) == document  # but neither replaced nor removed


# --- the keys name what decides the frames -----------------------------------------------------------------------


class Precise(AnimaticGenerator):
    """The animatic, as if its frames depended on the precision its options ask for."""

    @classmethod
    def identity(cls, options: GeneratorOptions) -> str:
        return options.dtype or "default"


def test_a_generator_made_by_the_caller_keys_its_shots_with_its_own_options(
    write_story, tmp_path: Path
) -> None:
    story = write_story(small_board())
    half = storyreel.render(
        story, out=tmp_path / "half", generator=Precise(GeneratorOptions(dtype="float16"))
    )
    full = storyreel.render(
        story, out=tmp_path / "full", generator=Precise(GeneratorOptions(dtype="float32"))
    )
    assert not any(shot.cached for shot in full.shots)
    assert {s.cache_key for s in half.shots}.isdisjoint({s.cache_key for s in full.shots})


def test_the_animatic_key_follows_what_it_draws(write_story) -> None:
    board = storyreel.load_storyboard(write_story(small_board()))
    plan = storyreel.plan_film(board)
    glide = plan.shot("glide")
    keys = ShotKeys("animatic", "2", None, AnimaticGenerator.frame_facts)
    reworded = glide.model_copy(update={"prompt": "Close-up of a white swan gliding"})
    more_steps = glide.model_copy(update={"settings": glide.settings.model_copy(update={"steps": 50})})
    same = keys.key(glide, "the enhanced prompt", None)
    assert keys.key(reworded, "the enhanced prompt", None) != same  # its camera is read from the prompt
    assert keys.key(more_steps, "the enhanced prompt", None) == same  # it draws no denoising steps


# --- the out-of-memory ladder -------------------------------------------------------------------------------------


def test_window_lengths_that_change_no_window_are_not_steps(write_story) -> None:
    board = small_board(base_num_frames=97, overlap_history=17)
    board["generation"]["fps"] = 24
    board["scenes"][0]["shots"][0]["duration"] = "2s"  # 49 frames: fits every window down to 57
    plan = storyreel.plan_film(storyreel.load_storyboard(write_story(board)))
    glide = plan.shot("glide")
    steps = smaller_windows(glide)
    assert [s.settings.base_num_frames for s in steps] == [37]
    assert steps[0].windows != glide.windows


class SmallGPU(AnimaticGenerator):
    """The animatic on a device where a window of more than 37 frames does not fit; it cannot offload."""

    def generate(self, request: ShotRequest, progress: Any = None) -> Clip:  # type: ignore[override]
        if request.shot.settings.base_num_frames > 37:
            raise OutOfMemory(f"shot '{request.shot.id}' ran out of cuda memory")
        return super().generate(request)


def test_a_shot_records_only_the_window_it_was_made_with(write_story, tmp_path: Path) -> None:
    board = small_board(base_num_frames=97, overlap_history=17)
    board["generation"]["fps"] = 24
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            shot["duration"] = "4s"
    notes = Notes()
    manifest = storyreel.render(
        write_story(board), out=tmp_path / "out", generator=SmallGPU(GeneratorOptions()), progress=notes
    )
    assert manifest.shot("glide").degraded == ["base_num_frames=37"]  # not 77 and 57, which failed
    assert any("with base_num_frames=77" in n for n in notes.notes)  # the notes tell every try


class OneWindowOnly(SmallGPU):
    """A generator whose pipeline makes one window per shot, like a plain (not diffusion-forcing) model."""

    @classmethod
    def check_plan(cls, shots: Any, options: GeneratorOptions) -> None:
        for shot in shots:
            if len(shot.windows) > 1:
                raise UserError(f"shot '{shot.id}' needs {len(shot.windows)} windows; this model makes one")


def test_the_ladder_skips_windows_the_generator_cannot_run(write_story, tmp_path: Path) -> None:
    board = small_board(base_num_frames=97, overlap_history=17)
    board["generation"]["fps"] = 24
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            shot["duration"] = "4s"
            shot["transition"] = "cut"
            shot.pop("continues", None)
    with pytest.raises(OutOfMemory, match="does not fit in GPU memory even with the settings given"):
        storyreel.render(
            write_story(board), out=tmp_path / "out", generator=OneWindowOnly(GeneratorOptions())
        )


# --- nothing is spent before every check ---------------------------------------------------------------------------


class PickyDevice(AnimaticGenerator):
    """The animatic, refusing a dtype it does not know, as a model generator does when it resolves its options."""

    @classmethod
    def identity(cls, options: GeneratorOptions) -> str:
        if options.dtype not in (None, "float32"):
            raise UserError(f"unknown dtype '{options.dtype}'")
        return "float32"


def test_a_bad_option_fails_before_any_prompt_is_enhanced(
    write_story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storyreel.rendering.load_backend", lambda group, name: PickyDevice)
    notes = Notes()
    with pytest.raises(UserError, match="unknown dtype 'float64'"):
        storyreel.render(write_story(small_board()), out=tmp_path / "out", dtype="float64", progress=notes)
    assert notes.stages == ["plan"]
