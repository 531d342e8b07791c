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

import copy
import difflib
import functools
import itertools
import math
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
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
from .yaml_source import Path_, SourceMap, collector_paused, decode_text, field_name, load_yaml

FORMAT_VERSION = 1
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A shot id names shots/<id>.mp4 and the temporary files beside it, which a file system caps at 255 bytes.
MAX_ID_LENGTH = 120
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


# --- bounds ---------------------------------------------------------------------------------------------------
# What a storyboard may ask for. SkyReels-V2 is trained at 960x544 and 1280x720 with windows of 97 and 121
# frames, and its authors recommend shots of up to about a minute; beyond these a render cannot fit in memory
# (or takes days), so the storyboard is refused before any work starts. docs/storyboard.md lists them.

MAX_SHOT_SECONDS = 60.0
MAX_SHOT_FRAMES = 1457  # the model card's one-minute length (60.7 s at 24 fps)
MAX_TRANSITION_SECONDS = 10.0
MAX_AUDIO_FADE_SECONDS = 60.0
MAX_SIDE = 1920
MAX_PIXELS = 1920 * 1088
MAX_BASE_NUM_FRAMES = 257  # 65 latent frames: more than twice the 720P window
MAX_CAUSAL_BLOCK_SIZE = 65
MAX_AR_STEP = 100
MAX_PROMPT_CHARS = 100_000  # one prompt, its {{ character }} references filled in
MAX_FILM_PROMPT_CHARS = 20_000_000  # every prompt and setting of the film, filled in

# --- scalar formats -------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?)?\s*$")
_MINUTES_SECONDS = re.compile(r"^\s*(\d{1,3}):([0-5]\d(?:\.\d+)?)\s*$")
_DURATION_FIX = "write seconds such as 4s, 3.5s or 1500ms (or minutes:seconds such as 1:30)"


def parse_duration(value: Any) -> float:
    """Seconds from ``4``, ``4.5``, ``"4s"``, ``"1500ms"``, ``"1min"`` or ``"1:30"`` (minutes:seconds); must be > 0.

    >>> parse_duration("1500ms"), parse_duration(4), parse_duration("0.5 min"), parse_duration("1:30")
    (1.5, 4.0, 30.0, 90.0)
    """
    if isinstance(value, bool) or value is None:
        raise _fail(f"{value!r} is not a duration", _DURATION_FIX)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        clock = _MINUTES_SECONDS.match(value)
        if match:
            number, unit = float(match.group(1)), (match.group(2) or "s")
            seconds = number / 1000 if unit == "ms" else number * 60 if unit.startswith("m") else number
        elif clock:
            seconds = int(clock.group(1)) * 60 + float(clock.group(2))
        else:
            raise _fail(f"{value!r} is not a duration", _DURATION_FIX)
    else:
        raise _fail(f"{value!r} is not a duration", _DURATION_FIX)
    if not math.isfinite(seconds):
        raise _fail(f"{value} is not a finite number of seconds", "set a duration such as 4s")
    if not seconds > 0:
        raise _fail(f"{value} must be > 0", "set a duration such as 4s")
    return seconds


def _at_most(most: float, what: str, fix: str) -> AfterValidator:
    def check(seconds: float | None) -> float | None:
        if seconds is not None and seconds > most:
            raise _fail(f"{seconds:g}s is longer than the {most:g}s {what}", fix)
        return seconds

    return AfterValidator(check)


def _duration_schema(most: float) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": most},
                {"type": "string", "pattern": _DURATION.pattern},
                {"type": "string", "pattern": _MINUTES_SECONDS.pattern},
            ],
            "description": f"seconds: 4, 3.5s, 1500ms, 1min, 1:30 (at most {most:g}s)",
        }
    )


ShotDuration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _at_most(
        MAX_SHOT_SECONDS,
        "a shot may last",
        f"split it into shots of up to {MAX_SHOT_SECONDS:g}s; shots that continue each other "
        "(`transition: continue`) stay one continuous take",
    ),
    _duration_schema(MAX_SHOT_SECONDS),
]
TransitionDuration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _at_most(MAX_TRANSITION_SECONDS, "a dissolve or fade may last", "use a duration such as 0.5s or 1s"),
    _duration_schema(MAX_TRANSITION_SECONDS),
]
FadeDuration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _at_most(MAX_AUDIO_FADE_SECONDS, "an audio fade may last", "use a duration such as 1s or 2s"),
    _duration_schema(MAX_AUDIO_FADE_SECONDS),
]


