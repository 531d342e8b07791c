"""Stage 3 of a render: the enhancer contract.

An enhancer is "given shots in context, return prompts": it rewrites each shot's short prompt into
the detailed caption SkyReels-V2 was trained on (shot type, subject and action, what changes,
setting, lighting and style, camera motion). It receives the whole film at once, so a backend
that talks to an LLM server can send every request concurrently; each shot's request depends only
on that shot and the film-level context, never on other shots' prompts, so editing one shot
re-enhances that shot alone.

Backends subclass :class:`Enhancer`, which declares the contract and its optional members, and are
found by name (:mod:`storyreel.backends`): :func:`enhance_film` runs one over a film's shots with the
prompt lock, and :func:`serve_enhancer` starts the server one talks to.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from .backends import ENHANCERS, available, load_backend
from .errors import StoryboardError, StoryreelError, UserError
from .prompt_lock import LockEntry, PromptLock, text_sha256
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


class EnhancerServer(Protocol):
    """A running server an enhancer talks to, as :meth:`Enhancer.serve` returns it."""

    url: str  # the API base that goes into enhancer.url or --enhancer-url
    models: list[str]  # the model ids it serves
    log_path: Path  # where its output goes

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        ...

    def stop(self) -> None:
        """Stop the server and every process it started."""
        ...


class Enhancer(abc.ABC):
    """The enhancer contract: given shots in context, return prompts.

    A backend subclasses this, sets ``name``, takes the storyboard's ``EnhancerSettings`` in
    ``__init__`` and implements :meth:`fingerprint` and :meth:`enhance`; it is registered under the
    ``storyreel.enhancers`` entry-point group. ``reproducible`` and :meth:`serve` are optional: what
    is written here is what a backend that leaves them alone gets.
    """

    name: ClassVar[str]
    """The name the backend is registered under; every prompt it writes records it as its source."""

    reproducible: ClassVar[bool] = False
    """True when the same shot always gives the same prompt, at no cost (the ``template`` and ``none``
    backends). Such prompts are not written to the prompt lock unless one exists already: enhancing
    again gives them back. False for a model, whose answers cost time and may change: each is locked
    as it arrives."""

    def __init__(self, settings: EnhancerSettings):
        self.settings = settings

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A stable hash of everything in the backend that decides its output (model, template, caps, sampling)."""

    @abc.abstractmethod
    def enhance(
        self,
        film: FilmContext,
        shots: Sequence[ShotContext],
        on_result: Callable[[EnhancedPrompt], None] | None = None,
    ) -> list[EnhancedPrompt]:
        """One enhanced prompt per shot, in the order given; ``on_result`` hears of each as soon as it is ready."""

    @classmethod
    def serve(
        cls,
        model: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        tensor_parallel_size: int | None = None,
        max_model_len: int | None = None,
    ) -> EnhancerServer:
        """Start the server this backend talks to, serving ``model``, and return once it answers.

        ``storyreel enhancer serve`` reaches it through :func:`serve_enhancer`. Every argument left
        None takes the backend's own default; ``port=0`` picks a free port. A backend that talks to no
        server of its own does not override this, and :func:`serve_enhancer` says so.
        """
        raise NotImplementedError(f"the {cls.name} enhancer starts no server")


def available_enhancers() -> list[str]:
    return available(ENHANCERS)


def open_enhancer(name: str, settings: EnhancerSettings) -> Enhancer:
    cls = load_backend(ENHANCERS, name)
    return cls(settings)  # type: ignore[no-any-return]


def can_serve(backend: type[Enhancer]) -> bool:
    """Whether an enhancer class starts a server of its own: its ``serve`` is not the contract's, which
    starts nothing."""
    return backend.serve.__func__ is not Enhancer.serve.__func__  # type: ignore[attr-defined]


