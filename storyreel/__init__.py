"""storyreel: turn a YAML storyboard into a film with SkyReels-V2 diffusion forcing.

The same stages the command line runs are the Python API::

    import storyreel

    board = storyreel.load_storyboard("examples/swan_lake.yaml")
    plan = storyreel.plan_film(board)          # frames, windows, transformer passes
    manifest = storyreel.render(board)         # renders/swan_lake/film.mp4 and friends
    print(manifest.film.seconds, [shot.id for shot in manifest.shots])

Importing storyreel loads no model library; generators import theirs when chosen.
"""

from __future__ import annotations

from .errors import StoryboardError, StoryreelError, UserError
from .graph import build_graph
from .manifest import Manifest
from .plan import FilmPlan, ShotPlan, plan_film
from .rendering import RenderProgress, render
from .storyboard import Camera, Character, Generation, Scene, Shot, Storyboard, load_storyboard
from .version import __version__

__all__ = [
    "Camera",
    "Character",
    "FilmPlan",
    "Generation",
    "Manifest",
    "RenderProgress",
    "Scene",
    "Shot",
    "ShotPlan",
    "Storyboard",
    "StoryboardError",
    "StoryreelError",
    "UserError",
    "__version__",
    "build_graph",
    "load_storyboard",
    "plan_film",
    "render",
]
