"""``generation.color_match: on``: a continuing shot's colour matched to its parent's tail.

A model continuing a shot from its last frames tends to shift the colour a little at every seam, and
along a chain the shifts add up (``film.qa`` measures it: :mod:`storyreel.qa`). With colour matching on,
each new continuation is corrected once, as it is made, before it is written, cached or continued:

* the statistics of its first :data:`SEAM_FRAMES` frames are compared with its parent's last ones in
  CIE Lab, channel by channel: mean and standard deviation (frames either side of the seam show
  nearly the same picture, so what differs is the colour, not the content);
* every frame of the shot gets the same transfer ``(x - mean_shot) * (std_tail / std_shot) + mean_tail``
  (the std ratio kept within [1/2, 2], so a flat tail cannot blow a shot's contrast up).

One transfer for the whole shot keeps the seam exact and the shot's own look (its lighting changes
within the shot are kept), and removes the offset where it arises, so the next continuation starts
from corrected frames and nothing accumulates. The shot's continuations then match to it in turn.

It is off by default: a continuation that is meant to change the light (a scene that goes from dawn to
morning while the camera keeps rolling) would be pulled back to its parent's colours. The measured
effect on a drifting chain is in ``benchmarks/results/drift.json`` (``benchmarks/drift.py``).

>>> import numpy as np
>>> tail = np.full((4, 8, 8, 3), (120, 90, 60), np.uint8)
>>> shot = np.full((6, 8, 8, 3), (150, 90, 40), np.uint8)
>>> matched, facts = match_colour(shot, tail)
>>> matched[0, 0, 0].tolist(), sorted(facts)
([120, 90, 60], ['mean_shift', 'std_scale'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MissingExtra

SEAM_FRAMES = 4  # frames either side of the seam whose colours are compared: close in time, so in content
STD_SCALE_LIMITS = (0.5, 2.0)
CHUNK = 16  # frames converted to Lab at a time: memory stays at a few frames' worth at 540P


def _color() -> Any:
    try:
        import skimage.color
    except ImportError as exc:
        raise MissingExtra("qa", "scikit-image", "generation.color_match: on") from exc
    return skimage.color


def require_colour_matching() -> None:
    """Raise MissingExtra, before any work, when colour matching is asked for but cannot run here."""
    _color()


def _lab_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation in Lab of (frames, height, width, 3) uint8 RGB."""
    color = _color()
    lab = color.rgb2lab(frames.reshape(-1, frames.shape[-2], 3))  # frames stacked into one tall image
    pixels = lab.reshape(-1, 3)
    return pixels.mean(axis=0), pixels.std(axis=0)


def match_colour(frames: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, dict[str, list[float]]]:
    """``frames`` (a continuation, (frames, height, width, 3) uint8) with its colour matched to ``tail`` (its
    parent's last frames), and the transfer applied: ``mean_shift`` (L, a, b) and ``std_scale`` (L, a, b)."""
    color = _color()
    count = min(SEAM_FRAMES, len(tail), len(frames))
    target_mean, target_std = _lab_stats(tail[-count:])
    source_mean, source_std = _lab_stats(frames[:count])
    scale = np.clip(target_std / np.maximum(source_std, 1e-6), *STD_SCALE_LIMITS)
    matched = np.empty_like(frames)
    for start in range(0, len(frames), CHUNK):
        lab = color.rgb2lab(frames[start : start + CHUNK])  # (chunk, height, width, 3)
        lab = (lab - source_mean) * scale + target_mean
        rgb = color.lab2rgb(lab)
        matched[start : start + CHUNK] = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    facts = {
        "mean_shift": [round(float(v), 3) for v in target_mean - source_mean],
        "std_scale": [round(float(v), 4) for v in scale],
    }
    return matched, facts
