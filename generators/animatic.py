"""The animatic generator: a previs of every shot, drawn without a model.

It fills each planned shot with exactly the frames a SkyReels-V2 render of the same plan would
have, so that timing, framing, camera moves, continuations and transitions can be judged in the
assembled film before any GPU minute is spent. A frame is made of:

* a **plate**, rendered once per shot and larger than the frame: a simple 3D set (sky, a ground
  grid, dressing picked from the setting's words, a stand-in figure for each character) seen
  through the camera that the shot type and angle describe; or the start image of an
  image-to-video shot; or, for a continuing shot, its parent's last picture, which dissolves into
  the shot's own set over the first third of the shot;
* the **camera move**, played out as a pose per frame (an offset and a scale of the view on the
  plate): each frame is a crop of the plate resized to the picture area;
* **bars** above and below the picture (a letterbox) with the slate: shot, scene, framing, the
  prompt and the film's timecode. They do not move with the camera.

>>> from storyreel.storyboard import Storyboard
>>> from storyreel.plan import plan_film
>>> board = Storyboard.model_validate({
...     "storyreel": 1, "generation": {"resolution": "160x96", "fps": 8},
...     "scenes": [{"id": "lake", "setting": "a lake at dawn", "shots": [{"id": "glide",
...         "prompt": "a swan glides", "duration": "1s", "camera": {"shot": "wide", "move": "pan left"}}]}],
... })
>>> shot = plan_film(board).shot("glide")
>>> with AnimaticGenerator(GeneratorOptions()) as animatic:
...     clip = animatic.generate(ShotRequest(shot=shot, prompt=shot.prompt, negative_prompt=""))
>>> clip.frames.shape, clip.frames.dtype.name, clip.dit_passes
((9, 96, 160, 3), 'uint8', 0)
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from storyreel.camera import CameraMove, parse_move
from storyreel.generate import (
    Clip,
    GeneratorOptions,
    ProgressCallback,
    ProgressEvent,
    ShotRequest,
    ignore_progress,
)

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

PROGRESS_EVERY = 8  # frames between progress events
FRAME_WORKERS = 4  # threads drawing pictures, at most (and no more than the machine's cores)
BLEND_FRACTION = 1 / 3  # of a continuing shot, spent dissolving from the parent's last picture into the set


# --- the look of a scene: palettes from the setting's words ----------------------------------------------------


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
        toward = (255, 255, 255) if _luma(self.ground_near) < 140 else (0, 0, 0)
        return _mix(self.ground_near, toward, 0.4)


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


def _scene_hue(scene_id: str) -> float:
    return int.from_bytes(hashlib.sha256(scene_id.encode()).digest()[:4], "big") / 2**32


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _mix(a: RGB, b: RGB, amount: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * amount),
        round(a[1] + (b[1] - a[1]) * amount),
        round(a[2] + (b[2] - a[2]) * amount),
    )


def _luma(colour: RGB) -> float:
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
        hue = _scene_hue(scene_id)
        place_name = f"hue {round(hue * 360)}"
        near, far, dressing = _hsv(hue, 0.38, 0.42), _hsv(hue, 0.24, 0.66), "hills"
        if time_of_day is None:
            zenith, horizon = _hsv(hue + 0.5, 0.42, 0.72), _hsv(hue + 0.5, 0.16, 0.94)
    if dressing == "room":
        zenith, horizon, sun = _WALL[0], _WALL[1], None
        brightness = max(brightness, 0.7)  # a lamp-lit room at night is still lit
    night_tint = (18, 24, 48)
    near, far = (_mix(night_tint, near, brightness), _mix(night_tint, far, brightness))
    if dressing == "room":
        zenith, horizon = _mix(night_tint, zenith, brightness), _mix(night_tint, horizon, brightness)
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


# --- framing: shot types and angles as a camera on a simple 3D set ---------------------------------------------

VERTICAL_FOV = math.radians(30.0)
FIGURE_HEIGHT = 1.75  # metres: a stand-in figure, head top
# Metres of the subject's plane the frame spans vertically, for each shot type.
SHOT_VIEW_HEIGHTS: dict[str, float] = {
    "extreme close-up": 0.22,  # eyes and mouth
    "close-up": 0.45,  # head and shoulders
    "medium close-up": 0.7,  # chest up
    "medium": 1.0,  # waist up
    "medium wide": 1.5,  # knees up
    "full": 2.2,  # head to toe, with room
    "wide": 5.0,  # the figure in its surroundings
    "extreme wide": 20.0,  # the place, a figure in it
}
DEFAULT_SHOT_TYPE = "wide"
_NEAR = 0.05  # metres: nothing closer to the lens is drawn
ROOM_DEPTH = 6.0  # metres behind the subject to an interior's back wall


@dataclass(frozen=True)
class SetCamera:
    """A pinhole camera on the set: world x right, y up, z away from the camera; subject at the origin.

    >>> camera = frame_camera("medium", "eye-level", picture_height=400)
    >>> camera.project(np.array([[0.0, camera.y, 0.0]])).round(3).tolist() == [[0, 0]]  # the aim point, mid-frame
    True
    """

    x: float
    y: float
    z: float
    pitch: float  # radians, looking up is positive
    roll: float  # radians: a dutch angle
    focal: float  # in picture pixels

    @property
    def axes(self) -> np.ndarray:
        """(3, 3): rows are the camera's right, up and forward in world coordinates."""
        s, c = math.sin(self.pitch), math.cos(self.pitch)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])

    @property
    def overhead(self) -> bool:
        return self.pitch < -math.radians(80)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera coordinates (right, up, depth)."""
        return (points - np.array([self.x, self.y, self.z])) @ self.axes.T

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points in front of the camera -> (N, 2) picture pixels around the optical axis, y down."""
        cam = self.to_camera(points)
        return np.stack([self.focal * cam[:, 0] / cam[:, 2], -self.focal * cam[:, 1] / cam[:, 2]], axis=-1)

    def rays(self, image_x: np.ndarray, image_y: np.ndarray) -> np.ndarray:
        """(N,) picture pixels (unrolled, y down) -> (N, 3) unit world directions."""
        right, up, forward = self.axes
        rays = image_x[:, None] * right - image_y[:, None] * up + self.focal * forward
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def frame_camera(shot_type: str | None, angle: str | None, picture_height: int) -> SetCamera:
    """Place the camera so that the shot type frames the subject (a figure at the origin) from the angle.

    >>> round(frame_camera("close-up", None, 400).z, 2), round(frame_camera("wide", None, 400).z, 2)
    (-0.84, -9.33)
    """
    tan_half = math.tan(VERTICAL_FOV / 2)
    focal = picture_height / 2 / tan_half
    view = SHOT_VIEW_HEIGHTS[shot_type or DEFAULT_SHOT_TYPE]
    distance = view / 2 / tan_half
    # Tight shots keep a little headroom above the figure; wide ones hold the lens at eye height.
    aim = 1.5 if view > 2.6 else FIGURE_HEIGHT + 0.08 * view - view / 2
    twelve = math.radians(12)
    if angle == "high":
        return SetCamera(
            0.0, aim + distance * math.sin(twelve), -distance * math.cos(twelve), -twelve, 0.0, focal
        )
    if angle == "low":
        height = max(0.15, aim - distance * math.sin(twelve))
        across = distance * math.cos(twelve)
        return SetCamera(0.0, height, -across, math.atan2(aim - height, across), 0.0, focal)
    if angle == "worm's-eye":
        across = distance * 0.9
        pitch = math.atan2(aim - 0.08, across) + math.radians(8)  # the subject sits low, the sky looms
        return SetCamera(0.0, 0.08, -across, pitch, 0.0, focal)
    if angle == "overhead":
        top = FIGURE_HEIGHT if view <= 2.6 else 0.0
        return SetCamera(0.0, top + distance, 0.0, -math.pi / 2, 0.0, focal)
    roll = math.radians(14) if angle == "dutch" else 0.0
    return SetCamera(0.0, aim, -distance, 0.0, roll, focal)


