"""Seam and drift checks: how well each continuation joins its parent, and how far a chain wanders.

A continuing shot is generated from its parent's last frames, so the film should flow across the
seam without a jump in colour, structure or motion. Over a long chain small shifts add up: the
colour and contrast of the tenth shot can drift far from the first. These checks measure both on
the shot files a render wrote, with scikit-image's colour science (the ``qa`` extra).

Per continuing shot (``qa`` in its manifest line), between the parent's last frame and its first:

* ``seam_delta_e``: mean CIEDE2000 colour difference, on both frames box-averaged to at most
  :data:`COLOUR_WIDTH` pixels wide, so that it measures the look, not edges that moved;
* ``seam_ssim``: structural similarity of the two frames in grey (1 is identical);
* ``motion_jump``: the grey-level change across the seam divided by the mean change between the
  parent's last frames (at least one grey level); a frame's change is the median over its pixels,
  so text that differs from shot to shot (the animatic's slate) is not mistaken for motion. About
  1 or less when the motion carries on, large when the picture jumps.

Per chain (``film.qa.chains``), every shot against the chain's first: ``delta_e``, the CIEDE2000
difference of their mean Lab colours, and ``contrast``, the relative change of the spread of L*
(0.1 is 10 % more contrast, -0.1 10 % less).

Past a threshold (:data:`THRESHOLDS`) a warning names the shot; it goes into the manifest's
``warnings`` and is printed.

>>> import numpy as np
>>> grey = np.full((4, 16, 16, 3), 120, np.uint8)
>>> seam_check(shot_sample(grey), shot_sample(grey))
{'seam_delta_e': 0.0, 'seam_ssim': 1.0, 'motion_jump': 0.0}
>>> seam_check(shot_sample(grey), shot_sample(grey + 40))["seam_delta_e"] > THRESHOLDS["seam_delta_e"]
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingExtra

COLOUR_WIDTH = 64  # the width seam colour is compared at: colour, not edges that moved by a pixel
STATS_WIDTH = 96  # the width a shot's mean colour and contrast are measured at
TAIL = 4  # the parent's last frames the motion before the seam is measured over

#: Past these a warning names the shot (see docs/review.md for what each means on screen).
THRESHOLDS: dict[str, float] = {
    "seam_delta_e": 6.0,  # mean CIEDE2000 over the frame; about 2 is just noticeable side by side
    "seam_ssim": 0.5,  # below this the seam frames share little structure
    "motion_jump": 3.0,  # the seam changes the picture three times more than the frames before it
    "drift_delta_e": 10.0,  # the chain's mean colour moved this far from its first shot
    "drift_contrast": 0.25,  # the chain's contrast changed by more than a quarter
}


def _skimage() -> Any:
    try:
        import skimage.color
        import skimage.measure
        import skimage.metrics
    except ImportError as exc:
        raise MissingExtra("qa", "scikit-image", "the seam and drift checks") from exc
    return skimage


def qa_available() -> bool:
    """Whether the checks can run here (scikit-image is installed)."""
    try:
        _skimage()
    except MissingExtra:
        return False
    return True


@dataclass
class ShotSample:
    """What the checks need from one shot: its first frame, its last frames, its mean Lab colour and the spread
    of its lightness. Frames are (height, width, 3) uint8 RGB."""

    first: np.ndarray
    tail: list[np.ndarray]
    mean_lab: np.ndarray  # (3,)
    lightness_std: float


def _shrink(frame: np.ndarray, width: int) -> np.ndarray:
    """``frame`` box-averaged to at most ``width`` pixels wide, as floats in [0, 1]."""
    sk = _skimage()
    factor = max(1, -(-frame.shape[1] // width))
    return sk.measure.block_reduce(frame.astype(np.float64) / 255.0, (factor, factor, 1), np.mean)


def shot_sample(frames: Iterable[np.ndarray]) -> ShotSample:
    """Read a shot's frames once, keeping only what the checks need."""
    sk = _skimage()
    first: np.ndarray | None = None
    tail: list[np.ndarray] = []
    lab_sum = np.zeros(3)
    lightness: list[np.ndarray] = []
    count = 0
    for frame in frames:
        if first is None:
            first = frame
        tail = [*tail[-(TAIL - 1) :], frame]
        lab = sk.color.rgb2lab(_shrink(frame, STATS_WIDTH))  # (h, w, 3)
        lab_sum += lab.reshape(-1, 3).mean(axis=0)
        lightness.append(lab[..., 0].ravel())
        count += 1
    if first is None:
        raise ValueError("a shot with no frames cannot be checked")
    return ShotSample(
        first=first,
        tail=tail,
        mean_lab=lab_sum / count,
        lightness_std=float(np.concatenate(lightness).std()),
    )


def _grey(frame: np.ndarray) -> np.ndarray:
    return _skimage().color.rgb2gray(frame)  # (height, width) floats in [0, 1]


def _change(before: np.ndarray, after: np.ndarray) -> float:
    """How much the picture changed between two grey frames, in grey levels: the median over pixels, so that a
    small overlay that changes (a slate, a caption) does not count as the picture moving."""
    return float(np.median(np.abs(after - before))) * 255


