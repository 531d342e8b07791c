"""The film's captions: when each is on screen, the SubRip file, and the text burned into frames.

A caption is shown from its shot's first film frame until the next shot starts, so during a
dissolve the incoming shot's caption replaces the outgoing one. It is burned in at the bottom
centre, white with a dark outline, wrapped to at most three lines, above any rows a generator
keeps for its own overlay; the same timings are written to ``film.srt`` for players that show
subtitles themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import write_text_atomic

if TYPE_CHECKING:
    from .assemble import Cut

CAPTION_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


@dataclass(frozen=True)
class CaptionSpan:
    """A caption on screen from film frame ``start`` up to, not including, ``end``."""

    text: str
    start: int
    end: int


def caption_spans(cuts: Sequence[Cut]) -> list[CaptionSpan]:
    """When each caption is on screen: from its shot's first frame until the next shot starts.

    >>> from storyreel.assemble import Cut
    >>> cuts = [Cut("a", Path("a.mp4"), 10, "cut", 0, 0, "Dawn."), Cut("b", Path("b.mp4"), 10, "dissolve", 4, 6),
    ...         Cut("c", Path("c.mp4"), 8, "cut", 0, 16, "Noon.")]
    >>> caption_spans(cuts)
    [CaptionSpan(text='Dawn.', start=0, end=6), CaptionSpan(text='Noon.', start=16, end=24)]
    """
    spans = []
    for index, cut in enumerate(cuts):
        if not cut.caption or not cut.caption.strip():
            continue
        end = cuts[index + 1].film_start_frame if index + 1 < len(cuts) else cut.film_end_frame
        if end > cut.film_start_frame:
            spans.append(CaptionSpan(" ".join(cut.caption.split()), cut.film_start_frame, end))
    return spans


def _srt_time(frame: int, fps: int) -> str:
    milliseconds = round(frame * 1000 / fps)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, milliseconds = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{milliseconds:03d}"


def srt_text(cuts: Sequence[Cut], fps: int) -> str:
    """The SubRip document for the film's captions ("" when no shot has one).

    >>> from storyreel.assemble import Cut
    >>> print(srt_text([Cut("a", Path("a.mp4"), 48, "cut", 0, 0, "Dawn.")], fps=24), end="")
    1
    00:00:00,000 --> 00:00:02,000
    Dawn.
    """
    blocks = [
        f"{number}\n{_srt_time(span.start, fps)} --> {_srt_time(span.end, fps)}\n{span.text}\n"
        for number, span in enumerate(caption_spans(cuts), start=1)
    ]
    return "\n".join(blocks)


def write_srt(cuts: Sequence[Cut], fps: int, path: str | Path) -> bool:
    """Write ``film.srt``; return False (and write nothing) when no shot has a caption."""
    text = srt_text(cuts, fps)
    if not text:
        return False
    write_text_atomic(Path(path), text)
    return True


def _caption_font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    for candidate in CAPTION_FONTS:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size=size)


class CaptionBurner:
    """Draws a caption over the bottom of a frame: white text with a dark outline, wrapped to fit.

    Each caption is rasterised once into an alpha mask and then blended into every frame it covers.
    """

    def __init__(self, width: int, height: int, reserved_bottom: int = 0):
        self.width, self.height, self.reserved = width, height, reserved_bottom
        self.size = max(10, round(height * 0.05))
        self.font = _caption_font(self.size)
        self.cache: dict[str, tuple[int, int, np.ndarray, np.ndarray]] = {}

    def _wrap(self, text: str) -> list[str]:
        limit = self.width * 0.9
        lines: list[str] = []
        for word in text.split():
            if lines and self.font.getlength(f"{lines[-1]} {word}") <= limit:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        if len(lines) > 3:  # a caption is not a paragraph: three lines, then an ellipsis
            lines = lines[:3]
            while lines[2] and self.font.getlength(lines[2] + " …") > limit:
                lines[2] = lines[2].rsplit(" ", 1)[0] if " " in lines[2] else lines[2][:-1]
            lines[2] += " …"
        return lines

    def _raster(self, text: str) -> tuple[int, int, np.ndarray, np.ndarray]:
        from PIL import Image, ImageDraw

        if text not in self.cache:
            lines = "\n".join(self._wrap(text))
            stroke = max(1, self.size // 12)
            canvas = Image.new("L", (self.width, self.height))
            draw = ImageDraw.Draw(canvas)
            box = [
                round(v)
                for v in draw.multiline_textbbox(
                    (0, 0), lines, font=self.font, stroke_width=stroke, align="center"
                )
            ]
            text_w, text_h = box[2] - box[0], box[3] - box[1]
            x = (self.width - text_w) // 2 - box[0]
            y = self.height - self.reserved - text_h - max(4, round(self.height * 0.06)) - box[1]
            outline = Image.new("L", canvas.size)
            ImageDraw.Draw(outline).multiline_text(
                (x, y), lines, font=self.font, fill=255, stroke_width=stroke, stroke_fill=255, align="center"
            )
            ImageDraw.Draw(canvas).multiline_text((x, y), lines, font=self.font, fill=255, align="center")
            top = max(0, y + box[1] - stroke)
            bottom = min(self.height, y + box[3] + stroke + 1)
            fill = np.asarray(canvas, dtype=np.float32)[top:bottom, :, None] / 255.0
            edge = np.asarray(outline, dtype=np.float32)[top:bottom, :, None] / 255.0
            self.cache[text] = (top, bottom, fill, edge)
        return self.cache[text]

    def burn(self, frame: np.ndarray, text: str) -> np.ndarray:
        top, bottom, fill, edge = self._raster(text)
        band: np.ndarray = frame[top:bottom].astype(np.float32)
        band = band * (1.0 - 0.85 * edge)  # a dark halo keeps white text legible on any footage
        band = band * (1.0 - fill) + 255.0 * fill
        out = frame.copy()
        out[top:bottom] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
        return out


class CaptionTrack:
    """The film's captions over its frames as they stream past, in order: each burned in while it is on screen."""

    def __init__(self, spans: Sequence[CaptionSpan], width: int, height: int, reserved_bottom: int = 0):
        self.spans = list(spans)
        self.burner = CaptionBurner(width, height, reserved_bottom) if self.spans else None
        self.index = 0  # the first span that has not ended yet

    def burn(self, film_frame: int, frame: np.ndarray) -> np.ndarray:
        """``frame`` with the caption on screen at ``film_frame`` burned in (``frame`` itself when there is none)."""
        spans = self.spans
        while self.index < len(spans) and spans[self.index].end <= film_frame:
            self.index += 1
        if self.burner and self.index < len(spans) and spans[self.index].start <= film_frame:
            return self.burner.burn(frame, spans[self.index].text)
        return frame
