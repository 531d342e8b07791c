"""The SkyReels-V2 generator: every shot made by SkyReels-V2 diffusion forcing, through diffusers 0.42.1.

The model folder's ``model_index.json`` decides what runs:

* a **diffusion-forcing** folder (``SkyReelsV2DiffusionForcing*Pipeline``) gives three pipelines over
  one set of loaded weights: a fresh shot is DF text-to-video; an ``image:`` shot is DF
  image-to-video, synchronous, so that the image stays the first frame; a continuing shot is DF
  video-to-video from its parent's last ``overlap_history`` frames (the exact frames the parent
  generated) with its own prompt, of which only the new frames are kept;
* a **plain** text-to-video or image-to-video folder (``SkyReelsV2Pipeline``,
  ``SkyReelsV2ImageToVideoPipeline``) runs fresh or image shots that fit in one window.

Every shot runs exactly the windows ``storyreel plan`` shows. The plan is checked before a step is
spent (``check_runnable``), and the run is watched while it happens: a forward hook counts the
transformer passes, the step callback records each window's latent frames, clean prefix and
timestep rows, and any difference from the plan is a :class:`GenerationError`, not a quietly
different film.

diffusers 0.42.1 has quirks that silently ruin output; each is guarded here, and each guard has a
test in ``tests/test_skyreels.py`` that fails without it:

1. *Sticky causal block size*: passing ``causal_block_size`` writes ``num_frame_per_block`` into
   the transformer's config, where it stays for later calls and for ``save_pretrained``.
2. *Causal mask in async mode*: with ``num_frame_per_block > 1`` the transformer builds a dense
   (tokens x tokens) block-causal mask, ~2.6 GB at 540P and slower attention, although the
   released models were trained with bidirectional attention (the reference implementation uses
   causal attention only when asked to, and its models do not support it). Guard for 1 and 2:
   ``_keep_attention_bidirectional`` pins the config at 1 and ignores the pipelines' attempts to
   change it, while the block size still shapes the timestep schedule.
3. *Tail frames left as noise*: a window whose latent frames are not a whole number of causal
   blocks never denoises the remainder. 4. *Prefixes truncated*: a conditioning prefix is cut to
   a block multiple, down to nothing, and an image latent is re-denoised in async mode. Guard for
   3 and 4: ``check_runnable`` refuses such plans, and ``_ScheduleWatch`` checks what ran.
5. *V2V output*: the video-to-video pipeline returns the input video, then a VAE re-decode of the
   overlap, then the new frames. Guard: ``_new_frames`` keeps only the new frames, after checking
   the length.
6. *Unseeded noise*: ``addnoise_condition`` draws its noise from the global RNG, not the seeded
   generator. Guard: ``_seeded_global_rng`` seeds a forked global RNG for each call.
7. *Batch > 1* crashes with ``inject_sample_info=True`` (the DF-1.3B config). Guard: one prompt,
   one video per call, always.
8. *from_pipe casts*: ``from_pipe`` casts the shared modules to float32 by default. Guard: sibling
   pipelines are built as ``Cls(**components)``, which shares the modules as they are.
9. *DF I2V's last window*: the image-to-video pipeline schedules every window as if it were
   ``base_num_frames`` long, and crashes (IndexError) when an image shot's last window is shorter.
   Guard: ``_schedule_windows_by_their_length`` gives it each window's own length, as the
   text-to-video and video-to-video pipelines do.

>>> with SkyReelsGenerator(GeneratorOptions(model="Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers")) as sky:  # doctest: +SKIP
...     clip = sky.generate(ShotRequest(shot=plan.shot("glide"), prompt="...", negative_prompt=""))
>>> clip.frames.shape, clip.dit_passes == plan.shot("glide").dit_passes  # doctest: +SKIP
((97, 544, 960, 3), True)
"""

from __future__ import annotations

import importlib.util
import inspect
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storyreel.errors import GenerationError, MissingExtra, ModelNotFound, OutOfMemory, UserError
from storyreel.generate import (
    Clip,
    Generator,
    GeneratorOptions,
    ProgressCallback,
    ProgressEvent,
    ShotRequest,
    ignore_progress,
)
from storyreel.models import EXAMPLE_MODEL, resolve_model
from storyreel.plan import VAE_TEMPORAL_STRIDE, ShotPlan, Window, latent_count, window_schedule

