"""``storyreel keyframes``: only the start frames the keyframe stage draws, for approval before a render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .app import app, errors_reported, out
from .options import AllowOutside, CacheDir, EnhancerName, RefreshPrompts, Seed, Story, Vars, template_vars

OutDir = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="render folder; keyframes go to its keyframes/",
        show_default="./renders/<storyboard stem>/",
    ),
]


@app.command()
def keyframes(
    story: Story,
    out_dir: OutDir = None,
    enhancer: EnhancerName = None,
    refresh_prompts: RefreshPrompts = False,
    seed: Seed = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="draw every keyframe again instead of reusing cached ones")
    ] = False,
    cache_dir: CacheDir = None,
    device: Annotated[
        str | None,
        typer.Option(envvar="STORYREEL_DEVICE", help="cuda, cuda:1, cpu", show_default="best available"),
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="bfloat16, float16 or float32", show_default="per device")
    ] = None,
    allow_outside: AllowOutside = False,
    var: Vars = None,
) -> None:
    """Draw only the keyframes (OUT/keyframes/<shot id>.png) with the storyboard's keyframe model, to look at
    before rendering; the render reuses them. Keep one for good by naming it in its shot's image:."""
    from storyreel.rendering import render_keyframes

    from .progress import RichProgress

    with errors_reported(interrupted="every keyframe drawn so far is cached; run the same command again"):
        with RichProgress() as progress:
            drawn = render_keyframes(
                story,
                out_dir,
                enhancer=enhancer,
                refresh_prompts=refresh_prompts,
                seed=seed,
                reuse=not no_cache,
                cache_dir=cache_dir,
                allow_outside=allow_outside,
                template_vars=template_vars(var),
                device=device,
                dtype=dtype,
                progress=progress,
            )
        for shot_id, path in drawn.items():
            out.print(f"{escape(shot_id)}: {escape(str(path))}", soft_wrap=True)
