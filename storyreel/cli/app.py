"""The ``storyreel`` Typer app, its consoles, and how every command turns errors into messages and exit codes.

Exit codes: 0 ok; 1 the user's input or the machine's state is wrong (a message naming what, where and
why, no traceback); 2 a bug in storyreel; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from storyreel.errors import MachineError, StoryreelError
from storyreel.version import __version__

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


@contextmanager
def errors_reported(interrupted: str = "") -> Iterator[None]:
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


def main() -> None:
    """Console entry point: typer's usage errors (its exit 2) are the user's input, so they exit 1."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == 2 and not _internal_failure:
            sys.exit(1)
        raise