if TYPE_CHECKING:
    import torch

EXTRA = "skyreels"
DIFFUSERS_VERSION = "0.42.1"  # the quirks below were measured in this version; pyproject pins it
STACK = ("torch", "diffusers", "transformers", "ftfy")  # ftfy: the pipelines clean prompts with it
DIFFUSION_FORCING, TEXT_TO_VIDEO, IMAGE_TO_VIDEO = "diffusion forcing", "text-to-video", "image-to-video"
FAMILIES = {
    "SkyReelsV2DiffusionForcingPipeline": DIFFUSION_FORCING,
    "SkyReelsV2DiffusionForcingImageToVideoPipeline": DIFFUSION_FORCING,
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": DIFFUSION_FORCING,
    "SkyReelsV2Pipeline": TEXT_TO_VIDEO,
    "SkyReelsV2ImageToVideoPipeline": IMAGE_TO_VIDEO,
}
DF_PIPELINE_FOR_MODE = {
    "fresh": "SkyReelsV2DiffusionForcingPipeline",
    "image": "SkyReelsV2DiffusionForcingImageToVideoPipeline",
    "continue": "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
}
PLAIN_MODE = {TEXT_TO_VIDEO: "fresh", IMAGE_TO_VIDEO: "image"}
DTYPES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


def first_missing_package() -> str | None:
    """The first package of the model stack that is not installed, found without importing any of them."""
    for package in STACK:
        if importlib.util.find_spec(package) is None:
            return package
    return None


_missing = first_missing_package()
if _missing is not None:
    # render() imports this module before it enhances prompts, and storyreel.backends turns this error
    # into MissingExtra('skyreels'): a missing extra is reported before any work, without importing torch.
    raise ModuleNotFoundError(f"No module named '{_missing}'", name=_missing)


# --- which model: a folder or a cached hub id, and what pipeline it is ---------------------------------------


@dataclass(frozen=True)
class ModelFolder:
    """A local SkyReels-V2 diffusers folder, and the pipeline its model_index.json names."""

    name: str  # as the user wrote it: a hub id or a path
    path: Path
    class_name: str

    @property
    def family(self) -> str:
        return FAMILIES[self.class_name]


def find_model(model: str | None, base_dir: Path | None = None) -> ModelFolder:
    """Resolve a model folder or hub id to a local SkyReels-V2 pipeline folder, never downloading.

    The value is resolved as every model setting is (:func:`storyreel.models.resolve_model`); the folder
    found must be a diffusers pipeline folder of one of the SkyReels-V2 pipelines this generator runs.
    """
    if not model:
        raise UserError(
            "the skyreels generator needs a model: set generation.model in the storyboard or pass --model "
            f"(a diffusers folder, or a hub id such as {EXAMPLE_MODEL})"
        )
    ref = resolve_model(model, base_dir)
    folder = ref.require()
    index = folder / "model_index.json"
    if not index.is_file():
        raise UserError(
            f"model '{model}': {folder} has no model_index.json, so it is not a diffusers pipeline folder; "
            "point to the folder that holds model_index.json (a SkyReels-V2 ...-Diffusers download)"
        )
    class_name = ref.pipeline_class()
    if class_name is None:
        raise UserError(
            f"model '{model}': cannot read the pipeline class from {index}; download the model again or "
            "point to a complete folder"
        )
    if class_name not in FAMILIES:
        raise UserError(
            f"model '{model}' is a {class_name} folder, not a SkyReels-V2 pipeline; the skyreels generator runs "
            f"{', '.join(FAMILIES)} folders, e.g. {EXAMPLE_MODEL}"
        )
    return ModelFolder(name=model, path=folder, class_name=class_name)


# --- can this shot run exactly as planned? ---------------------------------------------------------------------