# --- the camera move: a pose per frame, relative to the first frame ---------------------------------------------

# Per second of shot at speed 1.0: (x in view widths, y in view heights, log of the view's scale).
MOVE_RATES: dict[str, tuple[float, float, float]] = {
    "push-in": (0.0, 0.0, -0.10),
    "pull-out": (0.0, 0.0, 0.10),
    "pan left": (-0.10, 0.0, 0.0),
    "pan right": (0.10, 0.0, 0.0),
    "tilt up": (0.0, -0.10, 0.0),
    "tilt down": (0.0, 0.10, 0.0),
    "truck left": (-0.08, 0.0, 0.0),
    "truck right": (0.08, 0.0, 0.0),
    "crane up": (0.0, -0.07, 0.03),
    "crane down": (0.0, 0.07, -0.03),
    "orbit": (0.10, 0.0, 0.0),
    "tracking": (0.12, 0.0, 0.0),
}
MAX_TRAVEL = (1.0, 0.6)  # view widths, view heights a move may travel in one shot
SCALE_RANGE = (0.33, 2.5)


@dataclass(frozen=True)
class CameraPath:
    """Where the view sits on the plate at each frame, relative to the first frame's view.

    ``x`` and ``y`` move the view's centre in view widths and heights (right and down positive);
    ``scale`` sizes the view (below 1 is tighter: a push-in). Every path starts at (0, 0, 1).
    """

    x: np.ndarray  # (frames,)
    y: np.ndarray  # (frames,)
    scale: np.ndarray  # (frames,)

    def boxes(self, width: int, height: int) -> np.ndarray:
        """(frames, 4): each frame's view as x0, y0, x1, y1 in picture pixels around the first view's centre."""
        cx, cy = self.x * width, self.y * height
        half_w, half_h = self.scale * width / 2, self.scale * height / 2
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def _ease(frames: int) -> np.ndarray:
    """(frames,) progress from 0 to 1 that eases in and out, the way an operator starts and lands a move."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return t * t * (3 - 2 * t)


def camera_path(move: CameraMove, frames: int, fps: int, seed: int) -> CameraPath:
    """Play a camera move out over a shot of ``frames`` at ``fps``; ``seed`` shakes a handheld camera.

    Moves travel at a rate per second, so a longer shot travels further (up to a cap).

    >>> path = camera_path(parse_move("push-in"), frames=49, fps=24, seed=0)
    >>> round(float(path.scale[0]), 3), round(float(path.scale[-1]), 3)
    (1.0, 0.815)
    """
    progress = _ease(frames)  # (frames,)
    seconds = frames / fps
    x, y, log_scale = np.zeros(frames), np.zeros(frames), np.zeros(frames)
    for kind in move.kinds:
        rate_x, rate_y, rate_scale = MOVE_RATES.get(kind, (0.0, 0.0, 0.0))
        x += rate_x * seconds * move.speed * progress
        y += rate_y * seconds * move.speed * progress
        log_scale += rate_scale * seconds * move.speed * progress
    if "orbit" in move.kinds:
        log_scale -= 0.08 * move.speed * np.sin(np.pi * progress)  # the arc swings closer mid-way
    x = np.clip(x, -MAX_TRAVEL[0], MAX_TRAVEL[0])
    y = np.clip(y, -MAX_TRAVEL[1], MAX_TRAVEL[1])
    log_scale = np.clip(log_scale, math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1]))
    if "handheld" in move.kinds:
        rng = np.random.default_rng(seed)
        t = np.arange(frames) / fps

        def wobble(amplitude: float) -> np.ndarray:
            # A few slow, seeded sines: an operator's breathing and footsteps, not noise.
            freqs, phases, weights = (
                rng.uniform(0.3, 1.6, 3),
                rng.uniform(0, 2 * np.pi, 3),
                rng.uniform(0.5, 1, 3),
            )
            wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
            wave /= weights.sum()
            return amplitude * (wave - wave[0])  # (frames,), starting still

        x += wobble(0.015 * move.speed)
        y += wobble(0.02 * move.speed)
        log_scale += wobble(0.01 * move.speed)
    return CameraPath(x=x, y=y, scale=np.exp(log_scale))


# --- plates: what the camera looks at ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plate:
    """A picture larger than the frame, and where the first frame's view sits on it."""

    image: Image.Image
    centre: tuple[float, float]  # plate pixels of the first view's centre
    density: float  # plate pixels per picture pixel

    def view(self, box: np.ndarray, size: tuple[int, int]) -> Image.Image:
        """The picture the camera sees through ``box`` (x0, y0, x1, y1 around the first view's centre)."""
        cx, cy = self.centre
        d = self.density
        width, height = self.image.size
        crop = (
            max(0.0, cx + float(box[0]) * d),
            max(0.0, cy + float(box[1]) * d),
            min(float(width), cx + float(box[2]) * d),
            min(float(height), cy + float(box[3]) * d),
        )
        return self.image.resize(size, Image.Resampling.BILINEAR, box=crop)


