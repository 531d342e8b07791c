"""The animatic generator: the generator contract, and a shot's frames put together from its plates,
its camera path, its frame marks and its slate."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from storyreel.camera import shot_camera
from storyreel.generate import (
    Clip,
    Generator,
    ProgressCallback,
    ProgressEvent,
    ShotRequest,
    ignore_progress,
)
from storyreel.plan import ShotPlan

from .framing import FrameMark, camera_path, ease, frame_camera, frame_marks
from .palette import scene_palette
from .raster import Plate, draw_set, picture_plate
from .slate import Letterbox, Slate, draw_slate

PROGRESS_EVERY = 8  # frames between progress events
FRAME_WORKERS = 4  # threads drawing pictures, at most (and no more than the machine's cores)
BLEND_FRACTION = 1 / 3  # of a continuing shot, spent dissolving from the parent's last picture into the set


class AnimaticGenerator(Generator):
    """A previs of each shot: its framing, camera move, blocking, prompt and timecode, without a model.

    Same request, same frames, bit for bit. Set dressing is seeded by the scene id, so the shots of a
    scene share one set; a handheld camera is shaken by the shot's seed.
    """

    name = "animatic"
    version = "2"  # bump when the drawing changes, so that cached shots are drawn again

    # Nothing to load or release: the model, device and precision options do not apply.

    @classmethod
    def frame_facts(cls, shot: ShotPlan) -> dict[str, Any]:
        """What the drawing depends on: the shot's own words (its camera and set are read from them), where it
        stands in the film (the slate's names and timecode), its length, size and seed; none of the
        diffusion settings, which it does not draw."""
        return {
            "prompt_as_written": shot.prompt,
            "camera": shot.camera.model_dump() if shot.camera else None,
            "characters": shot.characters,
            "setting": shot.setting,
            "scene": shot.scene,
            "id": shot.id,
            "film_start_frame": shot.film_start_frame,
            "seed": shot.seed,
            "frames": shot.frames,
            "mode": shot.mode,
            "size": [shot.width, shot.height],
            "fps": shot.fps,
        }

    @classmethod
    def reserved_bottom(cls, width: int, height: int) -> int:
        """Rows at the bottom of each frame that the prompt bar covers; burned-in captions sit above them."""
        return Letterbox.for_frame(width, height).bottom

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        """Draw the shot's ``request.frames`` frames at ``request.width`` x ``request.height``."""
        shot = request.shot
        frames, width, height = request.frames, request.width, request.height
        letterbox = Letterbox.for_frame(width, height)
        picture_size = (width, letterbox.picture_height)
        # The camera the shot's prompt asks for: its caption says the same shot type, angle and move.
        asked = shot_camera(shot.camera, shot.prompt)

        # 1. The camera move, as the view's box on the plate at every frame
        path = camera_path(asked.move, frames, request.fps, request.seed)
        boxes = path.boxes(*picture_size)  # (frames, 4)

        # 2. The plates: the drawn set, and what the shot starts from (a start image, the parent's last picture)
        palette = scene_palette(
            shot.setting, shot.prompt, shot.scene
        )  # the storyboard's words, not the enhancer's
        start, weights, plate_kind = start_plate(request, letterbox, boxes)
        camera = frame_camera(asked.shot_type, asked.angle, letterbox.picture_height)
        scenery = draw_set(request, palette, camera, boxes, picture_size) if weights.min() < 1.0 else None

        # 3. What stays put: the bars and marks fixed to the frame
        slate = draw_slate(request, letterbox, asked)
        marks = frame_marks(asked.angle, picture_size)

        # 4. Frame by frame: view the plates, dissolve, mark, burn in the timecode
        views = Views(boxes, picture_size, scenery, start, weights, marks, *end_plate(request, letterbox))
        video = draw_frames(request, views, slate, progress)

        info: dict[str, Any] = {
            "plate": plate_kind,
            "palette": palette.name,
            "shot_type": asked.shot_type,
            "angle": asked.angle or "eye-level",
            "move": list(asked.move.kinds),
            "speed": asked.move.speed,
            "move_added": asked.move_added,
            "plate_size": list(scenery.image.size) if scenery is not None else None,
        }
        if request.end_image is not None:
            info["end"] = "dissolves into its end image, still, over its last third"
        return Clip(frames=video, dit_passes=0, info=info)


def start_plate(
    request: ShotRequest, letterbox: Letterbox, boxes: np.ndarray
) -> tuple[Plate | None, np.ndarray, str]:
    """What the shot starts from, how much of each frame it makes up, and what it is.

    An image-to-video shot is its start image throughout; a continuing shot starts on its parent's
    last picture and dissolves into its own set over the first third; a fresh shot is its set alone.
    """
    frames = request.frames
    weights = np.zeros(frames)  # (frames,) how much of each frame is the start plate
    if request.image is not None:
        start = picture_plate(request.image, letterbox.picture_top, letterbox.picture_height, boxes)
        weights[:] = 1.0
        return start, weights, "image"
    if request.tail_frames is not None:
        last_picture = letterbox.picture(request.tail_frames[-1])  # (picture height, width, 3)
        start = picture_plate(np.ascontiguousarray(last_picture), 0, letterbox.picture_height, boxes)
        blend_frames = max(1, round(frames * BLEND_FRACTION))
        weights = 1.0 - ease(blend_frames + 1)[:-1] if frames > 1 else np.ones(1)
        weights = np.concatenate([weights, np.zeros(max(0, frames - blend_frames))])[:frames]
        before = "the clip's" if request.shot.video else "parent's"
        return start, weights, f"{before} last picture, dissolving into the set"
    return None, weights, "set"


def end_plate(request: ShotRequest, letterbox: Letterbox) -> tuple[np.ndarray | None, np.ndarray]:
    """What a shot with an end image ends on, and how much of each frame it makes up: its picture area, still,
    dissolved in over the last third of the shot so that the last frame is the end image (under the bars and frame marks)."""
    frames = request.frames
    if request.end_image is None:
        return None, np.zeros(frames)
    blend_frames = max(1, round(frames * BLEND_FRACTION))
    weights = np.concatenate([np.zeros(max(0, frames - blend_frames)), ease(blend_frames)])[-frames:]
    weights[-1] = 1.0  # (frames,): the shot lands on the end image whatever its length
    return np.ascontiguousarray(letterbox.picture(request.end_image)), weights


@dataclass(frozen=True)
class Views:
    """What the camera sees at each frame: the plates through the move's boxes, dissolved and marked."""

    boxes: np.ndarray  # (frames, 4)
    size: tuple[int, int]  # the picture area's width and height
    scenery: Plate | None  # the drawn set; None when the start plate covers every frame
    start: Plate | None  # a start image or the parent's last picture
    weights: np.ndarray  # (frames,) how much of each frame is the start plate
    marks: list[FrameMark]
    end: np.ndarray | None = None  # (picture height, width, 3): the end image's picture, held still
    end_weights: np.ndarray | None = None  # (frames,) how much of each frame is the end picture

    def picture(self, index: int) -> np.ndarray:
        """(picture height, width, 3): what the camera sees at one frame."""
        weight = float(self.weights[index])
        picture = (
            self.scenery.view(self.boxes[index], self.size)
            if self.scenery is not None and weight < 1.0
            else None
        )
        if self.start is not None and weight > 0.0:
            from_start = self.start.view(self.boxes[index], self.size)
            picture = from_start if picture is None else Image.blend(picture, from_start, weight)
        assert picture is not None
        if self.end is not None and self.end_weights is not None and self.end_weights[index] > 0.0:
            picture = Image.blend(picture, Image.fromarray(self.end), float(self.end_weights[index]))
        for mark in self.marks:
            picture.paste(mark.colour, mark.box, mark.mask)
        return np.asarray(picture)


def draw_frames(request: ShotRequest, views: Views, slate: Slate, progress: ProgressCallback) -> np.ndarray:
    """(frames, height, width, 3): each frame's bars, picture and timecode, reporting progress in order."""
    frames, height, width = request.frames, request.height, request.width
    video = np.empty((frames, height, width, 3), dtype=np.uint8)  # (frames, height, width, 3)
    top, bottom = slate.letterbox.top, height - slate.letterbox.bottom

    def draw_frame(index: int) -> None:
        frame = video[index]  # (height, width, 3)
        frame[:top] = slate.bars[:top]
        frame[bottom:] = slate.bars[bottom:]
        frame[top:bottom] = views.picture(index)
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
                    progress(ProgressEvent(request.shot.id, "frames", index + 1, frames))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return video