def check_runnable(shot: ShotPlan, family: str) -> None:
    """Refuse, before any step is spent, a shot the pipelines would not run exactly as its plan says.

    A plain pipeline makes one window, synchronously, of one kind of shot: asking more is the user's
    error. A diffusion-forcing plan whose windows or prefixes are not whole causal blocks (quirks 3
    and 4) can only come from a ShotPlan built by hand, since ``plan_film`` snaps shots: a bug.
    """
    settings = shot.settings
    if family != DIFFUSION_FORCING:
        kind = PLAIN_MODE[family]
        what = {"fresh": "fresh (text-to-video) shots", "image": "shots that start from an image"}[kind]
        fix = f"use a diffusion-forcing model such as {EXAMPLE_MODEL}"
        if shot.mode != kind:
            doing = {
                "fresh": "starts fresh",
                "image": "starts from an image",
                "continue": f"continues '{shot.conditioned_on}'",
            }
            raise UserError(
                f"shot '{shot.id}' {doing[shot.mode]}, but a plain SkyReels-V2 {family} model only makes {what}; {fix}"
            )
        if len(shot.windows) > 1:
            raise UserError(
                f"shot '{shot.id}' needs {len(shot.windows)} diffusion-forcing windows ({shot.frames} frames, "
                f"base_num_frames {settings.base_num_frames}), but a plain SkyReels-V2 {family} model makes one; "
                f"shorten the shot to {settings.base_num_frames} frames or fewer, or {fix}"
            )
        if settings.ar_step:
            raise UserError(
                f"shot '{shot.id}' asks for asynchronous diffusion forcing (ar_step {settings.ar_step}), which a "
                f"plain SkyReels-V2 {family} model cannot do; set ar_step: 0, or {fix}"
            )
    block = settings.causal_block_size
    overlap = settings.overlap_history
    for name, value in (("base_num_frames", settings.base_num_frames), ("overlap_history", overlap)):
        if value % VAE_TEMPORAL_STRIDE != 1:
            raise GenerationError(f"shot '{shot.id}': {name} {value} is not 4k+1; the VAE would drop frames")
    generated = shot.frames + (overlap if shot.mode == "continue" else 0)
    if generated % VAE_TEMPORAL_STRIDE != 1:
        raise GenerationError(
            f"shot '{shot.id}': {generated} frames to generate is not 4k+1; the pipeline would round it"
        )
    if shot.mode == "image" and (settings.ar_step or block != 1):
        raise GenerationError(
            f"shot '{shot.id}' starts from an image but is planned asynchronous (ar_step {settings.ar_step}, "
            f"causal_block_size {block}): the image latent would be re-denoised; image shots must be synchronous"
        )
    overlap_latent = latent_count(overlap)
    first_prefix = {"fresh": 0, "image": 1, "continue": overlap_latent}[shot.mode]
    expected = window_schedule(
        latent_frames=shot.latent_frames,
        base_latent=latent_count(settings.base_num_frames),
        overlap_latent=overlap_latent,
        first_prefix=first_prefix,
        steps=settings.steps,
        ar_step=settings.ar_step,
        causal_block_size=block,
    )
    if expected != shot.windows:
        raise GenerationError(
            f"shot '{shot.id}': the plan's windows {_windows_text(shot.windows)} are not those its frames and "
            f"settings give, {_windows_text(expected)}; plan the film again"
        )
    for number, window in enumerate(expected, start=1):
        # The prefix as the pipeline receives it, before it cuts it to whole blocks.
        prefix = first_prefix if number == 1 else overlap_latent
        if window.latent_frames % block:
            raise GenerationError(
                f"shot '{shot.id}': window {number} has {window.latent_frames} latent frames, not a multiple of "
                f"causal_block_size {block}; the pipeline would leave the last {window.latent_frames % block} as noise"
            )
        if prefix % block:
            raise GenerationError(
                f"shot '{shot.id}': window {number} is conditioned on {prefix} latent frames, not a multiple of "
                f"causal_block_size {block}; the pipeline would cut the prefix to {prefix - prefix % block}"
            )


def _windows_text(windows: Any) -> str:
    return (
        "["
        + ", ".join(f"{w.latent_frames}/{w.prefix_latent_frames}/{w.denoise_steps}" for w in windows)
        + "]"
    )


