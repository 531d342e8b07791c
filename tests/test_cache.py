"""The shot cache: nothing generated twice, every edit re-spends exactly what it invalidates, crashes resume."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import networkx as nx
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import storyreel
from storyreel.cache import ShotCache, apply_gc, kept_storyboards, parse_age, parse_size, plan_gc
from storyreel.cli import app
from storyreel.errors import OutOfMemory, UserError
from storyreel.generate import Clip, GeneratorOptions, ShotRequest
from storyreel.generators.animatic import AnimaticGenerator
from storyreel.manifest import Manifest
from storyreel.rendering import RenderProgress

from conftest import small_board


class Recorder(AnimaticGenerator):
    """The animatic, noting which shots it was asked to generate."""

    def __init__(self, options: GeneratorOptions | None = None, interrupt_on: str | None = None):
        super().__init__(options or GeneratorOptions())
        self.generated: list[str] = []
        self.tails: dict[str, np.ndarray | None] = {}
        self.interrupt_on = interrupt_on

    def generate(self, request: ShotRequest, progress=None) -> Clip:  # type: ignore[no-untyped-def, override]
        if request.shot.id == self.interrupt_on:
            raise KeyboardInterrupt
        self.generated.append(request.shot.id)
        self.tails[request.shot.id] = request.tail_frames
        return super().generate(request)


class StoppedAtHeron(Recorder):
    """The animatic, interrupted (Ctrl-C) when it reaches shot 'heron'."""

    def __init__(self, options: GeneratorOptions | None = None):
        super().__init__(options, interrupt_on="heron")


class Notes(RenderProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def film_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "shots").glob("??/*") if p.is_dir())


# --- reuse ---------------------------------------------------------------------------------------------------


def test_a_second_render_generates_nothing_and_makes_the_same_film(write_story, tmp_path: Path) -> None:
    story = write_story(small_board())
    first = storyreel.render(story, out=tmp_path / "a", generator=(one := Recorder()))
    second = storyreel.render(story, out=tmp_path / "b", generator=(two := Recorder()))
    assert one.generated == ["glide", "dip", "heron", "rise"] and two.generated == []
    assert [s.cached for s in second.shots] == [True] * 4
    assert all(s.dit_passes == 0 and s.seconds_generating == 0 for s in second.shots)
    assert [s.cache_key for s in first.shots] == [s.cache_key for s in second.shots]
    for shot in first.shots:  # the very same files
        assert (tmp_path / "a" / shot.path).read_bytes() == (tmp_path / "b" / shot.path).read_bytes()
    assert np.array_equal(film_frames(tmp_path / "a" / "film.mp4"), film_frames(tmp_path / "b" / "film.mp4"))


def test_a_cached_parent_hands_its_exact_tail_to_a_new_continuation(write_story, tmp_path: Path) -> None:
    board = small_board()
    story = write_story(board)
    fresh = Recorder()
    storyreel.render(story, out=tmp_path / "a", generator=fresh)
    board["scenes"][1]["shots"][1]["prompt"] = "{{ swan }} rises into the air"  # only `rise` changes
    story.write_text(yaml.safe_dump(board))
    resumed = Recorder()
    storyreel.render(story, out=tmp_path / "b", generator=resumed)
    assert resumed.generated == ["rise"]
    assert np.array_equal(resumed.tails["rise"], fresh.tails["rise"])  # from the cache, bit for bit


def test_no_cache_generates_again_and_refreshes_the_cache(
    write_story, tmp_path: Path, shot_cache: Path
) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "a")
    again = Recorder()
    manifest = storyreel.render(story, out=tmp_path / "a", generator=again, reuse=False)
    assert again.generated == ["glide", "dip", "heron", "rise"] and not any(s.cached for s in manifest.shots)
    assert len(entries(shot_cache)) == 4
    untouched = Recorder()
    storyreel.render(story, out=tmp_path / "b", generator=untouched, use_cache=False)
    assert len(untouched.generated) == 4


def test_only_reuses_what_it_can(write_story, tmp_path: Path) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "a", only=["dip"])
    recorder = Recorder()
    manifest = storyreel.render(story, out=tmp_path / "a", generator=recorder)
    assert recorder.generated == ["heron", "rise"]
    assert [s.cached for s in manifest.shots] == [True, True, False, False]


# --- the property: an edit re-spends exactly what it invalidates ----------------------------------------------


@st.composite
def storyboards(draw: st.DrawFn) -> dict[str, Any]:
    """Random small films: 1-3 scenes of 1-3 shots, random transitions and `continues` edges."""
    scenes, ids = [], []
    for s in range(draw(st.integers(1, 3))):
        shots = []
        for h in range(draw(st.integers(1, 3))):
            shot: dict[str, Any] = {"id": f"s{s}h{h}", "prompt": f"shot {s}.{h}", "frames": 9}
            kind = draw(st.sampled_from(["default", "cut", "dissolve", "continues"]))
            if kind == "continues" and ids:
                shot["continues"] = draw(st.sampled_from(ids))
                shot["frames"] = 8
            elif kind in ("cut", "dissolve"):
                shot["transition"] = kind
            elif h > 0:
                shot["frames"] = 8  # continues its predecessor by default
            shots.append(shot)
            ids.append(shot["id"])
        scenes.append({"id": f"scene{s}", "shots": shots})
    return {
        "storyreel": 1,
        "title": "Random",
        "generation": {"resolution": "64x64", "fps": 8, "overlap_history": 5},
        "scenes": scenes,
    }


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(board=storyboards(), data=st.data())
def test_editing_a_prompt_regenerates_that_shot_and_its_continuations_only(
    board: dict[str, Any], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    story = folder / "story.yaml"
    story.write_text(yaml.safe_dump(board))
    cache = folder / "cache"
    first = storyreel.render(story, out=folder / "out", cache_dir=cache, enhancer="none")
    plan = storyreel.plan_film(storyreel.load_storyboard(story))
    edges = nx.DiGraph([(s.conditioned_on, s.id) for s in plan.shots if s.conditioned_on])
    edges.add_nodes_from(plan.timeline)

    edited = data.draw(st.sampled_from(plan.timeline))
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            if shot["id"] == edited:
                shot["prompt"] += ", at dusk"
    story.write_text(yaml.safe_dump(board))
    second = storyreel.render(story, out=folder / "out", cache_dir=cache, enhancer="none")

    expected = {edited} | nx.descendants(edges, edited)
    regenerated = {s.id for s in second.shots if not s.cached}
    assert regenerated == expected
    assert all(s.dit_passes == 0 for s in second.shots if s.cached)
    unchanged = {s.id: s.cache_key for s in first.shots if s.id not in expected}
    assert unchanged == {s.id: s.cache_key for s in second.shots if s.id not in expected}


# --- damage and failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: (e / "shot.mp4").write_bytes((e / "shot.mp4").read_bytes()[:500]),  # truncated
        lambda e: (e / "tail.npz").write_bytes(b"\0" * 64 + (e / "tail.npz").read_bytes()[64:]),  # corrupted
        lambda e: (e / "entry.json").write_text("{"),  # unreadable
        lambda e: (e / "tail.npz").unlink(),  # missing
    ],
    ids=["truncated-mp4", "corrupted-tail", "broken-json", "missing-file"],
)
def test_a_damaged_entry_is_reported_and_regenerated_never_used(
    write_story, tmp_path: Path, shot_cache: Path, damage: Any
) -> None:
    story = write_story(small_board())
    first = storyreel.render(story, out=tmp_path / "a")
    glide = next(e for e in entries(shot_cache) if e.name == first.shot("glide").cache_key)
    damage(glide)
    notes, recorder = Notes(), Recorder()
    second = storyreel.render(story, out=tmp_path / "b", generator=recorder, progress=notes)
    assert recorder.generated == ["glide"]
    assert any(f"cache entry {glide.name[:12]} is damaged" in n for n in notes.notes)
    assert np.array_equal(film_frames(tmp_path / "a" / "film.mp4"), film_frames(tmp_path / "b" / "film.mp4"))
    assert second.shot("glide").cached is False and len(entries(shot_cache)) == 4


def test_a_full_disk_while_caching_warns_and_the_render_goes_on(
    write_story, tmp_path: Path, shot_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("storyreel.cache.np.savez_compressed", no_space)
    notes = Notes()
    manifest = storyreel.render(write_story(small_board()), out=tmp_path / "a", progress=notes)
    assert manifest.film is not None
    assert sum("could not cache shot" in n and "No space left on device" in n for n in notes.notes) == 4
    assert entries(shot_cache) == [] and not list((shot_cache / "shots").glob(".incoming-*"))


def test_a_second_render_into_the_same_folder_is_refused(write_story, tmp_path: Path) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".storyreel.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="another storyreel render .* is writing to"):
            storyreel.render(write_story(small_board()), out=out)
    storyreel.render(write_story(small_board()), out=out)  # free again once the other one is gone


def test_two_renders_publishing_the_same_shot_keep_one_good_entry(
    write_story, tmp_path: Path, shot_cache: Path
) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "a")
    cache = ShotCache(shot_cache)
    key = entries(shot_cache)[0].name
    existing = cache.get(key)
    assert existing is not None
    assert cache.put(existing.info, existing.mp4, existing.tail())  # the race's loser: no error, no damage
    assert cache.get(key) is not None and not list((shot_cache / "shots").glob(".incoming-*"))


def test_ctrl_c_keeps_the_finished_shots_and_says_how_to_resume(
    write_story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = write_story(small_board())
    with monkeypatch.context() as patch:
        patch.setattr("storyreel.rendering.load_backend", lambda group, name: StoppedAtHeron)
        result = CliRunner().invoke(app, ["render", str(story), "--out", str(tmp_path / "out")])
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output
    recorder = Recorder()
    storyreel.render(story, out=tmp_path / "out", generator=recorder)
    assert recorder.generated == ["heron", "rise"]


# --- kill -9 at random moments, then resume: the same film -------------------------------------------------------

RENDER = """
import sys, storyreel
storyreel.render(sys.argv[1], out=sys.argv[2])
"""


def test_a_render_killed_at_random_moments_resumes_to_the_same_film(tmp_path: Path) -> None:
    board = small_board()
    board["generation"] = {"resolution": "320x192", "fps": 24}
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            shot["duration"] = "1.5s"
    story = tmp_path / "story.yaml"
    story.write_text(yaml.safe_dump(board))
    env = {**os.environ, "STORYREEL_CACHE": str(tmp_path / "cache-reference")}

    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", RENDER, str(story), str(tmp_path / "reference")], env=env, check=True
    )
    duration = time.perf_counter() - started

    env["STORYREEL_CACHE"] = str(tmp_path / "cache")
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, "-c", RENDER, str(story), str(tmp_path / "killed")], env=env
        )
        try:
            process.wait(timeout=rng.uniform(0.2, duration))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    subprocess.run([sys.executable, "-c", RENDER, str(story), str(tmp_path / "killed")], env=env, check=True)

    assert kills >= 1
    reference = Manifest.read(tmp_path / "reference" / "manifest.json")
    resumed = Manifest.read(tmp_path / "killed" / "manifest.json")
    assert [s.cache_key for s in reference.shots] == [s.cache_key for s in resumed.shots]
    assert np.array_equal(
        film_frames(tmp_path / "reference" / "film.mp4"), film_frames(tmp_path / "killed" / "film.mp4")
    )
    for shot in reference.shots:
        assert np.array_equal(
            film_frames(tmp_path / "reference" / shot.path), film_frames(tmp_path / "killed" / shot.path)
        )
    cache = ShotCache(tmp_path / "cache")
    assert all(
        cache.get(e.name) is not None for e in entries(tmp_path / "cache")
    )  # every visible entry is whole


# --- housekeeping --------------------------------------------------------------------------------------------


def test_gc_trims_by_age_and_size_but_keeps_what_a_storyboard_uses(
    write_story, tmp_path: Path, shot_cache: Path
) -> None:
    story = write_story(small_board())
    storyreel.render(story, out=tmp_path / "a")
    other = write_story({**small_board(), "title": "Other", "style": "noir"}, name="other.yaml")
    storyreel.render(other, out=tmp_path / "b")
    assert len(entries(shot_cache)) == 8
    old = time.time() - 40 * 86400
    for entry in entries(shot_cache):
        os.utime(entry, (old, old))
    cache = ShotCache(shot_cache)
    kept = plan_gc(cache, older_than=30 * 86400, protect={str(story.resolve())})
    assert len(kept.remove) == 4 and kept.kept_in_use == 4
    runner = CliRunner()
    result = runner.invoke(app, ["cache", "gc", str(story), "--older-than", "30d"])
    assert result.exit_code == 0 and "removed 4 shot(s)" in result.output
    result = runner.invoke(app, ["cache", "ls"])
    assert result.exit_code == 0 and result.output.count("story.yaml") == 4
    result = runner.invoke(app, ["cache", "gc", "--max-size", "1K"])
    assert "removed 4 shot(s)" in result.output and entries(shot_cache) == []
    assert runner.invoke(app, ["cache", "gc"]).exit_code == 1  # nothing asked: nothing done


def test_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from storyreel.cache import default_cache_dir

    monkeypatch.setenv("STORYREEL_CACHE", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("STORYREEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_cache_dir() == tmp_path / "xdg" / "storyreel"


def test_cache_entries_describe_themselves(write_story, tmp_path: Path, shot_cache: Path) -> None:
    story = write_story(small_board())
    manifest = storyreel.render(story, out=tmp_path / "a")
    info = json.loads((entries(shot_cache)[0] / "entry.json").read_text())
    assert info["key"] in {s.cache_key for s in manifest.shots}
    assert info["used_by"] == [str(story.resolve())] and set(info["files"]) == {"shot.mp4", "tail.npz"}


# --- out of GPU memory: the degrade ladder -----------------------------------------------------------------------


class Hungry(Recorder):
    """The animatic, but a shot only 'fits' with offloading on and windows of at most ``fits`` frames."""

    def __init__(self, fits: int, needs_offload: bool = True, doomed: str | None = None):
        super().__init__()
        self.fits, self.needs_offload, self.doomed = fits, needs_offload, doomed
        self.offloaded = False
        self.windows_tried: list[tuple[str, int, bool]] = []

    @property
    def offloading(self) -> bool:
        return self.offloaded

    def enable_offload(self) -> bool:
        self.offloaded = True
        return True

    def generate(self, request: ShotRequest, progress=None) -> Clip:  # type: ignore[no-untyped-def, override]
        base = request.shot.settings.base_num_frames
        self.windows_tried.append((request.shot.id, base, self.offloading))
        if request.shot.id == self.doomed or base > self.fits or (self.needs_offload and not self.offloading):
            raise OutOfMemory(f"shot '{request.shot.id}' ran out of cuda memory: Tried to allocate 2.61 GiB")
        clip = super().generate(request)
        clip.dit_passes = request.shot.dit_passes
        return clip


def long_board() -> dict[str, Any]:
    board = small_board(base_num_frames=57, overlap_history=17)
    board["generation"]["fps"] = 24
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            shot["duration"] = "3s"
    return board


def test_out_of_memory_retries_with_offload_then_smaller_windows(write_story, tmp_path: Path) -> None:
    story = write_story(long_board())
    hungry, notes = Hungry(fits=37), Notes()
    manifest = storyreel.render(story, out=tmp_path / "out", generator=hungry, progress=notes)
    assert manifest.film is not None
    glide = manifest.shot("glide")
    assert glide.degraded == ["offload", "base_num_frames=37"]
    assert hungry.windows_tried[:3] == [("glide", 57, False), ("glide", 57, True), ("glide", 37, True)]
    plan = storyreel.plan_film(storyreel.load_storyboard(story))
    assert glide.dit_passes > plan.shot("glide").dit_passes  # smaller windows: more of them, more passes
    assert glide.frames == plan.shot("glide").frames  # but the same frames
    assert any("shot 'glide' ran out of GPU memory" in n for n in notes.notes)
    assert manifest.shot("dip").degraded == ["base_num_frames=37"]  # offloading stays on for later shots
    again = storyreel.render(story, out=tmp_path / "again", generator=Recorder())
    assert again.shot("glide").cached and again.shot("glide").degraded == ["offload", "base_num_frames=37"]


def test_a_shot_that_never_fits_fails_clearly_after_the_others_are_saved(
    write_story, tmp_path: Path, shot_cache: Path
) -> None:
    story = write_story(long_board())

    with pytest.raises(OutOfMemory) as failure:
        storyreel.render(story, out=tmp_path / "out", generator=Hungry(fits=97, doomed="dip"))
    message = str(failure.value)
    assert "shot 'dip' does not fit in GPU memory" in message and "base_num_frames" in message
    assert "shot 'rise' was not generated: it continues 'dip'" in message
    saved = Manifest.read(tmp_path / "out" / "manifest.json")
    assert [s.id for s in saved.shots] == ["glide", "heron"]  # everything that did not depend on `dip`
    assert len(entries(shot_cache)) == 2
    recorder = Recorder()
    storyreel.render(story, out=tmp_path / "out", generator=recorder)  # on a bigger GPU: only what is missing
    assert recorder.generated == ["dip", "rise"]


# --- the real conditioning path: a tiny random SkyReels-V2 diffusion-forcing model -------------------------------


def test_a_skyreels_chain_resumed_after_an_interruption_is_bit_identical(write_story, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from tiny_skyreels import build_tiny_skyreels

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # oversubscribed OpenMP on a small machine is many times slower
    try:
        model = str(build_tiny_skyreels(tmp_path / "tiny-df"))
        story = write_story(small_board(fps=16, steps=2, base_num_frames=17, overlap_history=5))
        plan = storyreel.plan_film(storyreel.load_storyboard(story), model=model)
        reference = storyreel.render(
            story, out=tmp_path / "reference", model=model, cache_dir=tmp_path / "c1"
        )

        class StopAtHeron(RenderProgress):
            def shot_started(self, shot, index, total) -> None:  # type: ignore[no-untyped-def]
                if shot.id == "heron":
                    raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            storyreel.render(
                story,
                out=tmp_path / "resumed",
                model=model,
                cache_dir=tmp_path / "c2",
                progress=StopAtHeron(),
            )
        resumed = storyreel.render(story, out=tmp_path / "resumed", model=model, cache_dir=tmp_path / "c2")

        assert [(s.id, s.cached) for s in resumed.shots] == [
            ("glide", True),
            ("dip", True),
            ("heron", False),
            ("rise", False),
        ]
        assert [s.dit_passes for s in resumed.shots] == [
            0,
            0,
            plan.shot("heron").dit_passes,
            plan.shot("rise").dit_passes,
        ]
        assert reference.shots[0].generator_info  # the pipeline's own facts reach the manifest
        # `rise` continues the cached `dip`: its conditioning came from the cache's lossless tail
        for shot in reference.shots:
            assert np.array_equal(
                film_frames(tmp_path / "reference" / shot.path), film_frames(tmp_path / "resumed" / shot.path)
            )
        assert np.array_equal(
            film_frames(tmp_path / "reference" / "film.mp4"), film_frames(tmp_path / "resumed" / "film.mp4")
        )
    finally:
        torch.set_num_threads(threads)


# --- gc removes only what it is plainly asked to ---------------------------------------------------------------


def listing(root: Path) -> list[tuple[str, int, int]]:
    """Every file and folder under ``root`` with its size and modification time: what gc may not change."""
    rows = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            stat = path.lstat()
            rows.append((str(path.relative_to(root)), stat.st_size if name in files else 0, stat.st_mtime_ns))
    return sorted(rows)


@pytest.fixture(scope="module")
def rendered_films(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two storyboards rendered once for the module into a cache of their own (four shots each)."""
    folder = tmp_path_factory.mktemp("films")
    story = folder / "story.yaml"
    story.write_text(yaml.safe_dump(small_board()))
    other = folder / "other.yaml"
    other.write_text(yaml.safe_dump({**small_board(), "title": "Other", "style": "noir"}))
    for board in (story, other):
        storyreel.render(board, out=folder / board.stem, cache_dir=folder / "cache")
    return story, other, folder / "cache"


