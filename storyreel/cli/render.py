"""``storyreel render`` (a storyboard into a film) and ``storyreel enhance`` (its prompts into the lock)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import app, err, errors_reported, out
from .options import (
    AllowOutside,
    Attention,
    CacheDir,
    Compile,
    EnhancerFallback,
    EnhancerModel,
    EnhancerName,
    EnhancerUrl,
    EnhancerWait,
    Precision,
    RefreshPrompts,
    Seed,
    Story,
    Vars,
    template_vars,
)

if TYPE_CHECKING:
    from storyreel.enhance import ShotPrompt
    from storyreel.manifest import Manifest

OutDir = Annotated[
    Path | None,
    typer.Option("--out", help="render folder", show_default="./renders/<storyboard stem>/"),
]
GeneratorName = Annotated[
    str | None,
    typer.Option(help="generator backend", show_default="skyreels when a model is set, else animatic"),
]
Model = Annotated[
    str | None,
    typer.Option(envvar="STORYREEL_MODEL", help="model folder or hub id, for every shot"),
]
Only = Annotated[
    list[str] | None,
    typer.Option(help="render only these shots (and those they continue); repeat or separate with commas"),
]
NoCache = Annotated[
    bool, typer.Option("--no-cache", help="generate every shot again instead of reusing cached ones")
]
Device = Annotated[
    str | None,
    typer.Option(envvar="STORYREEL_DEVICE", help="cuda, cuda:1, cpu", show_default="best available"),
]
Dtype = Annotated[str | None, typer.Option(help="bfloat16, float16 or float32", show_default="per device")]
Offload = Annotated[bool, typer.Option(help="keep model weights on the CPU between uses")]
ColorMatch = Annotated[
    bool | None,
    typer.Option(
        "--color-match/--no-color-match",
        help="match each continuation's colour to its parent's last frames (generation.color_match)",
        show_default="the storyboard's, else off",
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        help="make shots on this many Ray workers, one per GPU (docs/cluster.md)", show_default="one process"
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="join a Ray cluster started with `ray start`: auto or ray://HOST:PORT",
        show_default="a private one",
    ),
]
GpusPerShot = Annotated[
    int,
    typer.Option(
        help="GPUs of one node to split each shot over (sequence parallelism): 1, 2, 4 or 8; without GPUs "
        "(or with --device cpu), as many CPU processes, which checks the path but is not faster"
    ),
]

# What Ctrl-C during a render kept, and how to go on from there: a --no-cache run would generate every
# shot again, so resuming needs the same command without it.
RESUME = "every finished shot is saved in the shot cache; run the same command again to resume from there"
RESUME_WITH_CACHE = (
    "every finished shot is saved in the shot cache; run again without --no-cache to resume from there"
)


@app.command()
def render(
    story: Story,
    out_dir: OutDir = None,
    generator: GeneratorName = None,
    model: Model = None,
    enhancer: EnhancerName = None,
    enhancer_url: EnhancerUrl = None,
    enhancer_model: EnhancerModel = None,
    enhancer_fallback: EnhancerFallback = None,
    enhancer_wait: EnhancerWait = None,
    refresh_prompts: RefreshPrompts = False,
    only: Only = None,
    seed: Seed = None,
    no_cache: NoCache = False,
    cache_dir: CacheDir = None,
    device: Device = None,
    dtype: Dtype = None,
    offload: Offload = False,
    attention: Attention = None,
    compile: Compile = None,
    precision: Precision = None,
    color_match: ColorMatch = None,
    allow_outside: AllowOutside = False,
    var: Vars = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the manifest as JSON on stdout")] = False,
    workers: Workers = None,
    ray_address: RayAddress = None,
    gpus_per_shot: GpusPerShot = 1,
) -> None:
    """Render STORY into a film: film.mp4, shots/*.mp4, film.srt, film.otio, review.html and manifest.json."""
    from storyreel.rendering import default_out_dir
    from storyreel.rendering import render as render_film

    from .progress import RichProgress

    with errors_reported(interrupted=RESUME_WITH_CACHE if no_cache else RESUME):
        shots = [s.strip() for item in (only or []) for s in item.split(",") if s.strip()] or None
        with RichProgress() as progress:
            manifest = render_film(
                story,
                out_dir,
                generator=generator,
                model=model,
                enhancer=enhancer,
                enhancer_url=enhancer_url,
                enhancer_model=enhancer_model,
                enhancer_fallback=enhancer_fallback,
                enhancer_wait=enhancer_wait,
                refresh_prompts=refresh_prompts,
                only=shots,
                seed=seed,
                reuse=not no_cache,
                cache_dir=cache_dir,
                allow_outside=allow_outside,
                template_vars=template_vars(var),
                device=device,
                dtype=dtype,
                offload=offload,
                attention=attention,
                compile=compile,
                precision=precision,
                color_match=color_match,
                progress=progress,
                workers=workers,
                ray_address=ray_address,
                gpus_per_shot=gpus_per_shot,
            )
        if json_output:
            out.print_json(data=manifest.model_dump(mode="json"))
        else:
            _print_done(manifest, out_dir or default_out_dir(story))


def _print_done(manifest: Manifest, folder: Path) -> None:
    """Where the film is and what it is (or where the shots are, when only some were rendered)."""
    if manifest.workers:
        _print_workers(manifest)
    if manifest.film is not None:
        film = manifest.film
        err.print(
            f"[green]done:[/] {folder / film.path}  {film.frames} frames, {film.seconds:.2f}s, "
            f"{film.width}x{film.height}" + (", with audio" if film.has_audio else "")
        )
    else:
        err.print(f"[green]done:[/] {len(manifest.shots)} shot(s) in {folder / 'shots'}")


def _print_workers(manifest: Manifest) -> None:
    """A cluster render's workers: the shots each took and how busy it was (the timeline is in the manifest)."""
    table = Table("worker", "node", "pid", "gpus", "shots", "busy", "", box=None, pad_edge=False)
    for worker in manifest.workers:
        table.add_row(
            worker.id,
            worker.node,
            " ".join(map(str, worker.ranks)) or str(worker.pid),  # a split worker: every rank's process
            ",".join(worker.gpu_ids) or "-",
            " ".join(worker.shots) or "-",
            f"{worker.busy_seconds:.1f}s",
            "[yellow]lost[/]" if worker.ended else "",
        )
    err.print(table)


@app.command()
def enhance(
    story: Story,
    enhancer: EnhancerName = None,
    enhancer_url: EnhancerUrl = None,
    enhancer_model: EnhancerModel = None,
    enhancer_fallback: EnhancerFallback = None,
    enhancer_wait: EnhancerWait = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="requests in flight at once", show_default="the storyboard's, 8"),
    ] = None,
    refresh_prompts: RefreshPrompts = False,
    allow_outside: AllowOutside = False,
    var: Vars = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print {shot id: {prompt, origin, backend, model}} on stdout")
    ] = False,
) -> None:
    """Enhance every shot's prompt and write them to STORY's lock (<stem>.lock.yaml), for review or editing."""
    from storyreel.rendering import enhance_storyboard

    from .progress import RichProgress

    with errors_reported(
        interrupted="every prompt enhanced so far is in the lock; run the same command again for the rest"
    ):
        with RichProgress() as progress:
            lock_path, prompts = enhance_storyboard(
                story,
                enhancer=enhancer,
                enhancer_url=enhancer_url,
                enhancer_model=enhancer_model,
                enhancer_fallback=enhancer_fallback,
                enhancer_wait=enhancer_wait,
                concurrency=concurrency,
                refresh_prompts=refresh_prompts,
                allow_outside=allow_outside,
                template_vars=template_vars(var),
                progress=progress,
            )
        if json_output:
            out.print_json(data=_prompts_json(prompts))
            return
        _print_prompts(prompts)
        fresh = sum(p.origin == "enhancer" for p in prompts.values())
        err.print(
            f"[green]done:[/] {fresh} shot(s) enhanced, {len(prompts) - fresh} from the lock; wrote {lock_path}"
        )


def _prompts_json(prompts: dict[str, ShotPrompt]) -> dict[str, dict[str, str | None]]:
    """``{shot id: {prompt, origin, backend, model}}``, what ``enhance --json`` prints."""
    return {
        shot_id: {
            "prompt": p.prompt.prompt,
            "origin": p.origin,
            "backend": p.prompt.source,
            "model": p.prompt.model,
        }
        for shot_id, p in prompts.items()
    }


def _print_prompts(prompts: dict[str, ShotPrompt]) -> None:
    """Every shot's prompt, where it came from and how many words it has, as a table."""
    table = Table("shot", "from", "words", "prompt", show_lines=True)
    for shot_id, p in prompts.items():
        origin = {
            "enhancer": f"{p.prompt.source} (new)",
            "lock": "lock",
            "edited": "lock (your edit)",
        }.get(p.origin, f"{p.prompt.source} (fallback)")
        table.add_row(shot_id, origin, str(len(p.prompt.prompt.split())), escape(p.prompt.prompt))
    out.print(table)
