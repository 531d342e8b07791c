"""generation.color_match: a continuation's colour matched to its parent's tail, in the cache key, from the
storyboard or the command line."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.color_match import match_colour
from storyreel.manifest import Manifest
from storyreel.qa import chain_drift, seam_check, shot_sample

from conftest import small_board


def panning(start: int, count: int, offset=(0.0, 0.0, 0.0), gain: float = 1.0) -> np.ndarray:
    y, x = np.mgrid[0:48, 0:48].astype(np.float64)
    frames = [
        np.stack(
            [
                128 + 50 * np.sin((x + t) / 7.0),
                120 + 40 * np.cos(y / 9.0 + (x + t) / 13.0),
                110 + 30 * np.sin(y / 5.0),
            ],
            axis=-1,
        )
        for t in range(start, start + count)
    ]
    graded = (np.stack(frames) - 128) * gain + 128 + np.array(offset)
    return np.clip(np.rint(graded), 0, 255).astype(np.uint8)


def test_matching_takes_a_colour_jump_out_of_the_seam_and_keeps_the_picture():
    parent = panning(0, 12)
    drifted = panning(12, 12, offset=(24, 0, -18), gain=0.8)  # warmer and flatter than its parent
    matched, facts = match_colour(drifted, parent)
    before = seam_check(shot_sample(parent), shot_sample(drifted))
    after = seam_check(shot_sample(parent), shot_sample(matched))
    assert before["seam_delta_e"] > 8 and after["seam_delta_e"] < before["seam_delta_e"] / 3
    assert after["seam_ssim"] > before["seam_ssim"] - 0.01
    assert facts["mean_shift"][0] != 0 and facts["std_scale"][0] > 1.1  # lightness spread restored
    drift = chain_drift([("parent", shot_sample(parent)), ("shot", shot_sample(matched))])
    assert abs(drift[1]["contrast"]) < 0.05
    assert matched.shape == drifted.shape and matched.dtype == np.uint8


def test_matching_a_shot_to_its_own_colours_changes_next_to_nothing():
    parent, shot = panning(0, 8), panning(8, 8)
    matched, _ = match_colour(shot, parent)
    assert np.abs(matched.astype(int) - shot.astype(int)).mean() < 2.0


def test_color_match_remakes_only_the_continuations_and_is_in_their_keys(write_story, tmp_path):
    story = write_story(small_board())
    runner = CliRunner()
    assert runner.invoke(app, ["render", str(story), "--out", str(tmp_path / "off")]).exit_code == 0
    result = runner.invoke(app, ["render", str(story), "--out", str(tmp_path / "on"), "--color-match"])
    assert result.exit_code == 0, result.output
    off, on = (
        Manifest.read(tmp_path / "off" / "manifest.json"),
        Manifest.read(tmp_path / "on" / "manifest.json"),
    )
    for before, after in zip(off.shots, on.shots, strict=True):
        continuing = before.conditioned_on is not None
        assert after.cached is not continuing  # fresh shots come from the cache, continuations are remade
        assert (after.cache_key != before.cache_key) is continuing
        assert ("color_match" in after.generator_info) is continuing
        assert "color_match" not in before.generator_info

    # the storyboard key gives the same shots as the flag: all from the cache now
    board = small_board()
    board["generation"]["color_match"] = "on"
    keyed = write_story(board, "keyed.yaml")
    assert runner.invoke(app, ["render", str(keyed), "--out", str(tmp_path / "keyed")]).exit_code == 0
    again = Manifest.read(tmp_path / "keyed" / "manifest.json")
    assert [s.cache_key for s in again.shots] == [s.cache_key for s in on.shots]
    assert all(shot.cached for shot in again.shots)

    plan = json.loads(runner.invoke(app, ["plan", str(keyed), "--json"]).stdout)
    assert {shot["id"]: shot["color_match"] for shot in plan["shots"]} == {
        "glide": False,
        "dip": True,
        "heron": False,
        "rise": True,
    }


def test_a_shot_may_turn_it_off_under_a_film_that_turns_it_on(write_story):
    board = small_board(color_match=True)
    board["scenes"][1]["shots"][1]["generation"] = {"color_match": "off"}
    plan = json.loads(CliRunner().invoke(app, ["plan", str(write_story(board)), "--json"]).stdout)
    assert [shot["color_match"] for shot in plan["shots"]] == [False, True, False, False]


def test_an_unknown_color_match_value_is_a_positioned_error(write_story):
    story = write_story(
        """\
        storyreel: 1
        generation:
          color_match: maybe
        scenes:
          - id: a
            shots:
              - {id: one, prompt: a lake, duration: 2s}
        """
    )
    result = CliRunner().invoke(app, ["validate", str(story)])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"{story.name}:3:16: generation.color_match: 'maybe' is not a color_match setting" in message
    assert "use one of: off, on" in message
