"""The look of a scene's set, picked from the words of its setting: sky, ground and dressing colours.

Every shot of a scene shares one palette, so the shots of a scene share one set; different scenes
look different even when their settings name no time of day or place.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass
from typing import Any

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """The colours and dressing of a scene's set.

    For an interior, ``zenith`` and ``horizon`` are the top and bottom of the back wall.
    """

    name: str
    time_of_day: str  # "day", "dawn", "dusk", "night"
    zenith: RGB
    horizon: RGB
    ground_near: RGB
    ground_far: RGB
    dressing: str  # "room", "trees", "shore", "dunes", "buildings", "peaks", "hills"
    stars: bool = False
    sun_azimuth: float | None = None  # degrees, for a low sun at dawn or dusk

    @property
    def interior(self) -> bool:
        return self.dressing == "room"

    @property
    def grid(self) -> RGB:
        """Grid lines: lighter than a dark ground, darker than a light one."""
        toward = (255, 255, 255) if luma(self.ground_near) < 140 else (0, 0, 0)
        return mix(self.ground_near, toward, 0.4)


# (name, words, zenith, horizon, how bright the ground is, low sun azimuth)
_TIMES_OF_DAY: tuple[tuple[str, tuple[str, ...], RGB, RGB, float, float | None], ...] = (
    ("night", ("night", "midnight", "moon", "moonlit", "moonlight", "starry", "stars", "nighttime"),
     (6, 10, 28), (30, 42, 76), 0.35, None),
    ("dusk", ("dusk", "sunset", "evening", "twilight", "golden hour", "sundown"),
     (58, 48, 110), (242, 136, 84), 0.7, 35.0),
    ("dawn", ("dawn", "sunrise", "daybreak", "morning", "first light"),
     (92, 112, 172), (250, 192, 150), 0.85, -35.0),
    ("day", ("day", "daytime", "noon", "midday", "afternoon", "sunny", "daylight"),
     (70, 128, 200), (184, 212, 236), 1.0, None),
)  # fmt: skip
# (name, words, ground near, ground far, dressing)
_PLACES: tuple[tuple[str, tuple[str, ...], RGB, RGB, str], ...] = (
    ("interior", ("interior", "room", "kitchen", "office", "bedroom", "hallway", "corridor", "indoors",
                  "studio", "apartment", "cafe", "restaurant", "library", "classroom", "living room"),
     (112, 82, 58), (146, 114, 84), "room"),
    ("forest", ("forest", "woods", "woodland", "jungle", "trees", "grove", "pines"),
     (44, 78, 42), (86, 112, 84), "trees"),
    ("lake", ("lake", "sea", "ocean", "river", "pond", "water", "beach", "shore", "bay", "harbour", "harbor", "coast"),
     (40, 84, 116), (118, 156, 176), "shore"),
    ("desert", ("desert", "dune", "dunes", "sand", "sands", "canyon"),
     (196, 160, 106), (224, 200, 160), "dunes"),
    ("city", ("city", "street", "town", "urban", "alley", "downtown", "rooftop", "village", "market"),
     (88, 88, 94), (140, 142, 152), "buildings"),
    ("snow", ("snow", "snowy", "ice", "icy", "arctic", "winter", "glacier", "mountain", "mountains", "peak"),
     (214, 220, 232), (236, 240, 248), "peaks"),
    ("field", ("field", "meadow", "grass", "park", "garden", "farm", "hill", "hills", "countryside", "valley"),
     (78, 126, 58), (140, 168, 110), "hills"),
)  # fmt: skip
_WALL = ((182, 162, 138), (150, 128, 104))  # top, bottom of an interior's back wall


def _first_match(texts: tuple[str, ...], table: tuple[Any, ...]) -> Any | None:
    """The entry of ``table`` whose word appears earliest in the first text that names any of them."""
    for text in texts:
        lowered = " ".join(re.findall(r"[a-z']+", text.lower()))
        found = []
        for entry in table:
            for word in entry[1]:
                match = re.search(r"\b" + re.escape(word) + r"\b", lowered)
                if match:
                    found.append((match.start(), entry))
        if found:
            return min(found, key=lambda pair: pair[0])[1]
    return None


def scene_hue(scene_id: str) -> float:
    """A hue in [0, 1) fixed by a name: a scene's ground, a character's stand-in."""
    return int.from_bytes(hashlib.sha256(scene_id.encode()).digest()[:4], "big") / 2**32


def hsv(hue: float, saturation: float, value: float) -> RGB:
    """An RGB colour from hue, saturation and value, each in [0, 1] (the hue wraps)."""
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def mix(a: RGB, b: RGB, amount: float) -> RGB:
    """The colour ``amount`` of the way from ``a`` to ``b``."""
    return (
        round(a[0] + (b[0] - a[0]) * amount),
        round(a[1] + (b[1] - a[1]) * amount),
        round(a[2] + (b[2] - a[2]) * amount),
    )


def luma(colour: RGB) -> float:
    """How bright a colour looks, 0 to 255."""
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def scene_palette(setting: str | None, prompt: str, scene_id: str) -> Palette:
    """The set's look, from time-of-day and place words in the setting (then the prompt).

    The sky comes from a time of day (day when none is named), the ground and dressing from a place;
    without a place word the ground takes a hue fixed by the scene id, so that every shot of a scene
    shares one set and different scenes look different.

    >>> scene_palette("a lake at dawn", "a swan glides", "lake").name
    'dawn lake'
    >>> scene_palette(None, "two people talk in a kitchen at night", "s1").name
    'night interior'
    >>> scene_palette(None, "something happens", "s1") == scene_palette(None, "something else", "s1")
    True
    """
    texts = tuple(text for text in (setting, prompt) if text)
    time_of_day = _first_match(texts, _TIMES_OF_DAY)
    place = _first_match(texts, _PLACES)
    time_name, _, zenith, horizon, brightness, sun = time_of_day or _TIMES_OF_DAY[-1]
    if place is not None:
        place_name, _, near, far, dressing = place
    else:
        hue = scene_hue(scene_id)
        place_name = f"hue {round(hue * 360)}"
        near, far, dressing = hsv(hue, 0.38, 0.42), hsv(hue, 0.24, 0.66), "hills"
        if time_of_day is None:
            zenith, horizon = hsv(hue + 0.5, 0.42, 0.72), hsv(hue + 0.5, 0.16, 0.94)
    if dressing == "room":
        zenith, horizon, sun = _WALL[0], _WALL[1], None
        brightness = max(brightness, 0.7)  # a lamp-lit room at night is still lit
    night_tint = (18, 24, 48)
    near, far = (mix(night_tint, near, brightness), mix(night_tint, far, brightness))
    if dressing == "room":
        zenith, horizon = mix(night_tint, zenith, brightness), mix(night_tint, horizon, brightness)
    return Palette(
        name=f"{time_name} {place_name}",
        time_of_day=time_name,
        zenith=zenith,
        horizon=horizon,
        ground_near=near,
        ground_far=far,
        dressing=dressing,
        stars=time_name == "night" and dressing != "room",
        sun_azimuth=sun,
    )
