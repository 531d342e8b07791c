"""The ``storyreel`` command. Each command parses its arguments and makes one library call.

Exit codes: 0 ok; 1 the user's input or the machine's state is wrong (a message naming what, where and
why, no traceback); 2 a bug in storyreel; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import MachineError, StoryreelError

app = typer.Typer(
    name="storyreel",
    help="Turn a YAML storyboard into a film with SkyReels-V2 diffusion forcing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, `| less`) gets a wide console instead of rich's 80 columns, so tables do not wrap.
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_internal_failure = False

Story = Annotated[
    Path, typer.Argument(help="storyboard file (.yaml, or a .yaml.j2 template)", show_default=False)
]
AllowOutside = Annotated[
    bool, typer.Option("--allow-outside", help="let asset paths point outside the storyboard's folder")
]
Vars = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        help="template variable NAME=VALUE for a .yaml.j2 storyboard (repeatable); the value is read as YAML "
        "and must fit on one line",
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=2**32 - 1,
        help="film seed (0 to 4294967295): replaces the storyboard's film seed and every scene's seed; "
        "a seed set on a shot itself is kept",
    ),
]

EnhancerName = Annotated[
    str | None,
    typer.Option(help="prompt enhancer: none, template, vllm, ...", show_default="the storyboard's"),
]
EnhancerUrl = Annotated[
    str | None,
    typer.Option(
        envvar="STORYREEL_ENHANCER_URL", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
    ),
]
EnhancerModel = Annotated[
    str | None, typer.Option(envvar="STORYREEL_ENHANCER_MODEL", help="model the endpoint serves")
]
EnhancerFallback = Annotated[
    str | None,
    typer.Option(
        help="enhancer for shots the first one cannot enhance, e.g. template (recorded in the manifest)"
    ),
]
RefreshPrompts = Annotated[
    bool, typer.Option("--refresh-prompts", help="enhance every shot again, ignoring the prompt lock")
]

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="STORYREEL_CACHE",
        help="shot cache folder",
        show_default="the user cache folder",
    ),
]


@contextmanager
def _errors(interrupted: str = "") -> Iterator[None]:
    """Print expected errors as messages (exit 1, or 2 for internal ones); never a traceback unless asked.

    ``interrupted`` says, after Ctrl-C, what was kept and how to go on (it differs per command).
    """
    global _internal_failure
    try:
        yield
    except StoryreelError as exc:
        for line in str(exc).splitlines():
            err.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
        for note in getattr(exc, "__notes__", []):
            err.print(f"[cyan]note:[/] {escape(note)}", soft_wrap=True)
        if exc.exit_code == 2:
            _internal_failure = True
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]" + (f": {escape(interrupted)}" if interrupted else ""))
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except OSError as exc:
        # The library names the path of what it could not read or write; one that slipped through is still the
        # machine's state (a permission, a full disk), not a bug.
        message = str(MachineError.from_os_error(exc, doing="use"))
        err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        _internal_failure = True
        err.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}", soft_wrap=True)
        if os.environ.get("STORYREEL_DEBUG"):
            err.print(escape(traceback.format_exc()))
        else:
            err.print("this is a bug in storyreel; set STORYREEL_DEBUG=1 to see the traceback")
        raise typer.Exit(2) from None


def _template_vars(assignments: list[str] | None) -> dict[str, Any] | None:
    from .templating import parse_var

    return dict(parse_var(a) for a in assignments) if assignments else None


def _version(value: bool) -> None:
    if value:
        out.print(f"storyreel {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Turn a YAML storyboard into a film with SkyReels-V2 diffusion forcing."""


