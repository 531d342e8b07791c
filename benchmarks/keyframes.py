"""What the keyframe stage costs per shot: drawing a keyframe, by reference count, and reusing one from the cache.

    python benchmarks/keyframes.py                    # tiny random FLUX.2 [klein] on the CPU (the script's own cost)
    python benchmarks/keyframes.py --real-size        # random weights of the released klein 4B, on a CUDA GPU

The tiny mode builds the test-sized pipeline (tests/tiny_flux2.py) and draws keyframes at 320x192 through
the flux2 backend with 0, 1, 2 and 4 reference images (384x384 each), then runs the whole stage
(``storyreel.render_keyframes``) on a three-keyframe storyboard twice: cold (model loaded, every keyframe
drawn) and warm (every keyframe from the cache, no model loaded). Its seconds say what storyreel's own
code around the model costs, not what a real model does.

The real-size mode builds ``Flux2KleinPipeline`` with random weights in bf16 on the GPU: the klein 4B
transformer (5 double and 20 single blocks, 24 heads of 128, text width 7680, 128 latent channels), the
FLUX.2 VAE, and a Qwen3-4B-shaped text encoder (36 layers of width 2560, 32 heads, 8 key/value heads),
and draws 960x544 (540P) keyframes with 0, 1, 2 and 4 reference images of 1024x1024 in 4 steps: seconds
per keyframe (after one warm-up), peak GPU memory, and the memory left allocated after ``close()`` (what
the video model would find taken).

Prints a table and writes JSON under benchmarks/results/ (``keyframes.json``, or
``keyframes-<GPU>.json`` for the real size).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny-model builder lives with the tests
REFERENCE_COUNTS = (0, 1, 2, 4)


def references(folder: Path, side: int, count: int) -> tuple[Path, ...]:
    """``count`` reference pictures of ``side`` x ``side``, each a different flat colour with a stripe."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        picture = np.full((side, side, 3), (40 + 50 * index, 120, 200 - 40 * index), np.uint8)
        picture[side // 3 : side // 2] = 250
        path = folder / f"ref{index}.png"
        Image.fromarray(picture).save(path)
        paths.append(path)
    return tuple(paths)


def time_keyframes(
    drawer: Any, refs: tuple[Path, ...], width: int, height: int, steps: int, repeats: int
) -> list[dict[str, Any]]:
    """Seconds per keyframe (median of ``repeats`` after a warm-up) and peak memory, by reference count."""
    from storyreel.keyframes import KeyframeRequest

    torch = drawer.torch
    cuda = drawer.device.type == "cuda"
    rows = []
    for count in REFERENCE_COUNTS:
        request = KeyframeRequest(
            "bench",
            "an old lighthouse keeper on the rocks at dusk",
            refs[:count],
            width,
            height,
            seed=1,
            steps=steps,
        )
        drawer.make(request)  # warm-up
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            drawer.make(request)
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        seconds.sort()
        rows.append(
            {
                "references": count,
                "size": f"{width}x{height}",
                "steps": steps,
                "s_per_keyframe": round(seconds[len(seconds) // 2], 4),
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            }
        )
    return rows


def tiny(scratch: Path, repeats: int) -> dict[str, Any]:
    import torch
    import yaml
    from tiny_flux2 import build_tiny_flux2

    from storyreel.generators.flux2 import Flux2KleinKeyframes
    from storyreel.keyframes import KeyframeOptions
    from storyreel.rendering import render_keyframes

    torch.set_num_threads(1)
    folder = build_tiny_flux2(scratch / "klein")
    started = time.perf_counter()
    drawer = Flux2KleinKeyframes(KeyframeOptions(model=str(folder), device="cpu"))
    load = time.perf_counter() - started
    refs = references(scratch / "refs", 384, max(REFERENCE_COUNTS))
    rows = time_keyframes(drawer, refs, 320, 192, 4, repeats)
    drawer.close()

    board = {
        "storyreel": 1,
        "title": "Three keyframes",
        "generation": {"resolution": "320x192", "fps": 24},
        "enhancer": {"backend": "template"},
        "characters": {"keeper": {"description": "an old keeper", "reference": [str(p) for p in refs[:2]]}},
        "keyframes": {"model": str(folder), "steps": 4},
        "scenes": [
            {
                "id": f"s{i}",
                "shots": [{"id": f"shot{i}", "prompt": "{{ keeper }} looks at the sea", "duration": "2s"}],
            }
            for i in range(3)
        ],
    }
    story = scratch / "story.yaml"
    story.write_text(yaml.safe_dump(board, sort_keys=False))
    stage = {}
    for run in ("cold", "warm"):
        started = time.perf_counter()
        render_keyframes(story, scratch / run, cache_dir=scratch / "cache", allow_outside=True, device="cpu")
        stage[run] = round(time.perf_counter() - started, 3)
    return {
        "mode": "tiny random FLUX.2 [klein] on the CPU",
        "load_seconds": round(load, 3),
        "keyframes": rows,
        "stage_three_keyframes_seconds": stage,
    }


def real_size(scratch: Path, repeats: int) -> dict[str, Any]:
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from tiny_flux2 import tiny_tokenizer
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from storyreel.generators.flux2 import Flux2KleinKeyframes
    from storyreel.keyframes import KeyframeOptions

    if not torch.cuda.is_available():
        raise SystemExit("--real-size needs a CUDA GPU")
    started = time.perf_counter()
    with torch.device("cuda"):
        torch.manual_seed(0)
        transformer = Flux2Transformer2DModel(
            num_layers=5,
            num_single_layers=20,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=3 * 2560,
            guidance_embeds=False,
        ).to(torch.bfloat16)
        text_encoder = Qwen3ForCausalLM(
            Qwen3Config(
                hidden_size=2560,
                intermediate_size=9728,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
                vocab_size=151936,
                max_position_embeddings=40960,
                tie_word_embeddings=True,
            )
        ).to(torch.bfloat16)
        vae = AutoencoderKLFlux2().to(torch.bfloat16)
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_tokenizer(),  # the real vocabulary's ids are not needed: any ids < 151936 embed
        transformer=transformer.eval(),
        is_distilled=True,
    )
    drawer = Flux2KleinKeyframes.from_pipeline(pipe, KeyframeOptions(device="cuda"))
    build = time.perf_counter() - started
    del pipe, transformer, text_encoder, vae
    weights = torch.cuda.memory_allocated() / 2**30
    refs = references(scratch / "refs", 1024, max(REFERENCE_COUNTS))
    rows = time_keyframes(drawer, refs, 960, 544, 4, repeats)
    drawer.close()
    return {
        "mode": "random weights of FLUX.2 [klein] 4B, bf16",
        "gpu": torch.cuda.get_device_name(),
        "build_seconds": round(build, 1),
        "weights_gib": round(weights, 2),
        "keyframes": rows,
        "allocated_after_close_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-size", action="store_true", help="random weights of the released size (CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="timed keyframes per reference count")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = (
            real_size(Path(scratch), args.repeats) if args.real_size else tiny(Path(scratch), args.repeats)
        )
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version()}

    print(result["mode"])
    print(f"{'references':>10} {'size':>9} {'steps':>5} {'s/keyframe':>11} {'peak GiB':>9}")
    for row in result["keyframes"]:
        peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
        print(
            f"{row['references']:>10} {row['size']:>9} {row['steps']:>5} {row['s_per_keyframe']:>11.4f} {peak:>9}"
        )
    for key, value in result.items():
        if key not in ("keyframes", "mode", "machine"):
            print(f"{key}: {value}")
    name = "keyframes.json"
    if args.real_size:
        name = f"keyframes-{re.sub(r'[^A-Za-z0-9]+', '-', result['gpu']).strip('-')}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / name}")


if __name__ == "__main__":
    main()
