"""SkyReels-V2 on a GPU: the transformer per denoise step for each attention kernel, compilation and
precision, FP8's error against bf16, and one whole shot through storyreel's generator.

Parts (``--parts``, default ``runtime shot``):

* ``runtime``: the real DF-1.3B and DF-14B transformer architectures (SkyReelsV2Transformer3DModel;
  dims, layers, heads and ffn from the model card) with random weights, in bf16 on the GPU, set up the
  way storyreel's generator runs them (the per-frame modulation, the attention kernel, compiled blocks,
  FP8 layers: ``generators/skyreels/runtime.py``). Each config ``KERNEL/eager|compiled/bf16|fp8`` is
  timed per denoise step at 540P x 97 frames: two passes (classifier-free guidance) over 25 latent
  frames of 34x60 tokens (51,000 tokens). Reported: seconds per step, achieved TFLOP/s and the share of
  the GPU's dense bf16 peak (FLOPs from ``storyreel.frames.transformer_flops``), peak GPU memory, the
  graphs compiled while warming up and while timed (recompilation), and for FP8 the relative error of a
  pass against an eager bf16 pass with the same kernel, weights and inputs.
* ``shot``: one shot through ``SkyReelsGenerator`` from a real-size DF folder with random weights
  (umT5-XXL, the Wan VAE, the DF transformer) saved to disk and loaded as a download would be: loading,
  encoding the prompts, every window, decoding. Seconds per second of video and peak GPU memory.
* ``settings``: the DF pipeline's defaults and diffusers' async example against storyreel's, with the
  dense block-causal mask diffusers builds in async mode and without it.

    python benchmarks/skyreels_dit.py                                  # needs CUDA
    python benchmarks/skyreels_dit.py --models DF-14B --configs sdpa/eager/bf16 auto/compiled/fp8
    python benchmarks/skyreels_dit.py --tiny --device cpu              # a seconds-long smoke run of this script

Prints tables and writes JSON under benchmarks/results/ (or --out), named after the GPU, after every row.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from storyreel.errors import OutOfMemory, UserError
from storyreel.frames import TEXT_TOKENS, timestep_rows, transformer_flops
from storyreel.models import ARCHITECTURES
from storyreel.plan import H100_BF16_PEAK_TFLOPS

RESULTS = Path(__file__).resolve().parent / "results"
HEAD_DIM = 128
TEXT_DIM = 4096  # umT5-XXL
# DF-1.3B carries the fps embedding (inject_sample_info); it costs nothing measurable either way.
MODELS = {
    "DF-1.3B": {"arch": ARCHITECTURES["1.3B"], "inject_sample_info": True},
    "DF-14B": {"arch": ARCHITECTURES["14B"], "inject_sample_info": False},
}
TINY_MODEL = {"tiny": {"arch": (24, 2, 32), "inject_sample_info": True, "head_dim": 12, "text_dim": 32}}
# umT5-XXL, the text encoder of every SkyReels-V2 release, and a toy one for --tiny
TEXT_ENCODER = {"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64}
TINY_TEXT_ENCODER = {"d_model": 32, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2}
KERNEL_NAMES = ("flash3", "cudnn", "flash", "sdpa", "sage")
# Dense bf16 peaks (TFLOP/s) by device name, most specific first; --peak-tflops overrides.
PEAKS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


# --- part 1: the transformer per step, per kernel, compilation and precision -----------------------------------


@dataclass(frozen=True)
class Config:
    kernel: str  # a kernel name, or "auto"
    compiled: bool
    precision: str  # "bf16" or "fp8"

    @property
    def name(self) -> str:
        return f"{self.kernel}/{'compiled' if self.compiled else 'eager'}/{self.precision}"


@dataclass
class RuntimeRow:
    model: str
    config: str  # e.g. cudnn/compiled/fp8
    kernel: str  # what ran (auto resolved)
    exact: bool | None
    compiled: bool
    precision: str
    seconds_per_step: float | None = None  # two passes (guidance)
    tflops: float | None = None  # achieved model TFLOP/s
    peak_share: float | None = None  # of the GPU's dense bf16 peak
    peak_gib: float | None = None
    warmup_seconds: float | None = None  # the first pass: compiling included
    graphs_warmup: int | None = None
    graphs_timed: int | None = None  # graphs compiled while timed: recompilation
    fp8_error: float | None = None  # relative L2 error of the pass against bf16
    fp8_error_against: str | None = None
    tflop_per_step: float = 0.0
    error: str | None = None


def expand_configs(patterns: list[str], tiny: bool) -> list[Config]:
    """Configs in the order asked, each once. A pattern is KERNEL/COMPILE/PRECISION where each part may be
    ``*`` (KERNEL: auto or a name; COMPILE: eager or compiled; PRECISION: bf16 or fp8); ``all`` is ``*/*/*``,
    bf16 before FP8. With --tiny, ``all`` is every kernel eager in bf16, and FP8's refusal: no compiling."""
    if tiny and patterns == ["all"]:
        return [Config(k, False, "bf16") for k in KERNEL_NAMES] + [Config("sdpa", False, "fp8")]
    configs: list[Config] = []
    for pattern in patterns:
        match = re.fullmatch(
            r"(\w+|\*)/(eager|compiled|\*)/(bf16|fp8|\*)", "*/*/*" if pattern == "all" else pattern
        )
        if match is None:
            raise SystemExit(
                f"config '{pattern}' is not KERNEL/eager|compiled/bf16|fp8 (parts may be *), or all"
            )
        kernels = KERNEL_NAMES if match[1] == "*" else (match[1],)
        compiled = (False, True) if match[2] == "*" else (match[2] == "compiled",)
        precisions = ("bf16", "fp8") if match[3] == "*" else (match[3],)
        for precision, kernel, compile_ in itertools.product(precisions, kernels, compiled):
            if Config(kernel, compile_, precision) not in configs:
                configs.append(Config(kernel, compile_, precision))
    return configs


def runtime_benchmark(args: argparse.Namespace, result: Result) -> None:
    import torch

    from storyreel.generators.skyreels.attention import choose_kernel

    device = torch.device(args.device)
    models = TINY_MODEL if args.tiny else {name: MODELS[name] for name in args.models}
    for name, spec in models.items():
        head_dim = spec.get("head_dim", HEAD_DIM)
        auto = choose_kernel(torch, "auto", device, head_dim).name
        result.data.setdefault("auto_kernel", {})[name] = auto
        # "auto" named a kernel already on the list: each (kernel, compilation, precision) runs once
        configs: list[Config] = []
        for config in expand_configs(args.configs, args.tiny):
            resolved = Config(
                auto if config.kernel == "auto" else config.kernel, config.compiled, config.precision
            )
            if resolved not in configs:
                configs.append(resolved)
        ModelRuns(args, result, name, spec, device, configs).run()
        if device.type == "cuda":
            torch.cuda.empty_cache()


class ModelRuns:
    """One model's configs, in order, on one set of random weights (seeded: rebuilt identical when a bf16
    config follows FP8's in-place quantisation). FP8's error is measured against eager bf16 passes of the same
    kernels, made before the weights are quantised."""

    def __init__(
        self, args: Any, result: Result, name: str, spec: dict[str, Any], device: Any, configs: list[Config]
    ):
        import torch

        self.args, self.result, self.name, self.spec, self.device, self.configs = (
            args,
            result,
            name,
            spec,
            device,
            configs,
        )
        self.dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
        self.head_dim = spec.get("head_dim", HEAD_DIM)
        latent_frames = (args.frames - 1) // 4 + 1
        self.flop_per_step = 2 * transformer_flops(spec["arch"], latent_frames, args.width, args.height)
        self.inputs = window_inputs(spec, args.frames, args.width, args.height, device, self.dtype)
        self.model: Any = None
        self.quantised = self.compiled = False
        self.references: dict[str, Any] = {}  # kernel -> eager bf16 output

    def fresh_model(self) -> None:
        import torch

        from storyreel.generators.skyreels.quirks import modulate_per_frame

        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        torch.manual_seed(0)
        self.model = build_transformer(self.spec, self.device, self.dtype)
        modulate_per_frame(self.model)  # as the generator runs it
        self.quantised = self.compiled = False

    def runtime(self, config: Config) -> Any:
        """storyreel's own resolution of the config on this device: a UserError says why it cannot run."""
        import torch

        from storyreel.generators.skyreels.runtime import resolve_runtime

        options = SimpleNamespace(
            attention=config.kernel,
            compile="true" if config.compiled else "false",
            precision=config.precision,
            offload=False,
        )
        return resolve_runtime(torch, options, self.device, self.dtype, self.head_dim)

    def run(self) -> None:
        from storyreel.generators.skyreels.attention import KERNELS

        for config in self.configs:
            kernel = KERNELS.get(config.kernel)
            row = RuntimeRow(
                self.name,
                config.name,
                config.kernel,
                kernel.exact if kernel else None,
                config.compiled,
                config.precision,
                tflop_per_step=self.flop_per_step / 1e12,
            )
            self.result.add("runtime", row)
            if self.result.over_budget():
                row.error = "skipped: out of the time budget (--budget-s)"
            else:
                try:
                    self.measure(config, row)
                except UserError as exc:
                    row.error = f"not available: {exc}"
            self.result.write()
        self.model = self.references = None  # type: ignore[assignment]

    def measure(self, config: Config, row: RuntimeRow) -> None:
        import torch

        from storyreel.generators.skyreels.attention import set_kernel
        from storyreel.generators.skyreels.runtime import CompiledGraphs, quantise_fp8

        runtime = self.runtime(config)
        try:
            if self.model is None or (self.quantised and not runtime.fp8):
                self.fresh_model()
            if runtime.fp8 and not self.quantised:
                self.reference_passes()
                quantise_fp8(self.model)
                self.quantised = True
            set_kernel(self.model, runtime.kernel)
            if config.compiled:
                if not self.compiled:
                    self.model.compile_repeated_blocks()
                    self.compiled = True
                torch._dynamo.reset()  # every compiled config compiles from nothing: warmup_seconds shows it
            with torch.compiler.set_stance("default" if config.compiled else "force_eager"):
                graphs = CompiledGraphs.total()
                started = time.perf_counter()
                output = one_pass(self.model, self.inputs, self.device)
                row.warmup_seconds = round(time.perf_counter() - started, 2)
                row.graphs_warmup = CompiledGraphs.total() - graphs
                graphs = CompiledGraphs.total()
                seconds, peak = time_steps(self.model, self.inputs, self.device, self.args.steps)
                row.graphs_timed = CompiledGraphs.total() - graphs
        except torch.OutOfMemoryError:
            row.error = "out of memory"
            return
        except UserError:
            raise
        except Exception as exc:  # a kernel or library failing: the row says so, the other configs still run
            text = str(exc).strip()
            row.error = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            return
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        row.seconds_per_step = round(seconds, 4)
        row.peak_gib = None if peak is None else round(peak, 2)
        if self.device.type == "cuda":
            row.tflops = round(self.flop_per_step / seconds / 1e12, 1)
            row.peak_share = round(row.tflops / self.result.peak_tflops, 3)
        if runtime.fp8 and config.kernel in self.references:
            reference = self.references[config.kernel].float()
            row.fp8_error = round(float((output.float() - reference).norm() / reference.norm()), 5)
            row.fp8_error_against = f"{config.kernel}/eager/bf16"

    def reference_passes(self) -> None:
        """Before quantising: an eager bf16 pass with each kernel an FP8 config of this model will use."""
        import torch

        from storyreel.generators.skyreels.attention import set_kernel

        for config in self.configs:
            if config.precision != "fp8" or config.kernel in self.references:
                continue
            try:
                runtime = self.runtime(config)
            except UserError:
                continue
            set_kernel(self.model, runtime.kernel)
            with torch.compiler.set_stance("force_eager"):
                self.references[config.kernel] = one_pass(self.model, self.inputs, self.device)


def one_pass(model: Any, inputs: dict[str, Any], device: Any) -> Any:
    import torch

    with torch.no_grad():
        output = model(**inputs)[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return output


def time_steps(model: Any, inputs: dict[str, Any], device: Any, steps: int) -> tuple[float, float | None]:
    """(seconds per denoise step, peak GiB): a step is a conditional and an unconditional pass."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            model(**inputs)
            model(**inputs)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return seconds, peak


def transformer_config(spec: dict[str, Any]) -> dict[str, Any]:
    """SkyReelsV2Transformer3DModel arguments of the diffusers-format SkyReels-V2 DF releases."""
    dim, layers, ffn = spec["arch"]
    head_dim = spec.get("head_dim", HEAD_DIM)
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": dim // head_dim,
        "attention_head_dim": head_dim,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": spec.get("text_dim", TEXT_DIM),
        "freq_dim": 256,
        "ffn_dim": ffn,
        "num_layers": layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024,
        "inject_sample_info": spec["inject_sample_info"],
    }


def build_transformer(spec: dict[str, Any], device: Any, dtype: Any) -> Any:
    """Random weights, created directly in ``dtype`` on ``device`` (a 14B model never exists in fp32).

    The modules diffusers keeps in float32 when it loads real weights are cast back to float32, so the
    timing matches a from_pretrained model.
    """
    from diffusers import SkyReelsV2Transformer3DModel

    model = _built_in(dtype, device, lambda: SkyReelsV2Transformer3DModel(**transformer_config(spec)))
    keep = model._keep_in_fp32_modules or []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if any(part in keep for part in name.split(".")):
            tensor.data = tensor.data.float()
    return model.eval().requires_grad_(False)


def _built_in(dtype: Any, device: Any, build: Any) -> Any:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return build()
    finally:
        torch.set_default_dtype(previous)


def window_inputs(
    spec: dict[str, Any], frames: int, width: int, height: int, device: Any, dtype: Any
) -> dict[str, Any]:
    import torch

    latent_frames = (frames - 1) // 4 + 1
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(1, 16, latent_frames, height // 8, width // 8, generator=generator)
    text = torch.randn(1, TEXT_TOKENS, spec.get("text_dim", TEXT_DIM), generator=generator)
    # a diffusion-forcing row midway: the first frames nearly clean, the last ones pure noise
    timestep = torch.linspace(0, 999, latent_frames).round().long().unsqueeze(0)
    return {
        "hidden_states": latents.to(device, dtype),  # (1, 16, latent frames, h/8, w/8)
        "timestep": timestep.to(device),  # (1, latent frames): one timestep per latent frame
        "encoder_hidden_states": text.to(device, dtype),  # (1, 512, text dim)
        "enable_diffusion_forcing": True,
        "fps": [1] if spec["inject_sample_info"] else None,
        "return_dict": False,
    }


# --- part 2: one whole shot through the generator ---------------------------------------------------------------


@dataclass
class ShotRow:
    model: str
    frames: int
    width: int
    height: int
    fps: int
    steps: int
    windows: int
    video_seconds: float
    budget_gib: float | None = None  # GPU memory the run was held to (a GPU of that size, emulated)
    attention: str | None = None
    compile: bool | None = None
    precision: str | None = None
    build_seconds: float | None = None  # making and saving the random-weight folder (not storyreel's cost)
    load_seconds: float | None = None
    encode_seconds: float | None = None  # every prompt of the render, then the text encoder off the GPU
    denoise_seconds: float | None = None  # every window (the first compiled pass compiles)
    decode_seconds: float | None = None
    compiled_graphs: int | None = None  # in the first window (the first compiled pass compiles)
    recompiles: int | None = None  # graphs compiled in the later window, of another length: 0 is right
    seconds_per_video_second: float | None = None  # (encode + denoise + decode) / video seconds
    peak_gib: float | None = None  # loading and encoding included
    peak_shot_gib: float | None = None  # from the first window on: the text encoder is off the GPU by then
    text_encoder: str | None = None  # how it came to the GPU to encode: whole, or streamed (layer by layer)
    error: str | None = None


def shot_benchmark(args: argparse.Namespace, result: Result) -> None:
    """One shot from a real-size random-weight folder, built once: within ``--shot-budget-gib`` of GPU memory
    first when one is given (the GPU the budget names, emulated), and once more without a limit if that runs
    out of memory (so the speed is still measured)."""
    import torch

    from storyreel.plan import plan_film
    from storyreel.storyboard import Storyboard

    device = torch.device(args.device)
    name, spec = next(iter(TINY_MODEL.items())) if args.tiny else (args.shot_model, MODELS[args.shot_model])
    text_spec = TINY_TEXT_ENCODER if args.tiny else TEXT_ENCODER
    generation = {
        "resolution": f"{args.width}x{args.height}",
        "fps": 24,
        "steps": args.shot_steps,
        "base_num_frames": args.frames,
        "overlap_history": args.shot_overlap,
    }
    board = Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": generation,
            "scenes": [
                {"id": "lake", "shots": [{"id": "glide", "prompt": PROMPT, "frames": args.shot_frames}]}
            ],
        }
    )
    shot = plan_film(board).shot("glide")
    budgets = [args.shot_budget_gib, None] if args.shot_budget_gib and device.type == "cuda" else [None]
    with tempfile.TemporaryDirectory(prefix="skyreels-shot-", dir=args.scratch) as scratch:
        folder: Path | None = None
        for budget in budgets:
            row = ShotRow(
                name,
                shot.frames,
                shot.width,
                shot.height,
                shot.fps,
                args.shot_steps,
                len(shot.windows),
                shot.frames / shot.fps,
                budget_gib=budget,
            )
            result.add("shot", row)
            if result.over_budget():
                row.error = "skipped: out of the time budget (--budget-s)"
                return
            if folder is None:
                started = time.perf_counter()
                folder = save_pipeline_folder(spec, text_spec, Path(scratch) / "model", device)
                row.build_seconds = round(time.perf_counter() - started, 1)
            if run_shot(args, row, shot, folder, device):
                return  # made: no need of a run without the limit
            result.write()


def run_shot(args: argparse.Namespace, row: ShotRow, shot: Any, folder: Path, device: Any) -> bool:
    """Make the shot through the generator, within ``row.budget_gib`` of GPU memory if set; False if it ran out."""
    import torch

    from storyreel.generate import GeneratorOptions, PromptRequest, ShotRequest
    from storyreel.generators.skyreels import SkyReelsGenerator
    from storyreel.generators.skyreels.runtime import CompiledGraphs

    marks: dict[tuple[str, str], float] = {}
    first_window_rows = shot.windows[0].denoise_steps
    graphs: dict[str, int] = {}

    def progress(event: Any) -> None:
        at = "start" if event.completed == 0 else "end" if event.completed == event.total else ""
        if at:
            marks.setdefault((event.stage, at), time.perf_counter())
        if event.stage == "denoise":
            marks[("denoise", "last")] = time.perf_counter()
            if event.completed == first_window_rows:
                graphs["first window"] = CompiledGraphs.total()

    options = GeneratorOptions(
        model=str(folder), device=args.device, attention=args.shot_attention, compile=args.shot_compile
    )
    cuda = device.type == "cuda"
    index = (torch.cuda.current_device() if device.index is None else device.index) if cuda else None
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        if row.budget_gib:  # the allocator refuses beyond it, as a GPU of that size would
            total = torch.cuda.get_device_properties(index).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, row.budget_gib * 2**30 / total), index)
    try:
        with SkyReelsGenerator(options) as generator:
            prompts = [PromptRequest("glide", PROMPT, shot.settings.negative_prompt)]
            generator.prepare_prompts(prompts, progress)
            encoded = time.perf_counter()
            if cuda:
                row.peak_gib = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                torch.cuda.reset_peak_memory_stats(device)
            graphs["start"] = CompiledGraphs.total()
            clip = generator.generate(ShotRequest(shot, PROMPT, shot.settings.negative_prompt), progress)
            graphs["end"] = CompiledGraphs.total()
        if cuda:
            row.peak_shot_gib = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            row.peak_gib = max(row.peak_gib or 0.0, row.peak_shot_gib)
    except (torch.OutOfMemoryError, OutOfMemory):
        row.error = "out of memory" + (f" within {row.budget_gib:g} GiB" if row.budget_gib else "")
        return False
    finally:
        if cuda:
            torch.cuda.set_per_process_memory_fraction(1.0, index)
            torch.cuda.empty_cache()
    row.load_seconds = round(marks[("load", "end")] - marks[("load", "start")], 2)
    row.encode_seconds = round(encoded - marks[("load", "end")], 2)
    row.denoise_seconds = round(marks[("denoise", "last")] - encoded, 2)
    row.decode_seconds = round(marks[("decode", "end")] - marks[("denoise", "last")], 2)
    working = row.encode_seconds + row.denoise_seconds + row.decode_seconds
    row.seconds_per_video_second = round(working / row.video_seconds, 2)
    row.attention, row.compile = clip.info["attention"], clip.info["compile"]
    row.precision = clip.info["precision"]
    row.compiled_graphs = graphs["first window"] - graphs["start"]
    row.recompiles = graphs["end"] - graphs["first window"]
    # "on cuda while encoding, ...", "streamed through cuda ...", "cpu": whole, streamed, cpu
    placement = clip.info["text_encoder"]
    row.text_encoder = "whole" if placement.startswith("on ") else placement.split()[0]
    return True


PROMPT = (
    "A wide shot of a white swan gliding across a misty lake at dawn, its reflection trembling on the still "
    "water; golden light breaks through the reeds as the camera slowly tracks alongside, soft warm colours, "
    "cinematic depth of field."
)


def save_pipeline_folder(spec: dict[str, Any], text_spec: dict[str, int], folder: Path, device: Any) -> Path:
    """A SkyReels-V2 DF diffusers folder with random weights at ``spec``'s size (weights made on ``device``)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        SkyReelsV2DiffusionForcingPipeline,
        UniPCMultistepScheduler,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    tokenizer = word_tokenizer()
    text_encoder = _built_in(
        dtype,
        device,
        lambda: UMT5EncoderModel(
            UMT5Config(
                vocab_size=256384 if text_spec is TEXT_ENCODER else len(tokenizer),
                feed_forward_proj="gated-gelu",
                relative_attention_num_buckets=32,
                relative_attention_max_distance=128,
                dropout_rate=0.0,
                **text_spec,
            )
        ),
    ).eval()
    transformer = build_transformer({**spec, "text_dim": text_spec["d_model"]}, device, dtype)
    tiny_vae = (
        {"base_dim": 3, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
        if text_spec is not TEXT_ENCODER
        else {}
    )
    vae = _built_in(torch.float32, device, lambda: AutoencoderKLWan(**tiny_vae)).eval()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0
    )
    pipeline = SkyReelsV2DiffusionForcingPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler
    )
    pipeline.save_pretrained(folder)
    del pipeline, text_encoder, transformer, vae
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def word_tokenizer() -> Any:
    """A T5-style word-level tokenizer made offline (umT5's own cannot be downloaded): one token per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+", PROMPT.lower())))
    vocab = {token: index for index, token in enumerate(["<pad>", "</s>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )


# --- part 3: diffusers' settings against storyreel's -----------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    steps: int
    ar_step: int
    causal_block_size: int
    causal_mask: bool  # whether the transformer applies the block-causal mask


SETTINGS = (
    Setting("diffusers defaults", steps=50, ar_step=0, causal_block_size=1, causal_mask=False),
    Setting("diffusers async", steps=30, ar_step=5, causal_block_size=5, causal_mask=True),
    Setting("storyreel", steps=30, ar_step=0, causal_block_size=1, causal_mask=False),
    Setting("storyreel async", steps=30, ar_step=5, causal_block_size=5, causal_mask=False),
)


@dataclass
class SettingsRow:
    model: str
    settings: str
    steps: int
    ar_step: int
    causal_block_size: int
    causal_mask: bool
    rows_per_window: int  # transformer-call rows (denoise steps) of one window at these settings
    seconds_per_step: float | None  # one row: two passes (guidance)
    seconds_per_window: float | None
    peak_gib: float | None
    tflop_per_step: float
    mfu: float | None
    error: str | None = None


def settings_benchmark(args: argparse.Namespace, result: Result) -> None:
    """The sync and async rows of one attention mode run the same kernels per step, so each model is timed once
    with diffusers' mask and once without; the rows differ in how many steps a window takes."""
    import torch

    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    models = TINY_MODEL if args.tiny else {name: MODELS[name] for name in args.models}
    latent_frames = (args.frames - 1) // 4 + 1
    for name, spec in models.items():
        flop_per_step = 2 * transformer_flops(spec["arch"], latent_frames, args.width, args.height)
        model = build_transformer(spec, device, dtype)  # diffusers' own forward: the mask is its
        inputs = window_inputs(spec, args.frames, args.width, args.height, device, dtype)
        measured: dict[bool, tuple[float | None, float | None, str | None]] = {}
        for mask in (False, True):
            # What diffusers' pipeline does to the transformer when given causal_block_size 5.
            model.register_to_config(num_frame_per_block=5 if mask else 1)
            try:
                one_pass(model, inputs, device)
                seconds, peak = time_steps(model, inputs, device, args.steps)
                measured[mask] = (seconds, peak, None)
            except torch.OutOfMemoryError:
                measured[mask] = (None, None, "out of memory")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for setting in SETTINGS:
            seconds, peak, error = measured[setting.causal_mask]
            blocks = latent_frames // setting.causal_block_size
            window_rows = timestep_rows(blocks, 0, setting.steps, setting.ar_step)
            mfu = None
            if seconds is not None and device.type == "cuda":
                mfu = round(flop_per_step / seconds / (result.peak_tflops * 1e12), 3)
            result.add(
                "settings",
                SettingsRow(
                    model=name,
                    settings=setting.name,
                    steps=setting.steps,
                    ar_step=setting.ar_step,
                    causal_block_size=setting.causal_block_size,
                    causal_mask=setting.causal_mask,
                    rows_per_window=window_rows,
                    seconds_per_step=None if seconds is None else round(seconds, 4),
                    seconds_per_window=None if seconds is None else round(seconds * window_rows, 2),
                    peak_gib=None if peak is None else round(peak, 2),
                    tflop_per_step=flop_per_step / 1e12,
                    mfu=mfu,
                    error=error,
                ),
            )
        result.write()
        del model, inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --- results: JSON after every row, tables at the end -----------------------------------------------------------


@dataclass
class Result:
    path: Path
    data: dict[str, Any]
    budget_s: float | None
    started: float = field(default_factory=time.perf_counter)
    rows: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def peak_tflops(self) -> float:
        return float(self.data["peak_tflops"])

    def add(self, part: str, row: Any) -> None:
        self.rows.setdefault(part, []).append(row)

    def over_budget(self) -> bool:
        return self.budget_s is not None and time.perf_counter() - self.started > self.budget_s

    def write(self) -> None:
        """The whole result so far, replaced atomically: a run stopped at any point leaves valid JSON."""
        document = {**self.data, **{part: [asdict(row) for row in rows] for part, rows in self.rows.items()}}
        scratch = self.path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(scratch, self.path)


def table(rows: list[Any], columns: dict[str, str]) -> str:
    """``rows`` as an aligned text table of ``columns`` (attribute -> header), and an error column if any."""
    errors = any(getattr(row, "error", None) for row in rows)
    lines = [[*columns.values(), *(["error"] if errors else [])]]
    for row in rows:
        cells = []
        for attribute in columns:
            value = getattr(row, attribute)
            cells.append("" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append([*cells, *([row.error or ""] if errors else [])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    widths[-1] = 0  # the last column is not padded
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


RUNTIME_COLUMNS = {
    "model": "model",
    "config": "config",
    "kernel": "kernel",
    "seconds_per_step": "s/step",
    "tflops": "TFLOP/s",
    "peak_share": "of peak",
    "peak_gib": "peak GiB",
    "warmup_seconds": "warmup s",
    "graphs_warmup": "graphs",
    "graphs_timed": "recompiles",
    "fp8_error": "fp8 error",
}
SHOT_COLUMNS = {
    "model": "model",
    "frames": "frames",
    "windows": "windows",
    "steps": "steps",
    "budget_gib": "GiB limit",
    "attention": "attention",
    "compile": "compiled",
    "text_encoder": "text encoder",
    "compiled_graphs": "graphs",
    "recompiles": "recompiles",
    "load_seconds": "load s",
    "encode_seconds": "encode s",
    "denoise_seconds": "denoise s",
    "decode_seconds": "decode s",
    "seconds_per_video_second": "s per s of video",
    "peak_gib": "peak GiB",
    "peak_shot_gib": "peak GiB, windows",
}
SETTINGS_COLUMNS = {
    "model": "model",
    "settings": "settings",
    "causal_mask": "mask",
    "rows_per_window": "rows",
    "seconds_per_step": "s/step",
    "seconds_per_window": "s/window",
    "peak_gib": "peak GiB",
    "tflop_per_step": "TFLOP/step",
    "mfu": "MFU",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--parts", nargs="+", choices=("runtime", "shot", "settings"), default=["runtime", "shot"]
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["all"],
        help="KERNEL/eager|compiled/bf16|fp8 in the order to run (KERNEL: auto, "
        + ", ".join(KERNEL_NAMES)
        + "; any part may be *), or all (*/*/*)",
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N; cpu only with --tiny")
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=544)
    parser.add_argument("--frames", type=int, default=97, help="frames in the window (4k+1)")
    parser.add_argument("--steps", type=int, default=2, help="timed denoise steps per config, after one pass")
    parser.add_argument("--shot-model", choices=sorted(MODELS), default="DF-1.3B")
    parser.add_argument(
        "--shot-frames", type=int, default=157, help="the whole shot's frames [two windows: 97 and 77 frames]"
    )
    parser.add_argument("--shot-steps", type=int, default=30, help="denoise steps of the whole shot")
    parser.add_argument("--shot-overlap", type=int, default=17, help="overlap_history of the whole shot")
    parser.add_argument("--shot-attention", default="auto")
    parser.add_argument("--shot-compile", default="auto")
    parser.add_argument(
        "--shot-budget-gib",
        type=float,
        default=None,
        help="hold the shot to this much GPU memory (8: DF-1.3B's target GPU), then run it without if it ran out",
    )
    parser.add_argument(
        "--scratch", type=Path, default=None, help="folder for the random-weight model folder"
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="skip what starts after this many seconds"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak [by its name]"
    )
    parser.add_argument("--tiny", action="store_true", help="toy models at 64x64, 17 frames: a smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    if args.tiny:
        args.width, args.height, args.frames, args.steps = 64, 64, 17, 1
        args.shot_frames, args.shot_steps, args.shot_overlap = 25, 2, 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import diffusers
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "skyreels_dit.py needs a CUDA GPU and torch sees none; for a quick check of the script itself "
            "on the CPU: --tiny --device cpu",
            file=sys.stderr,
        )
        return 1
    if device.type != "cuda" and not args.tiny:
        print(
            f"the full-size models on {device.type} would take hours; add --tiny for a smoke run",
            file=sys.stderr,
        )
        return 1
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = args.peak_tflops or next((p for name, p in PEAKS if gpu and name in gpu), H100_BF16_PEAK_TFLOPS)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu or f"tiny-{device.type}").strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    result = Result(
        path=args.out / f"skyreels_dit-{slug}-{stamp}.json",
        data={
            "benchmark": "skyreels_dit",
            "created": stamp,
            "device": gpu or platform.processor() or device.type,
            "capability": list(torch.cuda.get_device_capability(device)) if gpu else None,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "torchao": _version("torchao"),
            "window": {"width": args.width, "height": args.height, "frames": args.frames},
            "peak_tflops": peak,
            "parts": args.parts,
        },
        budget_s=args.budget_s,
    )
    for part, run, columns in (
        ("runtime", runtime_benchmark, RUNTIME_COLUMNS),
        ("shot", shot_benchmark, SHOT_COLUMNS),
        ("settings", settings_benchmark, SETTINGS_COLUMNS),
    ):
        if part in args.parts:
            run(args, result)
            result.write()
            print(f"\n{part}\n" + table(result.rows.get(part, []), columns), flush=True)
    print(f"wrote {result.path}")
    return 0


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
