"""The commands that read or start a storyboard without rendering it: ``validate``, ``plan``, ``new``,
``templates`` and ``schema``. None of them loads a model or a video library.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import app, err, errors_reported, out
from .options import AllowOutside, Attention, Compile, Precision, Seed, Story, Vars, template_vars

if TYPE_CHECKING:
    from storyreel.plan import FilmPlan


@app.command()
def validate(
    story: Story,
    allow_outside: AllowOutside = False,
    var: Vars = None,
    print_yaml: Annotated[
        bool,
        typer.Option(
            "--print-yaml",
            help="print the YAML the storyboard is read as on stdout (what a .yaml.j2 template renders to), "
            "also when it does not validate",
        ),
    ] = False,
) -> None:
    """Check STORY; exit 0, or 1 with file:line:col messages for every problem."""
    from storyreel.plan import plan_film
    from storyreel.storyboard import load_storyboard

    def print_text(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    with errors_reported(), _rendered_hint(story, var):
        board = load_storyboard(
            story,
            allow_outside=allow_outside,
            template_vars=template_vars(var),
            film_checks=False,  # plan_film runs them
            on_text=print_text if print_yaml else None,
        )
        plan = plan_film(board, allow_outside=allow_outside)
        for note in plan.notes:
            err.print(f"[cyan]note:[/] {escape(note)}", soft_wrap=True)
        (err if print_yaml else out).print(  # with --print-yaml, stdout holds only the YAML
            f"[green]ok[/] {story}: {len(board.scenes)} scene(s), {len(plan.shots)} shot(s), "
            f"{plan.film_frames} frames ({plan.film_seconds:.2f}s at {plan.fps} fps, {plan.width}x{plan.height})"
        )


@contextmanager
def _rendered_hint(story: Path, var: list[str] | None) -> Iterator[None]:
    """After errors located in a template's rendered YAML, say how to see that YAML."""
    from storyreel.errors import StoryboardError

    try:
        yield
    except StoryboardError as exc:
        if any(p.file.endswith(" (rendered)") for p in exc.problems):
            again = " ".join(
                ["storyreel validate", str(story), *(f"--var {v}" for v in var or []), "--print-yaml"]
            )
            notes = [*getattr(exc, "__notes__", [])]
            notes.append(
                f"{story} is a template: the positions above are in the YAML it renders to; "
                f"see that YAML with `{again}`"
            )
            exc.__notes__ = notes  # type: ignore[attr-defined]  # printed after the errors, as 3.11's add_note() would
        raise


@app.command()
def plan(
    story: Story,
    json_output: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    seed: Seed = None,
    model: Annotated[
        str | None, typer.Option(envvar="STORYREEL_MODEL", help="model for every shot (for the estimate)")
    ] = None,
    attention: Attention = None,
    compile: Compile = None,
    precision: Precision = None,
    allow_outside: AllowOutside = False,
    var: Vars = None,
    workers: Annotated[
        int | None,
        typer.Option(help="estimate the wall time of a render on this many GPUs (render --workers)"),
    ] = None,
) -> None:
    """Show the shot graph, timeline, frames, diffusion-forcing windows, transformer passes and an estimate."""
    from storyreel.plan import plan_film
    from storyreel.storyboard import load_storyboard

    with errors_reported(), _rendered_hint(story, var):
        board = load_storyboard(  # plan_film runs the film's checks
            story, allow_outside=allow_outside, template_vars=template_vars(var), film_checks=False
        )
        film = plan_film(
            board,
            seed=seed,
            model=model,
            attention=attention,
            compile=compile,
            precision=precision,
            allow_outside=allow_outside,
            workers=workers,
        )
        if json_output:
            out.print_json(json.dumps(film.to_json()))
            return
        _print_plan(film)