@app.command()
def render(
    story: Story,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="render folder", show_default="./renders/<storyboard stem>/"),
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(help="generator backend", show_default="skyreels when a model is set, else animatic"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(envvar="STORYREEL_MODEL", help="model folder or hub id, for every shot"),
    ] = None,
    enhancer: EnhancerName = None,
    enhancer_url: EnhancerUrl = None,
    enhancer_model: EnhancerModel = None,
    enhancer_fallback: EnhancerFallback = None,
    refresh_prompts: RefreshPrompts = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="render only these shots (and those they continue); repeat or separate with commas"
        ),
    ] = None,
    seed: Seed = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="generate every shot again instead of reusing cached ones")
    ] = False,
    cache_dir: CacheDir = None,
    device: Annotated[
        str | None,
        typer.Option(envvar="STORYREEL_DEVICE", help="cuda, cuda:1, cpu", show_default="best available"),
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="bfloat16, float16 or float32", show_default="per device")
    ] = None,
    offload: Annotated[bool, typer.Option(help="keep model weights on the CPU between uses")] = False,
    allow_outside: AllowOutside = False,
    var: Vars = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the manifest as JSON on stdout")] = False,
) -> None:
    """Render STORY into a film: film.mp4, shots/*.mp4, film.srt and manifest.json."""
    from .rendering import default_out_dir
    from .rendering import render as render_film

    if no_cache:  # this command would generate every shot again: resuming needs it without --no-cache
        resume = "every finished shot is saved in the shot cache; run again without --no-cache to resume from there"
    else:
        resume = (
            "every finished shot is saved in the shot cache; run the same command again to resume from there"
        )
    with _errors(interrupted=resume):
        shots = [s.strip() for item in (only or []) for s in item.split(",") if s.strip()] or None
        with _RichProgress() as progress:
            manifest = render_film(
                story,
                out_dir,
                generator=generator,
                model=model,
                enhancer=enhancer,
                enhancer_url=enhancer_url,
                enhancer_model=enhancer_model,
                enhancer_fallback=enhancer_fallback,
                refresh_prompts=refresh_prompts,
                only=shots,
                seed=seed,
                reuse=not no_cache,
                cache_dir=cache_dir,
                allow_outside=allow_outside,
                template_vars=_template_vars(var),
                device=device,
                dtype=dtype,
                offload=offload,
                progress=progress,
            )
        if json_output:
            out.print_json(data=manifest.model_dump(mode="json"))
        else:
            folder = out_dir or default_out_dir(story)
            if manifest.film is not None:
                film = manifest.film
                err.print(
                    f"[green]done:[/] {folder / film.path}  {film.frames} frames, {film.seconds:.2f}s, "
                    f"{film.width}x{film.height}" + (", with audio" if film.has_audio else "")
                )
            else:
                err.print(f"[green]done:[/] {len(manifest.shots)} shot(s) in {folder / 'shots'}")