# --- watching a run: passes, windows, progress -----------------------------------------------------------------


@dataclass
class WindowRun:
    """One window as it ran: latent frames, the frames the timestep schedule covered, clean prefix, rows."""

    latent_frames: int
    scheduled_frames: int
    prefix_latent_frames: int | None  # None for plain pipelines: they condition on channels, not a prefix
    denoise_steps: int = 0

    def matches(self, window: Window) -> bool:
        """Whether this run is the planned window (a plain pipeline's prefix is not a prefix of frames)."""
        prefix_ok = (
            self.prefix_latent_frames is None or self.prefix_latent_frames == window.prefix_latent_frames
        )
        return (self.latent_frames, self.denoise_steps) == (
            window.latent_frames,
            window.denoise_steps,
        ) and prefix_ok

    def as_dict(self) -> dict[str, int | None]:
        return {
            "latent_frames": self.latent_frames,
            "prefix_latent_frames": self.prefix_latent_frames,
            "denoise_steps": self.denoise_steps,
        }


@dataclass
class _ScheduleWatch:
    """Counts transformer passes (a forward hook) and records each window through the step callback.

    A diffusion-forcing step callback receives the row of per-frame timesteps: its length is the
    number of frames the schedule covers (quirk 3 shows as fewer than the window's latent frames),
    and in the window's first row the clean prefix frames are its leading zeros. The step index
    restarts at 0 with every window; a plain pipeline's timestep is one number for all frames.
    """

    shot: ShotPlan
    progress: ProgressCallback
    passes: int = 0
    rows: int = 0
    windows: list[WindowRun] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(w.denoise_steps for w in self.shot.windows)

    def count_pass(self, module: Any, args: Any, output: Any) -> None:
        self.passes += 1

    def step(
        self, pipeline: Any, index: int, timestep: torch.Tensor, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if index == 0:
            latent_frames = int(tensors["latents"].shape[2])  # (batch, channels, latent frames, h, w)
            if timestep.ndim:  # diffusion forcing: (scheduled frames,) timesteps of this row
                clean = (timestep == 0).int()
                prefix = int(clean.cumprod(0).sum())  # leading clean frames
                self.windows.append(WindowRun(latent_frames, int(timestep.shape[0]), prefix))
            else:
                self.windows.append(WindowRun(latent_frames, latent_frames, None))
        self.windows[-1].denoise_steps += 1
        self.rows += 1
        self.progress(ProgressEvent(self.shot.id, "denoise", self.rows, self.total_rows))
        if self.rows == self.total_rows:  # the pipeline decodes right after its last row
            self.progress(ProgressEvent(self.shot.id, "decode", 0, 1, "decoding latents to frames"))
        return {}

    def check(self) -> None:
        """Raise if what ran is not the plan: the frames would not be what ``storyreel plan`` promised."""
        shot = self.shot
        for number, run in enumerate(self.windows, start=1):
            if run.scheduled_frames != run.latent_frames:
                raise GenerationError(
                    f"shot '{shot.id}': window {number} scheduled {run.scheduled_frames} of its {run.latent_frames} "
                    "latent frames; the rest were left as noise"
                )
        if len(self.windows) != len(shot.windows) or not all(
            run.matches(window) for run, window in zip(self.windows, shot.windows, strict=True)
        ):
            raise GenerationError(
                f"shot '{shot.id}': the pipeline ran windows {_windows_text(self.windows)} "
                f"(latent frames/prefix/rows), the plan has {_windows_text(shot.windows)}"
            )
        if self.passes != shot.dit_passes:
            raise GenerationError(
                f"shot '{shot.id}': the transformer ran {self.passes} passes, the plan has {shot.dit_passes}"
            )


# --- the generator ---------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """One model's weights, loaded once, and the pipelines that share them (by shot mode)."""

    model: ModelFolder
    pipelines: dict[str, Any]  # diffusers pipelines, by shot mode
    scheduler_config: dict[str, Any]
    max_tokens: int
    offload: str
    notes: list[str]


class SkyReelsGenerator(Generator):
    """SkyReels-V2 through diffusers: weights loaded once per render, on the first shot."""

    name = "skyreels"
    # Part of every shot's cache key, read from the class before any model loads: bump the first number
    # whenever the same request and model would give other frames.
    version = f"1+diffusers-{DIFFUSERS_VERSION}"

    def __init__(self, options: GeneratorOptions):
        torch, diffusers = _import_stack()
        super().__init__(options)
        self.device = _pick_device(torch, options.device)
        self.dtype = _pick_dtype(torch, options.dtype, self.device)
        self.diffusers_version = diffusers.__version__
        # A model given up front is resolved now, so that a wrong path fails before any work.
        self.model = find_model(options.model, options.base_dir) if options.model else None
        self._offload = options.offload
        self._loaded: _Loaded | None = None

    @classmethod
    def identity(cls, options: GeneratorOptions) -> str:
        """What, besides the model and the request, decides the frames: the device kind and precision the
        options resolve to (a bf16 shot on a GPU is not the float32 shot a CPU makes). Part of the cache key."""
        torch, _ = _import_stack()
        device = _pick_device(torch, options.device)
        return f"{device.type}/{_dtype_name(_pick_dtype(torch, options.dtype, device))}"

    @classmethod
    def check_plan(cls, shots: Sequence[ShotPlan], options: GeneratorOptions) -> None:
        """Refuse, before any prompt is enhanced or model loaded, a render this model cannot run: a model
        that cannot be found, or shots a plain (non diffusion-forcing) pipeline cannot make."""
        model = find_model(options.model, options.base_dir)
        for shot in shots:
            check_runnable(shot, model.family)

    @property
    def offloading(self) -> bool:
        """Whether the weights live on the CPU between uses (``offload``, or switched on by :meth:`enable_offload`)."""
        return self._offload

    def enable_offload(self) -> bool:
        """Keep the weights on the CPU from now on; render() asks for this when a shot runs out of GPU memory.
        Returns False when they already are."""
        if self._offload:
            return False
        self._offload = True
        if self._loaded is not None:
            pipeline = next(iter(self._loaded.pipelines.values()))  # they all share the same modules
            pipeline.to("cpu")  # offloading starts from weights on the CPU
            self._loaded.offload = self._place(pipeline)
            self.release_memory()
        return True

    def release_memory(self) -> None:
        """Collect what a failed call left behind and return the accelerator's cached blocks to it."""
        import gc

        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the pipelines and return the accelerator's cached memory."""
        if self._loaded is None:
            return
        self._loaded = None
        self.release_memory()

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        """Make the shot's ``request.frames`` new frames with the window schedule of its plan."""
        import torch

        shot = request.shot
        model = self._model_for(shot)
        check_runnable(shot, model.family)
        with _out_of_memory_reported(shot.id, self.device):
            loaded = self._load(model, shot.id, progress)
        pipeline = loaded.pipelines[shot.mode]
        self._check_prompt_lengths(request, loaded)
        arguments = self._arguments(request, loaded)
        pipeline.scheduler = _scheduler_with_shift(
            pipeline.scheduler, loaded.scheduler_config, shot.settings.shift
        )
        if loaded.offload == "model cpu offload":
            pipeline.enable_model_cpu_offload(device=self.device)  # hooks follow the pipeline about to run

        watch = _ScheduleWatch(shot, progress)
        hook = pipeline.transformer.register_forward_hook(watch.count_pass)
        started = time.perf_counter()
        try:
            with (
                _seeded_global_rng(torch, shot.seed, self.device),
                _out_of_memory_reported(shot.id, self.device),
            ):
                output = pipeline(**arguments, callback_on_step_end=watch.step).frames[0]
        finally:
            hook.remove()
        progress(ProgressEvent(shot.id, "decode", 1, 1))
        watch.check()
        frames = _new_frames(np.asarray(output), request)  # (frames, height, width, 3) uint8
        return Clip(
            frames=frames,
            dit_passes=watch.passes,
            seconds=time.perf_counter() - started,
            info={
                "pipeline": type(pipeline).__name__,
                "model": model.name,
                "dtype": _dtype_name(pipeline.transformer.dtype),
                "vae_dtype": _dtype_name(pipeline.vae.dtype),
                "device": str(self.device),
                "offload": loaded.offload,
                "windows": [run.as_dict() for run in watch.windows],
                "diffusers": self.diffusers_version,
                **({"notes": loaded.notes} if loaded.notes else {}),
            },
        )

    # --- loading -----------------------------------------------------------------------------------------------

    def _model_for(self, shot: ShotPlan) -> ModelFolder:
        """The render's one model: the one given in the options, else the first shot's."""
        if self.model is None:
            self.model = find_model(shot.settings.model, self.options.base_dir)
        elif shot.settings.model and shot.settings.model != self.model.name:
            raise UserError(
                f"shot '{shot.id}' asks for model '{shot.settings.model}', but this render loaded '{self.model.name}'; "
                "a render uses one model: render those shots separately (--only with --model)"
            )
        return self.model

    def _load(self, model: ModelFolder, shot_id: str, progress: ProgressCallback) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        import diffusers
        import torch

        progress(ProgressEvent(shot_id, "load", 0, 1, f"loading {model.name}"))
        started = time.perf_counter()
        # bf16 (or the asked dtype) for the transformer and text encoder, the bulk of the weights; the small VAE
        # and CLIP image encoder stay float32, as the SkyReels-V2 and diffusers examples run them.
        dtypes = {"default": self.dtype, "vae": torch.float32, "image_encoder": torch.float32}
        try:
            with _quiet_loading():
                primary = getattr(diffusers, model.class_name).from_pretrained(
                    model.path, dtype=dtypes, local_files_only=True
                )
        except OSError as exc:
            raise ModelNotFound(
                f"model '{model.name}': {model.path} is incomplete or unreadable ({exc}); download it again "
                "(hf download <id>) or point to a complete folder"
            ) from exc
        notes = _keep_attention_bidirectional(primary.transformer)
        offload = self._place(primary)
        if model.family == DIFFUSION_FORCING:
            # Cls(**components) shares the loaded modules as they are; from_pipe would cast them to float32.
            pipelines = {
                mode: getattr(diffusers, class_name)(**primary.components)
                for mode, class_name in DF_PIPELINE_FOR_MODE.items()
            }
            _schedule_windows_by_their_length(pipelines["image"])
        else:
            pipelines = {PLAIN_MODE[model.family]: primary}
        for pipeline in pipelines.values():
            pipeline.set_progress_bar_config(disable=True)
        self._loaded = _Loaded(
            model=model,
            pipelines=pipelines,
            scheduler_config=dict(primary.scheduler.config),
            max_tokens=_max_tokens(primary),
            offload=offload,
            notes=notes,
        )
        seconds = time.perf_counter() - started
        progress(ProgressEvent(shot_id, "load", 1, 1, f"loaded {model.class_name} in {seconds:.1f}s"))
        return self._loaded

    def _place(self, pipeline: Any) -> str:
        """Put the weights where they run; with ``offload``, keep them on the CPU and move them around use."""
        import torch

        if not self._offload or self.device.type == "cpu":
            pipeline.to(self.device)
            return "none (the model runs on the CPU)" if self._offload else "none"
        if self.device.type == "cuda":
            # Group offloading hooks live on the modules, so every pipeline sharing them is offloaded; CUDA streams
            # prefetch the next layer while the current one computes.
            pipeline.enable_group_offload(
                onload_device=self.device,
                offload_device=torch.device("cpu"),
                offload_type="leaf_level",
                use_stream=True,
            )
            return "group offloading (leaf level, CUDA streams)"
        return (
            "model cpu offload"  # other accelerators: whole models move, hooked per pipeline before each call
        )

    # --- one call ----------------------------------------------------------------------------------------------

    def _check_prompt_lengths(self, request: ShotRequest, loaded: _Loaded) -> None:
        """A prompt longer than the text encoder's window would be cut off silently by the pipeline: refuse it."""
        from diffusers.pipelines.skyreels_v2.pipeline_skyreels_v2_diffusion_forcing import prompt_clean

        tokenizer = next(iter(loaded.pipelines.values())).tokenizer
        for what, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
            if not text:
                continue
            tokens = len(tokenizer(prompt_clean(text), add_special_tokens=True)["input_ids"])
            if tokens > loaded.max_tokens:
                raise UserError(
                    f"shot '{request.shot.id}': its {what} is {tokens} tokens, more than the {loaded.max_tokens} "
                    "SkyReels-V2's text encoder reads, and the rest would be cut off; shorten it (an enhancer's "
                    "max_words caps enhanced prompts)"
                )

    def _arguments(self, request: ShotRequest, loaded: _Loaded) -> dict[str, Any]:
        """The pipeline call for this shot: always one prompt and one video (quirk 7)."""
        import torch
        from PIL import Image

        shot, settings = request.shot, request.shot.settings
        arguments: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "height": shot.height,
            "width": shot.width,
            "num_frames": shot.frames,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "num_videos_per_prompt": 1,
            # A CPU generator draws the same starting noise on every machine, whatever the device.
            "generator": torch.Generator("cpu").manual_seed(shot.seed),
            "output_type": "np",
            "max_sequence_length": loaded.max_tokens,
        }
        if shot.mode == "image" and request.image is not None:
            arguments["image"] = Image.fromarray(request.image)  # lossless; resized to its own size is a copy
        if loaded.model.family != DIFFUSION_FORCING:
            return arguments
        arguments.update(
            overlap_history=settings.overlap_history,
            addnoise_condition=settings.addnoise_condition,
            base_num_frames=settings.base_num_frames,
            ar_step=settings.ar_step,
            causal_block_size=settings.causal_block_size,
            fps=shot.fps,
        )
        if shot.mode == "continue" and request.tail_frames is not None:
            tail = torch.from_numpy(request.tail_frames).permute(
                0, 3, 1, 2
            )  # (overlap, 3, height, width) uint8
            arguments["video"] = (tail.float() / 255.0).unsqueeze(
                0
            )  # (1, overlap, 3, height, width) in [0, 1]
            arguments["num_frames"] = settings.overlap_history + shot.frames  # V2V counts the overlap in
        return arguments


