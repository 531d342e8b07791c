"""What each field of a storyboard may hold: its bounds, and the formats of its scalar values.

Durations (``4s``, ``1500ms``, ``1:30``), resolutions (``540P``, ``832x480``), frame counts of the form
4k+1, shot types and camera angles are read and checked here, each failure a message with its fix. The
models in :mod:`storyreel.format` attach these checks to their fields.

>>> parse_duration("1500ms"), parse_resolution("720p"), resolution_size("540P")
(1.5, '720P', (960, 544))
>>> parse_attention("SDPA"), parse_compile(False), parse_precision("fp8")
('sdpa', 'false', 'fp8')
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from .camera import ANGLES, SHOT_TYPES, normalise_angle, normalise_shot_type
from .frames import (
    SPATIAL_MULTIPLE,
    four_k_plus_one_around,
    is_four_k_plus_one,
    nearest_side,
    not_four_k_plus_one,
)

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A shot id names shots/<id>.mp4 and the temporary files beside it, which a file system caps at 255 bytes.
MAX_ID_LENGTH = 120
CHARACTER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
Transition = Literal["continue", "cut", "dissolve", "fade"]
TRANSITIONS: tuple[str, ...] = get_args(Transition)

RESOLUTIONS = {"540P": (960, 544), "720P": (1280, 720)}


def field_error(message: str, fix: str = "") -> PydanticCustomError:
    """The error a field's check raises: the loader shows ``message`` at the field's position, with ``fix``."""
    return PydanticCustomError("storyreel", "{message}", {"message": message, "fix": fix})


# --- bounds ---------------------------------------------------------------------------------------------------
# What a storyboard may ask for. SkyReels-V2 is trained at 960x544 and 1280x720 with windows of 97 and 121
# frames, and its authors recommend shots of up to about a minute; beyond these a render cannot fit in memory
# (or takes days), so the storyboard is refused before any work starts. docs/storyboard.md lists them.

MAX_SHOT_SECONDS = 60.0
MAX_SHOT_FRAMES = 1457  # the model card's one-minute length (60.7 s at 24 fps)
MAX_TRANSITION_SECONDS = 10.0
MAX_AUDIO_FADE_SECONDS = 60.0
MIN_SIDE = 64
MAX_SIDE = 1920
MAX_PIXELS = 1920 * 1088
MAX_BASE_NUM_FRAMES = 257  # 65 latent frames: more than twice the 720P window
MAX_CAUSAL_BLOCK_SIZE = 65
MAX_AR_STEP = 100
MAX_PROMPT_CHARS = 100_000  # one prompt, its {{ character }} references filled in
MAX_FILM_PROMPT_CHARS = 20_000_000  # every prompt and setting of the film, filled in

# Generation settings that apply to the whole film: a scene or a shot may not set them. The last three say how
# the transformer runs, which a render decides once, when it loads the model.
FILM_ONLY_SETTINGS = ("resolution", "fps", "attention", "compile", "precision")

# --- how the transformer runs ---------------------------------------------------------------------------------
# Each is a word from a short list (docs/skyreels.md says what each does). `auto` leaves the choice to the
# generator, which records what it ran in the manifest.

ATTENTION_KERNELS = ("auto", "flash3", "sage", "flash", "cudnn", "sdpa")
COMPILE_CHOICES = ("auto", "true", "false")
PRECISIONS = ("bf16", "fp8")
# Whether a continuing shot's colour is matched to its parent's tail (storyreel.color_match); off by default.
COLOR_MATCH_CHOICES = ("off", "on")
COLOR_MATCH_DEFAULT = "off"

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
        raise field_error(f"{value!r} is not a duration", _DURATION_FIX)
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
            raise field_error(f"{value!r} is not a duration", _DURATION_FIX)
    else:
        raise field_error(f"{value!r} is not a duration", _DURATION_FIX)
    if not math.isfinite(seconds):
        raise field_error(f"{value} is not a finite number of seconds", "set a duration such as 4s")
    if not seconds > 0:
        raise field_error(f"{value} must be > 0", "set a duration such as 4s")
    return seconds


def _at_most(most: float, what: str, fix: str) -> AfterValidator:
    def check(seconds: float | None) -> float | None:
        if seconds is not None and seconds > most:
            raise field_error(f"{seconds:g}s is longer than the {most:g}s {what}", fix)
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
    """``540P`` (960x544), ``720P`` (1280x720) or ``"WxH"`` with both sides on the token grid (multiples of
    :data:`storyreel.frames.SPATIAL_MULTIPLE`, 16), within bounds."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise field_error(f"{value!r} is not a resolution", "use 540P, 720P or WIDTHxHEIGHT such as 832x480")
    text = str(value).strip()
    if text.upper().rstrip("P") in ("540", "720"):
        return text.upper().rstrip("P") + "P"
    match = re.fullmatch(r"(\d{1,9})\s*[xX×]\s*(\d{1,9})", text)
    if not match:
        raise field_error(f"{value!r} is not a resolution", "use 540P, 720P or WIDTHxHEIGHT such as 832x480")
    width, height = int(match.group(1)), int(match.group(2))
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise field_error(
            f"{width}x{height} is larger than a film may be: at most {MAX_SIDE} pixels a side and "
            f"{MAX_PIXELS:,} pixels in all (1920x1088)",
            "use 720P (1280x720) or 540P (960x544), the sizes SkyReels-V2 is trained at",
        )
    if width % SPATIAL_MULTIPLE or height % SPATIAL_MULTIPLE or width < MIN_SIDE or height < MIN_SIDE:
        fix_w, fix_h = max(MIN_SIDE, nearest_side(width)), max(MIN_SIDE, nearest_side(height))
        raise field_error(
            f"{width}x{height} is not a valid size: both sides must be multiples of {SPATIAL_MULTIPLE} and at "
            f"least {MIN_SIDE}",
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


# --- frame counts ---------------------------------------------------------------------------------------------
# The video VAE encodes 1 + 4k frames (storyreel.frames): a window and the history it overlaps are such counts.


def four_k_plus_one(name: str, examples: str) -> Any:
    """A check for a frame count field: one that is not 4k+1 is refused, with the two nearest that are."""

    def check(value: Any) -> Any:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= 1
            and not is_four_k_plus_one(value)
        ):
            lower, upper = four_k_plus_one_around(value)
            raise field_error(
                not_four_k_plus_one(value),
                f"use {lower} or {upper}; {examples}",
            )
        return value

    return BeforeValidator(check)


