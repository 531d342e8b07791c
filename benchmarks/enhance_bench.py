"""What concurrency buys the vllm enhancer: N shots one request at a time versus the concurrent path.

    python benchmarks/enhance_bench.py --tiny                    # start the tiny CPU vLLM server here
    python benchmarks/enhance_bench.py --url http://127.0.0.1:8000/v1 [--model ID]
    options: --shots 8 32 128  --concurrency 8  --max-words 120  --out benchmarks/results/enhance_bench.json

``--tiny`` serves the random-weight Qwen2 from the venv ``tests/vllm_env.sh`` builds (vLLM's CPU build)
and measures the protocol and the server's batching, not a real model's speed. Every run sends
prompts no other run sent, so only the shared system prompt is in the server's prefix cache, as in
a real film; one warm-up request goes first. The speedup is sequential seconds over concurrent
seconds for the same number of shots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(
    os.environ.get("STORYREEL_VLLM_VENV")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "storyreel-vllm" / "venv"
)
SUBJECTS = ["a white swan", "a grey heron", "a red fox", "an old fisherman", "a paper boat", "a dragonfly"]
ACTIONS = ["glides across", "waits beside", "circles", "drifts past", "watches", "crosses"]
PLACES = ["the misty lake", "the reeds", "a wooden jetty", "the stone bridge", "the waterfall", "the shore"]
CAMERAS = [
    {"shot": "wide", "angle": "eye-level", "move": "slow push-in"},
    {"shot": "close-up", "angle": "low", "move": None},
    {"shot": "medium", "angle": None, "move": "pan left"},
    {"shot": None, "angle": "high", "move": "orbit"},
]


def shots(count: int, take: str) -> list:
    """``count`` different shots; ``take`` makes their prompts differ from every other run's."""
    from storyreel.enhance import ShotContext
    from storyreel.storyboard import Camera

    return [
        ShotContext(
            id=f"{take}-{i}",
            scene="lake",
            scene_title="The lake",
            setting="a mountain lake at dawn, mist over still water",
            prompt=f"{SUBJECTS[i % 6]} {ACTIONS[i // 6 % 6]} {PLACES[i // 36 % 6]}, take {take} {i}",
            camera=Camera(**CAMERAS[i % 4]),
            characters={"swan": "a graceful white swan with a curved neck"} if i % 6 == 0 else {},
            mode="continue" if i % 3 else "fresh",
            seconds=4.0,
        )
        for i in range(count)
    ]


def timed(url: str, model: str | None, max_words: int, concurrency: int, batch: list) -> float:
    from storyreel.enhance import FilmContext
    from storyreel.enhancer.vllm import VLLMEnhancer
    from storyreel.storyboard import EnhancerSettings

    settings = EnhancerSettings(backend="vllm", url=url, model=model, max_words=max_words)
    enhancer = VLLMEnhancer(settings, concurrency=concurrency)
    film = FilmContext(title="Benchmark Lake", logline="A day on a lake.", style="cinematic, 35mm film grain")
    started = time.perf_counter()
    prompts = enhancer.enhance(film, batch)
    seconds = time.perf_counter() - started
    assert len(prompts) == len(batch)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="an OpenAI-compatible server's API base, e.g. http://127.0.0.1:8000/v1")
    source.add_argument(
        "--tiny", action="store_true", help="start the tiny CPU vLLM server (tests/vllm_env.sh)"
    )
    parser.add_argument("--model", help="model id to request (default: the one the server serves)")
    parser.add_argument("--shots", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-words", type=int, default=120)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "enhance_bench.json")
    args = parser.parse_args()

    server = None
    startup = None
    if args.tiny:
        from storyreel.enhancer.serve import serve

        if not (VENV / ".storyreel-ready").is_file():
            sys.exit(f"no vLLM venv at {VENV}; build it with: bash tests/vllm_env.sh")
        started = time.perf_counter()
        server = serve(
            str(VENV / "tiny-qwen2"),
            port=None,
            served_model_name="tiny-qwen2",
            python=str(VENV / "bin" / "python"),
            extra_args=["--enforce-eager"],
            env={"VLLM_CPU_KVCACHE_SPACE": "1"},
            wait=600,
        )
        startup = time.perf_counter() - started
        print(f"tiny vLLM CPU server ready in {startup:.1f} s at {server.url}")
        url = server.url
    else:
        url = args.url

    rows = []
    try:
        timed(url, args.model, args.max_words, 1, shots(1, "warm-up"))
        for count in args.shots:
            sequential = timed(url, args.model, args.max_words, 1, shots(count, f"s{count}"))
            concurrent = timed(url, args.model, args.max_words, args.concurrency, shots(count, f"c{count}"))
            rows.append(
                {
                    "shots": count,
                    "sequential_s": round(sequential, 2),
                    "concurrent_s": round(concurrent, 2),
                    "speedup": round(sequential / concurrent, 2),
                    "sequential_shots_per_s": round(count / sequential, 2),
                    "concurrent_shots_per_s": round(count / concurrent, 2),
                }
            )
            print(
                f"  {count} shots: {sequential:.1f} s one at a time, {concurrent:.1f} s concurrent",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop()

    header = f"{'shots':>5} {'one at a time s':>16} {f'concurrent ({args.concurrency}) s':>17} {'speedup':>8} {'shots/s':>8}"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['shots']:>5} {row['sequential_s']:>16.2f} {row['concurrent_s']:>17.2f}"
            f" {row['speedup']:>7.2f}x {row['concurrent_shots_per_s']:>8.2f}"
        )
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()},
        "server": {
            "url": None if args.tiny else url,
            "tiny_cpu_vllm": args.tiny,
            "startup_s": _round(startup),
        },
        "model": args.model or ("tiny-qwen2" if args.tiny else None),
        "concurrency": args.concurrency,
        "max_words": args.max_words,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
