"""The films storyreel makes do not change when its code is reorganised.

``tests/data/film_digests.json`` holds, for every example, the sha256 of each shot's frames exactly as
the generator returned them (before any encoding) and of the prompt it was generated from, for the
animatic at the example's own size and for a tiny random-weight SkyReels-V2 model. A refactor that
changes a single pixel or a single word of a prompt fails here. A change meant to alter a film
re-records the digests (``python tests/test_films_unchanged.py --record``) and says why in its commit.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import storyreel
from storyreel.generate import (
    Clip,
    Generator,
    GeneratorOptions,
    ProgressCallback,
    PromptRequest,
    ShotRequest,
    open_generator,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import REPO  # noqa: E402

DIGESTS = Path(__file__).resolve().parent / "data" / "film_digests.json"
EXAMPLES = sorted(p for p in (REPO / "examples").iterdir() if p.name.endswith((".yaml", ".yaml.j2", ".py")))
# The tiny model's film-wide settings (as in tests/test_skyreels.py).
TINY = {"resolution": "64x64", "fps": 16, "steps": 2, "base_num_frames": 17, "overlap_history": 5}
# Shots whose animatic frames are expected to differ from the recorded ones, with the reason.
# A change meant to redraw some shots lists them here, with why, until the digests are recorded again.
REDRAWN: dict[str, str] = {}


class Recording(Generator):
    """A generator that hands every request to another one and keeps the digest of the frames it returns."""

    def __init__(self, inner: Generator):
        super().__init__(inner.options)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.frames: dict[str, str] = {}

    def reserved_bottom(self, width: int, height: int) -> int:  # type: ignore[override]
        return self.inner.reserved_bottom(width, height)

    def prepare_prompts(self, prompts: Sequence[PromptRequest], progress: ProgressCallback) -> None:
        self.inner.prepare_prompts(prompts, progress)

    def generate(self, request: ShotRequest, progress: ProgressCallback) -> Clip:
        clip = self.inner.generate(request, progress)
        self.frames[request.shot.id] = _sha(np.ascontiguousarray(clip.frames).tobytes())
        return clip

    def close(self) -> None:
        self.inner.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _board(path: Path) -> storyreel.Storyboard:
    if path.suffix != ".py":
        return storyreel.load_storyboard(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tide_pool_film(["steps out from under a rock", "scuttles to the water's edge"])


def _tiny(board: storyreel.Storyboard, keyframe_model: str | None) -> storyreel.Storyboard:
    generation = storyreel.Generation.model_validate(
        {**board.generation.model_dump(exclude_none=True), **TINY}
    )
    update: dict[str, Any] = {"generation": generation}
    if board.keyframes is not None:  # keyframes drawn by the tiny FLUX.2 [klein]
        update["keyframes"] = board.keyframes.model_copy(update={"model": keyframe_model})
    return board.model_copy(update=update)


def film_digests(
    example: Path, kind: str, out: Path, model: str | None = None, keyframe_model: str | None = None
) -> dict[str, dict[str, str]]:
    """{shot id: {"frames": sha256, "prompt": sha256}} of one render of ``example``."""
    board = _board(example)
    if kind == "skyreels":
        board = _tiny(board, keyframe_model)
    options = GeneratorOptions(model=model, base_dir=board.base_dir)
    with Recording(open_generator(kind, options)) as generator:
        manifest = storyreel.render(board, out, generator=generator, model=model, use_cache=False)
    return {
        entry.id: {"frames": generator.frames[entry.id], "prompt": _sha(entry.enhanced_prompt.encode())}
        for entry in manifest.shots
    }


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(DIGESTS.read_text())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from tiny_skyreels import build_tiny_skyreels

    torch.set_num_threads(1)
    return str(build_tiny_skyreels(tmp_path_factory.mktemp("tiny") / "df"))


@pytest.fixture(scope="module")
def tiny_keyframe_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("diffusers")
    from tiny_flux2 import build_tiny_flux2

    return str(build_tiny_flux2(tmp_path_factory.mktemp("tiny") / "klein"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_animatic_films_are_unchanged(example: Path, recorded: dict[str, Any], tmp_path: Path) -> None:
    got = film_digests(example, "animatic", tmp_path / "out")
    want = recorded["animatic"][example.name]
    assert {s: d["prompt"] for s, d in got.items()} == {s: d["prompt"] for s, d in want.items()}
    changed = sorted(s for s in want if got[s]["frames"] != want[s]["frames"])
    assert changed == sorted(s for s in REDRAWN if s in want), changed


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_tiny_skyreels_films_are_unchanged(
    example: Path, recorded: dict[str, Any], tiny_model: str, tiny_keyframe_model: str, tmp_path: Path
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = film_digests(
            example, "skyreels", tmp_path / "out", model=tiny_model, keyframe_model=tiny_keyframe_model
        )
    finally:
        torch.set_num_threads(threads)
    assert got == recorded["skyreels"][example.name]


def record() -> None:
    import tempfile

    import torch
    from tiny_flux2 import build_tiny_flux2
    from tiny_skyreels import build_tiny_skyreels

    torch.set_num_threads(1)
    document: dict[str, Any] = {"animatic": {}, "skyreels": {}}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model = str(build_tiny_skyreels(root / "tiny"))
        keyframe_model = str(build_tiny_flux2(root / "klein"))
        for example in EXAMPLES:
            document["animatic"][example.name] = film_digests(example, "animatic", root / "a" / example.name)
            document["skyreels"][example.name] = film_digests(
                example, "skyreels", root / "s" / example.name, model=model, keyframe_model=keyframe_model
            )
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_films_unchanged.py --record")
    record()
