"""How far a film's render scales over GPUs: the plan's cost model, list-scheduled on 1 to 64 workers.

    python benchmarks/farm_sim.py [--workers 1 2 4 8 16 64] [--model Skywork/SkyReels-V2-DF-1.3B-540P]
                                  [--out benchmarks/results/farm_sim.json]

Nothing is rendered. Each film is planned with ``--model`` (its size is taken from its name, so the model
need not be on this machine) and each shot's H100 seconds come from ``plan``'s estimate (transformer FLOPs at
40% of bf16 peak). The shots are then placed on N workers by the same list schedule ``storyreel render
--workers`` runs (:mod:`storyreel.schedule`): a free worker takes the ready shot with the longest remaining
chain. The table shows, per film and N, the estimated wall time, the speedup over one worker, the
efficiency (speedup / N) and the two bounds no schedule beats: the critical path (the costliest chain of
continuing shots) and the work divided by N.

The films: every example storyboard, and a generated 200-shot film of independent chains of 1 to 8 shots
(most films are like it: every cut starts a chain). A film stops scaling where the makespan reaches its
critical path: from there more GPUs only wait, since a continuing shot needs its parent's last frames.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # examples/scripted_film.py is imported as a module

from storyreel import Storyboard, load_storyboard, plan_film  # noqa: E402
from storyreel.plan import FilmPlan  # noqa: E402

DEFAULT_MODEL = "Skywork/SkyReels-V2-DF-1.3B-540P"
CHAIN_LENGTHS = [1, 3, 2, 5, 1, 8, 2, 4, 1, 6, 3, 2]  # used in turn until the film has its shots


def generated_film(shots: int) -> Storyboard:
    """A film of ``shots`` shots in chains of the lengths above (each chain a scene that opens on a cut)."""
    scenes, made, turn = [], 0, 0
    while made < shots:
        length = min(CHAIN_LENGTHS[turn % len(CHAIN_LENGTHS)], shots - made)
        scenes.append(
            {
                "id": f"scene-{turn}",
                "shots": [
                    {
                        "id": f"shot-{made + i}",
                        "prompt": f"a swan glides across the lake, moment {made + i}",
                        "duration": 2 + (made + i) % 4,
                        **({"transition": "continue"} if i else {}),
                    }
                    for i in range(length)
                ],
            }
        )
        made += length
        turn += 1
    return Storyboard.model_validate({"storyreel": 1, "title": f"{shots} shots", "scenes": scenes})


def films() -> dict[str, Storyboard]:
    from examples.scripted_film import tide_pool_film

    found = {
        path.name: load_storyboard(path)
        for path in sorted((REPO / "examples").glob("*.yaml*"))
        if not path.name.endswith(".lock.yaml")
    }
    found["scripted_film.py"] = tide_pool_film(
        ["steps off a rock", "crosses the sand", "reaches the weed", "slips into the water"]
    )
    found["generated-200"] = generated_film(200)
    return found


def simulate(plan: FilmPlan, workers: list[int]) -> dict:
    costs = plan.shot_costs()
    work = sum(costs.values())
    critical = sum(costs[s] for s in plan.critical_path)
    rows = []
    for n in workers:
        schedule = plan.schedule(n)
        rows.append(
            {
                "workers": n,
                "seconds": round(schedule.makespan, 1),
                "speedup": round(schedule.speedup, 2),
                "efficiency": round(schedule.speedup / n, 2),
                "bound_seconds": round(max(critical, work / n), 1),
            }
        )
    # where it stops scaling: the fewest workers whose makespan is the critical path's (within 1%)
    flat = next((r["workers"] for r in rows if r["seconds"] <= critical * 1.01), None)
    return {
        "shots": len(plan.shots),
        "chains": len(plan.chains),
        "longest_chain_shots": len(plan.critical_path),
        "work_seconds": round(work, 1),
        "critical_path_seconds": round(critical, 1),
        "best_speedup": round(work / critical, 2) if critical else 1.0,
        "reaches_critical_path_at": flat,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "farm_sim.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as empty:  # the model's size is read from its name, not a local copy
        import os

        os.environ["HF_HUB_CACHE"] = empty
        results = {
            name: simulate(plan_film(board, model=args.model), args.workers)
            for name, board in films().items()
        }

    print(f"model {args.model}; seconds are H100 estimates (transformer FLOPs at 40% of bf16 peak)")
    header = f"{'film':<18} {'shots':>5} {'chains':>6} {'critical s':>10} {'best':>6}  " + "  ".join(
        f"{n:>3} GPU s (x)".rjust(16) for n in args.workers
    )
    print(header)
    for name, r in results.items():
        cells = "  ".join(f"{row['seconds']:>9.0f} ({row['speedup']:>4.1f})".rjust(16) for row in r["rows"])
        print(
            f"{name:<18} {r['shots']:>5} {r['chains']:>6} {r['critical_path_seconds']:>10.0f} "
            f"{r['best_speedup']:>5.1f}x  {cells}"
        )
    for name, r in results.items():
        at = r["reaches_critical_path_at"]
        where = f"reaches its critical path at {at} GPUs" if at else "has not reached its critical path"
        print(
            f"{name}: {where} (a chain of {r['longest_chain_shots']} shots, {r['critical_path_seconds']:.0f}s); "
            f"more GPUs cannot beat {r['best_speedup']:.1f}x"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "model": args.model,
        "cost_model": "plan estimate: transformer FLOPs per shot at 40% of H100 bf16 peak",
        "machine": platform.platform(),
        "films": results,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
