"""Is the film's encode deterministic, and what does making it so cost? x264 threading settings at 960x544.

    python benchmarks/film_encode.py [--runs 4] [--out benchmarks/results/film_encode.json]

Renders examples/swan_lake.yaml (animatic, 540P), keeps its film's frames, and encodes those same
frames ``--runs`` times under each x264 threading setting through storyreel's ``VideoWriter`` (raw
frames piped into the bundled ffmpeg, as fast as the pipe takes them: x264's lookahead thread then
sees frames arrive at a different pace each run, which is what made the output vary). For each
setting: how many different files and different decoded pictures the runs gave (1 and 1 is
deterministic), the median wall seconds and the median CPU seconds of the ffmpeg process (on a
machine with few cores, CPU seconds say more than wall seconds about what threads cost).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "x264 default (auto threads, lookahead thread)": (),
    "-threads 1": ("-threads", "1"),
    "storyreel: -threads 8, sync-lookahead=0": None,  # whatever storyreel.video uses
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "film_encode.json")
    args = parser.parse_args()

    import numpy as np

    import storyreel
    from storyreel import video
    from storyreel.video import FILM_CRF, VideoWriter, read_frames

    chosen = video.X264_DETERMINISTIC
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["STORYREEL_CACHE"] = str(root / "cache")
        story = REPO / "examples" / "swan_lake.yaml"
        manifest = storyreel.render(story, out=root / "render")
        assert manifest.film is not None
        width, height, fps = manifest.film.width, manifest.film.height, manifest.film.fps
        raw = root / "film.rgb"
        with open(raw, "wb") as stream:
            for frame in read_frames(root / "render" / "film.mp4", width, height):
                stream.write(frame.tobytes())
        frames = np.memmap(raw, dtype=np.uint8, mode="r").reshape(-1, height, width, 3)
        for name, threading in SETTINGS.items():
            video.X264_DETERMINISTIC = chosen if threading is None else threading
            files, pictures, walls, cpus = set(), set(), [], []
            for run in range(args.runs):
                film = root / f"film-{run}.mp4"
                cpu, started = _children_cpu(), time.perf_counter()
                with VideoWriter(film, width, height, fps, crf=FILM_CRF) as writer:
                    for frame in frames:
                        writer.write(frame)
                walls.append(time.perf_counter() - started)
                cpus.append(_children_cpu() - cpu)
                files.add(hashlib.sha256(film.read_bytes()).hexdigest())
                decoded = hashlib.sha256()
                for frame in read_frames(film, width, height):
                    decoded.update(frame.tobytes())
                pictures.add(decoded.hexdigest())
            rows.append(
                {
                    "setting": name,
                    "x264_args": list(video.X264_DETERMINISTIC),
                    "runs": args.runs,
                    "different_files": len(files),
                    "different_pictures": len(pictures),
                    "median_wall_s": round(statistics.median(walls), 2),
                    "median_cpu_s": round(statistics.median(cpus), 2),
                    "bytes": film.stat().st_size,
                }
            )
        video.X264_DETERMINISTIC = chosen

    print(f"{width}x{height}, {len(frames)} frames, {args.runs} runs per setting, {os.cpu_count()} CPUs")
    print(f"{'setting':48} {'files':>6} {'pictures':>9} {'wall s':>7} {'cpu s':>7} {'bytes':>9}")
    for row in rows:
        print(
            f"{row['setting']:48} {row['different_files']:>6} {row['different_pictures']:>9} "
            f"{row['median_wall_s']:>7} {row['median_cpu_s']:>7} {row['bytes']:>9}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()}
    args.out.write_text(
        json.dumps(
            {
                "machine": machine,
                "size": f"{width}x{height}",
                "frames": len(frames),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
