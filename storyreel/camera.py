"""The camera vocabulary of a storyboard: shot types, angles and moves.

SkyReels-V2 was trained on captions whose shot metadata (type, angle, camera motion) came from
SkyCaptioner-V1, so storyboards use the same film grammar. Moves are free text built from known
words ("slow push-in", "pan left while tilting up") so that the enhancer can quote them and the
animatic can simulate them.

>>> parse_move("slow push-in").kinds
('push-in',)
>>> parse_move("fast pan left, tilt up").speed
1.6
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

ShotType = Literal[
    "extreme close-up",
    "close-up",
    "medium close-up",
    "medium",
    "medium wide",
    "full",
    "wide",
    "extreme wide",
]
Angle = Literal["eye-level", "high", "low", "overhead", "worm's-eye", "dutch", "over-the-shoulder", "pov"]

SHOT_TYPES: tuple[str, ...] = get_args(ShotType)
ANGLES: tuple[str, ...] = get_args(Angle)

_SHOT_ALIASES = {
    "ecu": "extreme close-up",
    "cu": "close-up",
    "mcu": "medium close-up",
    "ms": "medium",
    "mid": "medium",
    "mws": "medium wide",
    "fs": "full",
    "ws": "wide",
    "long": "wide",
    "ews": "extreme wide",
    "extreme long": "extreme wide",
    "establishing": "extreme wide",
}
_ANGLE_ALIASES = {
    "eye": "eye-level",
    "eye-line": "eye-level",
    "bird's-eye": "overhead",
    "birds-eye": "overhead",
    "top-down": "overhead",
    "aerial": "overhead",
    "worms-eye": "worm's-eye",
    "dutch tilt": "dutch",
    "canted": "dutch",
    "ots": "over-the-shoulder",
    "point of view": "pov",
    "point-of-view": "pov",
}


_CLOSE_UP = re.compile(r"\bclose ?up\b")


def _normalise(text: str, suffix: str) -> str:
    word = " ".join(text.strip().lower().replace("_", " ").split())
    if word.endswith(" " + suffix):
        word = word[: -len(suffix) - 1]
    word = _CLOSE_UP.sub("close-up", word)
    word = word.replace("eye level", "eye-level").replace("over the shoulder", "over-the-shoulder")
    word = word.replace("bird's eye", "bird's-eye").replace("worm's eye", "worm's-eye")
    return word


def normalise_shot_type(text: str) -> str:
    """Map the ways people write a shot type onto the vocabulary ("Close up shot" -> "close-up")."""
    word = _normalise(text, "shot")
    return _SHOT_ALIASES.get(word, word)


def normalise_angle(text: str) -> str:
    """Map the ways people write a camera angle onto the vocabulary ("high angle" -> "high")."""
    word = _normalise(text, "angle")
    return _ANGLE_ALIASES.get(word, word)


# Each move kind and the phrases that name it. Longer phrases are matched first.
MOVE_PHRASES: dict[str, tuple[str, ...]] = {
    "static": ("static", "locked-off", "locked off", "fixed", "still camera"),
    "push-in": ("push-in", "push in", "dolly in", "dolly-in", "zoom in", "zoom-in", "move in", "creep in"),
    "pull-out": (
        "pull-out",
        "pull out",
        "pull back",
        "pull-back",
        "dolly out",
        "dolly-out",
        "zoom out",
        "zoom-out",
        "move out",
    ),
    "pan left": ("pan left", "pans left"),
    "pan right": ("pan right", "pans right"),
    "tilt up": ("tilt up", "tilts up"),
    "tilt down": ("tilt down", "tilts down"),
    "truck left": ("truck left", "track left", "slide left"),
    "truck right": ("truck right", "track right", "slide right"),
    "crane up": ("crane up", "boom up", "pedestal up", "rise", "rising"),
    "crane down": ("crane down", "boom down", "pedestal down", "descend", "descending"),
    "orbit": ("orbit", "arc", "circle around", "circles around"),
    "tracking": ("tracking", "follow", "follows", "following"),
    "handheld": ("handheld", "hand-held", "shaky"),
}
MOVES: tuple[str, ...] = tuple(MOVE_PHRASES)
# Compiled once, longest phrase first (a storyboard of thousands of shots parses thousands of moves).
_MOVE_PATTERNS = [
    (re.compile(r"\b" + re.escape(phrase) + r"\b"), kind)
    for phrase, kind in sorted(
        ((phrase, kind) for kind, names in MOVE_PHRASES.items() for phrase in names), key=lambda p: -len(p[0])
    )
]
_SPEEDS = {
    "slow": 0.6,
    "slowly": 0.6,
    "gentle": 0.6,
    "gently": 0.6,
    "subtle": 0.4,
    "fast": 1.6,
    "quick": 1.6,
    "rapid": 1.6,
}


@dataclass(frozen=True)
class CameraMove:
    """A parsed camera move: which motions, and how fast relative to a normal move (1.0)."""

    kinds: tuple[str, ...]
    speed: float = 1.0
    text: str = ""

    @property
    def is_static(self) -> bool:
        return not self.kinds or self.kinds == ("static",)


def parse_move(text: str | None) -> CameraMove:
    """Read a move like "slow push-in" into its motions; raise ValueError naming the vocabulary if none is known."""
    if text is None or not text.strip():
        return CameraMove(kinds=("static",), text="")
    lowered = " ".join(text.lower().replace("_", " ").split())
    found: list[tuple[int, str]] = []
    taken = [False] * len(lowered)
    for pattern, kind in _MOVE_PATTERNS:
        for match in pattern.finditer(lowered):
            if any(taken[match.start() : match.end()]):
                continue
            taken[match.start() : match.end()] = [True] * (match.end() - match.start())
            found.append((match.start(), kind))
    if not found:
        raise ValueError(text)
    kinds = tuple(dict.fromkeys(kind for _, kind in sorted(found)))
    speed = 1.0
    for word in re.findall(r"[a-z]+", lowered):
        speed = _SPEEDS.get(word, speed)
    return CameraMove(kinds=kinds, speed=speed, text=text.strip())