@contextmanager
def _out_of_memory_reported(shot_id: str, device: torch.device) -> Iterator[None]:
    """Turn the device running out of memory (torch's error, or an allocator's RuntimeError on other
    devices) into the generator contract's OutOfMemory, so render() can make room and try again."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(f"shot '{shot_id}' ran out of {device.type} memory: {_first_line(exc)}") from exc
    except RuntimeError as exc:
        text = str(exc).lower()
        if "out of memory" not in text and "can't allocate memory" not in text:
            raise
        raise OutOfMemory(f"shot '{shot_id}' ran out of {device.type} memory: {_first_line(exc)}") from exc


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# --- the workarounds -------------------------------------------------------------------------------------------


def _keep_attention_bidirectional(transformer: Any) -> list[str]:
    """Quirks 1 and 2: keep ``num_frame_per_block`` at 1, so no block-causal mask is ever built.

    The pipelines still receive ``causal_block_size`` and shape their timestep schedule with it; only
    their write into the transformer's config is dropped, by shadowing ``_set_ar_attention`` on this
    instance. A folder saved after the quirk struck (``num_frame_per_block > 1``) is reset.
    """
    notes = []
    stored = transformer.config.num_frame_per_block
    if stored != 1:
        notes.append(
            f"the transformer config had num_frame_per_block {stored} (causal attention, which the released "
            "models do not support); reset to 1"
        )
        transformer.register_to_config(num_frame_per_block=1)
    transformer._set_ar_attention = _leave_attention_bidirectional
    return notes


def _leave_attention_bidirectional(causal_block_size: int) -> None:
    """Stands in for the transformer's ``_set_ar_attention``: the block size shapes the schedule, never the mask."""


