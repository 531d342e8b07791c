"""Stage 3b of a render: keyframes, a start frame per chosen fresh shot, drawn from the characters' references.

Within a chain the cast keeps its looks (a continuing shot starts from its parent's frames); across a cut,
a fresh shot would be a new text-to-video roll. With a ``keyframes:`` section, an image model that takes
reference images draws each chosen fresh shot's first frame from its enhanced prompt, its scene's setting,
the film's style and the reference images of the characters in it; the shot is then made image-to-video
from that frame, exactly as a shot with its own ``image:``.

* Which shots (:func:`keyframe_shots`): ``auto`` takes the fresh shots showing a character with a
  reference, ``all`` every fresh shot, ``none`` no shot. A continuing shot never gets one, and a shot's own
  ``image:`` always wins.
* The contract (:class:`KeyframeModel`): "given a :class:`KeyframeRequest`, return a picture". Backends
  register under the ``storyreel.keyframers`` entry-point group and say which diffusers pipeline classes
  they load and how many reference images they take; their modules import nothing heavy at module level,
  so validating a storyboard can ask them without loading a model library.
* Keys (:func:`keyframe_key`): a keyframe is kept in the shot cache's folder
  (:class:`storyreel.cache.KeyframeCache`, trimmed by ``cache gc`` with the shots) under a digest of
  everything that decides it (the backend and the model's identity, the steps, the prompt, the references'
  bytes, size, seed). The keyframe's own bytes then enter its shot's key as any start image's do, so
  editing one character's reference makes again exactly the keyframes and shots (and their continuations)
  showing that character.
* The stage (:func:`make_keyframes`): the keyframe model is loaded once, only when a keyframe is not in the
  cache, makes every missing keyframe, and is closed (its memory freed) before the video model loads.
* In a render: a keyframe model missing from this machine stops it before any prompt is enhanced
  (:func:`check_keyframe_model`); :func:`with_keyframes` draws with the animatic for an animatic render,
  removes a keyframe an earlier render left for a shot that no longer gets one, and starts each keyframed
  shot from its picture; :func:`record_keyframe_shots` notes with each cached keyframe the shots made from
  it, so ``cache gc`` keeps it while they stay.

>>> KeyframeRequest("glide", "a swan", (), 64, 32, seed=1, steps=4).size
(64, 32)
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .atomic import copy_atomic, make_folder, write_bytes_atomic
from .backends import KEYFRAMERS, load_backend, start_backend
from .errors import GenerationError, Problem, UserError
from .models import resolve_model

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self

    from .cache import KeyframeCache, ShotCache
    from .enhance import ShotPrompt
    from .generate import GeneratorOptions
    from .plan import ShotPlan
    from .render_folder import RenderFolder
    from .rendering import RenderProgress
    from .storyboard import Storyboard

DEFAULT_KEYFRAMER = "flux2"  # the backend of a model that is not on this machine (its kind is not known)
ANIMATIC_KEYFRAMER = "animatic"  # what an animatic render draws keyframes with: no model is loaded
FOLDER = "keyframes"  # keyframes/<shot id>.png in the render folder


@dataclass(frozen=True)
class KeyframeRequest:
    """One keyframe to draw: the shot's prompt, the reference images of its characters (in the order the
    shot names them), the film's size and the shot's seed."""

    shot_id: str
    prompt: str
    references: tuple[Path, ...]
    width: int
    height: int
    seed: int
    steps: int
    characters: tuple[str, ...] = ()  # the characters shown, in order (one per entry of ``placed``)
    placed: tuple[tuple[Path, ...], ...] = ()  # each character's own references

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass(frozen=True)
class KeyframeOptions:
    """How a keyframe backend runs: which model, on which device, at which precision."""

    model: str | None = None  # hub id or local folder
    device: str | None = None  # "cuda", "cpu"; None picks the best available
    dtype: str | None = None  # None picks per device
    base_dir: Path | None = None  # folder that a relative model path is resolved against


class KeyframeModel(ABC):
    """An image model that draws a shot's start frame from a prompt and reference images.

    Subclasses set ``name``, ``version``, the diffusers ``pipeline_classes`` they load and
    ``max_references``, take :class:`KeyframeOptions` in ``__init__`` (loading the model there), implement
    :meth:`make` and free the device in :meth:`close`.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"  # bump when the same inputs would give other pictures
    pipeline_classes: ClassVar[tuple[str, ...]] = ()  # model_index.json _class_name values it loads
    max_references: ClassVar[int] = 4  # reference images one keyframe may be given

    def __init__(self, options: KeyframeOptions):
        self.options = options

    @abstractmethod
    def make(self, request: KeyframeRequest) -> np.ndarray:
        """The keyframe as (height, width, 3) uint8, exactly ``request.width`` x ``request.height``."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release the model and the device memory it held."""

    @classmethod
    def identity(cls, options: KeyframeOptions) -> str:
        """What besides the model and the request decides the pictures (device kind, precision); part of
        every keyframe's key. The default: nothing."""
        return ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- which shots, and what is wrong with the section ----------------------------------------------------------


