"""Shared fixtures: storyboards written to temporary folders, and the gpu/slow markers."""

from __future__ import annotations

import hashlib
import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch on ``count`` threads meanwhile: oversubscribed OpenMP on a 2-core machine makes tiny model calls
    20-100x slower, and one thread sums in the order a worker of one thread does."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def local_ray(num_cpus: int, num_gpus: int | None = None) -> Iterator[None]:
    """A Ray instance of this machine meanwhile: loopback only, no dashboard, its logs kept from the test's."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fixtures wider than one test (rendered examples) get a session cache: no test touches the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORYREEL_CACHE", str(tmp_path_factory.mktemp("session-cache")))
        yield


@pytest.fixture(autouse=True)
def shot_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own empty shot cache, never the user's."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("STORYREEL_CACHE", str(root))
    return root


@pytest.fixture
def write_story(tmp_path: Path):
    """Write a storyboard (YAML text, dedented, or a dict) into a temporary folder and return its path."""

    def write(content: str | dict[str, Any], name: str = "story.yaml") -> Path:
        path = tmp_path / name
        text = (
            yaml.safe_dump(content, sort_keys=False)
            if isinstance(content, dict)
            else textwrap.dedent(content)
        )
        path.write_text(text, encoding="utf-8")
        return path

    return write


def small_board(**generation: Any) -> dict[str, Any]:
    """A two-scene storyboard at a tiny size, as a dict: a chain of three shots and a cut-away."""
    return {
        "storyreel": 1,
        "title": "Small",
        "generation": {"resolution": "64x64", "fps": 8, **generation},
        "characters": {"swan": {"description": "a white swan"}},
        "scenes": [
            {
                "id": "lake",
                "setting": "a lake at dawn",
                "shots": [
                    {"id": "glide", "prompt": "{{ swan }} glides", "duration": "3s", "caption": "Dawn."},
                    {"id": "dip", "prompt": "{{ swan }} dips its head", "duration": "2s"},
                ],
            },
            {
                "id": "reeds",
                "shots": [
                    {
                        "id": "heron",
                        "prompt": "a heron in the reeds",
                        "duration": "2s",
                        "transition": "dissolve",
                    },
                    {"id": "rise", "prompt": "{{ swan }} rises", "duration": "2s", "continues": "dip"},
                ],
            },
        ],
    }


# The crosscut example at a tiny size: three chains (the market run, the conductor, the doors), each return to a
# storyline a continuation of that storyline's previous shot across a cut-away.
TINY_CROSSCUT = {"resolution": "64x64", "fps": 16, "steps": 2, "base_num_frames": 17, "overlap_history": 5}


def write_tiny_crosscut(folder: Path) -> Path:
    """examples/crosscut.yaml at the tiny size, written into ``folder`` (its prompt lock goes there)."""
    text = (REPO / "examples" / "crosscut.yaml").read_text(encoding="utf-8")
    tiny = "".join(f"\n  {key}: {value}" for key, value in TINY_CROSSCUT.items())
    assert "generation:\n  seed: 1158" in text
    path = folder / "crosscut.yaml"
    path.write_text(
        text.replace("generation:\n  seed: 1158", "generation:\n  seed: 1158" + tiny), encoding="utf-8"
    )
    return path


def film_files(folder: Path) -> dict[str, str]:
    """sha256 of the film and of every shot's file (the encoder runs single-threaded: bytes are stable)."""
    files = [folder / "film.mp4", *sorted((folder / "shots").glob("*.mp4"))]
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