def picture_plate(picture: np.ndarray, view_top: int, view_height: int, boxes: np.ndarray) -> Plate:
    """A plate from a picture (a start image, a parent's last frame), its first view being rows
    ``view_top`` to ``view_top + view_height``; mirrored and dimmed beyond its edges, so that a move
    past them reads as leaving the picture.

    >>> plate = picture_plate(np.zeros((10, 20, 3), np.uint8), 2, 6, np.array([[-12.0, -3, 10, 3]]))
    >>> plate.image.size, plate.centre
    ((24, 10), (14.0, 5.0))
    """
    height, width = picture.shape[:2]  # (height, width, 3)
    cx, cy = width / 2, view_top + view_height / 2
    left = math.ceil(max(0.0, -(cx + boxes[:, 0].min())))
    top = math.ceil(max(0.0, -(cy + boxes[:, 1].min())))
    right = math.ceil(max(0.0, cx + boxes[:, 2].max() - width))
    bottom = math.ceil(max(0.0, cy + boxes[:, 3].max() - height))
    if left or top or right or bottom:
        left, top, right, bottom = (pad + 2 if pad else 0 for pad in (left, top, right, bottom))
        mirrored = np.pad(picture, ((top, bottom), (left, right), (0, 0)), mode="symmetric")
        padded = (mirrored.astype(np.uint16) * 9 // 16).astype(np.uint8)  # (height', width', 3)
        padded[top : top + height, left : left + width] = picture
    else:
        padded = picture
    return Plate(Image.fromarray(padded), (cx + left, cy + top), 1.0)


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
    return _hsv(_scene_hue("character:" + name), 0.55, 0.85)


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


def _set_props(
    palette: Palette, camera: SetCamera, characters: list[str], rng: np.random.Generator
) -> list[Prop]:
    """The set dressing picked by the palette, and a stand-in figure for each character."""
    props: list[Prop] = []
    overhead = camera.overhead
    fog = _mix(palette.horizon, palette.ground_far, 0.5)

    def far_range(distance: float, heights: np.ndarray, colour: RGB) -> None:
        if not overhead:
            props.append(Prop((0.0, 0.0, distance), ((_contour(distance, heights), colour),)))

    def rolling(n: int, low: float, high: float, lumps: int) -> np.ndarray:
        phase = rng.uniform(0, 2 * np.pi, lumps)
        t = np.linspace(0, 1, n)
        wave = sum(np.sin(2 * np.pi * (k + 1) * 1.7 * t + phase[k]) / (k + 1) for k in range(lumps))
        wave = (wave - wave.min()) / (np.ptp(wave) + 1e-9)
        return low + (high - low) * wave

    dressing = palette.dressing
    if dressing == "room":
        wall_z = ROOM_DEPTH
        window = [(-2.4, 1.0), (-0.8, 1.0), (-0.8, 2.3), (-2.4, 2.3)]
        door = [(1.6, 0.0), (2.6, 0.0), (2.6, 2.1), (1.6, 2.1)]
        outside = (20, 30, 60) if palette.time_of_day == "night" else (190, 214, 236)
        panel = [(-0.015, 0.12), (0.015, 0.12), (0.015, 40), (-0.015, 40)]
        seam = _mix(palette.horizon, (0, 0, 0), 0.15)
        # Panel seams along the wall give a pan something to slide past; a window and a door to find one's way.
        shapes: list[tuple[np.ndarray, RGB]] = [
            (_billboard(k * 1.2, wall_z, panel), seam) for k in range(-40, 41)
        ]
        shapes += [
            (_billboard(0.0, wall_z, window), outside),
            (_billboard(0.0, wall_z, door), _mix(palette.horizon, (40, 30, 20), 0.45)),
            (
                _billboard(0.0, wall_z, [(-60, 0.0), (60, 0.0), (60, 0.12), (-60, 0.12)]),
                _mix(palette.horizon, (0, 0, 0), 0.4),
            ),
        ]
        props.append(Prop((0.0, 1.0, wall_z), tuple(shapes)))
    elif dressing == "trees":
        far_range(700.0, rolling(90, 12, 32, 4) + rng.uniform(0, 6, 90), _mix(palette.ground_near, fog, 0.7))
        for _ in range(150):
            x, z, size = rng.uniform(-110, 110), rng.uniform(5, 150), rng.uniform(0.8, 1.7)
            canopy = _mix(palette.ground_near, (10, 40, 10), rng.uniform(0.1, 0.5))
            if overhead:
                tree: tuple[tuple[np.ndarray, RGB], ...] = (
                    (_flat_ellipse(x, z, 1.4 * size, 1.4 * size, 5 * size), canopy),
                )
            else:
                trunk = (_billboard(x, z, _TRUNK, size), (74, 52, 34))
                tree = (trunk, *((_billboard(x, z, tier, size), canopy) for tier in _CANOPY))
            props.append(Prop((x, 0.0, z), tree))
    elif dressing == "buildings":
        far_range(900.0, np.repeat(rng.uniform(20, 90, 30), 3), _mix(palette.ground_far, fog, 0.5))
        for _ in range(70):
            x, z = rng.uniform(-260, 260), rng.uniform(25, 400)
            width, height = rng.uniform(8, 28), rng.uniform(8, 80)
            shade = _mix(palette.ground_near, (200, 204, 214), rng.uniform(0.05, 0.5))
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
    elif dressing == "shore":
        far_range(450.0, rolling(90, 4, 22, 3), _mix((40, 70, 50), fog, 0.45))
    elif dressing == "dunes":
        for distance, mix in ((1400.0, 0.55), (700.0, 0.3), (320.0, 0.12)):
            far_range(
                distance,
                rolling(90, 0.01 * distance, 0.05 * distance, 2),
                _mix(palette.ground_near, fog, mix),
            )
    elif dressing == "peaks":
        peaks = np.abs(rng.normal(0, 1, 60)).cumsum() % 1.0
        far_range(3000.0, 150 + 450 * peaks, _mix((214, 222, 236), fog, 0.35))
    else:  # hills
        for distance, mix in ((1200.0, 0.55), (500.0, 0.25)):
            far_range(
                distance,
                rolling(90, 0.01 * distance, 0.05 * distance, 3),
                _mix(palette.ground_near, fog, mix),
            )

    if not characters:  # a tape mark where the subject would stand
        tape = (240, 200, 40)
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
            props.append(Prop((0.0, 0.0, 0.0), ((strip, tape),)))
    shadow = _mix(palette.ground_near, (0, 0, 0), 0.45)
    for name, x, z in blocking(characters):
        colour = character_colour(name)
        head = _mix(colour, (255, 255, 255), 0.35)
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
        props.append(Prop((x, 1.0, z), figure, label=name, label_colour=head))
    return props


@dataclass(frozen=True)
class _Canvas:
    """The unrolled plate being drawn: picture-pixel coordinates around the optical axis -> canvas pixels."""

    left: float
    top: float
    scale: float  # canvas pixels per picture pixel
    size: tuple[int, int]

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        return (xy - np.array([self.left, self.top])) * self.scale

    def rows(self) -> np.ndarray:
        """(height,) picture y of each canvas row's centre."""
        return self.top + (np.arange(self.size[1]) + 0.5) / self.scale


def _haze(distance: np.ndarray | float, interior: bool) -> np.ndarray:
    return 1.0 - np.exp(-np.asarray(distance) / (30.0 if interior else 90.0))


def _fill(canvas: _Canvas, camera: SetCamera, palette: Palette) -> tuple[np.ndarray, int]:
    """(height, width, 3) uint8: sky, ground (and the back wall of a room), shaded by haze row by row;
    and the first row of ground (everything below it is ground too)."""
    rows = canvas.rows()  # (height,)
    rays = camera.rays(np.zeros_like(rows), rows)  # (height, 3), looking straight ahead
    up, ahead = rays[:, 1], rays[:, 2]
    colours = np.zeros((len(rows), 3))
    zenith, horizon = np.array(palette.zenith, float), np.array(palette.horizon, float)
    near, far = np.array(palette.ground_near, float), np.array(palette.ground_far, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ground_t = np.where(up < -1e-6, camera.y / -up, np.inf)  # (height,) metres to the ground
        if palette.interior:
            wall_t = np.where(ahead > 1e-6, (ROOM_DEPTH - camera.z) / ahead, np.inf)
        else:
            wall_t = np.full_like(ground_t, np.inf)
    ground = ground_t < wall_t
    haze = _haze(np.where(ground, ground_t, 0.0), palette.interior)[:, None]
    colours[:] = near + (far - near) * haze
    if palette.interior:
        wall_height = camera.y + np.where(np.isfinite(wall_t), wall_t, 0.0) * up
        lift = np.clip(wall_height / 3.0, 0.0, 1.0)[:, None]
        wall = horizon + (zenith - horizon) * lift
        colours = np.where(ground[:, None], colours, wall)
    else:
        lift = (np.clip(up / 0.55, 0.0, 1.0) ** 0.8)[:, None]
        sky = horizon + (zenith - horizon) * lift
        colours = np.where(ground[:, None], colours, sky)
    column = np.round(colours).astype(np.uint8)  # (height, 3)
    first_ground = int(np.argmax(ground)) if ground.any() else len(rows)
    return np.broadcast_to(column[:, None, :], (canvas.size[1], canvas.size[0], 3)), first_ground


def _draw_sky(
    draw: ImageDraw.ImageDraw, canvas: _Canvas, camera: SetCamera, palette: Palette, rng: np.random.Generator
) -> None:
    """Clouds, stars or a low sun: sky with something in it, so that a tilt into it still reads as a move."""
    if palette.interior or camera.overhead:
        return

    def directions(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
        a, e = np.radians(azimuth), np.radians(elevation)
        return np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], axis=-1)

    far = 5000.0
    origin = np.array([camera.x, camera.y, camera.z])

    def on_canvas(azimuth: np.ndarray, elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = origin + far * directions(azimuth, elevation)
        depth = camera.to_camera(points)[:, 2]
        visible = depth > _NEAR * far
        xy = np.zeros((len(points), 2))
        xy[visible] = canvas.to_pixels(camera.project(points[visible]))
        return xy, visible

    if palette.stars:
        xy, visible = on_canvas(
            rng.uniform(-85, 85, 400), np.degrees(np.arcsin(rng.uniform(0.02, 0.95, 400)))
        )
        size = max(1.0, canvas.scale * 0.8)
        for (x, y), seen, bright in zip(xy, visible, rng.uniform(0.5, 1.0, 400), strict=True):
            if seen:
                shade = round(150 + 100 * bright)
                draw.rectangle((x, y, x + size, y + size), fill=(shade, shade, min(255, shade + 15)))
        return
    if palette.sun_azimuth is not None:
        glow = _mix(palette.horizon, (255, 236, 200), 0.45)
        for radius, colour in ((3.5, glow), (1.2, (255, 232, 190))):
            xy, visible = on_canvas(
                np.array([palette.sun_azimuth - radius, palette.sun_azimuth + radius, palette.sun_azimuth]),
                np.array([3.0, 3.0, 3.0 + radius]),
            )
            if visible.all():
                r = abs(xy[1, 0] - xy[0, 0]) / 2
                cx, cy = (xy[0, 0] + xy[1, 0]) / 2, xy[0, 1]
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    cloud = _mix(palette.horizon, (255, 255, 255), 0.55)
    count = 16
    azimuth, elevation = rng.uniform(-85, 85, count), rng.uniform(5, 32, count)
    width, height = rng.uniform(6, 16, count), rng.uniform(0.8, 2.2, count)
    for k in range(count):
        xy, visible = on_canvas(
            np.array([azimuth[k] - width[k] / 2, azimuth[k] + width[k] / 2, azimuth[k]]),
            np.array([elevation[k], elevation[k], elevation[k] + height[k]]),
        )
        if visible.all():
            cx, cy = (xy[0, 0] + xy[1, 0]) / 2, (xy[0, 1] + xy[1, 1]) / 2
            rx, ry = abs(xy[1, 0] - xy[0, 0]) / 2, abs(xy[2, 1] - cy)
            draw.ellipse(
                (cx - rx, cy - ry, cx + rx, cy + ry), fill=_mix(cloud, palette.zenith, 0.25 * (k % 3) / 2)
            )


def _clip_segments(
    start: np.ndarray, end: np.ndarray, low: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip (N, 3) camera-space segments to depth >= ``low``; returns the clipped ends and which survive."""
    keep = (start[:, 2] >= low) | (end[:, 2] >= low)
    along = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip(np.nan_to_num((low - start[:, 2]) / along[:, 2]), 0.0, 1.0)
    crossing = start + along * t[:, None]  # where the segment passes the near plane
    start = np.where((start[:, 2] < low)[:, None], crossing, start)
    end = np.where((end[:, 2] < low)[:, None], crossing, end)
    return start, end, keep


def _ground_extent(canvas: _Canvas, camera: SetCamera, reach: float) -> tuple[float, float, float, float]:
    """The ground the canvas can see within ``reach`` metres of the lens: x0, x1, z0, z1."""
    w, h = canvas.size
    edge = np.linspace(0, 1, 40)
    px = np.concatenate([edge * w, edge * w, np.zeros(40), np.full(40, w), [w / 2]])
    py = np.concatenate([np.zeros(40), np.full(40, h), edge * h, edge * h, [h]])
    rays = camera.rays(canvas.left + px / canvas.scale, canvas.top + py / canvas.scale)  # (n, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rays[:, 1] < -1e-6, camera.y / -rays[:, 1], np.inf)
    flat = np.hypot(rays[:, 0], rays[:, 2]) + 1e-9
    t = np.minimum(t, reach)
    across = t * rays[:, 0] * np.where(np.isfinite(t), 1.0, 0.0)
    xs = camera.x + np.where(rays[:, 1] < -1e-6, across, reach * rays[:, 0] / flat)
    zs = camera.z + np.where(rays[:, 1] < -1e-6, t * rays[:, 2], reach * rays[:, 2] / flat)
    return float(xs.min()), float(xs.max()), float(zs.min()), float(zs.max())


def _nice_spacing(distance: float) -> float:
    """Grid spacing (metres) that keeps a few cells between the camera and its subject."""
    for spacing in (0.5, 1.0, 2.0, 5.0, 10.0):
        if spacing >= distance / 10:
            return spacing
    return 20.0


def _draw_grid(draw: ImageDraw.ImageDraw, canvas: _Canvas, camera: SetCamera, palette: Palette) -> None:
    """A ground grid in perspective, fading with distance: the texture that makes every camera move visible.

    Finer lines stop where they would crowd closer than a few pixels; every second, fourth... line
    goes on further, so that the grid thins out towards the horizon instead of turning to mush.
    """
    subject_distance = math.hypot(camera.y, camera.z)
    spacing = _nice_spacing(subject_distance)
    width = max(1, round(canvas.scale * max(1.0, canvas.size[1] / canvas.scale / 400)))
    wall = ROOM_DEPTH if palette.interior else math.inf
    near, far, lines = (np.array(c, float) for c in (palette.ground_near, palette.ground_far, palette.grid))
    segments: list[np.ndarray] = []  # (2, 3) world points
    levels: list[float] = []
    for level in (1, 2, 4, 8, 16, 32):
        reach = level * spacing * camera.focal / 4  # where this level's lines close in to 4 picture pixels
        x0, x1, z0, z1 = _ground_extent(canvas, camera, min(reach, 2000.0))
        z1 = min(z1, wall)
        if z1 <= z0:
            continue
        step = spacing * level
        # Lines running away from the camera, split along their length so that the haze thickens with distance.
        if z0 - camera.z > 0.05:
            depths = np.geomspace(z0 - camera.z, z1 - camera.z, 9) + camera.z  # (9,)
        else:  # the camera stands over the ground it sees (overhead)
            depths = np.linspace(z0, z1, 9)
        for k in range(math.ceil(x0 / step), math.floor(x1 / step) + 1):
            if level < 32 and k % 2 == 0:
                continue  # drawn further on with the next level
            for a, b in zip(depths[:-1], depths[1:], strict=True):
                segments.append(np.array([[k * step, 0.0, a], [k * step, 0.0, b]]))
                levels.append(reach)
        for k in range(math.ceil(z0 / step), math.floor(z1 / step) + 1):  # lines across
            if level < 32 and k % 2 == 0:
                continue
            segments.append(np.array([[x0, 0.0, k * step], [x1, 0.0, k * step]]))
            levels.append(reach)
    if not segments:
        return
    world = np.stack(segments)  # (n, 2, 3)
    reach_of = np.array(levels)  # (n,)
    mid = world.mean(axis=1)
    distance = np.linalg.norm(mid - np.array([camera.x, camera.y, camera.z]), axis=1)
    haze = _haze(distance, palette.interior)[:, None]
    ground = near + (far - near) * haze
    strength = 0.75 * (1 - haze) * np.clip((reach_of - distance) / (0.5 * reach_of), 0.0, 1.0)[:, None]
    colours = np.round(ground + (lines - ground) * strength).astype(int)  # (n, 3)
    start, end, keep = _clip_segments(camera.to_camera(world[:, 0]), camera.to_camera(world[:, 1]), _NEAR)

    def to_canvas(points: np.ndarray) -> np.ndarray:
        xy = np.stack([points[:, 0] / points[:, 2], -points[:, 1] / points[:, 2]], axis=-1) * camera.focal
        return canvas.to_pixels(xy)

    a, b, seen = _clip_to_rect(to_canvas(start[keep]), to_canvas(end[keep]), canvas.size, margin=width)
    for line, colour in zip(
        np.concatenate([a, b], axis=1)[seen].tolist(), colours[keep][seen].tolist(), strict=True
    ):
        draw.line(line, fill=tuple(colour), width=width)


def _clip_to_rect(
    start: np.ndarray, end: np.ndarray, size: tuple[int, int], margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip (n, 2) segments to the canvas (Liang-Barsky); returns the clipped ends and which cross it at all."""
    low = np.array([-margin, -margin])
    high = np.array([size[0] + margin, size[1] + margin])
    delta = end - start  # (n, 2)
    enter, leave = np.zeros(len(start)), np.ones(len(start))
    seen = np.ones(len(start), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in (0, 1):
            d = delta[:, axis]
            t_low = (low[axis] - start[:, axis]) / d
            t_high = (high[axis] - start[:, axis]) / d
            flat = d == 0
            seen &= ~flat | ((start[:, axis] >= low[axis]) & (start[:, axis] <= high[axis]))
            enter = np.where(flat, enter, np.maximum(enter, np.minimum(t_low, t_high)))
            leave = np.where(flat, leave, np.minimum(leave, np.maximum(t_low, t_high)))
    seen &= enter <= leave
    return start + delta * enter[:, None], start + delta * leave[:, None], seen


@lru_cache(maxsize=64)
def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _draw_props(
    draw: ImageDraw.ImageDraw,
    canvas: _Canvas,
    camera: SetCamera,
    palette: Palette,
    props: list[Prop],
    first_view: tuple[float, float, float, float],
) -> None:
    """Props far to near, hazed by distance; then the characters' name tags, kept inside the first view."""
    origin = np.array([camera.x, camera.y, camera.z])
    fog = np.array(_mix(palette.horizon, palette.ground_far, 0.5), float)
    ordered = sorted(props, key=lambda prop: -float(np.linalg.norm(np.array(prop.anchor) - origin)))
    outline = max(1, round(canvas.scale * 0.8))
    bound = 64.0 * max(canvas.size)  # far off the canvas; keeps PIL in range
    # Tags in blocking order: the lead's is placed first.
    labels = [prop for prop in props if prop.label is not None]
    for prop in ordered:
        haze = float(_haze(float(np.linalg.norm(np.array(prop.anchor) - origin)), palette.interior)) * 0.8
        for polygon, colour in prop.shapes:
            depth = camera.to_camera(polygon)[:, 2]
            if (depth < _NEAR).any():
                continue
            xy = np.clip(canvas.to_pixels(camera.project(polygon)), -bound, bound)
            if (
                xy[:, 0].max() < 0
                or xy[:, 1].max() < 0
                or xy[:, 0].min() > canvas.size[0]
                or xy[:, 1].min() > canvas.size[1]
            ):
                continue
            fill = tuple(np.round(np.array(colour) + (fog - np.array(colour)) * haze).astype(int).tolist())
            is_figure = prop.label is not None and np.ptp(polygon[:, 1]) > 0.05
            draw.polygon(
                [tuple(p) for p in xy.tolist()],
                fill=fill,
                outline=(20, 20, 24) if is_figure else None,
                width=outline if is_figure else 1,
            )
    left, top, right, bottom = first_view  # canvas pixels
    size = round(max(6.0, (bottom - top) / canvas.scale * 0.05) * canvas.scale)  # canvas pixels
    font = _font(size)
    pad = max(1, size // 4)
    placed: list[tuple[float, float, float, float]] = []
    for prop in labels:
        x, _, z = prop.anchor
        head = np.array([[x, 1.62, z + 0.35]]) if camera.overhead else np.array([[x, 1.98, z]])
        if camera.to_camera(head)[0, 2] < _NEAR:
            continue
        ((hx, hy),) = canvas.to_pixels(camera.project(head))
        text_width = font.getlength(prop.label or "")
        box_w, box_h = text_width + 2 * pad, size + 2 * pad
        if left <= hx <= right:  # in the first view: keep the tag readable even in a close-up
            hy = min(max(hy - box_h, top + pad), bottom - box_h - pad)
        else:
            hy -= box_h
        bx = hx - box_w / 2
        for _ in placed:  # a tag that lands on another goes above it
            clash = [p for p in placed if bx < p[2] and bx + box_w > p[0] and hy < p[3] and hy + box_h > p[1]]
            if not clash:
                break
            hy = min(p[1] for p in clash) - box_h - pad
        placed.append((bx, hy, bx + box_w, hy + box_h))
        draw.rounded_rectangle(
            (bx, hy, bx + box_w, hy + box_h), radius=pad, fill=(18, 18, 22), outline=prop.label_colour
        )
        draw.text((hx, hy + box_h / 2), prop.label or "", font=font, fill=prop.label_colour, anchor="mm")


def draw_set(
    request: ShotRequest,
    palette: Palette,
    camera: SetCamera,
    boxes: np.ndarray,
    picture_size: tuple[int, int],
) -> Plate:
    """Render the shot's set once, as large as the whole camera move needs and sharp enough for its widest view.

    ``boxes`` (frames, 4) are the views the move passes through, around the first view's centre in
    picture pixels. The set is drawn unrolled and supersampled, then rolled for a dutch angle.
    """
    picture_w, picture_h = picture_size
    margin = 2.0
    x0, y0 = boxes[:, 0].min() - margin, boxes[:, 1].min() - margin
    x1, y1 = boxes[:, 2].max() + margin, boxes[:, 3].max() + margin
    widest = float((boxes[:, 2] - boxes[:, 0]).max()) / picture_w
    density = min(1.0, 1.0 / widest)  # the widest view maps one to one: no plate pixel is skipped
    # The unrolled region that covers the rolled plate.
    cos_r, sin_r = math.cos(camera.roll), math.sin(camera.roll)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    unrolled = corners @ np.array([[cos_r, -sin_r], [sin_r, cos_r]])  # rotate by -roll
    ux0, uy0 = unrolled.min(axis=0)
    ux1, uy1 = unrolled.max(axis=0)
    unrolled_w, unrolled_h = math.ceil((ux1 - ux0) * density), math.ceil((uy1 - uy0) * density)
    supersample = (
        2 if unrolled_w * unrolled_h * 4 <= 16_000_000 else 1
    )  # drawn at twice the size: smooth edges
    canvas = _Canvas(
        float(ux0), float(uy0), density * supersample, (unrolled_w * supersample, unrolled_h * supersample)
    )
    fill, horizon_row = _fill(canvas, camera, palette)
    image = Image.fromarray(np.ascontiguousarray(fill))
    # One set per scene: its sky and dressing are seeded by the scene, each from its own stream.
    scene_seed = int(_scene_hue(request.shot.scene) * 2**32)
    if horizon_row > 0:  # the sky's clouds and sun, kept above the horizon
        sky = image.crop((0, 0, canvas.size[0], horizon_row))
        _draw_sky(ImageDraw.Draw(sky), canvas, camera, palette, np.random.default_rng([scene_seed, 1]))
        image.paste(sky, (0, 0))
    draw = ImageDraw.Draw(image)
    _draw_grid(draw, canvas, camera, palette)
    props = _set_props(palette, camera, list(request.shot.characters), np.random.default_rng([scene_seed, 2]))
    (left, top), (right, bottom) = canvas.to_pixels(
        np.array([[-picture_w / 2, -picture_h / 2], [picture_w / 2, picture_h / 2]])
    ).tolist()
    _draw_props(draw, canvas, camera, palette, props, first_view=(left, top, right, bottom))
    if supersample > 1:
        image = image.reduce(supersample)
    size = (math.ceil((x1 - x0) * density), math.ceil((y1 - y0) * density))
    if camera.roll:
        # plate pixel -> rolled picture point -> unrolled picture point -> unrolled canvas pixel (at density)
        c, s = cos_r, sin_r
        ox, oy = x0 * density, y0 * density
        shift_x = c * ox + s * oy - ux0 * density
        shift_y = -s * ox + c * oy - uy0 * density
        image = image.transform(
            size, Image.Transform.AFFINE, (c, s, shift_x, -s, c, shift_y), Image.Resampling.BILINEAR
        )
    return Plate(image, (-x0 * density, -y0 * density), density)


# --- the slate: bars, text and timecode that stay put while the camera moves -------------------------------------


def timecode(frame: int, fps: int) -> str:
    """A film frame as HH:MM:SS:FF.

    >>> timecode(49, 24), timecode(24 * 3600 + 1, 24)
    ('00:00:02:01', '01:00:00:01')
    """
    seconds, frames = divmod(frame, fps)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    digits = max(2, len(str(fps - 1)))
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}:{frames:0{digits}d}"


@dataclass(frozen=True)
class Letterbox:
    """Where the bars and the picture sit in a frame, and how big the slate's text is.

    >>> box = Letterbox.for_frame(960, 544)
    >>> box.top, box.picture_height, box.bottom, box.prompt_lines
    (30, 444, 70, 3)
    """

    width: int
    height: int
    top: int  # rows of the top bar
    bottom: int  # rows of the bottom bar
    font_size: int
    line_height: int
    pad: int
    prompt_lines: int

    @classmethod
    def for_frame(cls, width: int, height: int) -> Letterbox:
        font_size = max(6, round(height * 0.03))
        ascent, descent = _font(font_size).getmetrics()  # type: ignore[union-attr]
        line = ascent + descent
        pad = max(1, round(font_size * 0.3))
        prompt_lines = 3 if height >= 360 else 2 if height >= 160 else 1
        return cls(
            width, height, line + 2 * pad, prompt_lines * line + 2 * pad, font_size, line, pad, prompt_lines
        )

    @property
    def picture_top(self) -> int:
        return self.top

    @property
    def picture_height(self) -> int:
        return self.height - self.top - self.bottom

    def picture(self, frame: np.ndarray) -> np.ndarray:
        """The picture area of a (height, width, 3) frame, or of (frames, height, width, 3)."""
        return frame[..., self.top : self.height - self.bottom, :, :]


def _fit(text: str, font: Font, width: float) -> str:
    """``text``, cut with an ellipsis to ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…" if text else ""


def _wrap(text: str, font: Font, width: float, lines: int) -> list[str]:
    """``text`` word-wrapped to ``width`` pixels in at most ``lines`` lines, the last cut with an ellipsis."""
    words = " ".join(text.split()).split(" ")
    wrapped: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width or not current:
            current = candidate
        else:
            wrapped.append(current)
            current = word
    if current:
        wrapped.append(current)
    if len(wrapped) > lines:  # the rest no longer fits one line, so fitting it cuts it with an ellipsis
        wrapped = wrapped[: lines - 1] + [" ".join(wrapped[lines - 1 :])]
    return [_fit(line, font, width) for line in wrapped]


class BurnIn:
    """Characters of a font rendered once, so that text that changes every frame (the timecode, the
    frame counter) is burnt in with numpy alone: fast, and safe on worker threads.

    >>> burn = BurnIn(_font(12), "0123456789:")
    >>> frame = np.zeros((20, 120, 3), np.uint8)
    >>> burn.write(frame, right=118, top=2, text="00:00:01:04", colour=(255, 255, 255))
    >>> bool(frame[:, :40].any()), bool(frame[:, 60:].any())
    (False, True)
    """

    def __init__(self, font: Font, characters: str):
        ascent, descent = font.getmetrics()  # type: ignore[union-attr]
        self.height = ascent + descent
        self.glyphs: dict[str, tuple[np.ndarray, int]] = {}  # character -> ((height, width) alpha, advance)
        for character in sorted(set(characters)):
            advance = max(1, round(font.getlength(character)))
            image = Image.new("L", (advance + 2, self.height), 0)  # a pixel either side for overhangs
            ImageDraw.Draw(image).text((1, 0), character, font=font, fill=255)
            self.glyphs[character] = (np.asarray(image, dtype=np.float32)[:, :, None] / 255, advance)

    def width(self, text: str) -> int:
        return sum(self.glyphs[character][1] for character in text)

    def write(self, frame: np.ndarray, right: int, top: int, text: str, colour: RGB) -> None:
        """Burn ``text`` into a (height, width, 3) frame, right-aligned at ``right``, its line starting at ``top``."""
        ink = np.array(colour, dtype=np.float32)
        x = right - self.width(text) - 1
        rows = frame[top : top + self.height]
        for character in text:
            alpha, advance = self.glyphs[character]  # (height, advance + 2, 1)
            x0, x1 = max(0, x), min(rows.shape[1], x + alpha.shape[1])
            if x1 > x0:
                alpha = alpha[: rows.shape[0], x0 - x : x1 - x]
                region = rows[:, x0:x1]
                region[:] = region + (ink - region) * alpha + 0.5
            x += advance


@dataclass(frozen=True)
class Slate:
    """The bars of every frame of a shot, drawn once; :meth:`stamp` burns in the timecode per frame."""

    letterbox: Letterbox
    bars: np.ndarray  # (height, width, 3): the frame with its bars drawn, picture area blank
    burn_in: BurnIn
    film_start: int
    fps: int
    frames: int

    def stamp(self, frame: np.ndarray, index: int) -> None:
        """Burn the film timecode and the frame number within the shot into a (height, width, 3) frame
        whose bars are already drawn."""
        box = self.letterbox
        code = timecode(self.film_start + index, self.fps)
        right, top = box.width - box.pad, box.height - box.bottom + box.pad
        if box.prompt_lines >= 2:
            self.burn_in.write(frame, right, top, code, TIMECODE)
            self.burn_in.write(
                frame, right, top + box.line_height, f"frame {index + 1}/{self.frames}", COUNTER
            )
        else:
            self.burn_in.write(frame, right, top, f"{code}  {index + 1}/{self.frames}", TIMECODE)


BAR = (14, 14, 16)
TEXT = (224, 224, 224)
TIMECODE = (255, 214, 90)
COUNTER = (200, 200, 200)


def _camera_words(request: ShotRequest) -> str:
    camera = request.shot.camera
    words = [camera.shot if camera and camera.shot else f"{DEFAULT_SHOT_TYPE} (default)"]
    if camera and camera.angle:
        words.append(camera.angle)
    words.append(camera.move if camera and camera.move else "static")
    return " · ".join(words)


def draw_slate(request: ShotRequest, letterbox: Letterbox) -> Slate:
    """The bars: ANIMATIC, scene and shot, framing and move on top; the prompt and the timecode below."""
    box = letterbox
    width, height, pad, line = box.width, box.height, box.pad, box.line_height
    font = _font(box.font_size)
    frame = Image.new("RGB", (width, height), BAR)
    draw = ImageDraw.Draw(frame)
    # Top bar: a tag, where we are, and how the camera sees it.
    tag = "ANIMATIC"
    tag_w = font.getlength(tag) + 2 * pad
    draw.rectangle((0, 0, tag_w, box.top - 1), fill=(236, 170, 40))
    draw.text((pad, pad), tag, font=font, fill=(20, 16, 8))
    where = f"scene {request.shot.scene} · shot {request.shot.id}"
    where_x = tag_w + 2 * pad
    camera_text = _camera_words(request)
    room = width - where_x - pad
    where = _fit(where, font, room)
    draw.text((where_x, pad), where, font=font, fill=TEXT)
    camera_room = room - font.getlength(where) - 3 * pad
    if camera_room > font.getlength("…"):
        draw.text(
            (width - pad, pad),
            _fit(camera_text, font, camera_room),
            font=font,
            fill=(170, 200, 230),
            anchor="ra",
        )
    # Bottom bar: the prompt, leaving room on the right for the timecode burnt in per frame.
    burn_in = BurnIn(font, "0123456789:/ frame")
    samples = [timecode(10**6 - 1, request.fps), f"frame {request.frames}/{request.frames}"]
    if box.prompt_lines < 2:
        samples = [f"{samples[0]}  {request.frames}/{request.frames}"]
    counter_w = min(width, max(burn_in.width(sample) for sample in samples) + 2 * pad + 2)
    bottom_y = height - box.bottom
    prompt_w = width - counter_w - 2 * pad
    if prompt_w > font.getlength("…") * 2:
        for k, text in enumerate(_wrap(request.prompt, font, prompt_w, box.prompt_lines)):
            draw.text((pad, bottom_y + pad + k * line), text, font=font, fill=TEXT)
    bars = np.asarray(frame).copy()  # (height, width, 3)
    return Slate(box, bars, burn_in, request.shot.film_start_frame, request.fps, request.frames)


# --- marks fixed to the frame: an over-the-shoulder foreground, a POV viewfinder --------------------------------


@dataclass(frozen=True)
class _FrameMark:
    """A shape fixed to the picture, not the set: pasted onto every frame's picture."""

    box: tuple[int, int, int, int]
    mask: Image.Image  # "L", the box's size
    colour: RGB


def frame_marks(angle: str | None, size: tuple[int, int]) -> list[_FrameMark]:
    """The over-the-shoulder angle's soft foreground shoulder, or the POV angle's viewfinder corners."""
    width, height = size
    marks: list[_FrameMark] = []
    if angle == "over-the-shoulder":
        mask = Image.new("L", size, 0)
        draw = ImageDraw.Draw(mask)
        draw.ellipse((-0.3 * width, 0.62 * height, 0.4 * width, 1.6 * height), fill=255)  # shoulder
        draw.ellipse((0.0, 0.08 * height, 0.24 * width, 0.95 * height), fill=255)  # back of the head
        # Out of focus: it is much closer to the lens than the subject.
        mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, height * 0.02)))
        bbox = mask.getbbox()
        if bbox:
            marks.append(_FrameMark(bbox, mask.crop(bbox), (30, 28, 32)))
    elif angle == "pov":
        arm, thick, inset = max(3, height // 8), max(1, height // 150), max(2, height // 14)
        for cx, cy, sx, sy in (
            (inset, inset, 1, 1),
            (width - inset, inset, -1, 1),
            (inset, height - inset, 1, -1),
            (width - inset, height - inset, -1, -1),
        ):
            x0, x1 = sorted((cx, cx + sx * arm))
            y0, y1 = sorted((cy, cy + sy * arm))
            mask = Image.new("L", (x1 - x0 + 1, y1 - y0 + 1), 0)
            draw = ImageDraw.Draw(mask)
            hx = 0 if sx > 0 else mask.width - thick
            vy = 0 if sy > 0 else mask.height - thick
            draw.rectangle((0, vy, mask.width, vy + thick - 1), fill=220)
            draw.rectangle((hx, 0, hx + thick - 1, mask.height), fill=220)
            marks.append(_FrameMark((x0, y0, x1 + 1, y1 + 1), mask, (236, 236, 236)))
    return marks


# --- the generator ----------------------------------------------------------------------------------------------


class AnimaticGenerator:
    """A previs of each shot: its framing, camera move, blocking, prompt and timecode, without a model.

    Same request, same frames, bit for bit. Set dressing is seeded by the scene id, so the shots of a
    scene share one set; a handheld camera is shaken by the shot's seed.
    """

    name = "animatic"
    version = "1"  # bump when the drawing changes, so that cached shots are drawn again

    def __init__(self, options: GeneratorOptions):
        self.options = options  # nothing to load: the model, device and precision do not apply

    def __enter__(self) -> AnimaticGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release."""

    @staticmethod
    def reserved_bottom(width: int, height: int) -> int:
        """Rows at the bottom of each frame that the prompt bar covers; burned-in captions sit above them."""
        return Letterbox.for_frame(width, height).bottom

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        """Draw the shot's ``request.frames`` frames at ``request.width`` x ``request.height``."""
        shot = request.shot
        frames, width, height = request.frames, request.width, request.height
        letterbox = Letterbox.for_frame(width, height)
        picture_size = (width, letterbox.picture_height)
        camera_spec = shot.camera
        shot_type = camera_spec.shot if camera_spec else None
        angle = camera_spec.angle if camera_spec else None
        move = parse_move(camera_spec.move if camera_spec else None)

        # 1. The camera move, as the view's box on the plate at every frame
        path = camera_path(move, frames, request.fps, request.seed)
        boxes = path.boxes(*picture_size)  # (frames, 4)

        # 2. The plates: the drawn set, and what the shot starts from (a start image, the parent's last picture)
        palette = scene_palette(
            shot.setting, shot.prompt, shot.scene
        )  # the storyboard's words, not the enhancer's
        start: Plate | None = None
        weights = np.zeros(frames)  # (frames,) how much of each frame is the start plate
        if request.image is not None:
            start = picture_plate(request.image, letterbox.picture_top, letterbox.picture_height, boxes)
            weights[:] = 1.0
            plate_kind = "image"
        elif request.tail_frames is not None:
            last_picture = letterbox.picture(request.tail_frames[-1])  # (picture height, width, 3)
            start = picture_plate(np.ascontiguousarray(last_picture), 0, letterbox.picture_height, boxes)
            blend_frames = max(1, round(frames * BLEND_FRACTION))
            weights = 1.0 - _ease(blend_frames + 1)[:-1] if frames > 1 else np.ones(1)
            weights = np.concatenate([weights, np.zeros(max(0, frames - blend_frames))])[:frames]
            plate_kind = "parent's last picture, dissolving into the set"
        else:
            plate_kind = "set"
        camera = frame_camera(shot_type, angle, letterbox.picture_height)
        scenery = draw_set(request, palette, camera, boxes, picture_size) if weights.min() < 1.0 else None

        # 3. What stays put: the bars and marks fixed to the frame
        slate = draw_slate(request, letterbox)
        marks = frame_marks(angle, picture_size)

        # 4. Frame by frame: view the plates, dissolve, mark, burn in the timecode
        def picture_at(index: int) -> np.ndarray:
            """(picture height, width, 3): what the camera sees at one frame."""
            weight = float(weights[index])
            picture = (
                scenery.view(boxes[index], picture_size) if scenery is not None and weight < 1.0 else None
            )
            if start is not None and weight > 0.0:
                from_start = start.view(boxes[index], picture_size)
                picture = from_start if picture is None else Image.blend(picture, from_start, weight)
            assert picture is not None
            for mark in marks:
                picture.paste(mark.colour, mark.box, mark.mask)
            return np.asarray(picture)

        video = np.empty((frames, height, width, 3), dtype=np.uint8)  # (frames, height, width, 3)
        top, bottom = letterbox.top, height - letterbox.bottom

        def draw_frame(index: int) -> None:
            frame = video[index]  # (height, width, 3)
            frame[:top] = slate.bars[:top]
            frame[bottom:] = slate.bars[bottom:]
            frame[top:bottom] = picture_at(index)
            slate.stamp(frame, index)

        # Pillow resamples outside the GIL, so frames are drawn side by side on worker threads, each
        # into its own slice of the clip; progress is reported in order as they complete.
        workers = max(1, min(FRAME_WORKERS, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            pending = [pool.submit(draw_frame, index) for index in range(frames)]
            try:
                for index, future in enumerate(pending):
                    future.result()
                    if (index + 1) % PROGRESS_EVERY == 0 or index + 1 == frames:
                        progress(ProgressEvent(shot.id, "frames", index + 1, frames))
            except BaseException:
                for future in pending:
                    future.cancel()
                raise

        info: dict[str, Any] = {
            "plate": plate_kind,
            "palette": palette.name,
            "shot_type": shot_type or DEFAULT_SHOT_TYPE,
            "angle": angle or "eye-level",
            "move": list(move.kinds),
            "speed": move.speed,
            "plate_size": list(scenery.image.size) if scenery is not None else None,
        }
        return Clip(frames=video, dit_passes=0, info=info)


__all__ = [
    "AnimaticGenerator",
    "CameraPath",
    "Letterbox",
    "Palette",
    "Plate",
    "SetCamera",
    "camera_path",
    "draw_set",
    "frame_camera",
    "scene_palette",
    "timecode",
]