def keyframe_shots(board: Storyboard) -> list[str]:
    """Ids of the shots that get a keyframe, in file order.

    >>> from storyreel.storyboard import Storyboard
    >>> board = Storyboard.model_validate({"storyreel": 1, "keyframes": {"model": "m"},
    ...     "characters": {"keeper": {"description": "a keeper", "reference": "k.png"}},
    ...     "scenes": [{"id": "s", "shots": [{"id": "a", "prompt": "{{ keeper }} waves"},
    ...                                      {"id": "b", "prompt": "{{ keeper }} waits"},
    ...                                      {"id": "c", "prompt": "the sea", "transition": "cut"},
    ...                                      {"id": "d", "prompt": "{{ keeper }} rows", "transition": "cut",
    ...                                       "video": "take.mp4"}]}]})
    >>> keyframe_shots(board)
    ['a']
    """
    section = board.keyframes
    if section is None or section.shots == "none" or section.model is None:
        return []
    chosen = []
    for si, hi, _, shot in board.iter_shots():
        if shot.image or shot.video or board.is_continuing(si, hi):  # they start from given frames
            continue
        shown = [name for name in board.shot_characters(shot) if name in board.characters]
        if section.shots == "all" or any(board.characters[name].references for name in shown):
            chosen.append(shot.id)
    return chosen


def keyframer_for(model: str, base_dir: Path | None) -> tuple[str | None, str | None]:
    """(backend name, the folder's pipeline class) for a keyframe model setting: the backend that loads the
    class its folder records; the default backend when the model is not on this machine; None for a folder
    no keyframe backend loads."""
    pipeline = resolve_model(model, base_dir).pipeline_class()
    if pipeline is None:
        return DEFAULT_KEYFRAMER, None
    for name, backend in keyframe_backends().items():
        if pipeline in backend.pipeline_classes:
            return name, pipeline
    return None, pipeline


def keyframe_backends() -> dict[str, type[KeyframeModel]]:
    """Every installed keyframe backend that loads a model, by name (their modules are light to import)."""
    found = {}
    for point in entry_points(group=KEYFRAMERS):
        if point.name == ANIMATIC_KEYFRAMER:  # draws, loads no model
            continue
        backend = point.load()
        if backend.pipeline_classes:
            found[point.name] = backend
    return found