@app.command()
def enhance(
    story: Story,
    enhancer: EnhancerName = None,
    enhancer_url: EnhancerUrl = None,
    enhancer_model: EnhancerModel = None,
    enhancer_fallback: EnhancerFallback = None,
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
    from .rendering import enhance_storyboard

    with _errors(
        interrupted="every prompt enhanced so far is in the lock; run the same command again for the rest"
    ):
        with _RichProgress() as progress:
            lock_path, prompts = enhance_storyboard(
                story,
                enhancer=enhancer,
                enhancer_url=enhancer_url,
                enhancer_model=enhancer_model,
                enhancer_fallback=enhancer_fallback,
                concurrency=concurrency,
                refresh_prompts=refresh_prompts,
                allow_outside=allow_outside,
                template_vars=_template_vars(var),
                progress=progress,
            )
        if json_output:
            document = {
                shot_id: {
                    "prompt": p.prompt.prompt,
                    "origin": p.origin,
                    "backend": p.prompt.source,
                    "model": p.prompt.model,
                }
                for shot_id, p in prompts.items()
            }
            out.print_json(data=document)
            return
        table = Table("shot", "from", "words", "prompt", show_lines=True)
        for shot_id, p in prompts.items():
            origin = {
                "enhancer": f"{p.prompt.source} (new)",
                "lock": "lock",
                "edited": "lock (your edit)",
            }.get(p.origin, f"{p.prompt.source} (fallback)")
            table.add_row(shot_id, origin, str(len(p.prompt.prompt.split())), escape(p.prompt.prompt))
        out.print(table)
        fresh = sum(p.origin == "enhancer" for p in prompts.values())
        err.print(
            f"[green]done:[/] {fresh} shot(s) enhanced, {len(prompts) - fresh} from the lock; wrote {lock_path}"
        )


class _RichProgress:
    """Render progress as rich bars on stderr: shots overall, the current shot's steps, the film's frames."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from .rendering import RenderProgress

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        bars = self.bars
        tasks: dict[str, Any] = {}

        class Reporter(RenderProgress):
            def note(self, message: str) -> None:
                bars.console.print(f"[cyan]note:[/] {escape(message)}", soft_wrap=True)

            def stage(self, name: str, detail: str = "") -> None:
                suffix = f" ({detail})" if detail else ""
                bars.console.print(f"[bold]{name}[/]{escape(suffix)}")

            def shot_started(self, shot: Any, index: int, total: int) -> None:
                if "shots" not in tasks:
                    tasks["shots"] = bars.add_task("shots", total=total)
                bars.update(tasks["shots"], completed=index - 1)
                if "steps" in tasks:
                    bars.remove_task(tasks.pop("steps"))
                tasks["steps"] = bars.add_task(f"  {shot.id}", total=None)

            def shot_progress(self, event: Any) -> None:
                if "steps" in tasks:
                    bars.update(
                        tasks["steps"],
                        description=f"  {event.shot_id} · {event.stage}",
                        completed=event.completed,
                        total=event.total,
                    )

            def shot_finished(self, shot: Any, entry: Any) -> None:
                bars.advance(tasks["shots"])
                if entry.cached:  # nothing was generated: say where it came from, not "0.0s"
                    made = ", from the shot cache"
                else:
                    passes = f", {entry.dit_passes} passes" if entry.dit_passes else ""
                    made = f"{passes}, {entry.seconds_generating:.1f}s"
                bars.console.print(f"  [green]✓[/] {escape(shot.id)}  {entry.frames} frames{made}")

            def film_progress(self, done: int, total: int) -> None:
                if "film" not in tasks:
                    for key in ("steps", "shots"):
                        if key in tasks:
                            bars.remove_task(tasks.pop(key))
                    tasks["film"] = bars.add_task("film.mp4", total=total)
                bars.update(tasks["film"], completed=done, total=total)

        self.reporter = Reporter()

    def __enter__(self) -> Any:
        self.bars.start()
        return self.reporter

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()


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
    from .plan import plan_film
    from .storyboard import load_storyboard, storyboard_yaml

    with _errors(), _rendered_hint(story, var):
        template_vars = _template_vars(var)
        if print_yaml:
            sys.stdout.write(storyboard_yaml(story, template_vars=template_vars))
            sys.stdout.flush()
        board = load_storyboard(story, allow_outside=allow_outside, template_vars=template_vars)
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
    from .errors import StoryboardError

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
            exc.__notes__ = notes  # printed after the errors, as Python 3.11's add_note() would
        raise


@app.command()
def plan(
    story: Story,
    json_output: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    seed: Seed = None,
    model: Annotated[
        str | None, typer.Option(envvar="STORYREEL_MODEL", help="model for every shot (for the estimate)")
    ] = None,
    allow_outside: AllowOutside = False,
    var: Vars = None,
) -> None:
    """Show the shot graph, timeline, frames, diffusion-forcing windows, transformer passes and an estimate."""
    from .plan import plan_film
    from .storyboard import load_storyboard

    with _errors(), _rendered_hint(story, var):
        board = load_storyboard(story, allow_outside=allow_outside, template_vars=_template_vars(var))
        film = plan_film(board, seed=seed, model=model, allow_outside=allow_outside)
        if json_output:
            out.print_json(json.dumps(film.to_json()))
            return
        _print_plan(film)


def _print_plan(film: Any) -> None:
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
            shot.mode,
            frames,
            f"{shot.seconds:.2f}",
            shot.conditioned_on or "-",
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
    for note in film.notes:
        out.print(f"[cyan]note:[/] {escape(note)}", soft_wrap=True)


@app.command()
def new(
    file: Annotated[Path, typer.Argument(help="storyboard to create", show_default=False)],
    template: Annotated[str, typer.Option(help="bundled template (see `storyreel templates`)")] = "short",
    force: Annotated[bool, typer.Option(help="overwrite FILE if it exists")] = False,
) -> None:
    """Start a storyboard from a bundled template."""
    from .starter import new_storyboard

    with _errors():
        written = new_storyboard(file, template, force=force)
        out.print(f"[green]created[/] {written} from the '{template}' template")
        out.print(f"next: storyreel plan {written}   then: storyreel render {written}")


@app.command()
def templates() -> None:
    """List the bundled storyboard templates."""
    from .starter import list_templates

    with _errors():
        table = Table(box=None, pad_edge=False)
        table.add_column("template")
        table.add_column("what it is")
        for template in list_templates():
            table.add_row(template.name, template.description)
        out.print(table)


@app.command()
def schema() -> None:
    """Print the storyboard's JSON Schema (for editor completion and validation)."""
    from .storyboard import storyboard_schema

    with _errors():
        sys.stdout.write(json.dumps(storyboard_schema(), indent=2) + "\n")


enhancer_app = typer.Typer(help="Run the LLM server an enhancer talks to.", no_args_is_help=True)
app.add_typer(enhancer_app, name="enhancer")


@enhancer_app.command("serve")
def enhancer_serve(
    backend: Annotated[str, typer.Option(help="the enhancer whose server to start")] = "vllm",
    model: Annotated[
        str | None,
        typer.Option(
            help="model to serve (hub id or folder)",
            show_default="Qwen/Qwen2.5-32B-Instruct for vllm",
        ),
    ] = None,
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option(min=1, help="GPUs to split the model over", show_default="1 for vllm"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="port (0 picks a free one)", show_default="8000 for vllm"),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="interface to listen on (loopback keeps it private)",
            show_default="127.0.0.1 for vllm",
        ),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(min=512, help="context length to reserve memory for", show_default="4096 for vllm"),
    ] = None,
) -> None:
    """Start the server an enhancer talks to (vLLM's OpenAI-compatible one), wait until it answers, print its URL, keep it up."""
    with _errors():
        from .enhance import serve_enhancer

        server = serve_enhancer(
            backend,
            model,
            host=host,
            port=port,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            note=lambda message: err.print(escape(message)),
        )
        out.print(server.url)
        err.print(
            f"[green]ready:[/] serving {escape(', '.join(server.models))}; render with --enhancer {escape(backend)} "
            f"--enhancer-url {server.url} (or export STORYREEL_ENHANCER_URL={server.url}); log: {server.log_path}; "
            "Ctrl-C stops it",
            soft_wrap=True,
        )
        try:
            code = server.wait()
        except KeyboardInterrupt:
            server.stop()
            err.print("server stopped")
            return
        if code:
            err.print(f"[red]error:[/] the server exited with code {code}; see {server.log_path}")
            raise typer.Exit(1)


