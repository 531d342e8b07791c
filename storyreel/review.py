"""``review.html``: one page to look a render over, built from its manifest and its files.

The page sits beside ``film.mp4`` and shows the film, a timeline strip of shot thumbnails with the
transitions between them, a card per shot (prompts, seed, frames, windows, cached or generated,
seconds, keyframe), the conditioning graph, every continuation's seam as the parent's last frame
beside the shot's first with the seam checks (:mod:`storyreel.qa`), a drift chart per chain and
every warning. Pictures are small JPEG files under ``review/``; the graph and charts are inline SVG.
Nothing is fetched from anywhere: the page works offline, from ``file://``.

It is rebuilt from ``manifest.json`` alone by ``storyreel review OUT_DIR``; a render writes it last.

>>> build_review("renders/swan_lake")  # doctest: +SKIP
PosixPath('renders/swan_lake/review.html')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import make_folder, write_text_atomic
from .errors import UserError
from .manifest import Manifest, ShotEntry

REVIEW_PAGE = "review.html"
PICTURES = "review"  # the page's pictures, beside it
THUMB_WIDTH = 240
GRAPH_SPACING = 120
CHART_WIDTH, CHART_HEIGHT = 480, 160

__all__ = ["PICTURES", "REVIEW_PAGE", "build_review", "write_review"]


@dataclass
class ShotFrames:
    """The frames the page shows of one shot: its first, middle and last."""

    first: np.ndarray
    middle: np.ndarray
    last: np.ndarray


def _shot_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video file, from ffmpeg's description of its stream."""
    from .video import run_ffmpeg

    log = run_ffmpeg(
        ["-i", str(path), "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"], f"reading {path}"
    )
    found = re.search(r"Video: .*?(\d{2,5})x(\d{2,5})", log)
    if found is None:
        raise UserError(f"{path}: no video stream found; render the shot again")
    return int(found.group(1)), int(found.group(2))


def _shot_frames(path: Path, frames: int) -> ShotFrames:
    from .video import read_frames

    width, height = _shot_size(path)
    first = middle = last = None
    for index, frame in enumerate(read_frames(path, width, height)):
        if index == 0:
            first = frame
        if index == frames // 2:
            middle = frame
        last = frame
    if first is None or last is None:
        raise UserError(f"{path} holds no frames; render the shot again")
    return ShotFrames(first, middle if middle is not None else last, last)


def _save_picture(frame: np.ndarray, path: Path) -> str:
    from PIL import Image

    picture = Image.fromarray(frame)
    if picture.width > THUMB_WIDTH:
        picture = picture.resize((THUMB_WIDTH, max(1, round(picture.height * THUMB_WIDTH / picture.width))))
    picture.save(path, "JPEG", quality=82)
    return f"{PICTURES}/{path.name}"


@dataclass
class _Pictures:
    thumbs: dict[str, str] = field(default_factory=dict)
    seams: dict[str, tuple[str, str]] = field(default_factory=dict)


def _pictures(folder: Path, manifest: Manifest) -> _Pictures:
    """Write the thumbnails and seam frames under ``review/`` (replacing any an earlier build left)."""
    pictures_dir = folder / PICTURES
    make_folder(pictures_dir)
    for old in pictures_dir.glob("*.jpg"):
        old.unlink()
    frames = {}
    for shot in manifest.shots:
        path = folder / shot.path
        if path.is_file():
            frames[shot.id] = _shot_frames(path, shot.frames)
    found = _Pictures()
    for index, shot in enumerate(manifest.shots):
        if shot.id not in frames:
            continue
        stem = f"{index:03d}"  # shot ids are safe file names, but a number keeps every name short
        found.thumbs[shot.id] = _save_picture(frames[shot.id].middle, pictures_dir / f"{stem}-thumb.jpg")
        parent = shot.conditioned_on
        if parent in frames:
            found.seams[shot.id] = (
                _save_picture(frames[parent].last, pictures_dir / f"{stem}-seam-parent-last.jpg"),
                _save_picture(frames[shot.id].first, pictures_dir / f"{stem}-seam-first.jpg"),
            )
    return found


def _windows(shot: ShotEntry, planned: dict[str, list[str]]) -> list[str]:
    """The shot's diffusion-forcing windows as lines: what the generator reported, else the plan's."""
    reported = shot.generator_info.get("windows")
    if isinstance(reported, list) and reported:
        return [
            ", ".join(f"{k} {v}" for k, v in run.items()) if isinstance(run, dict) else str(run)
            for run in reported
        ]
    return planned.get(shot.id, [])


def _planned_windows(manifest: Manifest) -> dict[str, list[str]]:
    """Each shot's windows from its storyboard, when the file is still the one that was rendered."""
    from .fingerprint import file_sha256

    if manifest.storyboard is None or manifest.storyboard_sha256 is None:
        return {}
    source = Path(manifest.storyboard)
    try:
        if not source.is_file() or file_sha256(source) != manifest.storyboard_sha256:
            return {}
        from .plan import plan_film
        from .storyboard import load_storyboard

        plan = plan_film(load_storyboard(source))
    except Exception:  # the storyboard may have moved on: the page is still built, without planned windows
        return {}
    return {
        shot.id: [
            f"{w.latent_frames} latent frames, {w.prefix_latent_frames} conditioning, {w.denoise_steps} denoising rows"
            for w in shot.windows
        ]
        for shot in plan.shots
    }