def parse_resolution(value: Any) -> str:
    """``540P`` (960x544), ``720P`` (1280x720) or ``"WxH"`` with both sides multiples of 16, within bounds."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise _fail(f"{value!r} is not a resolution", "use 540P, 720P or WIDTHxHEIGHT such as 832x480")
    text = str(value).strip()
    if text.upper().rstrip("P") in ("540", "720"):
        return text.upper().rstrip("P") + "P"
    match = re.fullmatch(r"(\d{1,9})\s*[xX×]\s*(\d{1,9})", text)
    if not match:
        raise _fail(f"{value!r} is not a resolution", "use 540P, 720P or WIDTHxHEIGHT such as 832x480")
    width, height = int(match.group(1)), int(match.group(2))
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise _fail(
            f"{width}x{height} is larger than a film may be: at most {MAX_SIDE} pixels a side and "
            f"{MAX_PIXELS:,} pixels in all (1920x1088)",
            "use 720P (1280x720) or 540P (960x544), the sizes SkyReels-V2 is trained at",
        )
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


# --- prompts: {{ character }} references ----------------------------------------------------------------------

# Names Jinja2 reads as something else inside {{ }}: its literals and operators, the objects a template
# sees (self, loop, caller...) and its global functions. A character with such a name could not be
# referenced from a templated storyboard ({{ none }} would print "None"), so such names are refused.
RESERVED_NAMES = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "elif"}
    | {"self", "loop", "super", "caller", "varargs", "kwargs", "vars"}
    | {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)

_TAG_START = re.compile(r"\{[{%#]")
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TAG_END = re.compile(r"[}%#]\}")


class PromptSyntaxError(ValueError):
    """A prompt or setting holds something in braces that is not a ``{{ name }}`` reference."""

    def __init__(self, fragment: str):
        super().__init__(fragment)
        self.fragment = fragment

    def problem(self) -> tuple[str, str]:
        """(message, fix) for a Problem."""
        return (
            f"{self.fragment!r} is not a character reference: prompts and settings only hold "
            "{{ character }} references",
            "write a character as {{ name }} with a name from `characters:`, or remove the braces "
            "(expressions and loops belong in a .yaml.j2 template)",
        )


@functools.lru_cache(
    maxsize=65536
)  # a prompt is read by several checks, a setting once per shot of its scene
def prompt_references(text: str) -> tuple[tuple[int, int, str], ...]:
    """``(start, end, name)`` of every ``{{ name }}`` in a prompt; PromptSyntaxError for any other ``{{``,
    ``{%`` or ``{#``. A plain reading, never a template: a prompt cannot compute, loop or call anything.

    >>> prompt_references("{{ swan }} meets {{heron}}")
    ((0, 10, 'swan'), (17, 26, 'heron'))
    """
    references: list[tuple[int, int, str]] = []
    position = 0
    while (tag := _TAG_START.search(text, position)) is not None:
        reference = _REFERENCE.match(text, tag.start())
        if reference is None:
            end = _TAG_END.search(text, tag.start() + 2)
            stop = end.end() if end is not None and end.end() - tag.start() <= 60 else tag.start() + 40
            raise PromptSyntaxError(text[tag.start() : stop])
        references.append((reference.start(), reference.end(), reference.group(1)))
        position = reference.end()
    return tuple(references)


def _expanded_size(
    text: str, references: tuple[tuple[int, int, str], ...], descriptions: dict[str, str]
) -> int:
    """Characters of the expansion, counted before it is built (a long description referenced often adds up)."""
    return len(text) + sum(len(descriptions.get(name, "")) - (end - start) for start, end, name in references)


def _too_long(size: int) -> tuple[str, str]:
    return (
        f"filled in with the character descriptions it is {size:,} characters, more than the "
        f"{MAX_PROMPT_CHARS:,} a prompt may have",
        "shorten it or the descriptions (the video model's text encoder reads only about 512 tokens)",
    )


def _referable_name(name: str) -> str:
    if name in RESERVED_NAMES:
        raise _fail(
            f"a character cannot be called '{name}': templates read {{{{ {name} }}}} as their own '{name}'",
            f"rename it, e.g. '{name}_character' or a name that says who it is",
        )
    return name


class _Model(BaseModel):
    # A number where text is expected is kept as text (`caption: 1984`; a plain YAML number remembers how it
    # was written, so `id: 007` stays "007"); no float may be inf or nan.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for a number: `frames: true` would be one frame.
        if isinstance(value, bool) and info.field_name is not None:
            types = _types_in(cls.model_fields[info.field_name].annotation)
            if bool not in types and types & {int, float}:
                raise _fail(f"{str(value).lower()} was read as true/false, not as a number", "write a number")
        return value


def _types_in(annotation: Any) -> set[Any]:
    """Every type a field annotation admits (``int | None`` -> {int, NoneType})."""
    found = {annotation}
    for argument in typing.get_args(annotation):
        found |= _types_in(argument)
    return found


def _not_blank(what: str, fix: str) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _fail(f"the {what} is empty (only spaces)", fix)
        return value

    return AfterValidator(check)


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
        None, ge=0, le=50, description="classifier-free guidance; > 1 doubles the passes"
    )
    shift: float | None = Field(None, gt=0, le=100, description="flow-matching timestep shift")
    base_num_frames: Annotated[int | None, _four_k_plus_one("base_num_frames", "97, 77 and 57 are usual")] = (
        Field(
            None,
            ge=5,
            le=MAX_BASE_NUM_FRAMES,
            description="frames per diffusion-forcing window (97 for 540P, 121 for 720P)",
        )
    )
    overlap_history: Annotated[
        int | None, _four_k_plus_one("overlap_history", "17 and 37 are recommended")
    ] = Field(
        None,
        ge=1,
        le=MAX_BASE_NUM_FRAMES - 4,
        description="tail frames a continuing shot or window is conditioned on",
    )
    addnoise_condition: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="noise mixed into the clean prefix (20 recommended, > 60 hurts consistency)",
    )
    ar_step: int | None = Field(
        None, ge=0, le=MAX_AR_STEP, description="0 synchronous, > 0 asynchronous diffusion forcing"
    )
    causal_block_size: int | None = Field(
        None, ge=1, le=MAX_CAUSAL_BLOCK_SIZE, description="latent frames per causal block (5 with ar_step 5)"
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
    description: Annotated[str, _not_blank("description", "describe how the character looks")] = Field(
        min_length=1, description="how the character looks; replaces {{ name }} in prompts"
    )
    reference: str | None = Field(None, description="image of the character, relative to the storyboard")


class Shot(_Model):
    id: str = Field(
        pattern=IDENTIFIER, max_length=MAX_ID_LENGTH, description="unique across the film; names shots/<id>.mp4"
    )
    prompt: Annotated[str, _not_blank("prompt", "describe what happens in the shot")] = Field(
        min_length=1, description="what happens; {{ name }} inserts a character's description"
    )
    duration: ShotDuration | None = Field(None, description="length, snapped to a valid frame count")
    frames: int | None = Field(
        None, ge=1, le=MAX_SHOT_FRAMES, description="length in frames instead of a duration"
    )
    camera: Camera | None = None
    characters: list[str] = Field(default_factory=list, description="characters in the shot")
    caption: str | None = Field(None, description="subtitle shown during the shot")
    transition: Transition | None = Field(
        None,
        description="how the shot joins the previous one; default: cut for a scene's first shot, else continue",
    )
    transition_duration: TransitionDuration | None = Field(
        None, description="length of a dissolve or fade (default 0.5s)"
    )
    continues: str | None = Field(None, description="shot id whose tail frames this shot is conditioned on")
    image: str | None = Field(None, description="start frame (image-to-video), relative to the storyboard")
    generation: Generation | None = None


class Scene(_Model):
    id: str = Field(pattern=IDENTIFIER, max_length=MAX_ID_LENGTH)
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
    fade_in: FadeDuration | None = None
    fade_out: FadeDuration | None = Field(None, description="fade at the film's end (default 1s)")


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
    characters: dict[
        Annotated[str, Field(pattern=CHARACTER_NAME), AfterValidator(_referable_name)], Character
    ] = Field(default_factory=dict)
    scenes: list[Scene] = Field(min_length=1, description="the film's scenes")
    audio: Audio | None = None
    vars: dict[str, Any] | None = Field(None, description="template variables (templated storyboards only)")

    _source: SourceMap | None = PrivateAttr(None)
    _path: Path | None = PrivateAttr(None)
    _base_dir: Path | None = PrivateAttr(None)
    _rendered: bool = PrivateAttr(False)
    _display: str | None = PrivateAttr(None)
    _shot_index: dict[str, tuple[int, int]] | None = PrivateAttr(None)
    _refused_names: frozenset[str] = PrivateAttr(
        frozenset()
    )  # ids and names written but refused: not "unknown"

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
        """(scene index, shot index, scene, shot) of the first shot with this id; KeyError if there is none."""
        found = self._shot_position(shot_id)
        if found is None:
            raise KeyError(shot_id)
        si, hi = found
        scene = self.scenes[si]
        return si, hi, scene, scene.shots[hi]

    def _shot_position(self, shot_id: str) -> tuple[int, int] | None:
        # An index makes every lookup O(1), so validating and planning stay linear in the number of shots.
        # A storyboard built in code may change after a lookup: an entry is checked before use and the index
        # rebuilt when it no longer matches.
        index = self._shot_index
        if index is not None and shot_id in index:
            si, hi = index[shot_id]
            if (
                si < len(self.scenes)
                and hi < len(self.scenes[si].shots)
                and self.scenes[si].shots[hi].id == shot_id
            ):
                return si, hi
        index = {}
        for si, hi, _, shot in self.iter_shots():
            index.setdefault(shot.id, (si, hi))
        self._shot_index = index
        return index.get(shot_id)

    def setting(self, shot: Shot, key: str) -> tuple[Any, Path_ | None]:
        """The effective generation setting ``key`` for ``shot`` and the path where it was set (None: default)."""
        return self.settings_of(shot, (key,))[key]

    def settings_of(
        self, shot: Shot, keys: tuple[str, ...] = tuple(GENERATION_DEFAULTS)
    ) -> dict[str, tuple[Any, Path_ | None]]:
        """:meth:`setting` for several keys at once (every generation setting by default), finding the shot once."""
        si, hi, scene, _ = self.find_shot(shot.id)
        layers: list[tuple[Generation | None, Path_]] = [
            (shot.generation, ("scenes", si, "shots", hi, "generation")),
            (scene.generation, ("scenes", si, "generation")),
            (self.generation, ("generation",)),
        ]
        found: dict[str, tuple[Any, Path_ | None]] = {}
        for key in keys:
            found[key] = (GENERATION_DEFAULTS[key], None)
            for layer, path in layers:
                value = getattr(layer, key) if layer is not None else None
                if value is not None:
                    found[key] = (value, (*path, key))
                    break
        return found

    # --- prompts ----------------------------------------------------------------------------------------------

    def expand(self, text: str) -> str:
        """Replace each ``{{ name }}`` with the character's description, and collapse runs of whitespace.

        Prompts and settings hold only such references: anything else in ``{{ }}``, ``{% %}`` or ``{# #}`` is
        a StoryboardError (``check()`` reports it with its position).
        """
        try:
            references = prompt_references(text)
        except PromptSyntaxError as exc:
            raise StoryboardError.single(self.display_name, None, None, "", *exc.problem()) from None
        unknown = sorted({name for _, _, name in references} - set(self.characters))
        if unknown:
            raise StoryboardError.single(
                self.display_name, None, None, "", f"unknown character '{unknown[0]}' in {text!r}"
            )
        descriptions = {name: character.description for name, character in self.characters.items()}
        size = _expanded_size(text, references, descriptions)
        if size > MAX_PROMPT_CHARS:
            raise StoryboardError.single(self.display_name, None, None, "", *_too_long(size))
        parts: list[str] = []
        start = 0
        for begin, end, name in references:
            parts += [text[start:begin], descriptions[name]]
            start = end
        parts.append(text[start:])
        return " ".join("".join(parts).split())

    def expanded_prompt(self, shot: Shot) -> str:
        return self.expand(shot.prompt)

    def shot_characters(self, shot: Shot) -> list[str]:
        """Characters in a shot: those listed in ``characters:`` and those its prompt names."""
        names = list(shot.characters)
        try:
            referenced = {name for _, _, name in prompt_references(shot.prompt)}
        except PromptSyntaxError:
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
        known_scenes = set(scene_ids) | self._refused_names  # sets: one lookup per reference, not a scan
        known_shots = set(shot_ids) | self._refused_names
        suggest_scene = _Suggest(scene_ids, "scene ids")
        suggest_shot = _Suggest(shot_ids, "shot ids")
        suggest_character = _Suggest(list(self.characters), "characters")
        for si, scene in enumerate(self.scenes):
            for ai, other in enumerate(scene.after):
                path: Path_ = ("scenes", si, "after", ai)
                if other == scene.id:
                    problems.append(
                        self.problem(path, f"scene '{scene.id}' cannot come after itself", "remove it")
                    )
                elif other not in known_scenes:
                    problems.append(self.problem(path, f"unknown scene '{other}'", suggest_scene(other)))
        for si, hi, _, shot in self.iter_shots():
            base: Path_ = ("scenes", si, "shots", hi)
            if shot.continues is not None:
                if shot.continues == shot.id:
                    problems.append(
                        self.problem(
                            base + ("continues",), f"shot '{shot.id}' cannot continue itself", "remove it"
                        )
                    )
                elif shot.continues not in known_shots:
                    problems.append(
                        self.problem(
                            base + ("continues",),
                            f"unknown shot '{shot.continues}'",
                            suggest_shot(shot.continues),
                        )
                    )
            for ci, name in enumerate(shot.characters):
                if name not in self.characters and name not in self._refused_names:
                    problems.append(
                        self.problem(
                            base + ("characters", ci),
                            f"unknown character '{name}'",
                            suggest_character(name)
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
        suggest = _Suggest(list(self.characters), "characters")
        total, over = 0, False
        descriptions = {name: character.description for name, character in self.characters.items()}
        texts: list[tuple[Path_, str]] = [
            (("scenes", si, "shots", hi, "prompt"), shot.prompt) for si, hi, _, shot in self.iter_shots()
        ]
        texts += [(("scenes", si, "setting"), s.setting) for si, s in enumerate(self.scenes) if s.setting]
        for path, text in texts:
            try:
                references = prompt_references(text)
            except PromptSyntaxError as exc:
                problems.append(self.problem(path, *exc.problem()))
                continue
            unknown = sorted(
                {
                    name
                    for _, _, name in references
                    if name not in self.characters and name not in self._refused_names
                }
            )
            for name in unknown:
                problems.append(
                    self.problem(
                        path,
                        f"unknown character '{name}' in {{{{ {name} }}}}",
                        suggest(name) + " (define it under the top-level `characters:`)",
                    )
                )
            if not unknown:
                size = _expanded_size(text, references, descriptions)
                total += size
                if size > MAX_PROMPT_CHARS:
                    problems.append(self.problem(path, *_too_long(size)))
                elif total > MAX_FILM_PROMPT_CHARS and not over:
                    over = True  # said once, where the film's prompts grow past the bound
                    problems.append(
                        self.problem(
                            path,
                            f"with this one, the film's prompts and settings, filled in, add up to more than "
                            f"{MAX_FILM_PROMPT_CHARS:,} characters",
                            "reference long character descriptions less often, or split the film",
                        )
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


class _Suggest:
    """ "did you mean ...?" for names that are not known, built once for a whole check.

    Fuzzy matching every unknown reference of a long film against every id would be quadratic: past 1,000
    known names, only those that start alike and are about as long are compared.
    """

    def __init__(self, known: list[str], what: str):
        self.known = list(dict.fromkeys(known))
        self.what = what
        self.by_start: dict[str, list[str]] = {}
        if len(self.known) > 1000:
            for name in self.known:
                self.by_start.setdefault(name[:2], []).append(name)

    def __call__(self, name: str) -> str:
        candidates = self.known
        if self.by_start:
            candidates = [k for k in self.by_start.get(name[:2], []) if abs(len(k) - len(name)) <= 2][:1000]
        close = difflib.get_close_matches(name, candidates, n=1)
        if close:
            return f"did you mean '{close[0]}'?"
        if len(self.known) > 10:  # a film of thousands of shots is not listed in full
            return f"known {self.what}: " + ", ".join(self.known[:10]) + f" and {len(self.known) - 10} more"
        if self.known:
            return f"known {self.what}: " + ", ".join(self.known)
        return f"there are no {self.what} defined"


def storyboard_schema() -> dict[str, Any]:
    """JSON Schema of the storyboard format, for editors (YAML language servers read it)."""
    schema = Storyboard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storyreel storyboard"
    return schema


# --- loading --------------------------------------------------------------------------------------------------


def storyboard_yaml(path: str | Path, *, template_vars: dict[str, Any] | None = None) -> str:
    """The YAML a storyboard file is read as: the file itself, or what a ``.yaml.j2`` template renders to.

    ``storyreel validate STORY --print-yaml`` prints it, so that positions in a rendered template can be seen.
    """
    return _read_storyboard(Path(path), template_vars)[0]


def _read_storyboard(path: Path, template_vars: dict[str, Any] | None) -> tuple[str, str, bool]:
    """(YAML text, how messages name it, whether it came from a template)."""
    display = str(path)
    try:
        text = decode_text(path.read_bytes(), display)
    except FileNotFoundError:
        raise StoryboardError.single(display, None, None, "", "file not found", "check the path") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoryboardError.single(display, None, None, "", f"cannot read the file: {reason}", "") from None
    templated = path.name.endswith(".j2")
    if templated:
        from .templating import render_storyboard_template

        rendered = render_storyboard_template(text, display, template_vars or {})
        if rendered != text:
            display = f"{display} (rendered)"  # positions are in the rendered text, not in the template
        return rendered, display, True
    if template_vars:
        raise StoryboardError.single(
            display,
            None,
            None,
            "",
            "variables were given but the storyboard is not a template",
            "rename it to end in .yaml.j2 to use variables",
        )
    return text, display, False


def load_storyboard(
    path: str | Path, *, allow_outside: bool = False, template_vars: dict[str, Any] | None = None
) -> Storyboard:
    """Load and check a storyboard file (``.yaml``, or a Jinja2 template ``.yaml.j2``).

    Raises StoryboardError listing every problem with ``file:line:col``, the field and the fix: when anything
    is wrong, the checks of :func:`storyreel.plan_film` run too, so that one pass reports every problem.

    >>> board = load_storyboard("examples/swan_lake.yaml")  # doctest: +SKIP
    >>> [shot.id for _, _, _, shot in board.iter_shots()]  # doctest: +SKIP
    ['glide', 'dip', ...]
    """
    path = Path(path)
    text, display, templated = _read_storyboard(path, template_vars)
    with collector_paused():
        board, problems, failed = _parse(text, display, base_dir=path.resolve().parent, templated=templated)
        if board is None:
            raise StoryboardError(problems)
        board._path = path
        if not problems:
            problems = board.problems(allow_outside=allow_outside)
            if not problems:
                return board
        from .plan import film_problems

        more = film_problems(board, allow_outside=allow_outside)
        raise StoryboardError(_unique(problems + [p for p in more if not _under(p.field, failed)]))


def parse_storyboard(
    text: str, file: str = "<storyboard>", *, base_dir: Path | None = None, templated: bool = False
) -> Storyboard:
    """Parse storyboard YAML text into a Storyboard; structural errors carry file:line:col."""
    board, problems, _ = _parse(text, file, base_dir=base_dir, templated=templated)
    StoryboardError.raise_if_any(problems)
    assert board is not None
    return board


def _parse(
    text: str, file: str, *, base_dir: Path | None, templated: bool
) -> tuple[Storyboard | None, list[Problem], set[str]]:
    """The storyboard, the problems of its format, and the fields they are at.

    When fields fail, the storyboard returned is the one they leave when neutralised (dropped, or given a
    stand-in value), so that the other checks can still run; None if even that does not validate.
    """
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
    problems: list[Problem] = []
    unreadable: set[str] = set()
    try:
        board: Storyboard | None = Storyboard.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from_validation(exc, source, data)
        board = _stand_in_board(data, exc, unreadable)
    if board is not None:
        board._source = source
        board._base_dir = base_dir
        board._rendered = templated
        board._display = file
        board._refused_names = frozenset(unreadable)
    return board, problems, {p.field for p in problems}


def _under(field: str, failed: set[str]) -> bool:
    """Whether a problem at ``field`` lies at or under a field that already failed (one lookup per level)."""
    return field in failed or any(field[:i] in failed for i, c in enumerate(field) if c in ".[" and i)


# Values that let a storyboard validate when a required (or referenced) field of it failed; problems found at
# or under a stand-in are not reported, since the field's own problem already is.
_STAND_INS: dict[str, Any] = {
    "storyreel": FORMAT_VERSION,
    "prompt": "stand-in",
    "description": "stand-in",
    "music": "stand-in",
    "duration": 4.0,
    "frames": 97,
    "transition": "cut",  # a fresh start asks the least of the shots around it
}


def _stand_in_board(data: dict[str, Any], error: ValidationError, unreadable: set[str]) -> Storyboard | None:
    """The storyboard ``data`` makes once every failing value is dropped or replaced by a stand-in."""
    data = copy.deepcopy(data)
    counter = itertools.count(1)
    for _ in range(
        4
    ):  # a stand-in can uncover a problem the first pass could not see; a few rounds settle it
        for entry in error.errors(include_url=False):
            if not _neutralise(data, entry, counter, unreadable):
                return None
        try:
            return Storyboard.model_validate(data)
        except ValidationError as again:
            error = again
    return None


def _stand_in(name: str, counter: Iterator[int]) -> Any:
    if name == "id":
        return f"stand-in-{next(counter)}"
    if name == "shots":
        return [
            {"id": f"stand-in-{next(counter)}", "prompt": "stand-in", "duration": 4.0, "transition": "cut"}
        ]
    if name == "scenes":
        return [{"id": f"stand-in-{next(counter)}", "shots": _stand_in("shots", counter)}]
    return _STAND_INS.get(name)


def _neutralise(data: dict[str, Any], error: Any, counter: Iterator[int], unreadable: set[str]) -> bool:
    """Drop or replace the value an error is about; False when there is nothing sensible to do."""
    loc = [part for part in error["loc"] if isinstance(part, (str, int))]
    name_is_bad = bool(loc) and loc[-1] == "[key]"
    if name_is_bad:
        loc = loc[:-1]
    chain: list[tuple[Any, str | int]] = []  # (container, key) from the root down to the failing value
    node: Any = data
    for part in loc:
        if (
            isinstance(node, dict)
            and part in node
            or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        ):
            chain.append((node, part))
            node = node[part]
        else:
            break
    if error["type"] == "missing" and isinstance(node, dict) and len(chain) == len(loc) - 1:
        node[loc[-1]] = _stand_in(str(loc[-1]), counter)
        return node[loc[-1]] is not None
    if not chain:
        return False
    container, key = chain[-1]
    parent_name = chain[-2][1] if len(chain) >= 2 else None
    if isinstance(key, int):
        if parent_name in ("scenes", "shots"):
            container[key] = _stand_in(str(parent_name), counter)[0]
            return True
        if len(chain) < 2:
            return False
        container, key = chain[-2]  # an item of a plain list (characters, after): drop the whole list
        del container[key]
        return True
    if len(chain) == 2 and chain[0][1] == "characters":
        if name_is_bad:
            unreadable.add(str(key))
            del container[key]
        else:
            container[key] = {"description": "stand-in"}  # shots may reference it: keep the name
        return True
    if error["type"] == "extra_forbidden":
        # A misspelt key is checked as the key it is closest to (`duraton` as `duration`), so that the shot is
        # not also reported as having no length.
        model = _model_for(tuple(loc[:-1]))
        close = difflib.get_close_matches(str(key), list(model.model_fields), n=1) if model else []
        if close and close[0] not in container:
            container[close[0]] = container.pop(key)
        else:
            del container[key]
        return True
    if key == "id" and isinstance(container[key], str):
        unreadable.add(container[key])
    stand_in = _stand_in(key, counter)
    if stand_in is not None:
        container[key] = stand_in
    else:
        del container[key]  # every other field is optional: its default takes its place
    return True


def _problems_from_validation(exc: ValidationError, source: SourceMap, data: Any) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        path: Path_ = tuple(part for part in error["loc"] if isinstance(part, (str, int)))
        kind = error["type"]
        fix = ""
        key = bool(path) and path[-1] == "[key]"  # a mapping's key (a character's name) is what failed
        if key:
            path = path[:-1]
        path = _as_written(path, data)
        shown = error.get("input")
        limit = next(
            (error.get("ctx", {}).get(k) for k in ("le", "lt", "ge", "gt") if k in error.get("ctx", {})), None
        )
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
            message = f"id {_shown(error['input'])} may hold only letters, digits, '-', '_' and '.'"
            fix = "it names the shot's file, e.g. `id: swan-glide`"
        elif kind == "string_too_long" and path and path[-1] == "id":
            message = f"an id of {len(error['input'])} characters is longer than the {MAX_ID_LENGTH} an id may have"
            fix = "shorten it (a shot's id names its file, shots/<id>.mp4)"
        elif kind == "string_pattern_mismatch":
            message = f"{_shown(error['input'])} is not a valid name"
            fix = "use letters, digits and '_' (it is written as {{ name }} in prompts)"
        elif kind == "literal_error":
            message = f"{_shown(error['input'])} is not allowed"
            fix = error["msg"].replace("Input should be", "use")
        elif kind in ("less_than_equal", "less_than", "greater_than_equal", "greater_than"):
            bound = {
                "less_than_equal": "at most",
                "less_than": "below",
                "greater_than_equal": "at least",
                "greater_than": "above",
            }[kind]
            message = f"{_shown(shown, quote=False)} is out of bounds: `{path[-1]}` must be {bound} {limit}"
            fix = _BOUND_FIXES.get(str(path[-1]), "")
        elif kind == "finite_number":
            message = f"{_shown(shown, quote=False)} is not a finite number"
            fix = _BOUND_FIXES.get(str(path[-1]), "write a number")
        elif kind == "string_type" and isinstance(shown, bool):
            message = f"{str(shown).lower()} was read as true/false, not as text"
            fix = f'write it in quotes: "{str(shown).lower()}"'
        else:
            message = error["msg"][0].lower() + error["msg"][1:]
            if not isinstance(shown, (dict, list)):
                message = f"{_shown(shown)}: {message}"
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


def _shown(value: Any, *, quote: bool = True) -> str:
    """A value as a message shows it: as written, cut short when it is long."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= 60 else text[:50] + f"... ({len(text):,} characters)"


def _as_written(path: Path_, data: Any) -> Path_:
    """The path with each mapping key as the document holds it (pydantic reports a key `true` as 1)."""
    out: list[Any] = []
    node = data
    for part in path:
        if isinstance(node, dict):
            part = next((k for k in node if k == part and type(k) is not type(part)), part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        out.append(part)
    return tuple(out)


# What to write instead of a number beyond a field's bounds.
_BOUND_FIXES: dict[str, str] = {
    "frames": f"split it into shots of up to {MAX_SHOT_FRAMES} frames ({MAX_SHOT_SECONDS:g}s at 24 fps); shots "
    "that continue each other (`transition: continue`) stay one continuous take",
    "fps": "use 24 (SkyReels-V2's rate) or another rate up to 120",
    "steps": "use 30 (50 for the finest detail)",
    "guidance_scale": "use 6.0 (5.0 for image-to-video)",
    "shift": "use 8.0 (5.0 for image-to-video)",
    "base_num_frames": "use 97 (540P) or 121 (720P); 77 or 57 save memory",
    "overlap_history": "use 17 or 37",
    "addnoise_condition": "use 20",
    "ar_step": "use 0 (synchronous) or 5 (asynchronous)",
    "causal_block_size": "use 1, or 5 with ar_step 5",
    "seed": f"use a number from 0 to {2**32 - 1}",
    "volume": "use a volume from 0 (silent) to 4",
    "max_words": "use 120",
    "concurrency": "use 8",
    "timeout": "use 120 (seconds)",
    "request_timeout": "use 120 (seconds)",
}

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
