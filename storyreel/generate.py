"""Stage 4 of a render: the generator contract.

A generator is "given a ShotRequest, return a Clip". The request carries the shot's plan (frames,
size, fps, seed, settings and the diffusion-forcing windows to run), the prompt to generate from,
and what conditions the shot: the parent's exact tail frames for a continuing shot, the start
image for an image-to-video shot. The clip is the shot's own new frames, never the conditioning
frames. Every generator takes the same arguments; the SkyReels-V2 generator and the animatic
differ only in how they fill the frames.

Generators are found by name (:mod:`storyreel.backends`), constructed once per render with
:class:`GeneratorOptions`, and used as context managers so that model weights load once and are
released at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .backends import GENERATORS, available, load_backend
from .errors import GenerationError, UserError

if TYPE_CHECKING:
    from .plan import ShotPlan


@dataclass(frozen=True)
class ProgressEvent:
    """Something a generator reports while it works: ``completed`` of ``total`` units of ``stage``."""

    shot_id: str
    stage: str  # "load", "encode", "denoise", "decode", "frames"
    completed: int
    total: int
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """A progress callback that drops every event."""


@dataclass(frozen=True)
class ShotRequest:
    """Everything a generator needs to make one shot."""

    shot: ShotPlan
    prompt: str  # the enhanced prompt
    negative_prompt: str
    tail_frames: np.ndarray | None = (
        None  # (overlap_history, height, width, 3) uint8: the parent's last frames
    )
    image: np.ndarray | None = None  # (height, width, 3) uint8: the start frame of an image-to-video shot

    @property
    def frames(self) -> int:
        return self.shot.frames

    @property
    def width(self) -> int:
        return self.shot.width

    @property
    def height(self) -> int:
        return self.shot.height

    @property
    def fps(self) -> int:
        return self.shot.fps

    @property
    def seed(self) -> int:
        return self.shot.seed

    def check(self) -> None:
        """Raise if the conditioning handed over does not match the plan (a bug in the caller, not the user)."""
        shot = self.shot
        if shot.mode == "continue":
            expected = (shot.settings.overlap_history, shot.height, shot.width, 3)
            if (
                self.tail_frames is None
                or self.tail_frames.shape != expected
                or self.tail_frames.dtype != np.uint8
            ):
                got = None if self.tail_frames is None else (self.tail_frames.shape, self.tail_frames.dtype)
                raise GenerationError(f"shot '{shot.id}' needs tail frames {expected} uint8, got {got}")
        elif self.tail_frames is not None:
            raise GenerationError(f"shot '{shot.id}' starts fresh but was handed tail frames")
        if shot.mode == "image":
            if self.image is None or self.image.shape != (shot.height, shot.width, 3):
                raise GenerationError(f"shot '{shot.id}' needs a {shot.width}x{shot.height} start image")


@dataclass
class Clip:
    """A generated shot: its own frames, and what making them cost."""

    frames: np.ndarray  # (frames, height, width, 3) uint8
    dit_passes: int = 0  # transformer forward passes spent
    seconds: float = 0.0  # wall time spent generating
    info: dict[str, Any] = field(default_factory=dict)  # backend-specific facts for the manifest

    def check(self, request: ShotRequest) -> None:
        expected = (request.frames, request.height, request.width, 3)
        if self.frames.shape != expected or self.frames.dtype != np.uint8:
            raise GenerationError(
                f"shot '{request.shot.id}': the generator returned {self.frames.shape} {self.frames.dtype}, "
                f"the plan needs {expected} uint8"
            )


@dataclass(frozen=True)
class GeneratorOptions:
    """How to set a generator up: which model, where, and in what precision."""

    model: str | None = None  # hub id or local folder
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None picks the best available
    dtype: str | None = None  # "bfloat16", "float16", "float32"; None picks per device
    offload: bool = False  # keep weights on the CPU and move them to the GPU around use
    base_dir: Path | None = None  # folder that a relative model path is resolved against


@runtime_checkable
class Generator(Protocol):
    """The generator contract. Implementations take ``GeneratorOptions`` in ``__init__``."""

    name: str
    version: (
        str  # part of every shot's cache key: change it whenever the same request would give other frames
    )

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        """Make the shot's ``request.frames`` new frames."""
        ...

    def close(self) -> None:
        """Release models and memory."""
        ...


def available_generators() -> list[str]:
    return available(GENERATORS)


def open_generator(name: str, options: GeneratorOptions) -> Generator:
    """Import the generator registered as ``name`` and construct it."""
    cls = load_backend(GENERATORS, name)
    try:
        return cls(options)  # type: ignore[no-any-return]
    except UserError:
        raise
    except Exception as exc:
        raise GenerationError(f"the {name} generator failed to start: {type(exc).__name__}: {exc}") from exc


def run_generator(generator: Generator, request: ShotRequest, progress: ProgressCallback) -> Clip:
    """Generate one shot, timing it and checking that the frames match the plan."""
    request.check()
    started = time.perf_counter()
    try:
        clip = generator.generate(request, progress)
    except (UserError, GenerationError):
        raise
    except Exception as exc:
        raise GenerationError(
            f"the {generator.name} generator failed on shot '{request.shot.id}': {type(exc).__name__}: {exc}"
        ) from exc
    clip.check(request)
    if not clip.seconds:
        clip.seconds = time.perf_counter() - started
    return clip


def load_start_image(path: str | Path, width: int, height: int) -> np.ndarray:
    """An image file fitted to ``width`` x ``height`` (scaled to cover, centre-cropped), as (height, width, 3) uint8."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        fitted = ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)
    return np.asarray(fitted, dtype=np.uint8).copy()