def keyframe_problems(board: Storyboard) -> list[Problem]:
    """What is wrong with the ``keyframes:`` section against the film: no model, a model folder of a kind no
    keyframe backend loads, more references in a shot than the model takes, and (with ``shots: all``) a
    character shown in a keyframed shot without a reference. Found before any model loads."""
    section = board.keyframes
    if section is None or section.shots == "none":
        return []
    if section.model is None:
        written = board._source is not None and ("keyframes", "model") in board._source.values
        if written:  # written but refused (an empty name): that error is already reported
            return []
        return [
            board.problem(
                ("keyframes",),
                "keyframes need an image model, and none is set",
                "add `model: black-forest-labs/FLUX.2-klein-4B` under keyframes:, or remove keyframes:",
                key=True,
            )
        ]
    problems: list[Problem] = []
    name, pipeline = keyframer_for(section.model, board.base_dir)
    if name is None:
        known = sorted({c for backend in keyframe_backends().values() for c in backend.pipeline_classes})
        return [
            board.problem(
                ("keyframes", "model"),
                f"'{section.model}' holds a {pipeline}, which no keyframe backend loads",
                f"name an image model that takes reference images ({', '.join(known)})",
            )
        ]
    limit = load_backend(KEYFRAMERS, name).max_references
    chosen = set(keyframe_shots(board))
    missing: dict[str, str] = {}  # character -> first keyframed shot showing it
    for si, hi, _, shot in board.iter_shots():
        if shot.id not in chosen:
            continue
        shown = [c for c in board.shot_characters(shot) if c in board.characters]
        count = sum(len(board.characters[c].references) for c in shown)
        if count > limit:
            # Where the characters are named: the shot's characters: list, else its prompt.
            named = "characters" if shot.characters else "prompt"
            problems.append(
                board.problem(
                    ("scenes", si, "shots", hi, named),
                    f"shot '{shot.id}' shows {', '.join(shown)} with {count} reference images, more than "
                    f"the keyframe model ({name}) takes ({limit})",
                    f"give these characters at most {limit} reference images in all, or give the shot "
                    "its own image:",
                )
            )
        if section.shots == "all":
            for character in shown:
                if not board.characters[character].references:
                    missing.setdefault(character, shot.id)
    for character, shot_id in missing.items():
        problems.append(
            board.problem(
                ("characters", character),
                f"character '{character}' appears in shot '{shot_id}', which gets a keyframe (shots: all), "
                "but has no reference image",
                f"add `reference: refs/{character}.png` to the character, or set keyframes.shots: auto",
                key=True,
            )
        )
    return problems


# --- prompts and keys -------------------------------------------------------------------------------------------


def keyframe_prompt(prompt: str, setting: str | None, style: str | None) -> str:
    """The picture's prompt: the shot's enhanced prompt, with its scene's setting and the film's style when
    the prompt does not already say them.

    >>> keyframe_prompt("A swan glides.", "a lake at dawn", "35mm film")
    'A swan glides. Setting: a lake at dawn. Style: 35mm film.'
    """
    parts = [prompt.strip()]
    for label, text in (("Setting", setting), ("Style", style)):
        if text and text.strip().lower() not in prompt.lower():
            parts.append(f"{label}: {text.strip().rstrip('.')}.")
    return " ".join(parts)


