"""``storyreel cache ls|du|gc``: show and trim the shot cache, its shots and its keyframes
(:mod:`storyreel.cache` does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import app, err, errors_reported, out
from .options import CacheDir

cache_app = typer.Typer(help="Show and trim the shot cache (shots and keyframes).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _human(size: float) -> str:
    """A size in bytes as a person reads it: 512 B, 3.4 MiB, 1.2 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@cache_app.command("ls")
def cache_ls(cache_dir: CacheDir = None) -> None:
    """List cached shots, then cached keyframes, least recently used first."""
    import time

    from storyreel.cache import KeyframeCache, ShotCache

    with errors_reported():
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
        keyframes = KeyframeCache(cache.root)
        rows = sorted(keyframes.entries(), key=lambda row: row.used)
        if rows:
            table = Table("keyframe", "size", "last used", "storyboards", "shots made from it")
            for row in rows:
                age = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.used))
                if row.damaged:
                    table.add_row(row.key[:12], _human(row.size), age, "[red]damaged[/]", "")
                    continue
                used_by = row.info.used_by if row.info else []
                table.add_row(
                    row.key[:12], _human(row.size), age,
                    escape(", ".join(Path(path).name for path in used_by) or "(none recorded)"),
                    str(len(row.info.shots)) if row.info else "",
                )  # fmt: skip
            out.print(table)
        err.print(f"{len(rows)} keyframe(s) in {escape(str(keyframes.keyframes))}")


@cache_app.command("du")
def cache_du(cache_dir: CacheDir = None) -> None:
    """How much disk the shot cache uses: its shots, then its keyframes."""
    from storyreel.cache import KeyframeCache, ShotCache

    with errors_reported():
        cache = ShotCache(cache_dir)
        rows = list(cache.entries())
        out.print(f"{_human(sum(r[2] for r in rows))} in {len(rows)} shot(s) ({escape(str(cache.shots))})")
        keyframes = KeyframeCache(cache.root)
        drawn = list(keyframes.entries())
        out.print(
            f"{_human(sum(row.size for row in drawn))} in {len(drawn)} keyframe(s) "
            f"({escape(str(keyframes.keyframes))})"
        )


@cache_app.command("gc")
def cache_gc(
    keep: Annotated[
        list[Path] | None,
        typer.Argument(
            help="storyboards whose shots and keyframes are kept whatever the options say (each must exist)",
            show_default=False,
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="remove shots and keyframes unused for this long: 12h, 30d, 6w, 6mo, 1y (must be > 0)"
        ),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            help="then remove the least recently used until the cache (shots and keyframes) fits: 500M, 50G, "
            "1T (must be > 0)"
        ),
    ] = None,
    everything: Annotated[
        bool,
        typer.Option("--all", help="remove every cached shot and keyframe but those of KEEP storyboards"),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go, remove nothing")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Trim the shot cache: damaged and old entries, then down to a size; never the shots of KEEP storyboards.

    Keyframes follow the same rules as shots, and a keyframe stays while a shot made from it stays.
    Every argument is checked before anything is removed: an age or size that is not a positive number
    with a unit, or a KEEP storyboard that does not exist, stops gc with nothing removed.
    """
    from storyreel.cache import ShotCache, apply_gc, kept_storyboards, parse_age, parse_size, plan_gc

    with errors_reported():
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
        if not dry_run:
            apply_gc(cache, plan)
        verb = "would remove" if dry_run else "removed"
        out.print(
            f"{verb} {len(plan.remove)} shot(s) and {len(plan.remove_keyframes)} keyframe(s), {_human(plan.freed)}"
            + (f" ({plan.damaged} damaged)" if plan.damaged else "")
            + f"; {_human(plan.keep_bytes)} kept"
            + (f" ({plan.kept_in_use} used by the storyboards given)" if keep else "")
            + (
                f" ({plan.kept_for_shots} keyframe(s) for the shots made from them)"
                if plan.kept_for_shots
                else ""
            )
        )
