"""A film made by Ray workers (``render --workers``) is the film one process makes, even when a worker dies.

The tests share one small Ray cluster of this machine (two CPUs, loopback, no dashboard), started once for
the module and shut down at its end; each render starts its workers on it and stops them when it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.manifest import Manifest
from storyreel.plan import ShotPlan
from storyreel.rendering import RenderProgress

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import TINY_CROSSCUT, film_files, local_ray, torch_threads, write_tiny_crosscut  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    with local_ray(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def crosscut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_crosscut(tmp_path_factory.mktemp("story"))


def same_render(one: Path, other: Path) -> None:
    assert film_files(one) == film_files(other)
    first, second = Manifest.read(one / "manifest.json"), Manifest.read(other / "manifest.json")
    assert first.timings_removed() == second.timings_removed()


@pytest.fixture(scope="module")
def animatic_here(crosscut: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny crosscut animatic, rendered in one process."""
    out = tmp_path_factory.mktemp("here")
    storyreel.render(crosscut, out, use_cache=False)
    return out


def test_two_workers_make_the_same_animatic_as_one_process(
    crosscut: Path, animatic_here: Path, tmp_path: Path
) -> None:
    manifest = storyreel.render(crosscut, tmp_path, workers=2, use_cache=False)
    same_render(animatic_here, tmp_path)

    workers = {worker.id: worker for worker in manifest.workers}
    assert sorted(workers) == ["w0", "w1"] and all(w.gpus == 0 and w.ended is None for w in workers.values())
    assert sorted(s for w in workers.values() for s in w.shots) == sorted(e.id for e in manifest.shots)
    for entry in manifest.shots:
        assert entry.id in workers[entry.worker].shots  # type: ignore[index]
        assert entry.started is not None and entry.finished is not None and entry.started <= entry.finished
    # each chain runs in order: a continuation starts after its parent finished
    for entry in manifest.shots:
        if entry.conditioned_on:
            assert manifest.shot(entry.conditioned_on).finished <= entry.started  # type: ignore[operator]
    here = Manifest.read(animatic_here / "manifest.json")
    assert all(e.worker is None and e.started and e.finished for e in here.shots) and here.workers == []


class KillOnce(RenderProgress):
    """Kills the worker process that is handed ``shot``, the first time it is handed out."""

    def __init__(self, shot: str):
        self.shot, self.killed = shot, None

    def shot_on_worker(self, shot: ShotPlan, worker: str, pid: int) -> None:
        if shot.id == self.shot and self.killed is None:
            self.killed = worker
            os.kill(pid, signal.SIGKILL)


def test_a_worker_killed_mid_shot_is_replaced_and_the_film_is_unchanged(
    crosscut: Path, animatic_here: Path, tmp_path: Path
) -> None:
    killer = KillOnce("run-2")  # a continuation: its parent's tail frames must reach the new worker
    manifest = storyreel.render(crosscut, tmp_path, workers=2, use_cache=False, progress=killer)
    same_render(animatic_here, tmp_path)
    lost = [w for w in manifest.workers if w.ended is not None]
    assert [w.id for w in lost] == [killer.killed] and "run-2" not in lost[0].shots
    assert len(manifest.workers) == 3  # the two, and the one that took over


def test_the_tiny_skyreels_model_on_two_workers_makes_the_same_film(
    crosscut: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("torch")
    from tiny_skyreels import build_tiny_skyreels

    # The model named relative to the folder the render starts in (not beside the storyboard): the workers
    # are handed its absolute path, and must still take it for the model every shot names.
    build_tiny_skyreels(tmp_path / "df")
    monkeypatch.chdir(tmp_path)
    model = "df"
    with torch_threads(1):  # as each worker runs: one thread, the same sums in the same order
        storyreel.render(crosscut, tmp_path / "here", generator="skyreels", model=model, use_cache=False)
    result = runner.invoke(
        app,
        [
            "render",
            str(crosscut),
            "--out",
            str(tmp_path / "there"),
            "--model",
            model,
            "--workers",
            "2",
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "w0" in output and "w1" in output and "busy" in output
    same_render(tmp_path / "here", tmp_path / "there")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers 0: a render needs at least one worker; use --workers 1 or more"),
        (
            ["--workers", "2", "--gpus-per-shot", "3"],
            "--gpus-per-shot 3: a shot can be split over 1, 2, 4, 8",
        ),
        (
            ["--workers", "1", "--gpus-per-shot", "2"],
            "--gpus-per-shot 2: the animatic generator makes each shot whole, in one process",
        ),
        (
            ["--workers", "2", "--ray-address", "ray://127.0.0.1:9"],
            "--ray-address ray://127.0.0.1:9: nothing answers there",
        ),
        (["--ray-address", "nowhere"], "--ray-address 'nowhere' is not an address"),
    ],
)
def test_bad_cluster_settings_stop_the_render_with_a_message(
    args: list[str], message: str, write_story: Any, tmp_path: Path
) -> None:
    story = write_story(
        {
            "storyreel": 1,
            "generation": TINY_CROSSCUT,
            "scenes": [{"id": "s", "shots": [{"id": "a", "prompt": "p", "duration": 1}]}],
        }
    )
    result = runner.invoke(app, ["render", str(story), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out" / "shots" / "a.mp4").exists()


def test_a_render_without_workers_never_imports_ray(write_story: Any, tmp_path: Path) -> None:
    story = write_story(
        {
            "storyreel": 1,
            "generation": TINY_CROSSCUT,
            "scenes": [{"id": "s", "shots": [{"id": "a", "prompt": "p", "duration": 1}]}],
        }
    )
    code = textwrap.dedent(
        f"""
        import sys, storyreel
        storyreel.render({str(story)!r}, {str(tmp_path / "out")!r}, use_cache=False)
        assert "ray" not in sys.modules, "ray was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_a_worker_encodes_the_prompts_of_every_uncached_shot_when_it_loads(
    crosscut: Path, tmp_path: Path
) -> None:
    """Each worker is handed the prompts of the shots the cache does not hold and encodes them all at load, as
    one process does, so the text encoder can leave the GPU for good (not come back for every shot)."""
    pytest.importorskip("diffusers")
    from tiny_skyreels import build_tiny_skyreels

    from storyreel.farm_worker import ShotWorker, WorkerSetup
    from storyreel.generate import GeneratorOptions, PromptRequest

    model = str(build_tiny_skyreels(tmp_path / "df"))
    upcoming = (
        PromptRequest("run-1", "a woman runs through a market", "blurry"),
        PromptRequest("wait-1", "a conductor checks his watch", "blurry"),
    )
    setup = WorkerSetup(
        generator="skyreels",
        options=GeneratorOptions(model=model, device="cpu"),
        folder=str(tmp_path / "out"),
        cache=None,
        reuse=False,
        storyboard=str(crosscut),
        transformer=None,
        threads=1,
        upcoming=upcoming,
    )
    worker = ShotWorker("w0", setup)  # in this process: what a Ray actor of it runs, without Ray
    worker.load()
    generator = worker.engine.owned
    assert generator is not None
    encoded = generator._loaded.prompts.embeddings  # type: ignore[attr-defined]
    assert set(encoded) == {"a woman runs through a market", "a conductor checks his watch", "blurry"}