@pytest.fixture
def two_films(rendered_films: tuple[Path, Path, Path], shot_cache: Path) -> tuple[Path, Path]:
    """The two storyboards with a copy of their cache as the test's cache, every entry last used 40 days ago."""
    story, other, cache = rendered_films
    shutil.copytree(cache, shot_cache, dirs_exist_ok=True)
    old = time.time() - 40 * 86400
    for entry in entries(shot_cache):
        os.utime(entry, (old, old))
    return story, other


REFUSED_GC = [
    (["--max-size", "-5G"], "a size of zero or less would remove every cached shot"),
    (["--max-size", "0"], "a size of zero or less would remove every cached shot"),
    (["--max-size", "0G"], "a size of zero or less would remove every cached shot"),
    (["--max-size", "0.1B"], "less than one byte"),
    (["--older-than", "-1d"], "an age of zero or less would remove every cached shot"),
    (["--older-than", "0"], "an age of zero or less would remove every cached shot"),
    (["--older-than", "0s"], "an age of zero or less would remove every cached shot"),
    (["--max-size", "banana"], "'banana' is not a number with a unit"),
    (["--older-than", "banana"], "'banana' is not a number with a unit"),
    (["--max-size", "inf"], "'inf' is not a finite number"),
    (["--older-than", "inf"], "'inf' is not a finite number"),
    (["--older-than", "nan"], "'nan' is not a finite number"),
    (["--max-size", "50"], "'50' has no unit"),  # 50 bytes, or 50G?
    (["--older-than", "30"], "'30' has no unit"),  # 30 seconds, or 30 days?
    (["--older-than", "6m"], "'m' could mean minutes or months; write 6min or 6mo"),
    (["--max-size", "5X"], "unknown unit 'X'"),
    (["--older-than", "3q"], "unknown unit 'q'"),
    (["--max-size", ""], "'' is not a number with a unit"),
    (["--all", "--max-size", "-1G"], "a size of zero or less"),
    (["--all", "missing.yaml"], "missing.yaml: no such file"),
    (["--older-than", "30d", "{story}", "missing.yaml"], "missing.yaml: no such file"),
    (["--all", "{folder}"], "not a file"),
    (["--all", "{lock}"], "a prompt lock, not a storyboard"),
    (["--all", "{film}"], "not a storyboard"),
    (["--all", "{notes}"], "no `storyreel:` line"),
]


