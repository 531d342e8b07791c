"""A film scripted from Python: build the storyboard in code, plan it, render it, read the manifest.

    python examples/scripted_film.py [--out DIR] [--model FOLDER_OR_HUB_ID]

Without --model it renders an animatic (previs) on any machine; with a SkyReels-V2 diffusion-forcing
model it generates the film. The same stages the `storyreel` command runs are plain functions here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import storyreel
from storyreel import Camera, Character, Scene, Shot, Storyboard
from storyreel.rendering import RenderProgress


def tide_pool_film(moments: list[str]) -> Storyboard:
    """One continuous take of a crab crossing a tide pool, one shot per moment, then a cut-away to the sea."""
    crossing = [
        Shot(
            id=f"crab-{i}",
            prompt=f"{{{{ crab }}}} {moment}",
            duration=2.5,
            camera=Camera(shot="close-up", move="slow tracking" if i % 2 else "slow push-in"),
        )
        for i, moment in enumerate(moments, start=1)
    ]
    crossing[0] = crossing[0].model_copy(update={"caption": "Low tide."})
    return Storyboard(
        storyreel=1,
        title="Tide Pool",
        logline="A small crab crosses a tide pool while the sea comes back.",
        style="macro nature documentary, shallow depth of field, morning sun",
        generation=storyreel.Generation(resolution="540P", fps=24, seed=2024),
        characters={"crab": Character(description="a small green shore crab with a speckled shell")},
        scenes=[
            Scene(
                id="pool", setting="a rocky tide pool with anemones and clear shallow water", shots=crossing
            ),
            Scene(
                id="sea",
                setting="the open sea beyond the rocks",
                shots=[
                    Shot(
                        id="wave",
                        prompt="a wave rolls in and floods the rocks with white foam",
                        duration=3,
                        transition="dissolve",
                        camera=Camera(shot="wide", move="static"),
                        caption="The tide turns.",
                    )
                ],
            ),
        ],
    )


class PrintProgress(RenderProgress):
    def note(self, message: str) -> None:
        print(f"note: {message}")

    def shot_finished(self, shot, entry) -> None:
        print(f"  {shot.id}: {entry.frames} frames ({entry.mode}, from {entry.conditioned_on or 'nothing'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("renders/scripted_film"))
    parser.add_argument(
        "--model", default=None, help="SkyReels-V2 DF model folder or hub id (default: animatic)"
    )
    args = parser.parse_args()

    board = tide_pool_film(
        ["steps out from under a rock", "pauses by an anemone", "scuttles to the water's edge"]
    )

    plan = storyreel.plan_film(board, model=args.model)
    print(f"{plan.title}: {len(plan.shots)} shots, {plan.film_seconds}s; chains: {plan.chains}")

    manifest = storyreel.render(board, args.out, model=args.model, progress=PrintProgress())
    film = manifest.film
    print(f"wrote {args.out / film.path}: {film.frames} frames, {film.seconds}s, {film.width}x{film.height}")


if __name__ == "__main__":
    main()
