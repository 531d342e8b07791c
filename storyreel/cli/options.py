"""The arguments several commands share: the storyboard, its template variables, the enhancer, the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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

# How the transformer runs: each replaces the storyboard's `generation:` key of the same name.
Attention = Annotated[
    str | None,
    typer.Option(
        help="attention kernel: auto, flash3, sage (8-bit, lossy), flash, cudnn or sdpa",
        show_default="the storyboard's, else auto",
    ),
]
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="compile the transformer's repeated blocks (auto: on for CUDA)",
        show_default="the storyboard's, else auto",
    ),
]
Precision = Annotated[
    str | None,
    typer.Option(
        help="the transformer's precision: bf16, or fp8 (faster, lossy)",
        show_default="the storyboard's, else bf16",
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
EnhancerWait = Annotated[
    float | None,
    typer.Option(
        min=0,
        max=3600,
        help="seconds to wait for an enhancer server that is not listening yet (still loading its model)",
        show_default="the storyboard's enhancer.wait, else 0: a refused connection fails within seconds",
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


def template_vars(assignments: list[str] | None) -> dict[str, Any] | None:
    """``--var NAME=VALUE`` options as the template variables they set (None when there are none)."""
    from storyreel.templating import parse_var

    return dict(parse_var(a) for a in assignments) if assignments else None