def _graph(shots: Sequence[ShotEntry]) -> dict[str, Any]:
    """The conditioning graph laid out for SVG: shots left to right in timeline order, arcs from parent to
    continuation above them."""
    x = {shot.id: 60 + index * GRAPH_SPACING for index, shot in enumerate(shots)}
    base = 110
    nodes = [{"id": shot.id, "x": x[shot.id], "y": base, "mode": shot.mode} for shot in shots]
    edges = []
    for shot in shots:
        if shot.conditioned_on in x:
            x1, x2 = x[shot.conditioned_on], x[shot.id]
            lift = min(90, 24 + abs(x2 - x1) // 4)
            edges.append(
                {
                    "path": f"M {x1} {base - 16} Q {(x1 + x2) / 2} {base - 16 - 2 * lift} {x2} {base - 16}",
                    "parent": shot.conditioned_on,
                    "child": shot.id,
                }
            )
    return {
        "width": 120 + max(0, len(shots) - 1) * GRAPH_SPACING,
        "height": 150,
        "nodes": nodes,
        "edges": edges,
    }


def _drift_chart(chain: list[dict[str, Any]], thresholds: dict[str, float]) -> dict[str, Any]:
    """One chain's drift for SVG: colour difference and contrast change per shot, each as a share of its
    warning threshold (the dashed line), so both read on one scale."""
    left, right, top, bottom = 40, 16, 12, 28
    span_x = CHART_WIDTH - left - right
    span_y = CHART_HEIGHT - top - bottom
    colour_limit = thresholds.get("drift_delta_e", 10.0)
    contrast_limit = thresholds.get("drift_contrast", 0.25)
    shares = [(line["delta_e"] / colour_limit, abs(line["contrast"]) / contrast_limit) for line in chain]
    ceiling = max(1.25, *(max(pair) for pair in shares))
    step = span_x / max(1, len(chain) - 1)

    def point(index: int, share: float) -> str:
        return f"{left + index * step:.1f},{top + span_y * (1 - share / ceiling):.1f}"

    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "colour": " ".join(point(i, pair[0]) for i, pair in enumerate(shares)),
        "contrast": " ".join(point(i, pair[1]) for i, pair in enumerate(shares)),
        "limit_y": f"{top + span_y * (1 - 1 / ceiling):.1f}",
        "left": left,
        "right": CHART_WIDTH - right,
        "bottom": CHART_HEIGHT - bottom,
        "labels": [
            {
                "x": f"{left + i * step:.1f}",
                "id": line["id"],
                "delta_e": line["delta_e"],
                "contrast": line["contrast"],
            }
            for i, line in enumerate(chain)
        ],
    }


def _template() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("storyreel", "."),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("review.html.j2")


def write_review(out_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``review.html`` and its pictures for ``manifest``'s render in ``out_dir``; returns the page's path."""
    folder = Path(out_dir)
    shots = sorted(manifest.shots, key=lambda shot: shot.timeline_index)
    ordered = manifest.model_copy(update={"shots": shots})
    pictures = _pictures(folder, ordered)
    planned = _planned_windows(manifest)
    film_qa = manifest.film.qa if manifest.film is not None and manifest.film.qa else {}
    thresholds = film_qa.get("thresholds", {})
    warned = {shot.id for shot in shots for w in manifest.warnings if w.startswith(f"shot '{shot.id}'")}
    cards = [
        {
            "shot": shot,
            "thumb": pictures.thumbs.get(shot.id),
            "windows": _windows(shot, planned),
            "keyframe": getattr(shot, "keyframe", None),
            "warned": shot.id in warned,
        }
        for shot in shots
    ]
    page = _template().render(
        manifest=manifest,
        film=manifest.film,
        cards=cards,
        strip=[{"shot": shot, "thumb": pictures.thumbs.get(shot.id), "share": shot.frames} for shot in shots],
        graph=_graph(shots),
        seams=[
            {
                "shot": shot,
                "parent": pictures.seams[shot.id][0],
                "first": pictures.seams[shot.id][1],
                "warned": shot.id in warned,
            }
            for shot in shots
            if shot.id in pictures.seams
        ],
        charts=[_drift_chart(chain, thresholds) for chain in film_qa.get("chains", [])],
        thresholds=thresholds,
        warnings=manifest.warnings,
    )
    path = folder / REVIEW_PAGE
    write_text_atomic(path, page)
    return path


def build_review(out_dir: str | Path) -> Path:
    """(Re)build ``OUT_DIR/review.html`` from ``OUT_DIR/manifest.json`` and the files beside it."""
    folder = Path(out_dir)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(
            f"{folder}: no manifest.json here; pass the folder a render wrote (storyreel render STORY --out {folder})"
        )
    try:
        manifest = Manifest.read(manifest_path)
    except ValueError as exc:
        raise UserError(
            f"{manifest_path}: not a storyreel manifest ({exc.__class__.__name__}); render again"
        ) from None
    return write_review(folder, manifest)
