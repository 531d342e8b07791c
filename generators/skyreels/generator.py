"""The generator itself: the weights loaded once per render, each shot's pipeline arguments, and the call.

:class:`SkyReelsGenerator` is the ``skyreels`` backend (``storyreel.generators.skyreels:SkyReelsGenerator``).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from storyreel.errors import GenerationError, ModelNotFound, OutOfMemory, UserError
from storyreel.frames import END_IMAGE_LATENT_FRAMES, generated_frames
from storyreel.generate import (
    Clip,
    Generator,
    GeneratorOptions,
    ProgressCallback,
    ProgressEvent,
    PromptRequest,
    ShotRequest,
    ignore_progress,
)
from storyreel.plan import ShotPlan

from .attention import kernel_in_use
from .decode import decode_frames
from .model_folder import (
    DF_PIPELINE_FOR_MODE,
    DIFFUSION_FORCING,
    PLAIN_MODE,
    ModelFolder,
    find_model,
    head_dim,
)
from .parallel import AttentionSplit, attention_heads, attention_split, enable_sequence_parallel, split_kernel
from .prompts import PromptEmbeddings
from .quirks import (
    check_end_frame_code,
    hold_end_frame,
    keep_attention_bidirectional,
    modulate_per_frame,
    new_frames,
    schedule_windows_by_their_length,
    seeded_global_rng,
)
from .runtime import CompiledGraphs, Runtime, apply_runtime, resolve_runtime
from .schedule import ScheduleWatch, check_runnable
from .stack import DIFFUSERS_VERSION, dtype_name, import_stack, pick_device, pick_dtype, quiet_loading

if TYPE_CHECKING:
    import torch


@dataclass
class _Loaded:
    """One model's weights, loaded once, and the pipelines that share them (by shot mode)."""

    model: ModelFolder
    pipelines: dict[str, Any]  # diffusers pipelines, by shot mode
    scheduler_config: dict[str, Any]
    max_tokens: int
    offload: str
    notes: list[str]
    prompts: PromptEmbeddings  # text embeddings, encoded once per text


