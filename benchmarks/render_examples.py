"""What rendering each example costs on this machine: wall seconds and peak memory, animatic generator.

    python benchmarks/render_examples.py [--out benchmarks/results/render_examples.json]

Each example renders in a fresh process (so imports and peak memory are its own), into a temporary
folder. Peak memory is the render process's maximum resident set (the ffmpeg encoders it drives
run as separate processes and are not counted).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
import storyreel
manifest = storyreel.render(sys.argv[1], out=sys.argv[2])
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": round(seconds, 2),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "film_frames": manifest.film.frames,
    "film_seconds": manifest.film.seconds,
    "size": f"{manifest.film.width}x{manifest.film.height}",
    "shots": len(manifest.shots),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "render_examples.json")
    args = parser.parse_args()
    examples = sorted(p for p in (REPO / "examples").iterdir() if p.name.endswith((".yaml", ".yaml.j2")))
    rows = []
    for example in examples:
        with tempfile.TemporaryDirectory() as out:
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(example), out], capture_output=True, text=True, check=True
            )
        rows.append({"example": example.name, **json.loads(result.stdout.strip().splitlines()[-1])})

    header = f"{'example':<20} {'shots':>5} {'size':>9} {'film s':>7} {'frames':>6} {'render s':>9} {'x realtime':>10} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        realtime = row["film_seconds"] / row["seconds"]
        print(
            f"{row['example']:<20} {row['shots']:>5} {row['size']:>9} {row['film_seconds']:>7.2f} {row['film_frames']:>6}"
            f" {row['seconds']:>9.2f} {realtime:>10.2f} {row['peak_rss_mib']:>9.0f}"
        )
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine, "generator": "animatic", "results": rows}, indent=2) + "\n"
    )
    print(f"\nwrote {args.out}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
