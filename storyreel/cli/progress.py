"""A render's progress as rich bars on stderr: shots overall, the current shot's steps, the film's frames.

Imported by the commands that render or enhance, when they run, so that ``--help``, ``validate`` and
``plan`` never load the render pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from storyreel.rendering import RenderProgress

from .app import err

if TYPE_CHECKING:
    from storyreel.generate import ProgressEvent
    from storyreel.manifest import ShotEntry
    from storyreel.plan import ShotPlan


class RichProgress:
    """The bars, shown while the ``with`` block runs; it gives the :class:`RenderProgress` to report to."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self.reporter = _BarsReporter(self.bars)

    def __enter__(self) -> RenderProgress:
        self.bars.start()
        return self.reporter

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()


class _BarsReporter(RenderProgress):
    """What a render reports, drawn on ``bars``; notes and finished shots are printed above them."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars
        self.tasks: dict[str, TaskID] = {}  # "shots", "steps" (the current shot's), "film"

    def note(self, message: str) -> None:
        self.bars.console.print(f"[cyan]note:[/] {escape(message)}", soft_wrap=True)

    def stage(self, name: str, detail: str = "") -> None:
        suffix = f" ({detail})" if detail else ""
        self.bars.console.print(f"[bold]{name}[/]{escape(suffix)}")

    def shot_started(self, shot: ShotPlan, index: int, total: int) -> None:
        bars, tasks = self.bars, self.tasks
        if "shots" not in tasks:
            tasks["shots"] = bars.add_task("shots", total=total)
        bars.update(tasks["shots"], completed=index - 1)
        if "steps" in tasks:
            bars.remove_task(tasks.pop("steps"))
        tasks["steps"] = bars.add_task(f"  {shot.id}", total=None)

    def shot_progress(self, event: ProgressEvent) -> None:
        if "steps" in self.tasks:
            self.bars.update(
                self.tasks["steps"],
                description=f"  {event.shot_id} · {event.stage}",
                completed=event.completed,
                total=event.total,
            )

    def shot_finished(self, shot: ShotPlan, entry: ShotEntry) -> None:
        self.bars.advance(self.tasks["shots"])
        if entry.cached:  # nothing was generated: say where it came from, not "0.0s"
            made = ", from the shot cache"
        else:
            passes = f", {entry.dit_passes} passes" if entry.dit_passes else ""
            made = f"{passes}, {entry.seconds_generating:.1f}s"
        self.bars.console.print(f"  [green]✓[/] {escape(shot.id)}  {entry.frames} frames{made}")

    def film_progress(self, done: int, total: int) -> None:
        bars, tasks = self.bars, self.tasks
        if "film" not in tasks:
            for key in ("steps", "shots"):
                if key in tasks:
                    bars.remove_task(tasks.pop(key))
            tasks["film"] = bars.add_task("film.mp4", total=total)
        bars.update(tasks["film"], completed=done, total=total)