def _print_plan(film: FilmPlan) -> None:
    """The plan as a person reads it: the shots as a table, then the order, the chains and the estimate."""
    out.print(
        f"[bold]{escape(film.title)}[/]: {len(film.shots)} shots, {film.film_frames} frames, "
        f"{film.film_seconds:.2f}s at {film.fps} fps, {film.width}x{film.height}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("#", "shot", "scene", "mode", "frames", "seconds", "from", "cut", "windows", "passes"):
        table.add_column(
            column, justify="right" if column in ("#", "frames", "seconds", "passes") else "left"
        )
    for shot in film.shots:
        frames = str(shot.frames)
        if shot.frames != shot.requested_frames:
            frames += f" (asked {shot.requested_frames})"
        windows = " ".join(
            f"{w.latent_frames}/{w.prefix_latent_frames}/{w.denoise_steps}" for w in shot.windows
        )
        table.add_row(
            str(shot.timeline_index),
            shot.id,
            shot.scene,
            f"{shot.mode} (keyframe)" if shot.keyframe else shot.mode,
            frames,
            f"{shot.seconds:.2f}",
            shot.conditioned_on or (escape(Path(shot.video).name) if shot.video else "-"),  # or the clip
            shot.transition,
            windows,
            str(shot.dit_passes),
        )
    out.print(table)
    out.print("[dim]windows: latent frames / clean prefix latent frames / denoising steps[/]")
    out.print("render order: " + " → ".join(film.render_order))
    out.print("chains: " + escape("  ".join("[" + " → ".join(chain) + "]" for chain in film.chains)))
    estimate = film.estimate
    line = f"estimate: {estimate.dit_passes} transformer passes"
    if estimate.transformer_tflop is not None:
        line += (
            f", {estimate.transformer_tflop:,.0f} TFLOP ({estimate.architecture}), "
            f"about {estimate.h100_minutes:.1f} min on one H100 at 40% of bf16 peak"
        )
    out.print(line)
    if film.keyframes is not None:
        kept = film.keyframes
        out.print(
            escape(
                f"keyframes: {len(kept.shots)} ({', '.join(kept.shots)}) drawn by {kept.model}, "
                f"{kept.steps} steps each: {kept.transformer_passes} image-model passes"
            )
        )
    _print_parallel(film)
    if any(shot.settings.model for shot in film.shots):  # the animatic runs no transformer
        run = film.transformer
        out.print(f"transformer: attention {run.attention}, compile {run.compile}, precision {run.precision}")
    for note in film.notes:
        out.print(f"[cyan]note:[/] {escape(note)}", soft_wrap=True)


def _print_parallel(film: FilmPlan) -> None:
    """The critical path, the best speedup many workers could give, and the wall time on ``--workers``."""
    if not film.critical_path:
        return
    costs = film.shot_costs()
    seconds = film.estimate.shot_seconds is not None
    unit = (lambda c: f"{c:,.0f}s") if seconds else (lambda c: f"{c:,.0f} passes")
    longest = sum(costs[s] for s in film.critical_path)
    work = sum(costs.values())
    out.print(
        "critical path: " + escape(" → ".join(film.critical_path)) + f" ({unit(longest)} of {unit(work)}); "
        f"best possible speedup on many workers: {work / longest if longest else 1.0:.2f}x"
    )
    if film.workers is not None:
        schedule = film.schedule(film.workers)
        line = f"on {film.workers} worker(s): {unit(schedule.makespan)}, {schedule.speedup:.2f}x one worker"
        if not seconds:
            line += " (give the model, --model, for seconds)"
        out.print(line)


@app.command()
def new(
    file: Annotated[Path, typer.Argument(help="storyboard to create", show_default=False)],
    template: Annotated[str, typer.Option(help="bundled template (see `storyreel templates`)")] = "short",
    force: Annotated[bool, typer.Option(help="overwrite FILE if it exists")] = False,
) -> None:
    """Start a storyboard from a bundled template."""
    from storyreel.starter import new_storyboard

    with errors_reported():
        written = new_storyboard(file, template, force=force)
        out.print(f"[green]created[/] {written} from the '{template}' template")
        out.print(f"next: storyreel plan {written}   then: storyreel render {written}")


@app.command()
def templates() -> None:
    """List the bundled storyboard templates."""
    from storyreel.starter import list_templates

    with errors_reported():
        table = Table(box=None, pad_edge=False)
        table.add_column("template")
        table.add_column("what it is")
        for template in list_templates():
            table.add_row(template.name, template.description)
        out.print(table)


@app.command()
def schema() -> None:
    """Print the storyboard's JSON Schema (for editor completion and validation)."""
    from storyreel.storyboard import storyboard_schema

    with errors_reported():
        sys.stdout.write(json.dumps(storyboard_schema(), indent=2) + "\n")
