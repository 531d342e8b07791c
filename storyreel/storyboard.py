"""Stage 1 of a render: the storyboard, loaded from YAML (or built in code) and checked.

A storyboard is a film in scenes and shots. This module owns its format (``storyreel: 1``): the
pydantic models, loading YAML and Jinja2-templated YAML with every error pinned to
``file:line:col``, expanding ``{{ character }}`` references, and resolving asset paths.

>>> board = Storyboard.model_validate({
...     "storyreel": 1, "title": "Swan",
...     "characters": {"swan": {"description": "a white swan"}},
...     "scenes": [{"id": "lake", "shots": [{"id": "glide", "prompt": "{{ swan }} glides", "duration": "4s"}]}],
... })
>>> board.expanded_prompt(board.scenes[0].shots[0])
'a white swan glides'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import jinja2.meta
import jinja2.sandbox
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from .camera import (
    ANGLES,
    MOVES,
    SHOT_TYPES,
    Angle,
    ShotType,
    normalise_angle,
    normalise_shot_type,
    parse_move,
)
from .errors import Problem, StoryboardError
from .yaml_source import Path_, SourceMap, field_name, load_yaml

FORMAT_VERSION = 1
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
CHARACTER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
Transition = Literal["continue", "cut", "dissolve", "fade"]
TRANSITIONS: tuple[str, ...] = ("continue", "cut", "dissolve", "fade")

# SkyReels-V2's default negative prompt, in English: the artefacts diffusion forcing tends to produce.
DEFAULT_NEGATIVE_PROMPT = (
    "oversaturated colours, overexposed, static, blurry details, subtitles, text, watermark, style, artwork, "
    "painting, still image, greyish tone, worst quality, low quality, JPEG artefacts, ugly, mutilated, extra "
    "fingers, badly drawn hands, badly drawn face, deformed, disfigured, malformed limbs, fused fingers, frozen "
    "frame, cluttered background, three legs, crowded background, walking backwards"
)

RESOLUTIONS = {"540P": (960, 544), "720P": (1280, 720)}


def _fail(message: str, fix: str = "") -> PydanticCustomError:
    return PydanticCustomError("storyreel", "{message}", {"message": message, "fix": fix})


# --- scalar formats -------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``4``, ``4.5``, ``"4s"``, ``"1500ms"`` or ``"1min"``; must be > 0.

    >>> parse_duration("1500ms"), parse_duration(4), parse_duration("0.5 min")
    (1.5, 4.0, 30.0)
    """
    if isinstance(value, bool) or value is None:
        raise _fail(f"{value!r} is not a duration", "write seconds such as 4s, 3.5s or 1500ms")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise _fail(f"{value!r} is not a duration", "write seconds such as 4s, 3.5s or 1500ms")
        number, unit = float(match.group(1)), (match.group(2) or "s")
        seconds = number / 1000 if unit == "ms" else number * 60 if unit.startswith("m") else number
    else:
        raise _fail(f"{value!r} is not a duration", "write seconds such as 4s, 3.5s or 1500ms")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise _fail(f"{value} must be > 0", "set a duration such as 4s")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": _DURATION.pattern},
            ],
            "description": "seconds: 4, 3.5s, 1500ms, 1min",
        }
    ),
]