class SkyReelsGenerator(Generator):
    """SkyReels-V2 through diffusers: weights loaded once per render, on the first shot."""

    name = "skyreels"
    # Part of every shot's cache key, read from the class before any model loads: bump the first number
    # whenever the same request and model would give other frames.
    version = f"1+diffusers-{DIFFUSERS_VERSION}"

    def __init__(self, options: GeneratorOptions):
        torch, diffusers = import_stack()
        super().__init__(options)
        self.device = pick_device(torch, options.device)
        self.dtype = pick_dtype(torch, options.dtype, self.device)
        self.diffusers_version = diffusers.__version__
        # A model given up front is resolved now, so that a wrong path fails before any work.
        self.model = find_model(options.model, options.base_dir) if options.model else None
        # The attention kernel, compilation and precision: what this machine cannot do fails here.
        self.runtime = _runtime(torch, options, self.model)
        self._offload = options.offload
        self._loaded: _Loaded | None = None
        self._split: AttentionSplit | None = None  # how each shot is split over processes, once loaded

    @classmethod
    def identity(cls, options: GeneratorOptions) -> str:
        """What, besides the model and the request, decides the frames: the device kind, the precision, the
        attention kernel and whether the blocks are compiled, as the options resolve on this machine (a bf16
        shot on a GPU is not the float32 shot a CPU makes, nor an FP8 one). Part of the cache key."""
        torch, _ = import_stack()
        model = find_model(options.model, options.base_dir) if options.model else None
        identity = _runtime(torch, options, model).identity
        ranks = options.sequence_parallel
        if ranks > 1:  # a split shot sums in another order: close to the whole shot's frames, not the same
            heads = attention_heads(model) if model is not None else None
            identity += "/" + (attention_split(heads, ranks).identity if heads else f"split{ranks}")
        return identity

    @classmethod
    def check_plan(cls, shots: Sequence[ShotPlan], options: GeneratorOptions) -> None:
        """Refuse, before any prompt is enhanced or model loaded, a render this machine or model cannot run: a
        model that cannot be found, shots a plain (non diffusion-forcing) pipeline cannot make, an attention
        kernel that is not installed or does not run here, FP8 without an FP8 GPU."""
        model = find_model(options.model, options.base_dir)
        torch, diffusers = import_stack()
        for shot in shots:
            check_runnable(shot, model.family)
            if shot.end_image is not None:  # held by wrapping the pipeline's code: it must be the code known
                check_end_frame_code(getattr(diffusers, DF_PIPELINE_FOR_MODE[shot.mode]))
        _runtime(torch, options, model)

    @property
    def offloading(self) -> bool:
        """Whether the weights live on the CPU between uses (``offload``, or switched on by :meth:`enable_offload`)."""
        return self._offload

    def enable_offload(self) -> bool:
        """Keep the weights on the CPU from now on; render() asks for this when a shot runs out of GPU memory.
        Returns False when they already are, or when it cannot make room: float8 weights stay on the GPU, and
        a model that runs on the CPU has nowhere else to go. Compiled blocks run uncompiled from then on."""
        if (
            self._offload
            or self.runtime.fp8
            or self.device.type == "cpu"
            or self.options.sequence_parallel > 1
        ):
            return False
        self._offload = True
        if self._loaded is not None:
            pipeline = next(iter(self._loaded.pipelines.values()))  # they all share the same modules
            # A text encoder streamed through the GPU keeps its own hooks; offloading places everything else.
            leave = ("text_encoder",) if self._loaded.prompts.streamed else ()
            for module in _weights(pipeline, leave).values():
                module.to("cpu")  # offloading starts from weights on the CPU
            self._loaded.offload = self._place(pipeline, leave)
            self._loaded.prompts.stop_parking()  # the offloading hooks move the text encoder from now on
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

    def prepare_prompts(
        self, prompts: Sequence[PromptRequest], progress: ProgressCallback = ignore_progress
    ) -> None:
        """Load the model and encode every prompt and negative prompt of the shots about to be made, so the text
        encoder stays off the GPU for the rest of the render (prompts.py; with offloading, the hooks keep it off)."""
        if not prompts or self.model is None:
            return  # without a model given up front, each shot encodes its own prompt
        first = prompts[0].shot_id
        with _out_of_memory_reported(first, self.device):
            loaded = self._load(self.model, first, progress)
            texts = [text for p in prompts for text in (p.prompt, p.negative_prompt)]
            fitting = [t for t in dict.fromkeys(texts) if _token_count(loaded, t) <= loaded.max_tokens]
            progress(ProgressEvent(first, "encode", 0, len(fitting), f"encoding {len(fitting)} prompts"))
            loaded.prompts.encode(fitting)  # a prompt too long is refused when its shot is generated
            progress(ProgressEvent(first, "encode", len(fitting), len(fitting)))

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
        with _out_of_memory_reported(shot.id, self.device):
            arguments = self._arguments(request, loaded)
            # The end image's latent frame rides the last window, held clean (quirk 11).
            held = (
                nullcontext()
                if request.end_image is None
                else hold_end_frame(pipeline, request.end_image, len(shot.windows))
            )
        pipeline.scheduler = _scheduler_with_shift(
            pipeline.scheduler, loaded.scheduler_config, shot.settings.shift
        )
        if loaded.offload == "model cpu offload":
            pipeline.enable_model_cpu_offload(device=self.device)  # hooks follow the pipeline about to run

        def on_decoded(done: int, total: int) -> None:
            progress(ProgressEvent(shot.id, "decode", done, total))

        watch = ScheduleWatch(shot, progress)
        hook = pipeline.transformer.register_forward_hook(watch.count_pass)
        # Offloading switched on after the blocks were compiled (out of memory) runs them uncompiled.
        compiled = self.runtime.compile and not self._offload
        graphs = CompiledGraphs.total()
        started = time.perf_counter()
        try:
            with (
                seeded_global_rng(torch, shot.seed, self.device),
                _out_of_memory_reported(shot.id, self.device),
                _uncompiled(torch, self.runtime.compile and not compiled),
            ):
                with held:
                    latents = pipeline(**arguments, callback_on_step_end=watch.step).frames
                watch.check()
                if shot.end_image is not None:
                    # The held end image's latent frame conditions the shot and is not one of its frames: it is
                    # dropped before decoding, as the reference and diffusers drop it.
                    latents = latents[:, :, :-END_IMAGE_LATENT_FRAMES]
                progress(ProgressEvent(shot.id, "decode", 0, latents.shape[2], "decoding latents to frames"))
                # (frames, height, width, 3) uint8
                decoded_frames = decode_frames(pipeline, latents, on_decoded)
            frames = new_frames(decoded_frames, request)
        finally:
            hook.remove()
        return Clip(
            frames=frames,
            dit_passes=watch.passes,
            seconds=time.perf_counter() - started,
            info={
                "pipeline": type(pipeline).__name__,
                "model": model.name,
                "dtype": dtype_name(pipeline.transformer.dtype),
                "vae_dtype": dtype_name(pipeline.vae.dtype),
                "device": str(self.device),
                "offload": loaded.offload,
                "text_encoder": loaded.prompts.placement,
                "attention": kernel_in_use(pipeline.transformer),
                "compile": compiled,
                "precision": self.runtime.precision,
                "compiled_graphs": CompiledGraphs.total() - graphs,  # 0 once compiled: more is recompilation
                **({"sequence_parallel": str(self._split)} if self._split is not None else {}),
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
            with quiet_loading():
                primary = getattr(diffusers, model.class_name).from_pretrained(
                    model.path, dtype=dtypes, local_files_only=True
                )
        except OSError as exc:
            raise ModelNotFound(
                f"model '{model.name}': {model.path} is incomplete or unreadable ({exc}); download it again "
                "(hf download <id>) or point to a complete folder"
            ) from exc
        notes = keep_attention_bidirectional(primary.transformer)
        modulate_per_frame(primary.transformer)
        # The text encoder stays on the CPU and comes to the accelerator only to encode (prompts.py), unless
        # offloading hooks move it, like every other weight.
        park = self.device.type != "cpu" and not self._offload
        # FP8: the transformer comes to the GPU block by block as it is quantised, never whole in bf16.
        leave = (("text_encoder",) if park else ()) + (("transformer",) if self.runtime.fp8 else ())
        offload = self._place(primary, leave)
        # The kernel, float8 layers and compiled blocks, on the weights where they run (offloading runs with
        # neither float8 nor compilation: see runtime).
        notes += apply_runtime(primary.transformer, self.runtime, self.device)
        if self.options.sequence_parallel > 1:
            # After the per-frame forward and the kernel are in place: the split wraps the forward it finds.
            self._split = enable_sequence_parallel(primary.transformer, self.options.sequence_parallel)
        if model.family == DIFFUSION_FORCING:
            # Cls(**components) shares the loaded modules as they are; from_pipe would cast them to float32.
            pipelines = {
                mode: getattr(diffusers, class_name)(**primary.components)
                for mode, class_name in DF_PIPELINE_FOR_MODE.items()
            }
            schedule_windows_by_their_length(pipelines["image"])
        else:
            pipelines = {PLAIN_MODE[model.family]: primary}
        for pipeline in pipelines.values():
            pipeline.set_progress_bar_config(disable=True)
        max_tokens = _max_tokens(primary)
        self._loaded = _Loaded(
            model=model,
            pipelines=pipelines,
            scheduler_config=dict(primary.scheduler.config),
            max_tokens=max_tokens,
            offload=offload,
            notes=notes,
            prompts=PromptEmbeddings(primary, self.device, max_tokens, park),
        )
        seconds = time.perf_counter() - started
        progress(ProgressEvent(shot_id, "load", 1, 1, f"loaded {model.class_name} in {seconds:.1f}s"))
        return self._loaded

    def _place(self, pipeline: Any, leave: tuple[str, ...] = ()) -> str:
        """Put the weights where they run, but for the components named in ``leave``; with ``offload``, keep them
        on the CPU and move them around use."""
        import torch
        from diffusers.hooks import apply_group_offloading

        modules = _weights(pipeline, leave)
        if not self._offload or self.device.type == "cpu":
            for module in modules.values():
                module.to(self.device)
            return "none (the model runs on the CPU)" if self._offload else "none"
        if self.device.type == "cuda":
            # Group offloading hooks live on the modules, so every pipeline sharing them is offloaded; CUDA streams
            # prefetch the next layer while the current one computes.
            for module in modules.values():
                # diffusers' models offload themselves; the others (the text encoder) take the same hooks
                offload = getattr(module, "enable_group_offload", None)
                (offload or functools.partial(apply_group_offloading, module))(
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
        for what, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
            tokens = _token_count(loaded, text)
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
        # Embeddings encoded once per text (prepare_prompts), exactly as the pipeline would encode them; the
        # negative prompt's only when guidance uses it, as in the pipeline.
        guided = settings.guidance_scale > 1.0
        arguments: dict[str, Any] = {
            "prompt": None,  # DF text-to-video has no default for it
            "prompt_embeds": loaded.prompts.on_device(request.prompt),
            "negative_prompt_embeds": loaded.prompts.on_device(request.negative_prompt) if guided else None,
            "height": shot.height,
            "width": shot.width,
            "num_frames": shot.frames,
            "num_inference_steps": settings.steps,
            "guidance_scale": settings.guidance_scale,
            "num_videos_per_prompt": 1,
            # A CPU generator draws the same starting noise on every machine, whatever the device.
            "generator": torch.Generator("cpu").manual_seed(shot.seed),
            "output_type": "latent",  # decoded piece by piece afterwards (decode.py)
            "max_sequence_length": loaded.max_tokens,
        }
        if shot.mode == "image" and request.image is not None:
            arguments["image"] = Image.fromarray(request.image)  # lossless; resized to its own size is a copy
        # An end image is not an argument: diffusers' last_image fails with several windows and exists only in
        # image-to-video, so the generator holds the end frame itself (hold_end_frame, in generate).
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
            # V2V counts the overlap in its num_frames
            arguments["num_frames"] = generated_frames(shot.mode, shot.frames, settings.overlap_history)
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


@contextmanager
def _uncompiled(torch: Any, wanted: bool) -> Iterator[None]:
    """Run compiled modules eagerly while ``wanted``."""
    if not wanted:
        yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


def _weights(pipeline: Any, leave: tuple[str, ...]) -> dict[str, Any]:
    """The pipeline's modules by component name, but for those named in ``leave``."""
    import torch

    return {
        name: module
        for name, module in pipeline.components.items()
        if isinstance(module, torch.nn.Module) and name not in leave
    }


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _scheduler_with_shift(scheduler: Any, config: dict[str, Any], shift: float) -> Any:
    """The model's flow-matching scheduler with the shot's ``shift`` (UniPC calls it flow_shift)."""
    for key in ("flow_shift", "shift"):
        if key in config:
            return type(scheduler).from_config(config, **{key: shift})
    raise GenerationError(f"the model's scheduler {type(scheduler).__name__} has no shift setting")


def _runtime(torch: Any, options: GeneratorOptions, model: ModelFolder | None) -> Runtime:
    """How the options run the transformer on the device they pick (the kernel probed at the model's head width)."""
    device = pick_device(torch, options.device)
    dtype = pick_dtype(torch, options.dtype, device)
    if options.sequence_parallel > 1:  # a shot split over processes: a kernel that runs the split, or why not
        if options.offload:
            raise UserError(
                f"--offload and --gpus-per-shot {options.sequence_parallel} do not go together: a split shot keeps "
                "the weights on each GPU; leave one of them out"
            )
        heads = attention_heads(model) if model is not None else None
        name = model.name if model is not None else str(options.model)
        attention = split_kernel(
            torch, options.attention, device, heads, options.sequence_parallel, head_dim(model), name
        )
        options = replace(options, attention=attention)
    return resolve_runtime(torch, options, device, dtype, head_dim(model))


def _token_count(loaded: _Loaded, text: str) -> int:
    """Tokens ``text`` takes in the text encoder's window, as the pipelines clean and tokenize it."""
    from diffusers.pipelines.skyreels_v2.pipeline_skyreels_v2_diffusion_forcing import prompt_clean

    if not text:
        return 0
    tokenizer = next(iter(loaded.pipelines.values())).tokenizer
    return len(tokenizer(prompt_clean(text), add_special_tokens=True)["input_ids"])


def _max_tokens(pipeline: Any) -> int:
    """The text window: the pipeline's max_sequence_length (512, umT5's), or the tokenizer's if smaller."""
    default = inspect.signature(pipeline.__call__).parameters["max_sequence_length"].default
    return int(min(default, getattr(pipeline.tokenizer, "model_max_length", default)))