def serve_enhancer(
    backend: str = "vllm",
    model: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    tensor_parallel_size: int | None = None,
    max_model_len: int | None = None,
    note: Callable[[str], None] = lambda message: None,
) -> EnhancerServer:
    """Start the server that the enhancer ``backend`` talks to, and return it once it answers.

    What ``storyreel enhancer serve`` runs. Arguments left None take the backend's own defaults
    (docs/enhancer.md lists the vllm backend's). ``note`` hears that the server is starting, once
    the backend is known to have one. Raises a ``UserError`` naming the enhancers that can serve
    when ``backend`` cannot.

    >>> server = serve_enhancer("vllm", "Qwen/Qwen2.5-7B-Instruct", port=0)  # doctest: +SKIP
    >>> server.url, server.models  # doctest: +SKIP
    ('http://127.0.0.1:41823/v1', ['Qwen/Qwen2.5-7B-Instruct'])
    >>> server.stop()  # doctest: +SKIP
    """
    cls = load_backend(ENHANCERS, backend)
    if not can_serve(cls):
        servers = [name for name in available_enhancers() if name != backend and _serves(name)]
        fix = (
            f"choose one that does with --backend: {', '.join(servers)}"
            if servers
            else "no installed enhancer starts one"
        )
        raise UserError(
            f"the {backend} enhancer talks to no server of its own, so there is none to start; {fix}"
        )
    note(
        f"starting the {backend} enhancer's server for {model or 'its default model'} "
        "(loading a large model takes minutes)..."
    )
    server: EnhancerServer = cls.serve(
        model,
        host=host,
        port=port,
        tensor_parallel_size=tensor_parallel_size,
        max_model_len=max_model_len,
    )
    return server


def _serves(name: str) -> bool:
    try:
        return can_serve(load_backend(ENHANCERS, name))
    except StoryreelError:
        return False  # a backend whose extra is missing cannot serve here either


def film_context(board: Storyboard) -> FilmContext:
    return FilmContext(title=board.title, logline=board.logline, style=board.style)