def parse_resolution(value: Any) -> str:
    """``540P`` (960x544), ``720P`` (1280x720) or ``"WxH"`` with both sides multiples of 16."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise _fail(f"{value!r} is not a resolution", "use 540P, 720P or WIDTHxHEIGHT such as 832x480")
    text = str(value).strip()
    if text.upper().rstrip("P") in ("540", "720"):
        return text.upper().rstrip("P") + "P"
    match = re.fullmatch(r"(\d+)\s*[xX×]\s*(\d+)", text)
    if not match:
        raise _fail(f"{value!r} is not a resolution", "use 540P, 720P or WIDTHxHEIGHT such as 832x480")
    width, height = int(match.group(1)), int(match.group(2))
    if width % 16 or height % 16 or width < 64 or height < 64:
        fix_w, fix_h = max(64, round(width / 16) * 16), max(64, round(height / 16) * 16)
        raise _fail(
            f"{width}x{height} is not a valid size: both sides must be multiples of 16 and at least 64",
            f"use {fix_w}x{fix_h}",
        )
    return f"{width}x{height}"


def resolution_size(resolution: str) -> tuple[int, int]:
    """(width, height) of a validated resolution string.

    >>> resolution_size("540P"), resolution_size("832x480")
    ((960, 544), (832, 480))
    """
    if resolution in RESOLUTIONS:
        return RESOLUTIONS[resolution]
    width, height = resolution.lower().split("x")
    return int(width), int(height)


def _four_k_plus_one(name: str, examples: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1 and (value - 1) % 4:
            lower, upper = (value - 1) // 4 * 4 + 1, (value - 1) // 4 * 4 + 5
            raise _fail(
                f"{value} is not of the form 4k+1 (the video VAE encodes 1 + 4k frames)",
                f"use {lower} or {upper}; {examples}",
            )
        return value

    return BeforeValidator(check)


def _shot_type(value: Any) -> Any:
    if isinstance(value, str):
        normalised = normalise_shot_type(value)
        if normalised not in SHOT_TYPES:
            close = difflib.get_close_matches(normalised, SHOT_TYPES, n=1)
            raise _fail(
                f"unknown shot type {value!r}",
                (f"did you mean '{close[0]}'? " if close else "") + "use one of: " + ", ".join(SHOT_TYPES),
            )
        return normalised
    return value


def _angle(value: Any) -> Any:
    if isinstance(value, str):
        normalised = normalise_angle(value)
        if normalised not in ANGLES:
            close = difflib.get_close_matches(normalised, ANGLES, n=1)
            raise _fail(
                f"unknown camera angle {value!r}",
                (f"did you mean '{close[0]}'? " if close else "") + "use one of: " + ", ".join(ANGLES),
            )
        return normalised
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- the format -----------------------------------------------------------------------------------------------


class Camera(_Model):
    """How a shot is framed and moved, in SkyReels-V2's caption vocabulary."""

    shot: Annotated[ShotType | None, BeforeValidator(_shot_type)] = Field(
        None, description="shot type: " + ", ".join(SHOT_TYPES)
    )
    angle: Annotated[Angle | None, BeforeValidator(_angle)] = Field(
        None, description="camera angle: " + ", ".join(ANGLES)
    )
    move: str | None = Field(
        None, description="camera move from these words, optionally slow/fast: " + ", ".join(MOVES)
    )

    @field_validator("move")
    @classmethod
    def _known_move(cls, value: str | None) -> str | None:
        try:
            parse_move(value)
        except ValueError:
            raise _fail(
                f"no camera move recognised in {value!r}",
                "describe it with: " + ", ".join(MOVES) + " (optionally slow/fast)",
            ) from None
        return value