def _schedule_windows_by_their_length(pipeline: Any) -> None:
    """Quirk 9: DF image-to-video passes ``base_num_frames``' latent length as every window's schedule length.

    A last window shorter than that then indexes past its own frames. Wrapping this instance's
    ``generate_timestep_matrix`` to cap the length at the window's own makes it schedule exactly like
    DF text-to-video and video-to-video; rows and frames are unchanged for full windows.
    """
    schedule = pipeline.generate_timestep_matrix

    def generate_timestep_matrix(
        num_latent_frames: int, step_template: Any, base_num_latent_frames: int, *rest: Any
    ):
        return schedule(
            num_latent_frames, step_template, min(base_num_latent_frames, num_latent_frames), *rest
        )

    pipeline.generate_timestep_matrix = generate_timestep_matrix


@contextmanager
def _seeded_global_rng(torch: Any, seed: int, device: torch.device) -> Iterator[None]:
    """Quirk 6: ``addnoise_condition`` noise comes from the global RNG; seed it, and restore it afterwards.

    ``torch.manual_seed`` seeds every device; only the one in use is forked and restored, which leaves other
    accelerators' global RNG reseeded: harmless, since nothing of storyreel's draws from them.
    """
    accelerated = device.type != "cpu"
    with torch.random.fork_rng(
        devices=[device] if accelerated else [], device_type=device.type if accelerated else "cuda"
    ):
        torch.manual_seed(seed)
        yield