def keyframe_key(request: KeyframeRequest, backend: str, backend_identity: str, model: str | None) -> str:
    """A keyframe's cache key (hex sha256): the backend and model, the request, the references' bytes."""
    document = {
        "backend": backend,
        "backend_identity": backend_identity,
        "model": model,
        "prompt": request.prompt,
        "references": [_sha256(path) for path in request.references],
        "characters": list(request.characters),
        "placed": [[_sha256(path) for path in paths] for paths in request.placed],
        "size": [request.width, request.height],
        "seed": request.seed,
        "steps": request.steps,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keyframe_request(board: Storyboard, shot: ShotPlan, prompt: str, steps: int) -> KeyframeRequest:
    """The request for ``shot``'s keyframe, made from its enhanced ``prompt``."""
    shown = [c for c in shot.characters if c in board.characters]
    placed = tuple(tuple(board.resolve_asset(path) for path in board.characters[c].references) for c in shown)
    return KeyframeRequest(
        shot_id=shot.id,
        prompt=keyframe_prompt(prompt, shot.setting, board.style),
        references=tuple(path for paths in placed for path in paths),
        width=shot.width,
        height=shot.height,
        seed=shot.seed,
        steps=steps,
        characters=tuple(shown),
        placed=placed,
    )


# --- the stage ----------------------------------------------------------------------------------------------------


@dataclass
class KeyframeStage:
    """Where one render's keyframes come from and go: the backend, the render folder's ``keyframes/`` and the
    cache's (None: neither read nor written)."""

    backend: str
    options: KeyframeOptions
    out: Path  # <render folder>/keyframes
    cache: KeyframeCache | None  # <cache root>/keyframes
    reuse: bool = True
    note: Callable[[str], None] = field(default=lambda message: None)
    storyboard: str | None = None  # the storyboard file, recorded with each cached keyframe for `cache gc`
    made: list[str] = field(default_factory=list)  # shots whose keyframe this stage drew (not from the cache)
    keys: dict[str, str] = field(default_factory=dict)  # shot id -> its keyframe's cache key


def make_keyframes(
    board: Storyboard, shots: Sequence[ShotPlan], prompts: dict[str, str], stage: KeyframeStage
) -> dict[str, Path]:
    """Every keyframe ``shots`` need (those planned with ``keyframe``), from the cache or drawn, as
    ``keyframes/<shot id>.png``; returns shot id -> file. The model is loaded once, only if a keyframe is
    missing, and closed before this returns."""
    wanted = [shot for shot in shots if shot.keyframe]
    if not wanted:
        return {}
    assert board.keyframes is not None, "the plan keyframes shots only for a storyboard with keyframes:"
    backend_class: type[KeyframeModel] = load_backend(KEYFRAMERS, stage.backend)
    model = stage.options.model
    model_identity = resolve_model(model, stage.options.base_dir).identity() if model else None
    identity = "/".join(filter(None, (backend_class.version, backend_class.identity(stage.options))))
    requests = {s.id: keyframe_request(board, s, prompts[s.id], board.keyframes.steps) for s in wanted}
    keys = {i: keyframe_key(r, stage.backend, identity, model_identity) for i, r in requests.items()}
    stage.keys.update(keys)
    make_folder(stage.out)
    files: dict[str, Path] = {}
    missing = []
    for shot_id, key in keys.items():
        kept = (
            stage.cache.get(key, used_by=stage.storyboard)
            if stage.cache is not None and stage.reuse
            else None
        )
        if kept is not None:
            files[shot_id] = stage.out / f"{shot_id}.png"
            copy_atomic(kept, files[shot_id])
        else:
            missing.append(shot_id)
    if missing:
        stage.note(f"drawing {len(missing)} keyframe(s) with {stage.backend}")
        with start_backend(KEYFRAMERS, backend_class, stage.options) as drawer:
            for shot_id in missing:
                files[shot_id] = _draw(drawer, requests[shot_id], keys[shot_id], stage)
                stage.made.append(shot_id)
    return {shot.id: files[shot.id] for shot in wanted}


def _draw(drawer: KeyframeModel, request: KeyframeRequest, key: str, stage: KeyframeStage) -> Path:
    """Draw one keyframe, check it, and write it into the render folder and the cache."""
    import numpy as np

    try:
        picture = drawer.make(request)
    except UserError:
        raise
    except Exception as exc:
        raise GenerationError(
            f"the {drawer.name} keyframe model failed on shot '{request.shot_id}': {type(exc).__name__}: {exc}"
        ) from exc
    expected = (request.height, request.width, 3)
    if picture.shape != expected or picture.dtype != np.uint8:
        raise GenerationError(
            f"the {drawer.name} keyframe model gave shot '{request.shot_id}' a {picture.shape} "
            f"{picture.dtype} picture, not {expected} uint8"
        )
    data = _png(picture)
    path = stage.out / f"{request.shot_id}.png"
    write_bytes_atomic(path, data)
    if stage.cache is not None:
        try:
            stage.cache.put(key, data, used_by=stage.storyboard)
        except OSError as exc:
            stage.note(
                f"could not cache keyframe '{request.shot_id}': {exc.strerror or exc}; the render goes on"
            )
    return path


def _png(picture: np.ndarray) -> bytes:
    """PNG bytes of a (height, width, 3) uint8 picture, written the same way every time."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def fitted(picture: Any, width: int, height: int) -> np.ndarray:
    """A PIL picture scaled to cover ``width`` x ``height`` and centre-cropped, as (height, width, 3) uint8."""
    import numpy as np
    from PIL import Image, ImageOps

    if picture.size != (width, height):
        picture = ImageOps.fit(picture.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)
    return np.asarray(picture.convert("RGB"), dtype=np.uint8).copy()


# --- the stage in a render -------------------------------------------------------------------------------


def check_keyframe_model(board: Storyboard, order: list[ShotPlan], animatic: bool) -> None:
    """A keyframe model that is not on this machine fails here, before any prompt is enhanced (an animatic
    render draws its keyframes without one)."""
    if animatic or board.keyframes is None or board.keyframes.model is None:
        return
    if any(shot.keyframe for shot in order):
        resolve_model(board.keyframes.model, board.base_dir).require()


def with_keyframes(
    board: Storyboard,
    order: list[ShotPlan],
    prompts: dict[str, ShotPrompt],
    animatic: bool,
    options: GeneratorOptions,
    folder: RenderFolder,
    cache: ShotCache | None,
    reuse: bool,
    report: RenderProgress,
) -> tuple[list[ShotPlan], dict[str, str]]:
    """Stage 3b: ``order`` with each keyframed shot's ``image`` set to its drawn keyframe, and each keyframed
    shot's keyframe key. An animatic render draws them with the animatic (no model is loaded); a model's
    render with ``keyframes.model``."""
    # Imported here: the cache imports numpy, and (through the shot keys) the plan, which imports this module.
    from .cache import KeyframeCache

    for (
        shot
    ) in order:  # a shot that no longer gets a keyframe must not seem, in the folder, to start from one
        if not shot.keyframe:
            (folder.path / FOLDER / f"{shot.id}.png").unlink(missing_ok=True)
    if not any(shot.keyframe for shot in order):
        return order, {}
    assert board.keyframes is not None and board.keyframes.model is not None
    if animatic:
        backend, keyframe_options = ANIMATIC_KEYFRAMER, KeyframeOptions(base_dir=board.base_dir)
    else:
        backend = keyframer_for(board.keyframes.model, board.base_dir)[0] or ""
        keyframe_options = KeyframeOptions(
            model=board.keyframes.model, device=options.device, dtype=options.dtype, base_dir=board.base_dir
        )
    report.stage("keyframes", backend)
    stage = KeyframeStage(
        backend=backend,
        options=keyframe_options,
        out=folder.path / FOLDER,
        cache=KeyframeCache(cache.root, warn=cache.warn) if cache is not None else None,
        reuse=reuse,
        note=report.note,
        storyboard=str(board.path.resolve()) if board.path else None,
    )
    files = make_keyframes(board, order, {s: p.prompt.prompt for s, p in prompts.items()}, stage)
    drawn = [
        shot.model_copy(update={"image": str(files[shot.id])}) if shot.id in files else shot for shot in order
    ]
    return drawn, stage.keys


def record_keyframe_shots(
    cache: ShotCache, keyframes: dict[str, str], order: list[ShotPlan], cache_keys: dict[str, str]
) -> None:
    """Note with each cached keyframe the keys of the shots made from it: its own shot and every shot
    continuing that one, whose keys all hold its bytes. ``cache gc`` keeps a keyframe while one of those
    entries stays: redrawn, the keyframe would not be the same picture, and each of them would be made again.
    Recorded before the shots are made (their keys are known), so a render cut off midway is covered."""
    # Imported here: the cache imports numpy, and (through the shot keys) the plan, which imports this module.
    from .cache import KeyframeCache

    origin: dict[str, str] = {}  # shot id -> the keyframed shot it is made from
    made: dict[str, list[str]] = {}
    for shot in order:  # render order: a parent comes before its continuations
        start = shot.id if shot.id in keyframes else origin.get(shot.conditioned_on or "")
        if start is not None:
            origin[shot.id] = start
            made.setdefault(keyframes[start], []).append(cache_keys[shot.id])
    store = KeyframeCache(cache.root)
    for key, shots in made.items():
        store.record_shots(key, shots)