class Generation(_Model):
    """Diffusion-forcing settings. Every key is optional: a shot inherits what it does not set from its scene,
    the scene from the film, the film from storyreel's defaults (SkyReels-V2's recommended values)."""

    model: str | None = Field(
        None,
        description="hub id (resolved from the local cache) or a local diffusers folder; absent: animatic",
    )
    resolution: Annotated[str | None, BeforeValidator(lambda v: v if v is None else parse_resolution(v))] = (
        Field(None, description="540P (960x544), 720P (1280x720) or WIDTHxHEIGHT, multiples of 16")
    )
    fps: int | None = Field(None, ge=1, le=120)
    steps: int | None = Field(None, ge=1, le=1000, description="denoising steps")
    guidance_scale: float | None = Field(
        None, ge=0, description="classifier-free guidance; > 1 doubles the passes"
    )
    shift: float | None = Field(None, gt=0, description="flow-matching timestep shift")
    base_num_frames: Annotated[int | None, _four_k_plus_one("base_num_frames", "97, 77 and 57 are usual")] = (
        Field(None, ge=5, description="frames per diffusion-forcing window (97 for 540P, 121 for 720P)")
    )
    overlap_history: Annotated[
        int | None, _four_k_plus_one("overlap_history", "17 and 37 are recommended")
    ] = Field(None, ge=1, description="tail frames a continuing shot or window is conditioned on")
    addnoise_condition: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="noise mixed into the clean prefix (20 recommended, > 60 hurts consistency)",
    )
    ar_step: int | None = Field(None, ge=0, description="0 synchronous, > 0 asynchronous diffusion forcing")
    causal_block_size: int | None = Field(
        None, ge=1, description="latent frames per causal block (5 with ar_step 5)"
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="film seed; shots derive their own")


GENERATION_DEFAULTS: dict[str, Any] = {
    "model": None,
    "resolution": "540P",
    "fps": 24,
    "steps": 30,
    "guidance_scale": 6.0,
    "shift": 8.0,
    "base_num_frames": 97,
    "overlap_history": 17,
    "addnoise_condition": 20,
    "ar_step": 0,
    "causal_block_size": 1,
    "seed": 42,
}
FILM_ONLY_SETTINGS = ("resolution", "fps")


class Character(_Model):
    description: str = Field(
        min_length=1, description="how the character looks; replaces {{ name }} in prompts"
    )
    reference: str | None = Field(None, description="image of the character, relative to the storyboard")


class Shot(_Model):
    id: str = Field(pattern=IDENTIFIER, description="unique across the film; names shots/<id>.mp4")
    prompt: str = Field(
        min_length=1, description="what happens; {{ name }} inserts a character's description"
    )
    duration: Duration | None = Field(None, description="length, snapped to a valid frame count")
    frames: int | None = Field(None, ge=1, description="length in frames instead of a duration")
    camera: Camera | None = None
    characters: list[str] = Field(default_factory=list, description="characters in the shot")
    caption: str | None = Field(None, description="subtitle shown during the shot")
    transition: Transition | None = Field(
        None,
        description="how the shot joins the previous one; default: cut for a scene's first shot, else continue",
    )
    transition_duration: Duration | None = Field(
        None, description="length of a dissolve or fade (default 0.5s)"
    )
    continues: str | None = Field(None, description="shot id whose tail frames this shot is conditioned on")
    image: str | None = Field(None, description="start frame (image-to-video), relative to the storyboard")
    generation: Generation | None = None


class Scene(_Model):
    id: str = Field(pattern=IDENTIFIER)
    title: str | None = None
    setting: str | None = Field(None, description="where and when the scene happens; context for every shot")
    after: list[str] = Field(default_factory=list, description="scene ids this scene comes after")
    generation: Generation | None = None
    shots: list[Shot] = Field(min_length=1)


class EnhancerSettings(_Model):
    backend: str = Field("template", description="none | template | vllm (or any installed enhancer)")
    url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="model name the endpoint serves")
    max_words: int = Field(120, ge=10, le=1000, description="cap on an enhanced prompt's length")
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once (server backends)")
    timeout: float = Field(
        120.0,
        gt=0,
        description="seconds a server backend keeps retrying an unreachable server before it gives up",
    )
    request_timeout: float = Field(120.0, gt=0, description="seconds one answer may take")
    system_template: str | None = Field(
        None, description="your own Jinja2 system prompt for LLM backends, relative to the storyboard"
    )
    user_template: str | None = Field(
        None, description="your own Jinja2 per-shot message for LLM backends, relative to the storyboard"
    )
    fallback: str | None = Field(
        None, description="enhancer to use for shots the backend cannot enhance (e.g. template)"
    )


