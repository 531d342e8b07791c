"""``storyreel review OUT_DIR``: (re)build a render's review page from its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .app import app, errors_reported, out


@app.command()
def review(
    out_dir: Annotated[
        Path, typer.Argument(help="a render folder (holding manifest.json)", show_default=False)
    ],
    open_page: Annotated[bool, typer.Option("--open", help="open the page in the web browser")] = False,
) -> None:
    """Rebuild OUT_DIR/review.html: the film, the shots, their seams and drift, every warning."""
    from storyreel.review import build_review

    with errors_reported():
        page = build_review(out_dir)
    out.print(f"wrote {escape(str(page))}")
    if open_page:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
