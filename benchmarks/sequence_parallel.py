"""Seconds per denoise step of one shot's transformer split over GPUs (``render --gpus-per-shot N``).

    torchrun --nproc_per_node N benchmarks/sequence_parallel.py [--model DF-1.3B] [--steps 2] [--ring]
    torchrun --nproc_per_node 2 benchmarks/sequence_parallel.py --tiny      # CPU smoke run of the script

Every rank builds the same random-weight SkyReels-V2 transformer (the real DF-1.3B or DF-14B
architecture, bf16 on its own GPU, as benchmarks/skyreels_dit.py builds it) with the per-frame
modulation the generator installs, and times ``--steps`` denoise steps (two passes each, guidance) of a
540P x 97-frame window: first whole on every GPU, then split over the N ranks by
``generators/skyreels/parallel.py`` as a render splits it: Ulysses over the largest part of N that divides
the heads, ring attention over the rest (DF-1.3B's 12 heads on 8 GPUs: Ulysses 4 x ring 2); ``--ring``
makes it all ring. The attention kernel is the one the render would take (``--attention``, default auto: a
kernel that returns the log-sum-exp when there is a ring part), for the whole pass and the split one alike.
Rank 0 prints a row and appends it to ``--out``: s/step whole and split, the speedup, peak memory, and the
largest difference between the split and the whole output (bf16, so not zero).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from skyreels_dit import MODELS, TINY_MODEL, build_transformer, time_steps, window_inputs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="DF-1.3B", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--frames", type=int, default=97)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=544)
    parser.add_argument("--ring", action="store_true", help="ring attention even where Ulysses fits")
    parser.add_argument("--attention", default="auto", help="auto, cudnn, flash, sdpa or sage")
    parser.add_argument("--tiny", action="store_true", help="a toy model on the CPU: checks the script runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    import torch.distributed as dist

    from storyreel.generators.skyreels.attention import choose_kernel, set_kernel
    from storyreel.generators.skyreels.parallel import attention_split, enable_sequence_parallel, split_kernel
    from storyreel.generators.skyreels.quirks import keep_attention_bidirectional, modulate_per_frame

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available() and not args.tiny
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        device, dtype = torch.device("cuda", torch.cuda.current_device()), torch.bfloat16
    else:
        torch.set_num_threads(1)
        device, dtype = torch.device("cpu"), torch.float32
    dist.init_process_group("nccl" if cuda else "gloo")
    spec = TINY_MODEL["tiny"] if args.tiny else MODELS[args.model]
    name = "tiny" if args.tiny else args.model
    width, height, frames = (64, 64, 17) if args.tiny else (args.width, args.height, args.frames)

    torch.manual_seed(0)  # the same weights on every rank
    model = build_transformer(spec, device, dtype)
    keep_attention_bidirectional(model)
    modulate_per_frame(model)
    heads, head_dim = model.config.num_attention_heads, model.config.attention_head_dim
    planned = attention_split(heads, world, ring=args.ring)
    # the kernel a render takes for this split: one head stands for "all ring" when --ring asks for it
    wanted = split_kernel(torch, args.attention, device, 1 if args.ring else heads, world, head_dim, name)
    kernel = choose_kernel(torch, wanted, device, head_dim)
    set_kernel(model, kernel)
    inputs = window_inputs(spec, frames, width, height, device, dtype)
    with torch.no_grad():
        whole = model(**inputs)[0]
    whole_step, whole_peak = time_steps(model, inputs, device, args.steps)

    layout = enable_sequence_parallel(model, world, ring=args.ring)
    assert layout == planned
    with torch.no_grad():
        split = model(**inputs)[0]
    split_step, split_peak = time_steps(model, inputs, device, args.steps)
    difference = (split.float() - whole.float()).abs().max().item()

    if rank == 0:
        row = {
            "model": name,
            "gpus_per_shot": world,
            "attention": str(layout),
            "kernel": kernel.name,
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "frames": frames,
            "width": width,
            "height": height,
            "steps": args.steps,
            "whole_seconds_per_step": round(whole_step, 3),
            "split_seconds_per_step": round(split_step, 3),
            "speedup": round(whole_step / split_step, 2),
            "whole_peak_gib": None if whole_peak is None else round(whole_peak, 2),
            "split_peak_gib": None if split_peak is None else round(split_peak, 2),
            "max_abs_difference": difference,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        print(
            f"{name} x{world} ({layout}, {kernel.name}): {whole_step:.3f} s/step whole, "
            f"{split_step:.3f} s/step split, "
            f"{whole_step / split_step:.2f}x; max |split - whole| {difference:.3g}"
        )
        out = args.out or RESULTS / f"sequence_parallel-{row['device'].replace(' ', '-')}.json"
        rows = json.loads(out.read_text()) if out.exists() else []
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([*rows, row], indent=2) + "\n", encoding="utf-8")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