class Audio(_Model):
    music: str = Field(description="music bed, relative to the storyboard")
    volume: float = Field(1.0, ge=0, le=4)
    fade_in: Duration | None = None
    fade_out: Duration | None = Field(None, description="fade at the film's end (default 1s)")


class Storyboard(_Model):
    """A whole film. Load one with :func:`load_storyboard`, or build it in code."""

    storyreel: int = Field(description="format version; this storyreel reads version 1")
    title: str = Field("Untitled", min_length=1)
    logline: str | None = None
    style: str | None = Field(None, description="look every shot inherits")
    negative_prompt: str | None = Field(
        None, description="what to avoid; SkyReels-V2's artefact list by default"
    )
    generation: Generation = Field(default_factory=lambda: Generation())
    enhancer: EnhancerSettings = Field(default_factory=lambda: EnhancerSettings())
    characters: dict[Annotated[str, Field(pattern=CHARACTER_NAME)], Character] = Field(default_factory=dict)
    scenes: list[Scene] = Field(min_length=1, description="the film's scenes")
    audio: Audio | None = None
    vars: dict[str, Any] | None = Field(None, description="template variables (templated storyboards only)")

    _source: SourceMap | None = PrivateAttr(None)
    _path: Path | None = PrivateAttr(None)
    _base_dir: Path | None = PrivateAttr(None)
    _rendered: bool = PrivateAttr(False)
    _display: str | None = PrivateAttr(None)

    @field_validator("storyreel")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise _fail(
                f"unsupported storyboard format version {value}",
                f"this storyreel reads version {FORMAT_VERSION}; write `storyreel: {FORMAT_VERSION}`",
            )
        return value

    # --- where things are -------------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The file this storyboard was loaded from (None when built in code)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative asset paths are resolved against."""
        if self._base_dir is not None:
            return self._base_dir
        return self._path.parent if self._path else Path.cwd()

    def with_base_dir(self, base_dir: str | Path) -> Storyboard:
        """Resolve assets of a storyboard built in code against ``base_dir`` instead of the working directory."""
        self._base_dir = Path(base_dir).resolve()
        return self

    @property
    def display_name(self) -> str:
        """How messages name this storyboard: its file (marked "(rendered)" for a template), or <storyboard>."""
        return self._display or "<storyboard>"

    def problem(self, path: Path_, message: str, fix: str = "", *, key: bool = False) -> Problem:
        """A Problem pinned to where ``path`` was written (or its nearest ancestor)."""
        position = self._source.locate(path, key=key) if self._source else None
        return Problem(
            self.display_name,
            position.line if position else None,
            position.column if position else None,
            field_name(path),
            message,
            fix,
        )

    # --- walking the film -------------------------------------------------------------------------------------

    def iter_shots(self) -> Iterator[tuple[int, int, Scene, Shot]]:
        """(scene index, shot index, scene, shot) in file order."""
        for si, scene in enumerate(self.scenes):
            for hi, shot in enumerate(scene.shots):
                yield si, hi, scene, shot

    def find_shot(self, shot_id: str) -> tuple[int, int, Scene, Shot]:
        for entry in self.iter_shots():
            if entry[3].id == shot_id:
                return entry
        raise KeyError(shot_id)

    def setting(self, shot: Shot, key: str) -> tuple[Any, Path_ | None]:
        """The effective generation setting ``key`` for ``shot`` and the path where it was set (None: default)."""
        si, hi, scene, _ = self.find_shot(shot.id)
        layers: list[tuple[Generation | None, Path_]] = [
            (shot.generation, ("scenes", si, "shots", hi, "generation", key)),
            (scene.generation, ("scenes", si, "generation", key)),
            (self.generation, ("generation", key)),
        ]
        for layer, path in layers:
            if layer is not None and getattr(layer, key) is not None:
                return getattr(layer, key), path
        return GENERATION_DEFAULTS[key], None

    # --- prompts ----------------------------------------------------------------------------------------------

    def expand(self, text: str) -> str:
        """Replace ``{{ name }}`` with each character's description (a sandboxed, strict Jinja2 render)."""
        env = _prompt_environment()
        context = {name: character.description for name, character in self.characters.items()}
        return " ".join(env.from_string(text).render(context).split())

    def expanded_prompt(self, shot: Shot) -> str:
        return self.expand(shot.prompt)

    def shot_characters(self, shot: Shot) -> list[str]:
        """Characters in a shot: those listed in ``characters:`` and those its prompt names."""
        names = list(shot.characters)
        try:
            referenced = jinja2.meta.find_undeclared_variables(_prompt_environment().parse(shot.prompt))
        except jinja2.TemplateSyntaxError:
            referenced = set()
        for name in sorted(referenced):
            if name in self.characters and name not in names:
                names.append(name)
        return names

    def resolve_asset(self, value: str) -> Path:
        """An asset path as written in the storyboard, resolved against :attr:`base_dir`."""
        path = Path(value).expanduser()
        return (path if path.is_absolute() else self.base_dir / path).resolve()

    # --- checks that need the whole film ----------------------------------------------------------------------

    def check(self, *, allow_outside: bool = False) -> None:
        """Raise StoryboardError listing every cross-reference, asset and prompt problem in the film."""
        StoryboardError.raise_if_any(self.problems(allow_outside=allow_outside))

    def problems(self, *, allow_outside: bool = False) -> list[Problem]:
        problems: list[Problem] = []
        problems += self._identity_problems()
        problems += self._reference_problems()
        problems += self._prompt_problems()
        problems += self._asset_problems(allow_outside)
        if self.vars is not None and not self._rendered:
            problems.append(
                self.problem(
                    ("vars",),
                    "`vars:` is only read in a templated storyboard",
                    "rename the file to end in .yaml.j2, or remove `vars:`",
                    key=True,
                )
            )
        return problems

    def _identity_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        seen_scenes: dict[str, int] = {}
        for si, scene in enumerate(self.scenes):
            if scene.id in seen_scenes:
                problems.append(
                    self.problem(
                        ("scenes", si, "id"),
                        f"scene id '{scene.id}' is already used by scenes[{seen_scenes[scene.id]}]",
                        "give every scene a unique id",
                    )
                )
            seen_scenes.setdefault(scene.id, si)
        seen_shots: dict[str, str] = {}
        for si, hi, _, shot in self.iter_shots():
            where = f"scenes[{si}].shots[{hi}]"
            if shot.id in seen_shots:
                problems.append(
                    self.problem(
                        ("scenes", si, "shots", hi, "id"),
                        f"shot id '{shot.id}' is already used by {seen_shots[shot.id]}",
                        "give every shot in the film a unique id",
                    )
                )
            seen_shots.setdefault(shot.id, where)
            base: Path_ = ("scenes", si, "shots", hi)
            if shot.duration is not None and shot.frames is not None:
                problems.append(
                    self.problem(
                        base + ("frames",),
                        "both `duration` and `frames` are set",
                        "keep one of them",
                        key=True,
                    )
                )
            if shot.duration is None and shot.frames is None:
                problems.append(
                    self.problem(
                        base, f"shot '{shot.id}' has no length", "add `duration: 4s` (or `frames: 97`)"
                    )
                )
            problems += self._film_only_problems(shot.generation, base + ("generation",))
        for si, scene in enumerate(self.scenes):
            problems += self._film_only_problems(scene.generation, ("scenes", si, "generation"))
        return _unique(problems)

    def _film_only_problems(self, layer: Generation | None, base: Path_) -> list[Problem]:
        return [
            self.problem(
                base + (key,),
                f"`{key}` applies to the whole film and cannot change per scene or shot",
                "set it once under the top-level `generation:` and remove it here",
                key=True,
            )
            for key in FILM_ONLY_SETTINGS
            if layer is not None and getattr(layer, key) is not None
        ]

    def _reference_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        scene_ids = [scene.id for scene in self.scenes]
        shot_ids = [shot.id for _, _, _, shot in self.iter_shots()]
        for si, scene in enumerate(self.scenes):
            for ai, other in enumerate(scene.after):
                path: Path_ = ("scenes", si, "after", ai)
                if other == scene.id:
                    problems.append(
                        self.problem(path, f"scene '{scene.id}' cannot come after itself", "remove it")
                    )
                elif other not in scene_ids:
                    problems.append(
                        self.problem(
                            path, f"unknown scene '{other}'", _suggest(other, scene_ids, "scene ids")
                        )
                    )
        for si, hi, _, shot in self.iter_shots():
            base: Path_ = ("scenes", si, "shots", hi)
            if shot.continues is not None:
                if shot.continues == shot.id:
                    problems.append(
                        self.problem(
                            base + ("continues",), f"shot '{shot.id}' cannot continue itself", "remove it"
                        )
                    )
                elif shot.continues not in shot_ids:
                    problems.append(
                        self.problem(
                            base + ("continues",),
                            f"unknown shot '{shot.continues}'",
                            _suggest(shot.continues, shot_ids, "shot ids"),
                        )
                    )
            for ci, name in enumerate(shot.characters):
                if name not in self.characters:
                    problems.append(
                        self.problem(
                            base + ("characters", ci),
                            f"unknown character '{name}'",
                            _suggest(name, list(self.characters), "characters")
                            + " (define characters under the top-level `characters:`)",
                        )
                    )
            if shot.image is not None and self.is_continuing(si, hi):
                problems.append(
                    self.problem(
                        base + ("image",),
                        f"shot '{shot.id}' continues the previous footage, so it cannot also start from an image",
                        "remove `image:`, or set `transition: cut` (or dissolve/fade) to start the shot fresh",
                        key=True,
                    )
                )
        return problems

    def is_continuing(self, scene_index: int, shot_index: int) -> bool:
        """Whether a shot is conditioned on earlier footage (``continues:`` or a ``continue`` transition)."""
        shot = self.scenes[scene_index].shots[shot_index]
        return shot.continues is not None or self.transition(scene_index, shot_index) == "continue"

    def transition(self, scene_index: int, shot_index: int) -> str:
        """The shot's transition, with the default filled in (cut for a scene's first shot, else continue)."""
        shot = self.scenes[scene_index].shots[shot_index]
        if shot.transition is not None:
            return shot.transition
        return "cut" if shot_index == 0 else "continue"

    def _prompt_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        env = _prompt_environment()
        known = list(self.characters)
        texts: list[tuple[Path_, str]] = [
            (("scenes", si, "shots", hi, "prompt"), shot.prompt) for si, hi, _, shot in self.iter_shots()
        ]
        texts += [(("scenes", si, "setting"), s.setting) for si, s in enumerate(self.scenes) if s.setting]
        for path, text in texts:
            try:
                parsed = env.parse(text)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(
                    self.problem(
                        path,
                        f"bad {{{{ }}}} reference: {exc.message}",
                        "write a character reference as {{ name }}",
                    )
                )
                continue
            for name in sorted(jinja2.meta.find_undeclared_variables(parsed)):
                if name not in self.characters:
                    problems.append(
                        self.problem(
                            path,
                            f"unknown character '{name}' in {{{{ {name} }}}}",
                            _suggest(name, known, "characters")
                            + " (define it under the top-level `characters:`)",
                        )
                    )
            if not problems or problems[-1].field != field_name(path):
                try:
                    self.expand(text)
                except jinja2.TemplateError as exc:
                    problems.append(
                        self.problem(path, f"cannot expand the prompt: {exc}", "simplify the reference")
                    )
        return problems

    def _asset_problems(self, allow_outside: bool) -> list[Problem]:
        from .assets import AssetKind, check_asset

        problems: list[Problem] = []
        assets: list[tuple[Path_, str, AssetKind]] = []
        for si, hi, _, shot in self.iter_shots():
            if shot.image:
                assets.append((("scenes", si, "shots", hi, "image"), shot.image, "image"))
        for name, character in self.characters.items():
            if character.reference:
                assets.append((("characters", name, "reference"), character.reference, "image"))
        if self.audio is not None:
            assets.append((("audio", "music"), self.audio.music, "music"))
        for template in ("system_template", "user_template"):
            if getattr(self.enhancer, template):
                assets.append((("enhancer", template), getattr(self.enhancer, template), "template"))
        base = self.base_dir.resolve()
        for path, value, kind in assets:
            resolved = self.resolve_asset(value)
            if not allow_outside and not resolved.is_relative_to(base):
                problems.append(
                    self.problem(
                        path,
                        f"'{value}' is outside the storyboard's folder {base}",
                        "move the file into that folder, or pass --allow-outside",
                    )
                )
            elif trouble := check_asset(kind, resolved, value):  # opened as the render will, in bounded time
                problems.append(self.problem(path, trouble.message, trouble.fix))
        return problems


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _suggest(name: str, known: list[str], what: str) -> str:
    known = list(dict.fromkeys(known))
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    if known:
        return f"known {what}: " + ", ".join(known)
    return f"there are no {what} defined"


