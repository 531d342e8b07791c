"""The set's props: dressing picked by the palette, a stand-in figure for each character, and where
each character stands.

Props are world polygons with their colours, drawn far to near by the rasteriser. Dressing is drawn
from the scene's random stream, so the shots of a scene share one set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .framing import SetCamera
from .palette import RGB, Palette, hsv, mix, scene_hue

ROOM_DEPTH = 6.0  # metres behind the subject to an interior's back wall


def _contour(distance: float, heights: np.ndarray, spread_degrees: float = 85.0) -> np.ndarray:
    """(2n, 3): a skyline at ``distance`` across the view, ``heights`` (n,) above the ground, closed below it."""
    azimuth = np.radians(np.linspace(-spread_degrees, spread_degrees, len(heights)))
    xs, zs = distance * np.sin(azimuth), distance * np.cos(azimuth)
    top = np.stack([xs, heights, zs], axis=-1)
    base = np.stack([xs, np.full_like(xs, -0.02 * distance), zs], axis=-1)[::-1]
    return np.concatenate([top, base])


def _billboard(x: float, z: float, outline: list[tuple[float, float]], scale: float = 1.0) -> np.ndarray:
    """(n, 3): an upright flat shape standing at (x, z), outline given as (across, up) in metres."""
    return np.array([[x + a * scale, u * scale, z] for a, u in outline])


def _flat_ellipse(
    x: float, z: float, radius_x: float, radius_z: float, height: float, points: int = 20
) -> np.ndarray:
    """(points, 3): a horizontal ellipse at ``height`` (shadows, heads seen from above)."""
    angle = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack(
        [x + radius_x * np.cos(angle), np.full(points, height), z + radius_z * np.sin(angle)], axis=-1
    )


def _circle_outline(
    centre: tuple[float, float], radius: float, points: int = 20
) -> list[tuple[float, float]]:
    angle = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return [(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in angle]


_BODY = [(-0.17, 0.0), (0.17, 0.0), (0.21, 1.0), (0.25, 1.36), (0.2, 1.46), (0.07, 1.5),
         (-0.07, 1.5), (-0.2, 1.46), (-0.25, 1.36), (-0.21, 1.0)]  # fmt: skip
_HEAD = _circle_outline((0.0, 1.62), 0.13, points=48)
_TRUNK = [(-0.12, 0.0), (0.12, 0.0), (0.12, 1.3), (-0.12, 1.3)]
_CANOPY = [[(-1.4, 1.0), (1.4, 1.0), (0.0, 4.6)], [(-1.1, 2.6), (1.1, 2.6), (0.0, 6.2)]]


@dataclass(frozen=True)
class Prop:
    """Something standing on the set: world polygons with their colours, drawn far to near."""

    anchor: tuple[float, float, float]  # world point its distance (and haze) is measured to
    shapes: tuple[tuple[np.ndarray, RGB], ...]  # ((n, 3) world polygon, colour)
    label: str | None = None
    label_colour: RGB = (255, 255, 255)


def character_colour(name: str) -> RGB:
    """A character's stand-in colour, fixed by their name so that they look the same in every shot."""
    return hsv(scene_hue("character:" + name), 0.55, 0.85)


def blocking(characters: list[str]) -> list[tuple[str, float, float]]:
    """Where each character stands (name, x, z): the first on the mark at the origin, the others to
    either side and a little behind.

    >>> blocking(["swan", "heron", "duck"])
    [('swan', 0.0, 0.0), ('heron', 1.3, 0.7), ('duck', -1.3, 0.7)]
    """
    marks = []
    for index, name in enumerate(characters):
        rank = (index + 1) // 2
        side = 1.0 if index % 2 else -1.0
        marks.append((name, side * 1.3 * rank if index else 0.0, 0.7 * rank))
    return marks


def set_props(
    palette: Palette, camera: SetCamera, characters: list[str], rng: np.random.Generator
) -> list[Prop]:
    """The set dressing picked by the palette, and a stand-in figure for each character."""
    dress = _DRESSINGS.get(palette.dressing, _hills)
    props = dress(palette, camera.overhead, rng)
    if not characters:
        props += _tape_mark()
    return props + _figures(palette, camera.overhead, characters)