def shot_contexts(board: Storyboard, plan: FilmPlan) -> list[ShotContext]:
    """Every shot of the plan, in timeline order, with the context an enhancer needs."""
    contexts = []
    titles: dict[str, str | None] = {}  # looked up by id, so that a film of many shots stays linear
    for scene in board.scenes:
        titles.setdefault(scene.id, scene.title)
    for shot in plan.shots:
        contexts.append(
            ShotContext(
                id=shot.id,
                scene=shot.scene,
                scene_title=titles[shot.scene],
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


# --- a film's prompts: from the lock where it is current, from the enhancer where not ---------------------------

Origin = Literal["enhancer", "lock", "edited", "fallback"]


@dataclass(frozen=True)
class ShotPrompt:
    """The prompt a shot is generated from, and where it came from."""

    prompt: EnhancedPrompt
    origin: Origin  # enhanced now, reused from the lock, hand-edited in the lock, or written by the fallback


def request_fingerprint(film: FilmContext, shot: ShotContext, backend_fingerprint: str) -> str:
    """Everything one shot's enhancement request is made from: the shot in context and the backend's settings."""
    document = {
        "film": film.model_dump(mode="json"),
        "shot": shot.model_dump(mode="json"),
        "backend": backend_fingerprint,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def enhancer_settings(board: Storyboard, **overrides: object) -> EnhancerSettings:
    """The storyboard's enhancer settings with command-line overrides (None leaves a setting alone)."""
    settings = board.enhancer.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    for template in ("system_template", "user_template"):  # backends get absolute paths
        value = getattr(settings, template)
        if value:
            settings = settings.model_copy(update={template: str(board.resolve_asset(value))})
    return settings


def enhance_film(
    board: Storyboard,
    plan: FilmPlan,
    settings: EnhancerSettings,
    *,
    only: set[str] | None = None,
    lock_path: Path | None = None,
    write_lock: bool | None = None,
    refresh: bool = False,
    note: Callable[[str], None] = lambda message: None,
    on_prompt: Callable[[ShotPrompt], None] = lambda prompt: None,
    backend: Enhancer | None = None,
) -> dict[str, ShotPrompt]:
    """Every (selected) shot's prompt, enhancing only what the lock does not already hold.

    Locked prompts are reused while their fingerprint matches; the rest go to the enhancer in one
    call, so a server backend sends them concurrently, and each answer is written to the lock as it
    arrives. ``write_lock`` defaults to: when the backend is not ``reproducible``, or a lock exists.
    If the backend fails and ``settings.fallback`` names another enhancer, that one writes the prompts
    still missing (they are not locked, so the next render asks the real backend again). ``backend``
    is an enhancer object to use instead of opening ``settings.backend`` by name.
    """
    film = film_context(board)
    contexts = [c for c in shot_contexts(board, plan) if only is None or c.id in only]
    enhancer = backend if backend is not None else open_enhancer(settings.backend, settings)
    if settings.fallback:
        load_backend(ENHANCERS, settings.fallback)  # a misspelt fallback fails now, not when it is needed
    backend_fingerprint = enhancer.fingerprint()
    keys = {c.id: request_fingerprint(film, c, backend_fingerprint) for c in contexts}

    lock = None
    if lock_path is not None:
        lock = PromptLock.load(lock_path, board.path.name if board.path else board.title)
        if write_lock is None:
            write_lock = lock_path.exists() or not enhancer.reproducible
    answers_lock = lock if write_lock else None  # where new answers are recorded as they arrive
    results: dict[str, ShotPrompt] = {}
    missing = _reuse_locked(contexts, keys, lock, refresh, results, on_prompt, note)
    if missing:
        try:
            _ask_backend(enhancer, film, missing, keys, answers_lock, results, on_prompt)
        except StoryboardError:
            raise
        except StoryreelError as exc:
            still = [c for c in missing if c.id not in results]
            if not settings.fallback or settings.fallback == settings.backend:
                raise
            _fall_back(settings, film, still, exc, results, on_prompt, note)
    if answers_lock is not None:
        answers_lock.keep_only(plan.timeline)
        answers_lock.save()
    return {c.id: results[c.id] for c in contexts}


def _reuse_locked(
    contexts: list[ShotContext],
    keys: dict[str, str],
    lock: PromptLock | None,
    refresh: bool,
    results: dict[str, ShotPrompt],
    on_prompt: Callable[[ShotPrompt], None],
    note: Callable[[str], None],
) -> list[ShotContext]:
    """Take every shot whose locked prompt is current into ``results``; return the shots still to enhance.

    A locked prompt is current while its fingerprint matches the shot's request and ``refresh`` is off.
    """
    if lock is None:
        return list(contexts)
    missing: list[ShotContext] = []
    for context in contexts:
        entry = lock.get(context.id)
        if entry is not None and entry.fingerprint == keys[context.id] and not refresh:
            origin: Origin = "edited" if entry.edited else "lock"
            results[context.id] = ShotPrompt(
                EnhancedPrompt(context.id, entry.prompt, entry.backend, entry.model), origin
            )
            on_prompt(results[context.id])
            continue
        if entry is not None and entry.edited:
            note(
                f"shot '{context.id}' changed, so its hand-edited prompt in {lock.path} is replaced by a new one"
            )
        missing.append(context)
    return missing


def _ask_backend(
    enhancer: Enhancer,
    film: FilmContext,
    missing: list[ShotContext],
    keys: dict[str, str],
    lock: PromptLock | None,
    results: dict[str, ShotPrompt],
    on_prompt: Callable[[ShotPrompt], None],
) -> None:
    """Enhance the ``missing`` shots in one call, taking each answer into ``results`` (and ``lock``) as it arrives."""

    def arrived(prompt: EnhancedPrompt) -> None:
        prompt = replace(prompt, prompt=prompt.prompt.strip())  # as the lock will read it back
        results[prompt.shot_id] = ShotPrompt(prompt, "enhancer")
        if lock is not None:
            lock.put(
                prompt.shot_id,
                LockEntry(
                    prompt.prompt,
                    prompt.source,
                    prompt.model,
                    keys[prompt.shot_id],
                    text_sha256(prompt.prompt),
                ),
            )
        on_prompt(results[prompt.shot_id])

    for prompt in enhancer.enhance(film, missing, on_result=arrived):
        if prompt.shot_id not in results:  # a backend that does not report as it goes
            arrived(prompt)


def _fall_back(
    settings: EnhancerSettings,
    film: FilmContext,
    still: list[ShotContext],
    failure: StoryreelError,
    results: dict[str, ShotPrompt],
    on_prompt: Callable[[ShotPrompt], None],
    note: Callable[[str], None],
) -> None:
    """Have ``settings.fallback`` write the prompts the backend did not; they are never locked."""
    assert settings.fallback is not None
    note(
        f"the {settings.backend} enhancer failed ({failure}); the {settings.fallback} enhancer writes the "
        f"prompts of {len(still)} shot(s) instead"
    )
    fallback = open_enhancer(settings.fallback, settings.model_copy(update={"backend": settings.fallback}))
    for prompt in fallback.enhance(film, still):
        results[prompt.shot_id] = ShotPrompt(prompt, "fallback")
        on_prompt(results[prompt.shot_id])
