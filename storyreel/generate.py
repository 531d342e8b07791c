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
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .backends import GENERATORS, available, load_backend, start_backend
from .errors import GenerationError, OutOfMemory, UserError

if TYPE_CHECKING:
    from typing_extensions import Self

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
    end_image: np.ndarray | None = (
        None  # (height, width, 3) uint8: the frame a shot with ``end_image`` ends on
    )

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
        if (self.end_image is None) != (shot.end_image is None) or (
            self.end_image is not None and self.end_image.shape != (shot.height, shot.width, 3)
        ):
            raise GenerationError(
                f"shot '{shot.id}' was planned {'with' if shot.end_image else 'without'} an end image and was "
                f"handed {'none' if self.end_image is None else 'one of shape ' + str(self.end_image.shape)}"
            )


@dataclass(frozen=True)
class PromptRequest:
    """The text of a shot about to be generated: what :meth:`Generator.prepare_prompts` is handed."""

    shot_id: str
    prompt: str  # the enhanced prompt
    negative_prompt: str


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
    # How the transformer runs (storyboard `generation:` keys of the same names, and CLI flags):
    attention: str = "auto"  # auto | flash3 | sage | flash | cudnn | sdpa: the attention kernel
    compile: str = "auto"  # auto (on for CUDA) | true | false: compile the repeated transformer blocks
    precision: str = "bf16"  # bf16 | fp8 (lossy): the transformer's weights and matrix products
    # Processes each shot's transformer is split over (render --gpus-per-shot), the ranks of the torch.distributed
    # group the generator is loaded in; 1: each shot is made whole, in this process
    sequence_parallel: int = 1


class Generator(ABC):
    """The generator contract: given a :class:`ShotRequest`, return a :class:`Clip`.

    A backend subclasses this, sets :attr:`name` and :attr:`version`, takes :class:`GeneratorOptions` in
    ``__init__`` and implements :meth:`generate`. Everything else has a default that suits a generator with
    no model (the animatic); a generator with weights on an accelerator overrides what applies to it.
    Generators are context managers: ``with open_generator(name, options) as generator: ...`` closes them.
    """

    name: ClassVar[str]
    #: Part of every shot's cache key: change it whenever the same request would give other frames.
    version: ClassVar[str] = "1"

    def __init__(self, options: GeneratorOptions):
        self.options = options

    @abstractmethod
    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        """Make the shot's ``request.frames`` new frames. A shot that does not fit in the device's memory
        raises :class:`storyreel.errors.OutOfMemory` (with the device's own error as its cause), never a
        library's exception: render() then makes room and tries again with less."""

    def close(self) -> None:  # noqa: B027 - a default that does nothing, on purpose
        """Release models and memory. The default has nothing to release."""

    def prepare_prompts(  # noqa: B027 - a default that does nothing, on purpose
        self, prompts: Sequence[PromptRequest], progress: ProgressCallback = ignore_progress
    ) -> None:
        """The prompts of every shot this render is about to generate, in render order, handed over once before
        the first of them is generated (shots the shot cache holds are not among them).

        A generator with a text encoder can encode them all now and then free the encoder's memory for the
        shots (the SkyReels-V2 generator keeps its 11 GB umT5 off the GPU). It must still accept a request
        whose prompt was not handed over. Running out of memory here (OutOfMemory) costs nothing: render()
        releases memory and each shot goes through the out-of-memory ladder as usual. Progress is reported
        under the first shot's id. The default: nothing.
        """

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def identity(cls, options: GeneratorOptions) -> str:
        """What, besides the model and the request, decides the frames these options give (the device kind
        and precision, say: a bf16 shot on a GPU is not the float32 shot a CPU makes). Part of every cache
        key; called before anything is loaded. The default: nothing."""
        return ""

    @classmethod
    def frame_facts(cls, shot: ShotPlan) -> dict[str, Any]:
        """Everything about ``shot`` that decides the frames this generator makes, besides its prompt, its
        start image and the frames it continues: part of the shot's cache key. The default suits a diffusion
        model: every generation setting but the model (identified apart), the seed, frames, mode, size, fps
        and the windows. A generator that draws other facts of the shot (the animatic draws its camera,
        characters and timecode) names those instead, so that an edit to them, and only to them, makes the
        shot again."""
        settings = shot.settings.model_dump(mode="json")
        settings.pop("model")
        return {
            "settings": settings,
            "seed": shot.seed,
            "frames": shot.frames,
            "mode": shot.mode,
            "size": [shot.width, shot.height],
            "fps": shot.fps,
            "windows": [window.model_dump() for window in shot.windows],
        }

    @classmethod
    def check_plan(cls, shots: Sequence[ShotPlan], options: GeneratorOptions) -> None:
        """Refuse, before any prompt is enhanced or model loaded, shots these options cannot make (a model
        that is not on this machine, a shot its pipeline cannot run), raising a UserError that says why.
        The default accepts every shot, made whole: a generator that splits a shot over processes
        (``options.sequence_parallel``) says so by overriding this."""
        if options.sequence_parallel > 1:
            raise UserError(
                f"--gpus-per-shot {options.sequence_parallel}: the {cls.name} generator makes each shot whole, "
                "in one process; leave --gpus-per-shot out (a model's transformer can be split: --model)"
            )

    @classmethod
    def reserved_bottom(cls, width: int, height: int) -> int:
        """Rows at the bottom of a ``width`` x ``height`` frame this generator draws its own overlay on;
        burned-in captions are placed above them. The default: none."""
        return 0

    @property
    def offloading(self) -> bool:
        """Whether the weights live off the accelerator between uses."""
        return False

    def enable_offload(self) -> bool:
        """Keep the weights off the accelerator from now on, to make room; render() asks for this when a shot
        first runs out of memory. Returns whether anything changed (the default cannot offload)."""
        return False

    def release_memory(self) -> None:  # noqa: B027 - nothing to release by default
        """Return the memory a failed call left behind to the device, before the shot is tried again."""


