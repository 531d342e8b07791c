"""The frame plan: snapping, the diffusion-forcing window schedule and the transformer passes it costs.

The window schedule must be the one the SkyReels-V2 reference implementation runs for the same
settings. The arithmetic below is written out independently from the model card's description;
where diffusers is installed, the row counts are also checked against its own timestep-matrix
function.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from storyreel import Storyboard, plan_film
from storyreel.frames import (
    BlockMisfit,
    block_misfit,
    shot_windows,
    snap_frames,
    timestep_rows,
    transformer_flops,
)
from storyreel.plan import derive_seed


def film(generation: dict | None = None, shots: list[dict] | None = None, **top) -> Storyboard:
    return Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": generation or {},
            "scenes": [{"id": "s", "shots": shots or [{"id": "a", "prompt": "p", "duration": 4}]}],
            **top,
        }
    )


def windows(plan_shot) -> list[tuple[int, int, int]]:
    return [(w.latent_frames, w.prefix_latent_frames, w.denoise_steps) for w in plan_shot.windows]


# --- the reference arithmetic, written out for checking -------------------------------------------------------


def reference_windows(
    num_frames: int, base: int, overlap: int, steps: int, ar_step: int, block: int, prefix=0
):
    """Windows for num_frames pixel frames as the model card describes them (prefix: first window's clean latents)."""
    latent, base_l, overlap_l = (num_frames - 1) // 4 + 1, (base - 1) // 4 + 1, (overlap - 1) // 4 + 1
    if latent <= base_l:
        lengths = [latent]
    else:
        n_iter = 1 + (latent - base_l - 1) // (base_l - overlap_l) + 1
        lengths = [base_l] + [min(latent - i * (base_l - overlap_l), base_l) for i in range(1, n_iter)]
    out = []
    for i, length in enumerate(lengths):
        p = prefix if i == 0 else overlap_l
        p -= p % block
        # synchronous: every frame steps together; asynchronous: each later block starts ar_step steps later
        blocks = (length - p) // block
        rows = steps + (blocks - 1) * ar_step
        out.append((length, p, rows))
    return out


def test_sync_single_window_540p():
    plan = plan_film(film({"steps": 30}, [{"id": "a", "prompt": "p", "frames": 97}]))
    shot = plan.shot("a")
    assert (shot.frames, shot.mode) == (97, "fresh")
    assert windows(shot) == [(25, 0, 30)] == reference_windows(97, 97, 17, 30, 0, 1)
    assert shot.dit_passes == 60  # guidance 6.0 doubles every row


def test_long_shot_runs_several_windows_like_the_reference():
    # The model card's worked example: 237 frames, base 97, overlap 17, causal block 5 -> last window 20 latents
    plan = plan_film(
        film(
            {"base_num_frames": 97, "overlap_history": 17, "causal_block_size": 5, "ar_step": 5, "steps": 30},
            [{"id": "a", "prompt": "p", "frames": 237}],
        )
    )
    shot = plan.shot("a")
    assert shot.frames == 237
    assert windows(shot) == reference_windows(237, 97, 17, 30, 5, 5)
    assert [w[0] for w in windows(shot)] == [25, 25, 20]
    assert [w[1] for w in windows(shot)] == [0, 5, 5]
    # asynchronous: 30 steps + (blocks - 1) * ar_step rows per window
    assert [w[2] for w in windows(shot)] == [30 + 4 * 5, 30 + 3 * 5, 30 + 2 * 5]
    assert shot.dit_passes == 2 * (50 + 45 + 40)


@pytest.mark.parametrize("frames", [257, 377, 737, 1457])
def test_recommended_long_lengths(frames):
    plan = plan_film(film({"overlap_history": 17}, [{"id": "a", "prompt": "p", "frames": frames}]))
    shot = plan.shot("a")
    assert shot.frames == frames
    assert windows(shot) == reference_windows(frames, 97, 17, 30, 0, 1)
    # every window after the first adds its length minus the overlap; together they make the whole shot
    assert sum(w[0] - w[1] for w in windows(shot)) == (frames - 1) // 4 + 1


def test_image_shot_has_a_one_latent_prefix_and_runs_synchronously(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "start.png")
    board = film(
        {"ar_step": 5, "causal_block_size": 5},
        [{"id": "a", "prompt": "p", "frames": 97, "image": "start.png"}],
    ).with_base_dir(tmp_path)
    plan = plan_film(board)
    shot = plan.shot("a")
    assert shot.mode == "image"
    assert (shot.settings.ar_step, shot.settings.causal_block_size) == (0, 1)
    assert windows(shot) == [(25, 1, 30)]
    assert any("starts from an image, so it renders synchronously" in note for note in plan.notes)


def test_continuing_shot_is_conditioned_on_the_overlap():
    plan = plan_film(
        film(
            {"overlap_history": 17},
            [{"id": "a", "prompt": "p", "frames": 97}, {"id": "b", "prompt": "q", "frames": 80}],
        )
    )
    b = plan.shot("b")
    assert (b.mode, b.conditioned_on, b.frames) == ("continue", "a", 80)
    # generated as 17 + 80 = 97 frames = 25 latents, the first 5 of them the parent's tail
    assert windows(b) == [(25, 5, 30)]
    assert b.latent_frames == 25


def test_long_continuing_shot_windows():
    plan = plan_film(
        film(
            {"overlap_history": 37, "causal_block_size": 5, "ar_step": 5},
            [{"id": "a", "prompt": "p", "frames": 97}, {"id": "b", "prompt": "q", "frames": 200}],
        )
    )
    b = plan.shot("b")
    # 37 + 200 = 237 frames = 60 latents; overlap 37 = 10 latents; windows of at most 25 advancing by 15
    assert windows(b) == [(25, 10, 30 + 2 * 5), (25, 10, 30 + 2 * 5), (25, 10, 30 + 2 * 5), (15, 10, 30)]
    assert sum(w[0] - w[1] for w in windows(b)) * 4 == b.frames


def test_async_short_shot_rows():
    plan = plan_film(film({"ar_step": 5, "causal_block_size": 5}, [{"id": "a", "prompt": "p", "frames": 97}]))
    assert windows(plan.shot("a")) == [(25, 0, 30 + 4 * 5)]


def test_no_guidance_means_one_pass_per_row():
    plan = plan_film(film({"guidance_scale": 1.0, "steps": 10}, [{"id": "a", "prompt": "p", "frames": 97}]))
    assert plan.shot("a").dit_passes == 10


@pytest.mark.parametrize(
    ("requested", "mode", "block", "expected"),
    [
        (96, "fresh", 1, 97),  # 4s at 24 fps
        (97, "fresh", 1, 97),
        (84, "fresh", 1, 85),
        (1, "fresh", 1, 5),  # at least two latent frames
        (96, "fresh", 5, 97),  # 25 latents, a multiple of 5
        (60, "fresh", 5, 57),  # 15 latents (57 frames) is 3 away, 20 latents (77 frames) 17 away
        (84, "continue", 1, 84),
        (85, "continue", 1, 84),
        (86, "continue", 1, 88),  # a tie between 84 and 88 goes to the longer
        (84, "continue", 5, 80),
        (3, "continue", 5, 20),  # at least one causal block of new frames
    ],
)
def test_snapping(requested, mode, block, expected):
    assert snap_frames(requested, mode, block) == expected


def test_snapped_durations_are_noted_when_they_change_by_more_than_a_frame():
    plan = plan_film(
        film(
            {"causal_block_size": 5},
            [{"id": "a", "prompt": "p", "duration": "4s"}, {"id": "b", "prompt": "p", "duration": "3s"}],
        )
    )
    assert plan.shot("a").requested_frames == 96 and plan.shot("a").frames == 97
    assert plan.shot("b").requested_frames == 72 and plan.shot("b").frames == 80
    assert plan.notes == ["shot 'b': 3s (72 frames) snapped to 80 new frames (3.33s)"]


def test_a_sliver_of_a_last_window_is_pointed_out():
    plan = plan_film(
        film({}, [{"id": "a", "prompt": "p", "frames": 97}, {"id": "b", "prompt": "q", "duration": "3.5s"}])
    )
    assert [w[0] for w in windows(plan.shot("b"))] == [25, 6]
    assert (
        "shot 'b': its 84 new frames need 2 windows, the last adding only 4 frames; 80 frames (3.33s) would take "
        "one window fewer and save 30 denoising steps" in plan.notes
    )


def test_settings_that_break_block_alignment_are_errors():
    from storyreel import StoryboardError

    with pytest.raises(StoryboardError) as caught:
        plan_film(film({"causal_block_size": 5, "overlap_history": 21}))
    assert str(caught.value) == (
        "<storyboard>: generation.overlap_history: overlap_history 21 is 6 latent frames, not a multiple of "
        "causal_block_size 5; use overlap_history 17 or 37, or another causal_block_size"
    )
    with pytest.raises(StoryboardError, match="base_num_frames 81 is 21 latent frames"):
        plan_film(film({"causal_block_size": 5, "base_num_frames": 81}))
    with pytest.raises(StoryboardError, match="overlap_history 97 must be smaller than base_num_frames 97"):
        plan_film(film({"overlap_history": 97}))


def test_a_parent_too_short_for_the_overlap():
    from storyreel import StoryboardError

    with pytest.raises(StoryboardError) as caught:
        plan_film(
            film(
                {"overlap_history": 37},
                [{"id": "a", "prompt": "p", "frames": 21}, {"id": "b", "prompt": "q", "frames": 40}],
            )
        )
    assert "needs the last 37 frames of 'a', which has only 21; lengthen 'a' to at least 1.54s" in str(
        caught.value
    )


def test_timeline_frames_with_transitions():
    plan = plan_film(
        film(
            {"fps": 24},
            [
                {"id": "a", "prompt": "p", "frames": 97},
                {
                    "id": "b",
                    "prompt": "p",
                    "frames": 49,
                    "transition": "dissolve",
                    "transition_duration": "1s",
                },
                {"id": "c", "prompt": "p", "frames": 49, "transition": "fade"},
                {"id": "d", "prompt": "p", "frames": 48},
            ],
        )
    )
    starts = {s.id: (s.film_start_frame, s.transition, s.transition_frames) for s in plan.shots}
    # a dissolve overlaps the shot before it (capped at half the shorter shot); a fade does not overlap
    assert starts == {
        "a": (0, "cut", 0),
        "b": (97 - 24, "dissolve", 24),
        "c": (122, "fade", 12),
        "d": (171, "continue", 0),
    }
    assert plan.film_frames == 97 + 49 + 49 + 48 - 24
    assert plan.film_seconds == round(plan.film_frames / 24, 2)


def test_seeds_are_per_shot_stable_and_overridable():
    shots = [
        {"id": "a", "prompt": "p", "frames": 97},
        {"id": "b", "prompt": "p", "frames": 8, "generation": {"seed": 7}},
    ]
    plan = plan_film(film({"seed": 42}, shots))
    assert plan.shot("a").seed == derive_seed(42, "a") != derive_seed(42, "b")
    assert plan.shot("b").seed == 7  # set on the shot: used as written
    again = plan_film(film({"seed": 42}, shots))
    assert again.shot("a").seed == plan.shot("a").seed
    assert plan_film(film({"seed": 42}, shots), seed=1).shot("a").seed == derive_seed(1, "a")
    assert plan_film(film({"seed": 42}, shots), seed=1).shot("b").seed == 7


def test_estimate_counts_transformer_flops_for_a_known_model():
    plan = plan_film(
        film(
            {"model": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"},
            [{"id": "a", "prompt": "p", "frames": 97}],
        )
    )
    per_pass = transformer_flops((1536, 30, 8960), 25, 960, 544)
    assert plan.estimate.architecture == "1.3B"
    assert plan.estimate.transformer_tflop == round(60 * per_pass / 1e12, 1)
    # 25 latent frames of 34 x 60 tokens: ~51k tokens; attention dominates at this length
    assert 5e14 < per_pass < 7e14
    assert plan_film(film()).estimate.transformer_tflop is None  # the animatic has no transformer


def test_a_model_not_on_this_machine_is_said_and_a_hub_id_is_still_estimated_by_its_name(
    tmp_path, monkeypatch, write_story
):
    from typer.testing import CliRunner

    from storyreel.cli import app

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    story = write_story(
        {"storyreel": 1, "scenes": [{"id": "s", "shots": [{"id": "a", "prompt": "p", "frames": 97}]}]}
    )
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(app, ["plan", str(story), "--model", str(missing)])
    assert result.exit_code == 0, result.output  # planning does not need the model
    assert f"note: model '{missing}' was not found on this machine (no folder {missing})" in result.output
    assert "its size is unknown, so the estimate counts transformer passes only" in result.output
    assert "estimate: 60 transformer passes\n" in result.output

    hub_id = "Skywork/SkyReels-V2-DF-14B-540P-Diffusers"
    plan = plan_film(film({"model": hub_id}))
    assert plan.estimate.architecture == "14B" and plan.estimate.transformer_tflop
    assert plan.notes == [
        f"model '{hub_id}' is not in the local Hugging Face cache: the estimate takes its size from its name; "
        f"download it before rendering: hf download {hub_id}"
    ]


def rows_stepped(blocks: int, prefix: int, steps: int, ar_step: int) -> int:
    """The diffusion-forcing rule run row by row: prefix blocks start denoised; in each row the first block still
    denoising takes a step, and a later one takes a step when the block before it had finished, or was at least
    ``ar_step`` steps ahead, at the start of the row."""
    done = [steps] * prefix + [0] * (blocks - prefix)
    rows = 0
    while any(count < steps for count in done):
        before = list(done)
        for i in range(prefix, blocks):
            ahead = i == prefix or before[i - 1] == steps or before[i - 1] - before[i] >= ar_step
            if before[i] < steps and ahead:
                done[i] += 1
        rows += 1
    return rows


def test_timestep_rows_match_the_rule_stepped_row_by_row():
    for blocks, steps, ar_step in itertools.product(range(1, 8), range(1, 8), range(0, 10)):
        for prefix in range(blocks + 1):
            case = (blocks, prefix, steps, ar_step)
            assert timestep_rows(blocks, prefix, steps, ar_step) == rows_stepped(*case), case


def test_timestep_rows_when_ar_step_exceeds_steps():
    # A block cannot start before the previous one finishes, so each later block waits only `steps` rows.
    assert timestep_rows(3, 0, 4, 10) == 4 * 3


@dataclass(frozen=True)
class WindowSettings:
    base_num_frames: int
    overlap_history: int
    causal_block_size: int
    steps: int = 3
    ar_step: int = 1
    guidance_scale: float = 6.0


@pytest.mark.parametrize("block", [2, 3, 4, 5])
def test_snapped_shots_run_whole_block_windows_that_cover_their_frames(block):
    """With causal blocks, every window and prefix of a snapped shot is whole blocks (or the model leaves frames
    as noise, or cuts the prefix), and the windows hold exactly the shot's latent frames: the first from its
    own prefix (none, or the parent's tail), each later one starting from the overlap."""
    fitting = [
        (base, overlap)
        for base, overlap in itertools.product(range(5, 130, 4), range(1, 60, 4))
        if overlap < base and ((base - 1) // 4 + 1) % block == 0 and ((overlap - 1) // 4 + 1) % block == 0
    ]
    assert fitting
    for (base, overlap), mode, requested in itertools.product(
        fitting, ("fresh", "continue"), range(1, 400, 7)
    ):
        settings = WindowSettings(base, overlap, block)
        base_l, overlap_l = (base - 1) // 4 + 1, (overlap - 1) // 4 + 1
        frames = snap_frames(requested, mode, block)
        generated = frames + (overlap if mode == "continue" else 0)
        latent = (generated - 1) // 4 + 1
        got = shot_windows(mode, frames, settings)
        case = (base, overlap, mode, frames, [(w.latent_frames, w.prefix_latent_frames) for w in got])
        assert all(w.latent_frames % block == 0 and w.prefix_latent_frames % block == 0 for w in got), case
        assert all(w.prefix_latent_frames < w.latent_frames <= base_l for w in got), case
        assert got[0].prefix_latent_frames == (overlap_l if mode == "continue" else 0), case
        assert all(w.prefix_latent_frames == overlap_l for w in got[1:]), case
        assert (
            sum(w.latent_frames - w.prefix_latent_frames for w in got) + got[0].prefix_latent_frames == latent
        )
        assert block_misfit(mode, frames, settings) is None, case


def test_a_shot_that_is_not_whole_blocks_is_found_out():
    # 5 latent frames in blocks of 2 leave one as noise; a 3-latent overlap in blocks of 2 is cut to 2
    assert block_misfit("fresh", 17, WindowSettings(21, 5, 2)) == BlockMisfit(1, "window", 5, 2)
    assert block_misfit("continue", 16, WindowSettings(21, 9, 2)) == BlockMisfit(1, "prefix", 3, 2)
    assert block_misfit("fresh", 21, WindowSettings(21, 5, 2)) is None


def test_rows_match_diffusers_timestep_matrix():
    """Where diffusers is installed, its own generate_timestep_matrix gives the same number of rows."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    matrix = diffusers.SkyReelsV2DiffusionForcingPipeline.generate_timestep_matrix
    for steps, blocks, prefix, ar_step, block in itertools.product(
        (1, 4, 30), (1, 5, 25), (0, 1, 5), (0, 1, 5, 40), (1, 5)
    ):
        if prefix >= blocks:
            continue
        latent = blocks * block
        template = torch.linspace(999, 1, steps).long()
        step_matrix, *_ = matrix(None, latent, template, latent, ar_step, prefix * block, block)
        assert step_matrix.shape[0] == timestep_rows(blocks, prefix, steps, ar_step), (
            steps,
            blocks,
            prefix,
            ar_step,
        )


# --- fixes that validate, notes that say what was changed -------------------------------------------------------


def _plans(generation: dict) -> bool:
    from storyreel import StoryboardError

    try:
        plan_film(film(generation, [{"id": "a", "prompt": "p", "frames": 193}]))
    except StoryboardError:
        return False
    return True


@pytest.mark.parametrize(
    ("base", "overlap", "block"),
    [(17, 17, 1), (97, 97, 1), (97, 21, 5), (81, 17, 5), (81, 21, 5), (97, 101, 5), (9, 5, 3), (57, 37, 4)],
)
def test_every_suggested_window_setting_validates(base, overlap, block):
    import re

    from storyreel import StoryboardError

    settings = {"base_num_frames": base, "overlap_history": overlap, "causal_block_size": block}
    with pytest.raises(StoryboardError) as caught:
        plan_film(film(settings))
    for problem in caught.value.problems:
        assert problem.fix.startswith("use "), problem
        if " with overlap_history " in problem.fix:  # a pair, changed together
            b, o = map(int, re.findall(r"\d+", problem.fix))
            assert _plans({**settings, "base_num_frames": b, "overlap_history": o}), problem
            continue
        for key, values in re.findall(
            r"(overlap_history|base_num_frames|causal_block_size) ((?:\d+(?: or )?)+)", problem.fix
        ):
            for value in map(int, values.split(" or ")):
                assert value != settings[key], problem  # never the value that is wrong
                assert _plans({**settings, key: value}), (problem, key, value)


def test_the_overlap_fix_never_suggests_the_wrong_value_again():
    from storyreel import StoryboardError

    with pytest.raises(StoryboardError) as caught:
        plan_film(film({"overlap_history": 17, "base_num_frames": 17}))
    assert str(caught.value) == (
        "<storyboard>: generation.overlap_history: overlap_history 17 must be smaller than base_num_frames 17; "
        "use overlap_history 13 or 9, or base_num_frames 97 or 121"
    )


def test_the_parent_fix_lengthens_to_a_duration_that_works():
    from storyreel import StoryboardError

    shots = [{"id": "a", "prompt": "p", "duration": "0.3s"}, {"id": "b", "prompt": "q", "frames": 40}]
    with pytest.raises(StoryboardError) as caught:
        plan_film(film({"overlap_history": 37, "fps": 30}, shots))
    fix = caught.value.problems[0].fix
    assert fix == "lengthen 'a' to at least 1.23s, or lower overlap_history to 9 or less"
    shots[0]["duration"] = "1.23s"
    assert plan_film(film({"overlap_history": 37, "fps": 30}, shots)).shot("b").conditioned_on == "a"


def test_a_transition_cut_to_fit_is_noted():
    plan = plan_film(
        film(
            {"fps": 24},
            [
                {"id": "a", "prompt": "p", "frames": 49},
                {
                    "id": "b",
                    "prompt": "p",
                    "frames": 97,
                    "transition": "dissolve",
                    "transition_duration": "5s",
                },
            ],
        )
    )
    assert plan.shot("b").transition_frames == 24
    assert plan.notes == [
        "shot 'b': its 5.00s dissolve is cut to 1.00s (24 frames): a dissolve takes at most half of each shot it "
        "joins, here 'a' (49 frames) and this shot (97)"
    ]


def test_the_parent_fix_past_the_longest_duration_gives_frames_instead():
    from storyreel import StoryboardError

    # At 4 fps the 253 conditioning frames are 63 s, longer than a duration may be but not than frames may be.
    settings = {"fps": 4, "base_num_frames": 257, "overlap_history": 253}
    shots = [{"id": "a", "prompt": "p", "duration": "2s"}, {"id": "b", "prompt": "q", "frames": 40}]
    with pytest.raises(StoryboardError) as caught:
        plan_film(film(settings, shots))
    fix = caught.value.problems[0].fix
    assert fix.startswith("give 'a' frames: "), fix
    shots[0] = {"id": "a", "prompt": "p", "frames": int(fix.split("frames: ")[1].split(",")[0])}
    assert plan_film(film(settings, shots)).shot("b").conditioned_on == "a"


def test_a_shot_of_the_longest_length_is_not_snapped_past_it():
    settings = {"causal_block_size": 3, "base_num_frames": 93, "overlap_history": 9}
    plan = plan_film(film(settings, [{"id": "a", "prompt": "p", "frames": 1457}]))
    assert plan.shot("a").frames == 1449


@pytest.mark.parametrize("transition", ["cut", "continue"])
def test_a_transition_duration_on_a_transition_without_length_is_noted(transition: str):
    shots = [
        {"id": "a", "prompt": "p", "frames": 49},
        {"id": "b", "prompt": "p", "frames": 49, "transition": transition, "transition_duration": "1.5s"},
    ]
    plan = plan_film(film({"fps": 24}, shots))
    assert plan.shot("b").transition_frames == 0
    assert (
        f"shot 'b': its transition_duration 1.5s is not used: a {transition} has no length (write transition: "
        "dissolve or fade for one that has)"
    ) in plan.notes


def test_notes_repeated_across_shots_are_one_line():
    shots = [{"id": f"s{i}", "prompt": "p", "duration": "3s", "transition": "cut"} for i in range(200)]
    plan = plan_film(film({"causal_block_size": 5}, shots))
    assert plan.notes == ["shots 's0', 's1', 's2' and 197 more: 3s (72 frames) snapped to 77 frames (3.21s)"]
    few = plan_film(film({"causal_block_size": 5}, shots[:3]))
    assert few.notes == ["shots 's0', 's1' and 's2': 3s (72 frames) snapped to 77 frames (3.21s)"]


def test_a_seed_beyond_what_the_storyboard_accepts_is_refused():
    from storyreel import StoryboardError

    with pytest.raises(
        StoryboardError, match=r"--seed: 4294967296 is not a seed; use a number from 0 to 4294967295"
    ):
        plan_film(film(), seed=2**32)
    assert plan_film(film(), seed=2**32 - 1).shot("a").seed == derive_seed(2**32 - 1, "a")


def test_long_asynchronous_windows_are_counted_at_once():
    # the largest window the bounds allow, at the most steps and the widest async step
    assert timestep_rows(65, 0, 1000, 100) == 1000 + 64 * 100
    assert timestep_rows(65, 65, 30, 5) == 0