def _new_frames(output: np.ndarray, request: ShotRequest) -> np.ndarray:
    """The shot's own frames as uint8, from the pipeline's (frames, height, width, 3) floats in [0, 1].

    Quirk 5: video-to-video returns the input video, a re-decode of the overlap, then the new frames.
    """
    shot = request.shot
    if shot.mode == "continue":
        tail = len(request.tail_frames) if request.tail_frames is not None else 0
        expected = tail + shot.settings.overlap_history + shot.frames
        if output.shape[0] != expected:
            raise GenerationError(
                f"shot '{shot.id}': video-to-video returned {output.shape[0]} frames, expected the {tail} input "
                f"frames, {shot.settings.overlap_history} re-decoded and {shot.frames} new ({expected})"
            )
        output = output[-shot.frames :]
    return np.rint(np.clip(output, 0.0, 1.0) * 255.0).astype(np.uint8)


def _scheduler_with_shift(scheduler: Any, config: dict[str, Any], shift: float) -> Any:
    """The model's flow-matching scheduler with the shot's ``shift`` (UniPC calls it flow_shift)."""
    for key in ("flow_shift", "shift"):
        if key in config:
            return type(scheduler).from_config(config, **{key: shift})
    raise GenerationError(f"the model's scheduler {type(scheduler).__name__} has no shift setting")


