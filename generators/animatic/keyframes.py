"""The animatic's keyframes: without a model, a keyframe is the scene's colours with each character's
reference picture standing on its mark, so the animatic previews who is in a keyframed shot and where.

The sky and ground come from the scene's palette (read from the keyframe's prompt, which carries the
setting); each character's first reference stands where :func:`~.props.blocking` puts them, the first on
the mark in the middle, the others to either side and a little behind (smaller), framed in the
character's stand-in colour. Nothing random: the same request always gives the same picture.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from storyreel.keyframes import KeyframeModel, KeyframeRequest

from .palette import scene_palette
from .props import blocking, character_colour

HORIZON = 0.55  # the horizon's height, as a fraction of the picture from the top
FIGURE = 0.6  # a character on the front mark is this fraction of the picture's height
FRAME = 3  # pixels of the stand-in colour around each reference picture


class AnimaticKeyframes(KeyframeModel):
    """Keyframes drawn without a model: the set's colours and the characters' reference pictures."""

    name = "animatic"
    version = "1"
    max_references: ClassVar[int] = 64  # only the first of each character's references is drawn

    def make(self, request: KeyframeRequest) -> np.ndarray:
        from PIL import Image, ImageOps

        width, height = request.width, request.height
        palette = scene_palette(None, request.prompt, request.shot_id)
        horizon = round(height * HORIZON)
        picture = np.empty((height, width, 3), np.float32)  # (height, width, 3)
        picture[:horizon] = _ramp(palette.zenith, palette.horizon, horizon)[:, None, :]
        picture[horizon:] = _ramp(palette.ground_far, palette.ground_near, height - horizon)[:, None, :]
        canvas = Image.fromarray(picture.round().astype(np.uint8))
        marks = blocking(list(request.characters))
        # Far marks first, so a nearer character stands in front of them.
        for (name, x, z), references in sorted(
            zip(marks, request.placed, strict=True), key=lambda item: -item[0][2]
        ):
            if not references:
                continue
            scale = 1.0 / (1.0 + 0.5 * z)
            box = max(8, round(height * FIGURE * scale))
            with Image.open(references[0]) as opened:
                figure = ImageOps.contain(opened.convert("RGB"), (box, box), Image.Resampling.LANCZOS)
            figure = ImageOps.expand(figure, border=FRAME, fill=character_colour(name))
            centre = width / 2 + x * width * 0.22 * scale
            feet = horizon + (height - horizon) * 0.8 * scale
            left = round(centre - figure.width / 2)
            top = round(feet - figure.height)
            canvas.paste(figure, (left, top))
        return np.asarray(canvas, dtype=np.uint8).copy()


def _ramp(top: tuple[int, int, int], bottom: tuple[int, int, int], rows: int) -> np.ndarray:
    """(rows, 3) float32 colours blending ``top`` into ``bottom``."""
    t = np.linspace(0.0, 1.0, max(rows, 1))[:rows, None]
    return (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
