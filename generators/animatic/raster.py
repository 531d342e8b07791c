"""The rasteriser: the shot's set drawn once into a plate, and the plates the camera looks at.

A plate is a picture larger than the frame; each frame is a crop of it resized to the picture area.
The set is projected through the shot's camera: sky and ground filled row by row, clouds or stars,
a perspective ground grid (what makes every camera move visible), then the props far to near and
the characters' name tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from storyreel.generate import ShotRequest

from .framing import SetCamera
from .palette import Palette, mix, scene_hue
from .props import ROOM_DEPTH, Prop, set_props
from .slate import text_font

NEAR = 0.05  # metres: nothing closer to the lens is drawn


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


# --- the set: drawn once per shot, through the shot's camera ----------------------------------------------------


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
        visible = depth > NEAR * far
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
        glow = mix(palette.horizon, (255, 236, 200), 0.45)
        for radius, colour in ((3.5, glow), (1.2, (255, 232, 190))):
            xy, visible = on_canvas(
                np.array([palette.sun_azimuth - radius, palette.sun_azimuth + radius, palette.sun_azimuth]),
                np.array([3.0, 3.0, 3.0 + radius]),
            )
            if visible.all():
                r = abs(xy[1, 0] - xy[0, 0]) / 2
                cx, cy = (xy[0, 0] + xy[1, 0]) / 2, xy[0, 1]
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    cloud = mix(palette.horizon, (255, 255, 255), 0.55)
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
                (cx - rx, cy - ry, cx + rx, cy + ry), fill=mix(cloud, palette.zenith, 0.25 * (k % 3) / 2)
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
    start, end, keep = _clip_segments(camera.to_camera(world[:, 0]), camera.to_camera(world[:, 1]), NEAR)

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
    fog = np.array(mix(palette.horizon, palette.ground_far, 0.5), float)
    ordered = sorted(props, key=lambda prop: -float(np.linalg.norm(np.array(prop.anchor) - origin)))
    outline = max(1, round(canvas.scale * 0.8))
    bound = 64.0 * max(canvas.size)  # far off the canvas; keeps PIL in range
    # Tags in blocking order: the lead's is placed first.
    labels = [prop for prop in props if prop.label is not None]
    for prop in ordered:
        haze = float(_haze(float(np.linalg.norm(np.array(prop.anchor) - origin)), palette.interior)) * 0.8
        for polygon, colour in prop.shapes:
            depth = camera.to_camera(polygon)[:, 2]
            if (depth < NEAR).any():
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
    font = text_font(size)
    pad = max(1, size // 4)
    placed: list[tuple[float, float, float, float]] = []
    for prop in labels:
        x, _, z = prop.anchor
        head = np.array([[x, 1.62, z + 0.35]]) if camera.overhead else np.array([[x, 1.98, z]])
        if camera.to_camera(head)[0, 2] < NEAR:
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
    scene_seed = int(scene_hue(request.shot.scene) * 2**32)
    if horizon_row > 0:  # the sky's clouds and sun, kept above the horizon
        sky = image.crop((0, 0, canvas.size[0], horizon_row))
        _draw_sky(ImageDraw.Draw(sky), canvas, camera, palette, np.random.default_rng([scene_seed, 1]))
        image.paste(sky, (0, 0))
    draw = ImageDraw.Draw(image)
    _draw_grid(draw, canvas, camera, palette)
    props = set_props(palette, camera, list(request.shot.characters), np.random.default_rng([scene_seed, 2]))
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