@pytest.mark.parametrize(("arguments", "message"), REFUSED_GC, ids=[" ".join(a) for a, _ in REFUSED_GC])
def test_gc_refuses_what_was_not_plainly_asked_and_touches_nothing(
    two_films: tuple[Path, Path], shot_cache: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    story, _ = two_films
    (tmp_path / "story.lock.yaml").write_text("storyreel_lock: 1\n")
    (tmp_path / "notes.yaml").write_text("todo: buy film\n")
    (tmp_path / "film.mp4").write_bytes(b"\0\0\0\x18ftypmp42")
    places = {
        "story": story,
        "folder": tmp_path,
        "lock": tmp_path / "story.lock.yaml",
        "film": tmp_path / "film.mp4",
        "notes": tmp_path / "notes.yaml",
    }
    arguments = [a.format(**{k: str(v) for k, v in places.items()}) for a in arguments]
    before = listing(shot_cache)
    result = CliRunner().invoke(app, ["cache", "gc", *arguments, "--cache-dir", str(shot_cache)])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert listing(shot_cache) == before


def test_refusing_zero_says_how_to_remove_everything_on_purpose(two_films, shot_cache: Path) -> None:
    result = CliRunner().invoke(app, ["cache", "gc", "--max-size", "0", "--cache-dir", str(shot_cache)])
    assert "nothing was removed" in result.output and "storyreel cache gc --all" in result.output
    result = CliRunner().invoke(app, ["cache", "gc", "--all", "--cache-dir", str(shot_cache)])
    assert result.exit_code == 0 and "removed 8 shot(s)" in result.output and entries(shot_cache) == []


def test_ages_read_as_people_write_them(two_films, shot_cache: Path) -> None:
    story, _ = two_films
    ancient = time.time() - 400 * 86400
    for entry in entries(shot_cache)[:3]:
        os.utime(entry, (ancient, ancient))
    runner = CliRunner()
    for unused in ("2y", "1000 days", "60w", "14mo"):  # longer than anything was unused: nothing goes
        result = runner.invoke(app, ["cache", "gc", "--older-than", unused, "--cache-dir", str(shot_cache)])
        assert result.exit_code == 0 and "removed 0 shot(s)" in result.output, (unused, result.output)
    result = runner.invoke(app, ["cache", "gc", "--older-than", "1y", "--cache-dir", str(shot_cache)])
    assert result.exit_code == 0 and "removed 3 shot(s)" in result.output
    result = runner.invoke(app, ["cache", "gc", "--older-than", "1.5 weeks", "--cache-dir", str(shot_cache)])
    assert "removed 5 shot(s)" in result.output and entries(shot_cache) == []


def test_all_keeps_the_shots_of_the_storyboards_named(two_films, shot_cache: Path, tmp_path: Path) -> None:
    story, other = two_films
    result = CliRunner().invoke(app, ["cache", "gc", "--all", str(story), "--cache-dir", str(shot_cache)])
    assert result.exit_code == 0, result.output
    assert "removed 4 shot(s)" in result.output and "(4 used by the storyboards given)" in result.output
    recorder = Recorder()
    storyreel.render(story, out=tmp_path / "again", generator=recorder)
    assert recorder.generated == []  # every shot of the kept storyboard is still there
    storyreel.render(other, out=tmp_path / "other-again", generator=(other_recorder := Recorder()))
    assert len(other_recorder.generated) == 4


def test_max_size_never_removes_a_kept_storyboards_shots(two_films, shot_cache: Path) -> None:
    story, _ = two_films
    result = CliRunner().invoke(
        app, ["cache", "gc", "--max-size", "1K", str(story), "--cache-dir", str(shot_cache)]
    )
    assert result.exit_code == 0 and "removed 4 shot(s)" in result.output
    kept = {json.loads((e / "entry.json").read_text())["storyboard"] for e in entries(shot_cache)}
    assert kept == {str(story.resolve())}


def test_gc_from_python_reads_ages_and_sizes_as_the_command_does(two_films, shot_cache: Path) -> None:
    story, _ = two_films
    assert parse_age("1.5 weeks") == 1.5 * 7 * 86400 and parse_age("90min") == 5400
    assert parse_size("1.5G") == 1536 << 20
    with pytest.raises(UserError, match="'6m': 'm' could mean minutes or months; write 6min or 6mo"):
        parse_age("6m")
    with pytest.raises(UserError, match="a size of zero or less would remove every cached shot"):
        parse_size("0G")
    cache = ShotCache(shot_cache)
    plan = plan_gc(cache, older_than=parse_age("30d"), protect=kept_storyboards([story]))
    apply_gc(cache, plan)
    assert len(plan.remove) == 4 and len(entries(shot_cache)) == 4
    kept = {json.loads((e / "entry.json").read_text())["storyboard"] for e in entries(shot_cache)}
    assert kept == {str(story.resolve())}


def test_gc_leaves_alone_what_storyreel_did_not_write(two_films, shot_cache: Path) -> None:
    strangers = [
        shot_cache / "shots" / "notes" / "todo.txt",
        shot_cache / "shots" / "ab" / "not-a-key" / "film.mp4",
        shot_cache
        / "shots"
        / "ab"
        / ("cd" + "0" * 62)
        / "x.bin",  # a key that does not start with its folder
        shot_cache / "holiday.mp4",
    ]
    for stranger in strangers:
        stranger.parent.mkdir(parents=True, exist_ok=True)
        stranger.write_bytes(b"mine")
    result = CliRunner().invoke(app, ["cache", "gc", "--all", "--cache-dir", str(shot_cache)])
    assert result.exit_code == 0 and "removed 8 shot(s)" in result.output
    assert all(stranger.read_bytes() == b"mine" for stranger in strangers)


# --- an entry is trusted only when entry.json says exactly what it holds -------------------------------------------


def _edit_entry(folder: Path, **changes: Any) -> None:
    info = json.loads((folder / "entry.json").read_text())
    info.update(changes)
    (folder / "entry.json").write_text(json.dumps(info))


def _truncate_mp4(folder: Path) -> None:
    (folder / "shot.mp4").write_bytes((folder / "shot.mp4").read_bytes()[:500])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: (_edit_entry(e, files={}), _truncate_mp4(e)),
        lambda e: (
            _edit_entry(
                e, files={"shot.mp4": json.loads((e / "entry.json").read_text())["files"]["shot.mp4"]}
            ),
            (e / "tail.npz").unlink(),
        ),  # fmt: skip
        lambda e: _edit_entry(
            e, files={**json.loads((e / "entry.json").read_text())["files"], "extra.bin": "0" * 64}
        ),  # fmt: skip
        lambda e: _edit_entry(e, files=["shot.mp4", "tail.npz"]),
        lambda e: _edit_entry(e, tail_frames=40),  # a continuation would trust it to hold 40 frames
        lambda e: _edit_entry(e, tail_frames="17"),
        lambda e: _edit_entry(e, frames=True),
        lambda e: _edit_entry(e, used_by="story.yaml"),
        lambda e: (e / "entry.json").write_text("[]"),
    ],
    ids=[
        "no-files-listed",
        "tail-not-listed",
        "extra-file-listed",
        "files-not-a-mapping",
        "tail-frames-wrong",
        "tail-frames-a-string",
        "frames-a-boolean",
        "used-by-not-a-list",
        "not-an-object",
    ],
)
def test_an_edited_entry_json_is_damage_reported_and_regenerated(
    write_story, tmp_path: Path, shot_cache: Path, tamper: Any
) -> None:
    story = write_story(small_board())
    first = storyreel.render(story, out=tmp_path / "a")
    # `dip` is continued by `rise`: its tail is read too
    dip = next(e for e in entries(shot_cache) if e.name == first.shot("dip").cache_key)
    tamper(dip)
    notes, recorder = Notes(), Recorder()
    second = storyreel.render(story, out=tmp_path / "b", generator=recorder, progress=notes)
    assert recorder.generated == ["dip"]
    assert any(f"cache entry {dip.name[:12]} is damaged" in n for n in notes.notes), notes.notes
    assert second.shot("dip").cached is False and second.shot("rise").cached is True
    assert np.array_equal(film_frames(tmp_path / "a" / "film.mp4"), film_frames(tmp_path / "b" / "film.mp4"))
    assert ShotCache(shot_cache).get(dip.name) is not None  # made again, whole


