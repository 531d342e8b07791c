"""Seconds per denoise step, peak GPU memory and MFU of the SkyReels-V2 DF transformers at 540P, 97 frames.

Builds the real DF-1.3B and DF-14B transformer architectures (SkyReelsV2Transformer3DModel; dims,
layers, heads and ffn from the model card) with random weights, in bf16 on the GPU, and times one
denoise step: two transformer passes (classifier-free guidance) over a 97-frame window, 25 latent
frames of 34x60 tokens (51,000 tokens). Side by side:

* ``diffusers defaults``: the DF pipeline's own defaults (50 steps, synchronous);
* ``diffusers async``: diffusers' DF example (30 steps, ar_step 5, causal_block_size 5). The pipeline
  writes the block size into the transformer, which then builds and applies a dense block-causal
  mask (tokens x tokens) on every pass;
* ``storyreel``: storyreel's defaults (30 steps, synchronous);
* ``storyreel async``: the same async settings as diffusers' example, with attention kept
  bidirectional as storyreel's generator runs it (and as the released models were trained).

The sync and async rows of one attention mode run the same kernels per step, so each model is
timed once with the mask and once without; the rows differ in how many steps a window takes
(steps + (blocks - 1) * ar_step). FLOPs per pass come from storyreel.frames.transformer_flops (model
FLOPs: the mask's extra work is not counted as useful), MFU against --peak-tflops.

    python benchmarks/skyreels_dit.py                        # DF-1.3B and DF-14B, needs CUDA
    python benchmarks/skyreels_dit.py --models DF-1.3B --steps 5
    python benchmarks/skyreels_dit.py --tiny --device cpu     # a seconds-long smoke run of this script

Prints a table and writes JSON under benchmarks/results/ (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
class Row:
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
    import torch
    from diffusers import SkyReelsV2Transformer3DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = SkyReelsV2Transformer3DModel(**transformer_config(spec))
    finally:
        torch.set_default_dtype(previous)
    keep = model._keep_in_fp32_modules or []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if any(part in keep for part in name.split(".")):
            tensor.data = tensor.data.float()
    return model.eval().requires_grad_(False)


def time_steps(
    model: Any, inputs: dict[str, Any], device: Any, warmup: int, steps: int
) -> tuple[float, float | None]:
    """(seconds per denoise step, peak GiB): a step is a conditional and an unconditional pass."""
    import torch

    cuda = device.type == "cuda"

    def step() -> None:
        with torch.no_grad():
            model(**inputs)
            model(**inputs)

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return seconds, peak


def window_inputs(
    spec: dict[str, Any], frames: int, width: int, height: int, device: Any, dtype: Any
) -> dict:
    import torch

    latent_frames = (frames - 1) // 4 + 1
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(1, 16, latent_frames, height // 8, width // 8, generator=generator)
    text = torch.randn(1, TEXT_TOKENS, spec.get("text_dim", TEXT_DIM), generator=generator)
    return {
        "hidden_states": latents.to(device, dtype),  # (1, 16, latent frames, h/8, w/8)
        "timestep": torch.full((1, latent_frames), 999, device=device),  # one timestep per latent frame
        "encoder_hidden_states": text.to(device, dtype),  # (1, 512, text dim)
        "enable_diffusion_forcing": True,
        "fps": [1] if spec["inject_sample_info"] else None,
        "return_dict": False,
    }


def benchmark(args: argparse.Namespace) -> list[Row]:
    import torch

    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    models = TINY_MODEL if args.tiny else {name: MODELS[name] for name in args.models}
    latent_frames = (args.frames - 1) // 4 + 1
    rows: list[Row] = []
    for name, spec in models.items():
        flop_per_step = 2 * transformer_flops(spec["arch"], latent_frames, args.width, args.height)
        model = build_transformer(spec, device, dtype)
        inputs = window_inputs(spec, args.frames, args.width, args.height, device, dtype)
        measured: dict[bool, tuple[float | None, float | None, str | None]] = {}
        for mask in (False, True):
            # What diffusers' pipeline does to the transformer when given causal_block_size 5.
            model.register_to_config(num_frame_per_block=5 if mask else 1)
            try:
                seconds, peak = time_steps(model, inputs, device, args.warmup, args.steps)
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
                mfu = round(flop_per_step / seconds / (args.peak_tflops * 1e12), 3)
            rows.append(
                Row(
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
                )
            )
        del model, inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def table(rows: list[Row]) -> str:
    header = ("model", "settings", "mask", "rows", "s/step", "s/window", "peak GiB", "TFLOP/step", "MFU")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.model,
                r.settings,
                "yes" if r.causal_mask else "no",
                str(r.rows_per_window),
                r.error or f"{r.seconds_per_step:.4f}",
                "" if r.seconds_per_window is None else f"{r.seconds_per_window:.2f}",
                "" if r.peak_gib is None else f"{r.peak_gib:.2f}",
                f"{r.tflop_per_step:.6g}",
                "" if r.mfu is None else f"{r.mfu:.1%}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N; cpu only with --tiny")
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=544)
    parser.add_argument("--frames", type=int, default=97, help="frames in the window (4k+1)")
    parser.add_argument("--steps", type=int, default=3, help="timed denoise steps per attention mode")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_BF16_PEAK_TFLOPS,
        help="the GPU's dense bf16 peak, for MFU [H100 SXM: 989]",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a toy transformer at 64x64, 17 frames: a smoke test"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    if args.tiny:
        args.width, args.height, args.frames, args.steps, args.warmup = 64, 64, 17, 1, 0
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
    rows = benchmark(args)
    print(table(rows))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"skyreels_dit-{'tiny-' if args.tiny else ''}{stamp}.json"
    result = {
        "benchmark": "skyreels_dit",
        "created": stamp,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "window": {"width": args.width, "height": args.height, "frames": args.frames},
        "peak_tflops": args.peak_tflops,
        "rows": [asdict(row) for row in rows],
    }
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