# --- dressing: one function per kind, each drawing from the scene's random stream in a fixed order -------------


def _fog(palette: Palette) -> RGB:
    return mix(palette.horizon, palette.ground_far, 0.5)


def _far_range(distance: float, heights: np.ndarray, colour: RGB, overhead: bool) -> list[Prop]:
    """A skyline at ``distance`` (hills, a far shore, a city's outline); nothing to see from overhead."""
    return [] if overhead else [Prop((0.0, 0.0, distance), ((_contour(distance, heights), colour),))]


def _rolling(rng: np.random.Generator, n: int, low: float, high: float, lumps: int) -> np.ndarray:
    """(n,) heights of rolling land between ``low`` and ``high``: a few sines of random phase."""
    phase = rng.uniform(0, 2 * np.pi, lumps)
    t = np.linspace(0, 1, n)
    wave = sum(np.sin(2 * np.pi * (k + 1) * 1.7 * t + phase[k]) / (k + 1) for k in range(lumps))
    wave = (wave - wave.min()) / (np.ptp(wave) + 1e-9)
    return low + (high - low) * wave


def _room(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """An interior's back wall with panel seams, a window, a door and a skirting board."""
    wall_z = ROOM_DEPTH
    window = [(-2.4, 1.0), (-0.8, 1.0), (-0.8, 2.3), (-2.4, 2.3)]
    door = [(1.6, 0.0), (2.6, 0.0), (2.6, 2.1), (1.6, 2.1)]
    outside = (20, 30, 60) if palette.time_of_day == "night" else (190, 214, 236)
    panel = [(-0.015, 0.12), (0.015, 0.12), (0.015, 40), (-0.015, 40)]
    seam = mix(palette.horizon, (0, 0, 0), 0.15)
    # Panel seams along the wall give a pan something to slide past; a window and a door to find one's way.
    shapes: list[tuple[np.ndarray, RGB]] = [
        (_billboard(k * 1.2, wall_z, panel), seam) for k in range(-40, 41)
    ]
    shapes += [
        (_billboard(0.0, wall_z, window), outside),
        (_billboard(0.0, wall_z, door), mix(palette.horizon, (40, 30, 20), 0.45)),
        (
            _billboard(0.0, wall_z, [(-60, 0.0), (60, 0.0), (60, 0.12), (-60, 0.12)]),
            mix(palette.horizon, (0, 0, 0), 0.4),
        ),
    ]
    return [Prop((0.0, 1.0, wall_z), tuple(shapes))]


def _trees(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """A forest: a far treeline, then trees scattered ahead (canopies seen from above when overhead)."""
    props = _far_range(
        700.0,
        _rolling(rng, 90, 12, 32, 4) + rng.uniform(0, 6, 90),
        mix(palette.ground_near, _fog(palette), 0.7),
        overhead,
    )
    for _ in range(150):
        x, z, size = rng.uniform(-110, 110), rng.uniform(5, 150), rng.uniform(0.8, 1.7)
        canopy = mix(palette.ground_near, (10, 40, 10), rng.uniform(0.1, 0.5))
        if overhead:
            tree: tuple[tuple[np.ndarray, RGB], ...] = (
                (_flat_ellipse(x, z, 1.4 * size, 1.4 * size, 5 * size), canopy),
            )
        else:
            trunk = (_billboard(x, z, _TRUNK, size), (74, 52, 34))
            tree = (trunk, *((_billboard(x, z, tier, size), canopy) for tier in _CANOPY))
        props.append(Prop((x, 0.0, z), tree))
    return props


def _buildings(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """A city: a far skyline, then blocks of buildings ahead (their roofs when overhead)."""
    props = _far_range(
        900.0,
        np.repeat(rng.uniform(20, 90, 30), 3),
        mix(palette.ground_far, _fog(palette), 0.5),
        overhead,
    )
    for _ in range(70):
        x, z = rng.uniform(-260, 260), rng.uniform(25, 400)
        width, height = rng.uniform(8, 28), rng.uniform(8, 80)
        shade = mix(palette.ground_near, (200, 204, 214), rng.uniform(0.05, 0.5))
        outline = [(-width / 2, 0.0), (width / 2, 0.0), (width / 2, height), (-width / 2, height)]
        if overhead:
            roof = np.array(
                [
                    [x - width / 2, height, z],
                    [x + width / 2, height, z],
                    [x + width / 2, height, z + width],
                    [x - width / 2, height, z + width],
                ]
            )
            props.append(Prop((x, 0.0, z), ((roof, shade),)))
        else:
            props.append(Prop((x, 0.0, z), ((_billboard(x, z, outline), shade),)))
    return props


def _shore(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """Water to a far, wooded shore."""
    return _far_range(450.0, _rolling(rng, 90, 4, 22, 3), mix((40, 70, 50), _fog(palette), 0.45), overhead)


def _ridges(
    palette: Palette,
    overhead: bool,
    rng: np.random.Generator,
    ridges: tuple[tuple[float, float], ...],
    lumps: int,
) -> list[Prop]:
    """Ranges of rolling land one behind the other: (distance, how far into the fog) each, far first."""
    props: list[Prop] = []
    for distance, amount in ridges:
        props += _far_range(
            distance,
            _rolling(rng, 90, 0.01 * distance, 0.05 * distance, lumps),
            mix(palette.ground_near, _fog(palette), amount),
            overhead,
        )
    return props


def _dunes(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """Three ridges of dunes, hazier with distance."""
    return _ridges(palette, overhead, rng, ((1400.0, 0.55), (700.0, 0.3), (320.0, 0.12)), lumps=2)


def _peaks(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """A far mountain range with snowy peaks."""
    peaks = np.abs(rng.normal(0, 1, 60)).cumsum() % 1.0
    return _far_range(3000.0, 150 + 450 * peaks, mix((214, 222, 236), _fog(palette), 0.35), overhead)


def _hills(palette: Palette, overhead: bool, rng: np.random.Generator) -> list[Prop]:
    """Two ranges of rolling hills: the dressing of any place without its own."""
    return _ridges(palette, overhead, rng, ((1200.0, 0.55), (500.0, 0.25)), lumps=3)


_DRESSINGS = {
    "room": _room,
    "trees": _trees,
    "buildings": _buildings,
    "shore": _shore,
    "dunes": _dunes,
    "peaks": _peaks,
}


# --- who stands on the set ---------------------------------------------------------------------------------------


def _tape_mark() -> list[Prop]:
    """A cross of tape where the subject would stand, for a shot with no characters."""
    tape = (240, 200, 40)
    marks = []
    for a, b in (((-0.3, -0.3), (0.3, 0.3)), ((-0.3, 0.3), (0.3, -0.3))):
        dx, dz = (b[0] - a[0]) * 0.08, (b[1] - a[1]) * 0.08
        strip = np.array(
            [
                [a[0] - dz, 0.002, a[1] + dx],
                [b[0] - dz, 0.002, b[1] + dx],
                [b[0] + dz, 0.002, b[1] - dx],
                [a[0] + dz, 0.002, a[1] - dx],
            ]
        )
        marks.append(Prop((0.0, 0.0, 0.0), ((strip, tape),)))
    return marks


def _figures(palette: Palette, overhead: bool, characters: list[str]) -> list[Prop]:
    """A stand-in figure on each character's mark, with a shadow (seen from above when overhead)."""
    shadow = mix(palette.ground_near, (0, 0, 0), 0.45)
    figures = []
    for name, x, z in blocking(characters):
        colour = character_colour(name)
        head = mix(colour, (255, 255, 255), 0.35)
        figure: tuple[tuple[np.ndarray, RGB], ...]
        if overhead:
            figure = (
                (_flat_ellipse(x, z, 0.26, 0.14, 1.4), colour),
                (_flat_ellipse(x, z, 0.12, 0.12, 1.62), head),
            )
        else:
            figure = (
                (_flat_ellipse(x, z, 0.4, 0.25, 0.002), shadow),
                (_billboard(x, z, _BODY), colour),
                (_billboard(x, z, _HEAD), head),
            )
        figures.append(Prop((x, 1.0, z), figure, label=name, label_colour=head))
    return figures
