"""How far a 12-shot chain's colour drifts, with generation.color_match off and on.

    python benchmarks/drift.py                 # 12 shots of 33 frames at 128x128
    python benchmarks/drift.py --shots 24 --size 256

A stand-in for a model that continues a shot from its last frames (no model runs here): every shot
shows the same slowly panning, textured scene; the "model" reads the colour grade off its parent's
tail (a per-channel gain and offset fitted against the clean scene, as a model copies the look it
is conditioned on), then makes the next shot with that grade plus a known error: a jump at the seam
(warmer, a little flatter) and a smaller creep over the shot. With colour matching off the errors add
up along the chain; with it on, each continuation is matched to its parent's tail
(:func:`storyreel.color_match.match_colour`) before the next one reads it. The drift from the chain's
first shot is measured by :mod:`storyreel.qa` exactly as a render measures it; the seams too. Prints a
table and writes benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from storyreel.color_match import match_colour
from storyreel.qa import THRESHOLDS, chain_drift, seam_check, shot_sample

RESULTS = Path(__file__).resolve().parent / "results" / "drift.json"
JUMP = np.array([5.0, 1.0, -4.0])  # RGB offset added at each seam (grey levels): warmer
JUMP_GAIN = 0.97  # contrast kept at each seam
CREEP = np.array([1.5, 0.0, -1.5])  # further offset over the length of a shot


def clean_scene(start: int, count: int, size: int) -> np.ndarray:
    """The ungraded scene, panning one pixel a frame: (count, size, size, 3) floats around mid grey."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = []
    for t in range(start, start + count):
        u = x + t
        frames.append(
            np.stack(
                [
                    128 + 60 * np.sin(u / 9.0) * np.cos(y / 13.0),
                    118 + 50 * np.sin(u / 17.0 + y / 11.0),
                    108 + 45 * np.cos(u / 7.0 - y / 19.0),
                ],
                axis=-1,
            )
        )
    return np.stack(frames)


def grade(clean: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(clean * gain + offset), 0, 255).astype(np.uint8)


def read_grade(frames: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel gain and offset that take ``clean`` to ``frames`` (least squares): the look a model
    conditioned on ``frames`` would carry on."""
    gain, offset = np.empty(3), np.empty(3)
    for channel in range(3):
        a = clean[..., channel].ravel()
        b = frames[..., channel].astype(np.float64).ravel()
        gain[channel], offset[channel] = np.polyfit(a, b, 1)
    return gain, offset


def chain(shots: int, frames: int, size: int, overlap: int, colour_match: bool) -> dict[str, Any]:
    """Make the chain, each shot from its parent's tail, and measure it."""
    made: list[np.ndarray] = []
    seconds = 0.0
    gain, offset = np.ones(3), np.zeros(3)
    for index in range(shots):
        clean = clean_scene(index * frames, frames, size)
        if index:
            tail_clean = clean_scene(index * frames - overlap, overlap, size)
            gain, offset = read_grade(made[-1][-overlap:], tail_clean)
            # the model's error: a jump at the seam, then a creep over the shot
            creep = np.linspace(0, 1, frames)[:, None, None, None] * CREEP
            gain = gain * JUMP_GAIN
            offset = offset + JUMP + (1 - JUMP_GAIN) * 128
            shot = np.clip(np.rint(clean * gain + offset + creep), 0, 255).astype(np.uint8)
            if colour_match:
                started = time.perf_counter()
                shot, _ = match_colour(shot, made[-1][-overlap:])
                seconds += time.perf_counter() - started
        else:
            shot = grade(clean, gain, offset)
        made.append(shot)
    samples = [(f"s{i:02d}", shot_sample(shot)) for i, shot in enumerate(made)]
    drift = chain_drift(samples)
    seams = [seam_check(samples[i - 1][1], samples[i][1]) for i in range(1, len(samples))]
    return {
        "drift": drift,
        "seams": seams,
        "max_drift_delta_e": max(line["delta_e"] for line in drift),
        "max_abs_contrast": max(abs(line["contrast"]) for line in drift),
        "mean_seam_delta_e": round(float(np.mean([s["seam_delta_e"] for s in seams])), 3),
        "match_seconds_per_shot": round(seconds / max(1, shots - 1), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=17, help="overlap_history: the tail a shot continues")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    runs = {
        mode: chain(args.shots, args.frames, args.size, args.overlap, mode == "on") for mode in ("off", "on")
    }
    print(
        f"{args.shots}-shot chain, {args.frames} frames of {args.size}x{args.size} a shot, overlap {args.overlap}"
    )
    print(f"{'shot':>5}  {'dE off':>7}  {'dE on':>7}  {'contrast off':>12}  {'contrast on':>11}")
    for off, on in zip(runs["off"]["drift"], runs["on"]["drift"], strict=True):
        print(
            f"{off['id']:>5}  {off['delta_e']:7.2f}  {on['delta_e']:7.2f}  {off['contrast']:+12.1%}  {on['contrast']:+11.1%}"
        )
    for mode, run in runs.items():
        print(
            f"color_match {mode:>3}: max drift dE {run['max_drift_delta_e']:.2f}, max |contrast| "
            f"{run['max_abs_contrast']:.1%}, mean seam dE {run['mean_seam_delta_e']:.2f}, "
            f"matching {run['match_seconds_per_shot'] * 1000:.0f} ms a shot"
        )
    document = {
        "benchmark": "drift",
        "settings": vars(args) | {"out": str(args.out.name)},
        "injected": {"jump_rgb": JUMP.tolist(), "jump_gain": JUMP_GAIN, "creep_rgb": CREEP.tolist()},
        "thresholds": THRESHOLDS,
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
