"""What re-rendering costs after a one-shot edit: work re-spent against a full render of 12 shots.

    python benchmarks/rerender_edit.py                       # animatic: shots and seconds
    python benchmarks/rerender_edit.py --tiny-skyreels       # a tiny random SkyReels-V2 DF model: transformer passes too
    python benchmarks/rerender_edit.py --model DIR --generator skyreels [--resolution 540P]

The storyboard is four scenes of three shots; each scene is one continuous take (its second and
third shots continue the first). The edit changes the prompt of scene two's middle shot, which
invalidates that shot and the one continuing it: 2 of 12 shots. The full render runs on an empty
cache, the re-render on the cache it filled. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny-model builder lives with the tests


def storyboard(resolution: str, fps: int, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    scenes = []
    for s, place in enumerate(["a misty lake", "a reed bed", "a mountain ridge", "a river mouth"]):
        shots = [
            {"id": f"scene{s}-{i}", "prompt": f"a white swan {verb} on {place}", "duration": f"{seconds}s"}
            for i, verb in enumerate(["glides", "turns its head", "spreads its wings"])
        ]
        scenes.append({"id": f"scene{s}", "setting": place, "shots": shots})
    return {
        "storyreel": 1,
        "title": "Twelve shots",
        "generation": {"resolution": resolution, "fps": fps, **extra},
        "enhancer": {"backend": "none"},
        "scenes": scenes,
    }


def run(story: Path, out: Path, cache: Path, generator: str, model: str | None) -> dict[str, Any]:
    import storyreel

    started = time.perf_counter()
    manifest = storyreel.render(story, out=out, cache_dir=cache, generator=generator, model=model)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "seconds_generating": round(sum(s.seconds_generating for s in manifest.shots), 2),
        "dit_passes": sum(s.dit_passes for s in manifest.shots),
        "shots_generated": sum(not s.cached for s in manifest.shots),
        "shots": len(manifest.shots),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=None, help="animatic (default) or skyreels")
    parser.add_argument("--model", default=None, help="SkyReels-V2 diffusers folder or hub id")
    parser.add_argument(
        "--tiny-skyreels", action="store_true", help="build a tiny random SkyReels-V2 DF model"
    )
    parser.add_argument("--resolution", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rerender_edit.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        generator, model = args.generator or "animatic", args.model
        resolution, fps, seconds, extra = args.resolution or "540P", 24, 2.0, {}
        if args.tiny_skyreels:
            import torch
            from tiny_skyreels import build_tiny_skyreels

            torch.set_num_threads(1)
            generator, model = "skyreels", str(build_tiny_skyreels(scratch / "tiny-df"))
            resolution, fps, seconds = args.resolution or "64x64", 8, 2.0
            extra = {"steps": 4, "base_num_frames": 17, "overlap_history": 5}
        elif model:
            generator = args.generator or "skyreels"

        story = scratch / "twelve.yaml"
        board = storyboard(resolution, fps, seconds, extra)
        story.write_text(yaml.safe_dump(board, sort_keys=False))
        full = run(story, scratch / "out", scratch / "cache", generator, model)
        board["scenes"][1]["shots"][1]["prompt"] = "a white swan dives under the water on a reed bed"
        story.write_text(yaml.safe_dump(board, sort_keys=False))
        edited = run(story, scratch / "out", scratch / "cache", generator, model)

    def ratio(key: str) -> float | None:
        return round(edited[key] / full[key], 3) if full[key] else None

    print(f"generator: {generator}  model: {model or '-'}  resolution: {resolution}")
    print(f"{'':<24} {'full render':>12} {'after edit':>12} {'ratio':>8}")
    for key in ("shots_generated", "dit_passes", "seconds_generating", "seconds"):
        value = ratio(key)
        print(f"{key:<24} {full[key]:>12} {edited[key]:>12} {value if value is not None else '-':>8}")
    machine = {"platform": platform.platform(), "python": platform.python_version()}
    document = {
        "machine": machine,
        "generator": generator,
        "model": "tiny random SkyReels-V2 DF" if args.tiny_skyreels else model,
        "resolution": resolution,
        "full": full,
        "after_edit": edited,
        "ratios": {k: ratio(k) for k in ("shots_generated", "dit_passes", "seconds_generating", "seconds")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