class LazyGenerator:
    """A render's generator, started on first use (a render whose shots are all cached loads no model) and
    closed at the end; a generator object handed in is used as it is and left open.

    ``upcoming`` holds the prompts of the shots the render is about to generate: on first use they are
    handed to :meth:`Generator.prepare_prompts`, once.
    """

    def __init__(self, backend: type[Generator] | Generator, options: GeneratorOptions):
        self.backend = backend
        self.name: str = backend.name
        self.options = options
        self.owned: Generator | None = None
        self.upcoming: list[PromptRequest] = []
        self.prepared = False

    def get(self, progress: ProgressCallback = ignore_progress) -> Generator:
        if isinstance(self.backend, Generator):
            generator = self.backend
        else:
            if self.owned is None:
                self.owned = start_generator(self.backend, self.options)
            generator = self.owned
        if self.upcoming and not self.prepared:
            self.prepared = True  # once, even if it fails: each shot still encodes its own prompt then
            prepare_prompts(generator, self.upcoming, progress)
        return generator

    def __enter__(self) -> LazyGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.close()


def available_generators() -> list[str]:
    return available(GENERATORS)


def open_generator(name: str, options: GeneratorOptions) -> Generator:
    """Import the generator registered as ``name`` and start it."""
    return start_generator(load_backend(GENERATORS, name), options)


def start_generator(backend: type[Generator], options: GeneratorOptions) -> Generator:
    """Construct a generator; a failure that is not the user's is a GenerationError naming the backend."""
    return start_backend(GENERATORS, backend, options)


def prepare_prompts(
    generator: Generator, prompts: Sequence[PromptRequest], progress: ProgressCallback
) -> None:
    """Hand ``prompts`` to the generator; a failure that is not the user's is a GenerationError naming it.

    Running out of memory while preparing is not a failure: preparing is a head start, and each shot then
    loads what it needs inside render()'s out-of-memory ladder (offloading, smaller windows)."""
    try:
        generator.prepare_prompts(prompts, progress)
    except OutOfMemory:
        generator.release_memory()
    except (UserError, GenerationError):
        raise
    except Exception as exc:
        raise GenerationError(
            f"the {generator.name} generator failed preparing the prompts of {len(prompts)} shot(s): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


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