def _prompt_environment() -> jinja2.sandbox.SandboxedEnvironment:
    return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def storyboard_schema() -> dict[str, Any]:
    """JSON Schema of the storyboard format, for editors (YAML language servers read it)."""
    schema = Storyboard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storyreel storyboard"
    return schema


# --- loading --------------------------------------------------------------------------------------------------


def load_storyboard(
    path: str | Path, *, allow_outside: bool = False, template_vars: dict[str, Any] | None = None
) -> Storyboard:
    """Load and check a storyboard file (``.yaml``, or a Jinja2 template ``.yaml.j2``).

    Raises StoryboardError listing every problem with ``file:line:col``, the field and the fix.

    >>> board = load_storyboard("examples/swan_lake.yaml")  # doctest: +SKIP
    >>> [shot.id for _, _, _, shot in board.iter_shots()]  # doctest: +SKIP
    ['glide', 'dip', ...]
    """
    path = Path(path)
    display = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoryboardError.single(display, None, None, "", "file not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoryboardError.single(display, None, None, "", f"cannot read the file: {exc}", "") from None
    templated = path.name.endswith(".j2")
    if templated:
        from .templating import render_storyboard_template

        rendered = render_storyboard_template(text, display, template_vars or {})
        if rendered.count("\n") != text.count("\n"):
            display = f"{display} (rendered)"
        text = rendered
    elif template_vars:
        raise StoryboardError.single(
            display,
            None,
            None,
            "",
            "variables were given but the storyboard is not a template",
            "rename it to end in .yaml.j2 to use variables",
        )
    board = parse_storyboard(text, display, base_dir=path.resolve().parent, templated=templated)
    board._path = path
    board.check(allow_outside=allow_outside)
    return board


def parse_storyboard(
    text: str, file: str = "<storyboard>", *, base_dir: Path | None = None, templated: bool = False
) -> Storyboard:
    """Parse storyboard YAML text into a Storyboard; structural errors carry file:line:col."""
    data, source = load_yaml(text, file)
    if data is None:
        raise StoryboardError.single(
            file, 1, 1, "", "the storyboard is empty", "start from a template: storyreel new story.yaml"
        )
    if not isinstance(data, dict):
        raise StoryboardError.single(
            file,
            1,
            1,
            "",
            "a storyboard must be a mapping of keys (storyreel:, title:, scenes:, ...)",
            "start from a template: storyreel new story.yaml",
        )
    if templated:
        data.pop("vars", None)
    try:
        board = Storyboard.model_validate(data)
    except ValidationError as exc:
        raise StoryboardError(_problems_from_validation(exc, source, data)) from None
    board._source = source
    board._base_dir = base_dir
    board._rendered = templated
    board._display = file
    return board


def _problems_from_validation(exc: ValidationError, source: SourceMap, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        path: Path_ = tuple(part for part in error["loc"] if isinstance(part, (str, int)))
        kind = error["type"]
        fix = ""
        key = False
        if kind == "storyreel":
            message, fix = error["ctx"]["message"], error["ctx"].get("fix", "")
        elif kind == "extra_forbidden":
            key = True
            message = f"unknown key '{path[-1]}'"
            fix = _key_fix(path, data)
        elif kind == "missing":
            message = f"`{path[-1]}` is required"
            fix = _missing_fix(path)
        elif kind == "too_short" and path and path[-1] in ("scenes", "shots"):
            message = f"there are no {path[-1]}"
            fix = "add at least one" + (" scene with a shot" if path[-1] == "scenes" else " shot")
        elif kind == "string_pattern_mismatch" and path and path[-1] == "id":
            message = f"id {error['input']!r} may hold only letters, digits, '-', '_' and '.'"
            fix = "it names the shot's file, e.g. `id: swan-glide`"
        elif kind == "string_pattern_mismatch":
            message = f"{error['input']!r} is not a valid name"
            fix = "use letters, digits and '_' (it is written as {{ name }} in prompts)"
        elif kind == "literal_error":
            message = f"{error['input']!r} is not allowed"
            fix = error["msg"].replace("Input should be", "use")
        else:
            shown = error.get("input")
            message = error["msg"][0].lower() + error["msg"][1:]
            if not isinstance(shown, (dict, list)):
                message = f"{shown!r}: {message}"
        if path and path[-1] == "storyreel" and kind in ("int_parsing", "int_from_float"):
            fix = f"write `storyreel: {FORMAT_VERSION}`"
        position = source.locate(path, key=key)
        problems.append(
            Problem(
                source.file,
                position.line if position else None,
                position.column if position else None,
                field_name(path),
                message,
                fix,
            )
        )
    return _unique(problems)


_FIELDS_BY_PARENT: dict[str, type[BaseModel]] = {
    "": Storyboard,
    "scenes": Scene,
    "shots": Shot,
    "generation": Generation,
    "camera": Camera,
    "enhancer": EnhancerSettings,
    "audio": Audio,
    "characters": Character,
}


def _model_for(path: Path_) -> type[BaseModel] | None:
    """The model that the mapping at ``path`` is validated as."""
    names = [part for part in path if isinstance(part, str)]
    if not names:
        return Storyboard
    last = names[-1]
    if last in _FIELDS_BY_PARENT:
        if last == "characters" and isinstance(path[-1], str) and path[-1] == "characters":
            return None  # the characters mapping itself is keyed by names
        return _FIELDS_BY_PARENT[last]
    if len(names) >= 2 and names[-2] == "characters":
        return Character
    return None


def _key_fix(path: Path_, data: Any) -> str:
    model = _model_for(path[:-1])
    if model is None:
        return "remove it"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "remove it; allowed keys here: " + ", ".join(allowed)


def _missing_fix(path: Path_) -> str:
    examples = {
        "storyreel": f"add `storyreel: {FORMAT_VERSION}` at the top",
        "scenes": "add `scenes:` with at least one scene",
        "shots": "add `shots:` with at least one shot",
        "id": "add an `id:` such as `id: opening`",
        "prompt": "add a `prompt:` describing what happens",
        "description": "add a `description:` of how the character looks",
        "music": "add `music: path/to/score.mp3`",
    }
    return examples.get(str(path[-1]), f"add `{path[-1]}:`")