def seam_check(parent: ShotSample, shot: ShotSample) -> dict[str, float]:
    """The seam between ``parent``'s last frame and ``shot``'s first: ``seam_delta_e``, ``seam_ssim`` and
    ``motion_jump`` (see the module docstring)."""
    sk = _skimage()
    last, first = parent.tail[-1], shot.first
    delta_e = sk.color.deltaE_ciede2000(
        sk.color.rgb2lab(_shrink(last, COLOUR_WIDTH)), sk.color.rgb2lab(_shrink(first, COLOUR_WIDTH))
    )
    grey_last, grey_first = _grey(last), _grey(first)
    side = min(grey_last.shape)
    window = min(7, side if side % 2 else side - 1)
    ssim = (
        sk.metrics.structural_similarity(grey_last, grey_first, data_range=1.0, win_size=window)
        if window >= 3
        else float(1.0 - np.abs(grey_last - grey_first).mean())
    )
    across = _change(grey_last, grey_first)
    before = [_change(_grey(a), _grey(b)) for a, b in zip(parent.tail, parent.tail[1:], strict=False)]
    usual = max(float(np.mean(before)) if before else 0.0, 1.0)
    return {
        "seam_delta_e": round(float(delta_e.mean()), 3),
        "seam_ssim": round(float(ssim), 4),
        "motion_jump": round(across / usual, 3),
    }


def chain_drift(samples: Sequence[tuple[str, ShotSample]]) -> list[dict[str, Any]]:
    """Each shot of a chain (in order, the first being the chain's start) against the first: ``delta_e`` of
    their mean colours and the relative ``contrast`` change.

    >>> import numpy as np
    >>> frames = lambda level: np.stack([np.full((8, 8, 3), level, np.uint8), np.full((8, 8, 3), 255 - level, np.uint8)])
    >>> drift = chain_drift([("a", shot_sample(frames(40))), ("b", shot_sample(frames(80)))])
    >>> [(d["id"], d["delta_e"] == 0.0) for d in drift], drift[1]["contrast"] < 0
    ([('a', True), ('b', False)], True)
    """
    sk = _skimage()
    start = samples[0][1]
    drift = []
    for shot_id, sample in samples:
        delta_e = sk.color.deltaE_ciede2000(start.mean_lab[None], sample.mean_lab[None])[0]
        contrast = sample.lightness_std / start.lightness_std - 1.0 if start.lightness_std > 1e-6 else 0.0
        drift.append({"id": shot_id, "delta_e": round(float(delta_e), 3), "contrast": round(contrast, 4)})
    return drift


@dataclass
class FilmQA:
    """The checks on a render: ``seams`` per continuing shot id, ``chains`` (each a list of per-shot drift), and
    the ``warnings`` past the thresholds."""

    seams: dict[str, dict[str, float]] = field(default_factory=dict)
    chains: list[list[dict[str, Any]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def film_entry(self) -> dict[str, Any]:
        """What goes under ``film.qa`` in the manifest."""
        return {"chains": self.chains, "thresholds": dict(THRESHOLDS)}


def check_shots(
    samples: Mapping[str, ShotSample], parents: Mapping[str, str | None], chains: Sequence[Sequence[str]]
) -> FilmQA:
    """The seams of every shot whose parent is in ``samples``, and the drift of every chain of more than one
    shot, with a warning for each number past its threshold."""
    qa = FilmQA()
    for shot_id, parent in parents.items():
        if parent is None or parent not in samples or shot_id not in samples:
            continue
        seam = seam_check(samples[parent], samples[shot_id])
        qa.seams[shot_id] = seam
        qa.warnings.extend(_seam_warnings(shot_id, parent, seam))
    for chain in chains:
        present = [(shot_id, samples[shot_id]) for shot_id in chain if shot_id in samples]
        if len(chain) < 2 or len(present) != len(chain):
            continue
        drift = chain_drift(present)
        qa.chains.append(drift)
        qa.warnings.extend(_drift_warnings(chain[0], drift))
    return qa


def _seam_warnings(shot_id: str, parent: str, seam: Mapping[str, float]) -> list[str]:
    where = f"shot '{shot_id}': its seam with '{parent}'"
    found = []
    if seam["seam_delta_e"] > THRESHOLDS["seam_delta_e"]:
        found.append(
            f"{where} changes colour by {seam['seam_delta_e']:.1f} (CIEDE2000, warned above {THRESHOLDS['seam_delta_e']:g})"
        )
    if seam["seam_ssim"] < THRESHOLDS["seam_ssim"]:
        found.append(
            f"{where} keeps little structure: SSIM {seam['seam_ssim']:.2f} (warned below {THRESHOLDS['seam_ssim']:g})"
        )
    if seam["motion_jump"] > THRESHOLDS["motion_jump"]:
        found.append(
            f"{where} jumps: {seam['motion_jump']:.1f}x the motion just before it (warned above {THRESHOLDS['motion_jump']:g}x)"
        )
    return found


def _drift_warnings(start: str, drift: Sequence[Mapping[str, Any]]) -> list[str]:
    found = []
    for line in drift:
        if line["delta_e"] > THRESHOLDS["drift_delta_e"]:
            found.append(
                f"shot '{line['id']}': its colour drifted {line['delta_e']:.1f} (CIEDE2000) from '{start}', where its chain starts (warned above {THRESHOLDS['drift_delta_e']:g})"
            )
        if abs(line["contrast"]) > THRESHOLDS["drift_contrast"]:
            found.append(
                f"shot '{line['id']}': its contrast drifted {line['contrast']:+.0%} from '{start}', where its chain starts (warned beyond ±{THRESHOLDS['drift_contrast']:.0%})"
            )
    return found


def check_render(
    shot_files: Mapping[str, Path],
    parents: Mapping[str, str | None],
    chains: Sequence[Sequence[str]],
    width: int,
    height: int,
) -> FilmQA:
    """Run the checks on a render's shot files (``shot id -> path``): only shots in a chain of more than one
    shot are read."""
    from .video import read_frames

    wanted = {shot_id for chain in chains if len(chain) > 1 for shot_id in chain if shot_id in shot_files}
    samples = {
        shot_id: shot_sample(read_frames(shot_files[shot_id], width, height)) for shot_id in sorted(wanted)
    }
    return check_shots(samples, parents, chains)