def test_an_entry_listing_no_files_no_longer_breaks_the_film(
    write_story, tmp_path: Path, shot_cache: Path
) -> None:
    """Trusting such an entry copied its truncated shot into the film: assembly failed, and the fix it suggested
    (render --only the shot) reused the same entry again."""
    story = write_story(small_board())
    first = storyreel.render(story, out=tmp_path / "a")
    glide = next(e for e in entries(shot_cache) if e.name == first.shot("glide").cache_key)
    _edit_entry(glide, files={})
    _truncate_mp4(glide)
    listed = CliRunner().invoke(app, ["cache", "ls", "--cache-dir", str(shot_cache)])
    assert listed.exit_code == 0 and listed.output.count("damaged") == 1
    result = subprocess.run(
        [sys.executable, "-m", "storyreel.cli", "render", str(story), "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env={**os.environ, "STORYREEL_CACHE": str(shot_cache)},
    )
    assert result.returncode == 0, result.stderr
    assert f"cache entry {glide.name[:12]} is damaged" in result.stderr
    assert np.array_equal(film_frames(tmp_path / "a" / "film.mp4"), film_frames(tmp_path / "b" / "film.mp4"))


def test_gc_removes_damaged_entries_and_says_so(two_films, shot_cache: Path) -> None:
    story, _ = two_films
    now = time.time()
    for entry in entries(shot_cache):
        os.utime(entry, (now, now))  # all recently used
    damaged = entries(shot_cache)[0]
    _edit_entry(damaged, files={})
    result = CliRunner().invoke(app, ["cache", "gc", "--older-than", "30d", "--cache-dir", str(shot_cache)])
    assert result.exit_code == 0 and "removed 1 shot(s)" in result.output and "(1 damaged)" in result.output
    assert not damaged.exists() and len(entries(shot_cache)) == 7