# --- camera words ---------------------------------------------------------------------------------------------


def shot_type(value: Any) -> Any:
    """A shot type as the model's captions write it (``closeup`` -> ``close-up``); unknown ones are refused."""
    return _known_word(value, normalise_shot_type, SHOT_TYPES, "shot type")


def camera_angle(value: Any) -> Any:
    """A camera angle as the model's captions write it; unknown ones are refused."""
    return _known_word(value, normalise_angle, ANGLES, "camera angle")


def _known_word(value: Any, normalise: Callable[[str], str], known: tuple[str, ...], what: str) -> Any:
    if isinstance(value, str):
        normalised = normalise(value)
        if normalised not in known:
            close = difflib.get_close_matches(normalised, known, n=1)
            raise field_error(
                f"unknown {what} {value!r}",
                (f"did you mean '{close[0]}'? " if close else "") + "use one of: " + ", ".join(known),
            )
        return normalised
    return value


# --- how the transformer runs ---------------------------------------------------------------------------------


def parse_attention(value: Any) -> str:
    """An attention kernel: ``auto``, ``flash3``, ``sage``, ``flash``, ``cudnn`` or ``sdpa`` (any case)."""
    return _one_of(value, ATTENTION_KERNELS, "attention kernel")


def parse_compile(value: Any) -> str:
    """Whether to compile the transformer: ``auto``, ``true`` or ``false`` (YAML's true/false included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _one_of(value, COMPILE_CHOICES, "compile setting")


def parse_color_match(value: Any) -> str:
    """Colour matching of continuations: ``off`` or ``on`` (YAML's true/false included)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return _one_of(value, COLOR_MATCH_CHOICES, "color_match setting")


def parse_precision(value: Any) -> str:
    """The transformer's precision: ``bf16`` or ``fp8``."""
    return _one_of(value, PRECISIONS, "precision")


def _one_of(value: Any, known: tuple[str, ...], what: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text in known:
        return text
    close = difflib.get_close_matches(text, known, n=1) if text else []
    raise field_error(
        f"{value!r} is not a{'n' if what[0] in 'aeiou' else ''} {what}",
        (f"did you mean '{close[0]}'? " if close else "") + "use one of: " + ", ".join(known),
    )


# --- text -----------------------------------------------------------------------------------------------------


def not_blank(what: str, fix: str) -> AfterValidator:
    """A check for a text field: only spaces is as good as nothing."""

    def check(value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise field_error(f"the {what} is empty (only spaces)", fix)
        return value

    return AfterValidator(check)
