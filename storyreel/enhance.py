"""Stage 3 of a render: the enhancer contract.

An enhancer is "given shots in context, return prompts": it rewrites each shot's short prompt into
the detailed caption SkyReels-V2 was trained on (shot type, subject and action, what changes,
setting, lighting and style, camera motion). It receives the whole film at once, so a backend
that talks to an LLM server can send every request concurrently; each shot's request depends only
on that shot and the film-level context, never on other shots' prompts, so editing one shot
re-enhances that shot alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from .backends import ENHANCERS, available, load_backend
from .storyboard import Camera, EnhancerSettings

if TYPE_CHECKING:
    from .plan import FilmPlan
    from .storyboard import Storyboard


class FilmContext(BaseModel):
    """What every shot of the film shares."""

    model_config = ConfigDict(frozen=True)

    title: str
    logline: str | None = None
    style: str | None = None


class ShotContext(BaseModel):
    """One shot as an enhancer sees it: its prompt (characters filled in) and everything around it."""

    model_config = ConfigDict(frozen=True)

    id: str
    scene: str
    scene_title: str | None
    setting: str | None
    prompt: str
    camera: Camera | None
    characters: dict[str, str]  # name -> description
    mode: str  # fresh | image | continue
    seconds: float
    caption: str | None = None


@dataclass(frozen=True)
class EnhancedPrompt:
    shot_id: str
    prompt: str
    source: str  # the backend that wrote it ("none", "template", "vllm", ...)
    model: str | None = None


@runtime_checkable
class Enhancer(Protocol):
    """The enhancer contract. Implementations take ``EnhancerSettings`` in ``__init__``."""

    name: str

    def enhance(self, film: FilmContext, shots: Sequence[ShotContext]) -> list[EnhancedPrompt]:
        """One enhanced prompt per shot, in the order given."""
        ...


def available_enhancers() -> list[str]:
    return available(ENHANCERS)


def open_enhancer(name: str, settings: EnhancerSettings) -> Enhancer:
    cls = load_backend(ENHANCERS, name)
    return cls(settings)  # type: ignore[no-any-return]


def film_context(board: Storyboard) -> FilmContext:
    return FilmContext(title=board.title, logline=board.logline, style=board.style)


def shot_contexts(board: Storyboard, plan: FilmPlan) -> list[ShotContext]:
    """Every shot of the plan, in timeline order, with the context an enhancer needs."""
    contexts = []
    for shot in plan.shots:
        _, _, scene, _ = board.find_shot(shot.id)
        contexts.append(
            ShotContext(
                id=shot.id,
                scene=shot.scene,
                scene_title=scene.title,
                setting=shot.setting,
                prompt=shot.prompt,
                camera=shot.camera,
                characters={name: board.characters[name].description for name in shot.characters},
                mode=shot.mode,
                seconds=shot.seconds,
                caption=shot.caption,
            )
        )
    return contexts
