"""Seam and drift checks on real encoded clips with a known seam and a known injected drift, and in a render."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.manifest import Manifest
from storyreel.qa import THRESHOLDS, check_render
from storyreel.video import write_shot

from conftest import small_board

SIZE = 64


def scene(start: int, count: int, *, tint: tuple[float, float, float] = (0, 0, 0), contrast: float = 1.0):
    """``count`` frames of a textured scene panning right one pixel a frame from frame ``start``: (count, 64, 64, 3)
    uint8. ``tint`` is added to each channel, ``contrast`` scales the picture about mid grey."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    frames = []
    for t in range(start, start + count):
        u = x + t
        red = 128 + 60 * np.sin(u / 6.0) * np.cos(y / 9.0)
        green = 110 + 50 * np.sin(u / 11.0 + y / 7.0)
        blue = 100 + 40 * np.cos(u / 5.0 - y / 13.0)
        picture = np.stack([red, green, blue], axis=-1)
        picture = 128 + (picture - 128) * contrast + np.array(tint)
        frames.append(np.clip(picture, 0, 255).astype(np.uint8))
    return np.stack(frames)


def checked(tmp_path: Path, clips: dict[str, np.ndarray], parents: dict[str, str | None]):
    files = {
        shot_id: write_shot(frames, tmp_path / f"{shot_id}.mp4", fps=8) for shot_id, frames in clips.items()
    }
    return check_render(files, parents, [list(clips)], SIZE, SIZE)


def test_a_continuation_that_carries_on_passes_every_seam_check(tmp_path):
    qa = checked(tmp_path, {"one": scene(0, 16), "two": scene(16, 16)}, {"one": None, "two": "one"})
    seam = qa.seams["two"]
    assert set(seam) == {"seam_delta_e", "seam_ssim", "motion_jump"}
    assert seam["seam_delta_e"] < 4.0  # the texture moved a pixel: far below a visible jump
    assert seam["seam_ssim"] > 0.8
    assert 0.5 < seam["motion_jump"] < 1.6
    assert "one" not in qa.seams  # a shot that continues nothing has no seam
    assert qa.warnings == []


def test_a_colour_jump_at_the_seam_is_measured_and_warned_about(tmp_path):
    qa = checked(
        tmp_path, {"one": scene(0, 16), "two": scene(16, 16, tint=(40, 0, -30))}, {"one": None, "two": "one"}
    )
    seam = qa.seams["two"]
    assert seam["seam_delta_e"] > THRESHOLDS["seam_delta_e"]
    assert seam["seam_ssim"] > 0.5  # the structure carried on: only the colour jumped
    assert any(w.startswith("shot 'two': its seam with 'one' changes colour by") for w in qa.warnings)


def test_a_jump_in_the_picture_at_the_seam_is_a_motion_jump(tmp_path):
    qa = checked(tmp_path, {"one": scene(0, 16), "two": scene(40, 16)}, {"one": None, "two": "one"})
    seam = qa.seams["two"]
    assert seam["motion_jump"] > THRESHOLDS["motion_jump"]
    assert seam["seam_ssim"] < qa_smooth_ssim(tmp_path)
    assert any("'two': its seam with 'one' jumps" in w for w in qa.warnings)


def qa_smooth_ssim(tmp_path: Path) -> float:
    smooth = checked(tmp_path / "smooth", {"a": scene(0, 16), "b": scene(16, 16)}, {"a": None, "b": "a"})
    return smooth.seams["b"]["seam_ssim"]


def test_drift_along_a_chain_grows_with_the_injected_drift(tmp_path):
    # each shot of the chain a little warmer and flatter than the one before: a known, growing drift
    clips = {f"s{i}": scene(16 * i, 16, tint=(8 * i, 0, -8 * i), contrast=1 - 0.08 * i) for i in range(5)}
    parents = {f"s{i}": f"s{i - 1}" if i else None for i in range(5)}
    qa = checked(tmp_path, clips, parents)
    (drift,) = qa.chains
    assert [line["id"] for line in drift] == list(clips)
    assert drift[0] == {"id": "s0", "delta_e": 0.0, "contrast": 0.0}
    delta_e = [line["delta_e"] for line in drift]
    assert delta_e == sorted(delta_e) and delta_e[-1] > THRESHOLDS["drift_delta_e"]
    contrast = [line["contrast"] for line in drift]
    assert contrast == sorted(contrast, reverse=True)
    assert contrast[-1] == pytest.approx(-0.32, abs=0.06)  # 1 - 0.08 * 4 of the spread, through x264
    assert any(w.startswith("shot 's4': its colour drifted") and "from 's0'" in w for w in qa.warnings)
    assert any(w.startswith("shot 's4': its contrast drifted -") for w in qa.warnings)
    assert not any("'s1'" in w and "drifted" in w for w in qa.warnings)


def test_a_render_puts_the_checks_in_the_manifest_and_prints_the_warnings(write_story, tmp_path):
    story = write_story(small_board())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", str(story), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = Manifest.read(out / "manifest.json")
    continuing = [shot for shot in manifest.shots if shot.conditioned_on]
    assert continuing and {shot.id for shot in continuing} >= {"rise"}
    for shot in manifest.shots:
        if shot.conditioned_on:
            assert set(shot.qa or {}) == {"seam_delta_e", "seam_ssim", "motion_jump"}
        else:
            assert shot.qa is None
    assert manifest.film is not None and manifest.film.qa is not None
    chains = [[line["id"] for line in chain] for chain in manifest.film.qa["chains"]]
    assert ["glide", "dip", "rise"] in chains
    assert manifest.film.qa["thresholds"] == THRESHOLDS
    for warning in manifest.warnings:
        assert warning.split(":")[0] in " ".join(result.output.split())
    raw = json.loads((out / "manifest.json").read_text())
    assert "warnings" in raw