def _max_tokens(pipeline: Any) -> int:
    """The text window: the pipeline's max_sequence_length (512, umT5's), or the tokenizer's if smaller."""
    default = inspect.signature(pipeline.__call__).parameters["max_sequence_length"].default
    return int(min(default, getattr(pipeline.tokenizer, "model_max_length", default)))


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' loading bars (the caller's progress reports loading instead)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    shown = [lib.is_progress_bar_enabled() for lib in (diffusers_logging, transformers_logging)]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for lib, was_shown in zip((diffusers_logging, transformers_logging), shown, strict=True):
            if was_shown:
                lib.enable_progress_bar()


# --- setup -----------------------------------------------------------------------------------------------------


def _import_stack() -> tuple[Any, Any]:
    """torch and diffusers, or MissingExtra naming what to install (a too-old diffusers counts as missing)."""
    try:
        import diffusers
        import torch
        import transformers  # noqa: F401  (the text encoder's library: fail here, not mid-load)
        from diffusers import SkyReelsV2DiffusionForcingVideoToVideoPipeline  # noqa: F401
    except ImportError as exc:
        package = (exc.name or "diffusers").split(".")[0]
        wanted = f"diffusers=={DIFFUSERS_VERSION}" if package == "diffusers" else package
        raise MissingExtra(EXTRA, wanted, "the skyreels generator") from exc
    return torch, diffusers


def _pick_device(torch: Any, requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device '{requested}'; use cuda, cuda:N or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{requested}' asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def _pick_dtype(torch: Any, requested: str | None, device: torch.device) -> torch.dtype:
    if requested is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    name = DTYPES.get(requested.lower())
    if name is None:
        raise UserError(f"unknown dtype '{requested}'; use bfloat16, float16 or float32")
    return getattr(torch, name)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
