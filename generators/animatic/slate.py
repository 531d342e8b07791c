"""The slate: the bars above and below the picture, with the shot's name, framing, prompt and the
film's timecode. They do not move with the camera: drawn once per shot, then the changing text (the
timecode and the frame counter) is burnt into each frame with numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from storyreel.camera import ShotCamera
from storyreel.generate import ShotRequest

from .palette import RGB

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=64)
def text_font(size: int) -> Font:
    """Pillow's default font at ``size`` pixels: the slate's text and the characters' name tags."""
    return ImageFont.load_default(size=size)


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
        ascent, descent = text_font(font_size).getmetrics()  # type: ignore[union-attr]
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

    >>> burn = BurnIn(text_font(12), "0123456789:")
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


def _camera_words(camera: ShotCamera) -> str:
    """The shot type, angle and move, saying which the storyboard left to the default or to a still shot."""
    words = [f"{camera.shot_type} (default)" if camera.default_shot_type else camera.shot_type]
    if camera.angle:
        words.append(camera.angle)
    words.append(f"{camera.move.text} (added)" if camera.move_added else camera.move.text or "static")
    return " · ".join(words)


def draw_slate(request: ShotRequest, letterbox: Letterbox, camera: ShotCamera) -> Slate:
    """The bars: ANIMATIC, scene and shot, framing and move on top; the prompt and the timecode below."""
    box = letterbox
    width, height, pad, line = box.width, box.height, box.pad, box.line_height
    font = text_font(box.font_size)
    frame = Image.new("RGB", (width, height), BAR)
    draw = ImageDraw.Draw(frame)
    # Top bar: a tag, where we are, and how the camera sees it.
    tag = "ANIMATIC"
    tag_w = font.getlength(tag) + 2 * pad
    draw.rectangle((0, 0, tag_w, box.top - 1), fill=(236, 170, 40))
    draw.text((pad, pad), tag, font=font, fill=(20, 16, 8))
    where = f"scene {request.shot.scene} · shot {request.shot.id}"
    where_x = tag_w + 2 * pad
    camera_text = _camera_words(camera)
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