cache_app = typer.Typer(help="Show and trim the shot cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@cache_app.command("ls")
def cache_ls(cache_dir: CacheDir = None) -> None:
    """List cached shots, least recently used first."""
    import time

    from .cache import ShotCache

    with _errors():
        cache = ShotCache(cache_dir)
        table = Table("key", "shot", "frames", "size", "generator", "last used", "storyboard")
        count = 0
        for folder, info, size, used in sorted(cache.entries(), key=lambda row: row[3]):
            count += 1
            age = time.strftime("%Y-%m-%d %H:%M", time.localtime(used))
            if info is None:
                table.add_row(folder.name[:12], "[red]damaged[/]", "", _human(size), "", age, "")
                continue
            # entry.json is a file anyone can edit: its text is shown, never read as markup
            table.add_row(
                info.key[:12], escape(info.shot_id), str(info.frames), _human(size), escape(info.generator), age,
                escape(Path(info.storyboard).name if info.storyboard else "(code)"),
            )  # fmt: skip
        out.print(table)
        err.print(f"{count} shot(s) in {escape(str(cache.shots))}")


@cache_app.command("du")
def cache_du(cache_dir: CacheDir = None) -> None:
    """How much disk the shot cache uses."""
    from .cache import ShotCache

    with _errors():
        cache = ShotCache(cache_dir)
        rows = list(cache.entries())
        out.print(f"{_human(sum(r[2] for r in rows))} in {len(rows)} shot(s) ({escape(str(cache.shots))})")


@cache_app.command("gc")
def cache_gc(
    keep: Annotated[
        list[Path] | None,
        typer.Argument(
            help="storyboards whose shots are kept whatever the options say (each must exist)",
            show_default=False,
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(help="remove shots unused for this long: 12h, 30d, 6w, 6mo, 1y (must be > 0)"),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            help="then remove least recently used shots until the cache fits: 500M, 50G, 1T (must be > 0)"
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="remove every cached shot but those of KEEP storyboards")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go, remove nothing")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Trim the shot cache: damaged and old entries, then down to a size; never the shots of KEEP storyboards.

    Every argument is checked before anything is removed: an age or size that is not a positive number
    with a unit, or a KEEP storyboard that does not exist, stops gc with nothing removed.
    """
    from .cache import ShotCache, apply_gc, kept_storyboards, parse_age, parse_size, plan_gc

    with _errors():
        if older_than is None and max_size is None and not everything:
            err.print(
                "nothing to do: give --older-than (e.g. 30d), --max-size (e.g. 50G) or --all (see --help)"
            )
            raise typer.Exit(1)
        age = parse_age(older_than) if older_than is not None else None
        size = parse_size(max_size) if max_size is not None else None
        protect = kept_storyboards(list(keep or []))
        cache = ShotCache(cache_dir)
        plan = plan_gc(cache, older_than=age, max_bytes=size, protect=protect, everything=everything)
        freed = sum(size for _, _, size in plan.remove)
        if not dry_run:
            apply_gc(cache, plan)
        verb = "would remove" if dry_run else "removed"
        out.print(
            f"{verb} {len(plan.remove)} shot(s), {_human(freed)}"
            + (f" ({plan.damaged} damaged)" if plan.damaged else "")
            + f"; {_human(plan.keep_bytes)} kept"
            + (f" ({plan.kept_in_use} used by the storyboards given)" if keep else "")
        )


def main() -> None:
    """Console entry point: typer's usage errors (its exit 2) are the user's input, so they exit 1."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == 2 and not _internal_failure:
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
