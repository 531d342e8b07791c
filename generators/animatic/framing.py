"""Framing and the camera path: where the camera stands on the set, how it moves over a shot, and
the marks an angle fixes to the picture.

A shot type and an angle place a pinhole camera on a simple 3D set whose subject stands at the
origin; a camera move becomes a pose per frame: an offset and a scale of the view on the plate the
set is drawn into, relative to the first frame's view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from storyreel.camera import DEFAULT_SHOT_TYPE, FRAMINGS, MOVE_KINDS, VIEWPOINTS, Angle, CameraMove, ShotType

from .palette import RGB

VERTICAL_FOV = math.radians(30.0)
FIGURE_HEIGHT = 1.75  # metres: a stand-in figure, head top


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


def frame_camera(shot_type: ShotType | None, angle: Angle | None, picture_height: int) -> SetCamera:
    """Place the camera so that the shot type frames the subject (a figure at the origin) from the angle.

    The shot type's view height (storyreel.camera.FRAMINGS) sets the distance; the angle's placement
    (storyreel.camera.VIEWPOINTS) where the camera stands. No shot type is DEFAULT_SHOT_TYPE, no
    angle eye level.

    >>> round(frame_camera("close-up", None, 400).z, 2), round(frame_camera("wide", None, 400).z, 2)
    (-0.84, -9.33)
    """
    tan_half = math.tan(VERTICAL_FOV / 2)
    focal = picture_height / 2 / tan_half
    view = FRAMINGS[shot_type or DEFAULT_SHOT_TYPE].view_height
    distance = view / 2 / tan_half
    # Tight shots keep a little headroom above the figure; wide ones hold the lens at eye height.
    aim = 1.5 if view > 2.6 else FIGURE_HEIGHT + 0.08 * view - view / 2
    viewpoint = VIEWPOINTS[angle or "eye-level"]
    arc = math.radians(viewpoint.arc_degrees)
    if viewpoint.placement == "raised":
        return SetCamera(0.0, aim + distance * math.sin(arc), -distance * math.cos(arc), -arc, 0.0, focal)
    if viewpoint.placement == "lowered":
        height = max(0.15, aim - distance * math.sin(arc))
        across = distance * math.cos(arc)
        return SetCamera(0.0, height, -across, math.atan2(aim - height, across), 0.0, focal)
    if viewpoint.placement == "ground":
        across = distance * 0.9
        pitch = math.atan2(aim - 0.08, across) + math.radians(8)  # the subject sits low, the sky looms
        return SetCamera(0.0, 0.08, -across, pitch, 0.0, focal)
    if viewpoint.placement == "overhead":
        top = FIGURE_HEIGHT if view <= 2.6 else 0.0
        return SetCamera(0.0, top + distance, 0.0, -math.pi / 2, 0.0, focal)
    return SetCamera(0.0, aim, -distance, 0.0, math.radians(viewpoint.roll_degrees), focal)


# --- the camera move: a pose per frame, relative to the first frame ---------------------------------------------

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


def ease(frames: int) -> np.ndarray:
    """(frames,) progress from 0 to 1 that eases in and out, the way an operator starts and lands a move."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return t * t * (3 - 2 * t)


def camera_path(move: CameraMove, frames: int, fps: int, seed: int) -> CameraPath:
    """Play a camera move out over a shot of ``frames`` at ``fps``; ``seed`` shakes a handheld camera.

    Moves travel at their rate per second (storyreel.camera.MOVE_KINDS), so a longer shot travels
    further (up to a cap).

    >>> from storyreel.camera import parse_move
    >>> path = camera_path(parse_move("push-in"), frames=49, fps=24, seed=0)
    >>> round(float(path.scale[0]), 3), round(float(path.scale[-1]), 3)
    (1.0, 0.815)
    """
    progress = ease(frames)  # (frames,)
    seconds = frames / fps
    x, y, log_scale = np.zeros(frames), np.zeros(frames), np.zeros(frames)
    for kind in move.kinds:
        rate_x, rate_y, rate_scale = MOVE_KINDS[kind].rate
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


# --- marks fixed to the frame: an over-the-shoulder foreground, a POV viewfinder --------------------------------


@dataclass(frozen=True)
class FrameMark:
    """A shape fixed to the picture, not the set: pasted onto every frame's picture."""

    box: tuple[int, int, int, int]
    mask: Image.Image  # "L", the box's size
    colour: RGB


def frame_marks(angle: Angle | None, size: tuple[int, int]) -> list[FrameMark]:
    """The over-the-shoulder angle's soft foreground shoulder, or the POV angle's viewfinder corners."""
    width, height = size
    marks: list[FrameMark] = []
    mark = VIEWPOINTS[angle].mark if angle else None
    if mark == "shoulder":
        mask = Image.new("L", size, 0)
        draw = ImageDraw.Draw(mask)
        draw.ellipse((-0.3 * width, 0.62 * height, 0.4 * width, 1.6 * height), fill=255)  # shoulder
        draw.ellipse((0.0, 0.08 * height, 0.24 * width, 0.95 * height), fill=255)  # back of the head
        # Out of focus: it is much closer to the lens than the subject.
        mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, height * 0.02)))
        bbox = mask.getbbox()
        if bbox:
            marks.append(FrameMark(bbox, mask.crop(bbox), (30, 28, 32)))
    elif mark == "viewfinder":
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
            marks.append(FrameMark((x0, y0, x1 + 1, y1 + 1), mask, (236, 236, 236)))
    return marks
