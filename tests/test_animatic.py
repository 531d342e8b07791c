"""The animatic generator, through the generator contract: real plans, real frames, what a filmmaker would see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from storyreel.camera import ANGLES, FRAMINGS, MOVES, SHOT_TYPES, VIEWPOINTS, CameraMove, move_motion
from storyreel.enhance import film_context, open_enhancer, shot_contexts
from storyreel.generate import (
    Clip,
    GeneratorOptions,
    ProgressEvent,
    ShotRequest,
    load_start_image,
    open_generator,
    run_generator,
)
from storyreel.generators.animatic import AnimaticGenerator, Letterbox, character_colour
from storyreel.plan import FilmPlan, ShotPlan, plan_film
from storyreel.storyboard import EnhancerSettings, Storyboard

SMALL = {"resolution": "160x96", "fps": 8, "overlap_history": 5, "base_num_frames": 21}


def storyboard(
    *shots: dict[str, Any], setting: str | None = "a lake at dawn", **generation: Any
) -> Storyboard:
    """A one-scene film at a tiny size from shot dicts."""
    scene: dict[str, Any] = {"id": "lake", "shots": list(shots)}
    if setting is not None:
        scene["setting"] = setting
    return Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": {**SMALL, **generation},
            "characters": {"swan": {"description": "a white swan"}, "heron": {"description": "a grey heron"}},
            "scenes": [scene],
        }
    )


def film(*shots: dict[str, Any], setting: str | None = "a lake at dawn", **generation: Any) -> FilmPlan:
    """Plan a one-scene film at a tiny size from shot dicts."""
    return plan_film(storyboard(*shots, setting=setting, **generation))


def shot(shot_id: str = "glide", **fields: Any) -> dict[str, Any]:
    return {"id": shot_id, "prompt": "{{ swan }} glides across the water", "duration": "2s", **fields}


def generate(
    plan: ShotPlan,
    tail_frames: np.ndarray | None = None,
    image: np.ndarray | None = None,
    progress: Any = None,
) -> Clip:
    """Run the animatic the way a render does: through the entry point, with the contract's checks."""
    request = ShotRequest(
        shot=plan, prompt=plan.prompt, negative_prompt="", tail_frames=tail_frames, image=image
    )
    with open_generator("animatic", GeneratorOptions()) as generator:  # type: ignore[attr-defined]
        return run_generator(generator, request, progress or (lambda event: None))


def picture(frame: np.ndarray) -> np.ndarray:
    """The picture area of a frame (between the bars), as float for comparisons."""
    height, width = frame.shape[:2]
    return Letterbox.for_frame(width, height).picture(frame).astype(np.float64)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# --- the contract -----------------------------------------------------------------------------------------------


def test_fresh_shot_fills_exactly_the_planned_frames() -> None:
    plan = film(shot(camera={"shot": "wide", "move": "slow push-in"}, characters=["heron"])).shot("glide")
    clip = generate(plan)
    assert plan.frames == 17
    assert clip.frames.shape == (17, 96, 160, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.dit_passes == 0
    assert clip.info["palette"] == "dawn lake"
    assert clip.info["move"] == ["push-in"]


def test_the_generator_is_found_by_name_and_is_a_context_manager() -> None:
    generator = open_generator("animatic", GeneratorOptions(model="ignored"))
    assert isinstance(generator, AnimaticGenerator)
    assert generator.name == "animatic"
    with generator as opened:
        assert opened is generator


def test_same_request_gives_bit_identical_frames() -> None:
    plan = film(shot(camera={"shot": "medium", "angle": "dutch", "move": "handheld pan left"})).shot("glide")
    first, second = generate(plan), generate(plan)
    assert np.array_equal(first.frames, second.frames)


def test_handheld_shake_follows_the_shot_seed() -> None:
    handheld = {"move": "handheld"}
    one = film(shot(camera=handheld), seed=1).shot("glide")
    other = film(shot(camera=handheld), seed=2).shot("glide")
    assert one.seed != other.seed
    assert not np.array_equal(generate(one).frames[-1], generate(other).frames[-1])


def test_progress_is_reported_every_few_frames_and_ends_complete() -> None:
    events: list[ProgressEvent] = []
    plan = film(shot(duration="4s")).shot("glide")
    generate(plan, progress=events.append)
    assert plan.frames == 33
    assert {event.stage for event in events} == {"frames"}
    assert {event.shot_id for event in events} == {"glide"}
    assert [event.completed for event in events] == sorted(event.completed for event in events)
    assert 1 < len(events) < plan.frames
    assert (events[-1].completed, events[-1].total) == (33, 33)


# --- the camera ---------------------------------------------------------------------------------------------------


def test_static_shot_holds_still() -> None:
    frames = generate(film(shot()).shot("glide")).frames
    assert all(np.array_equal(picture(frames[0]), picture(frame)) for frame in frames[1:])


def _best_zoom(first: np.ndarray, last: np.ndarray) -> tuple[float, float, float]:
    """(scale, error at that scale, error without zoom): how well ``last`` matches the middle of ``first`` enlarged."""
    height, width = first.shape[:2]
    errors = {}
    for scale in np.arange(0.5, 1.001, 0.02):
        w, h = width * scale, height * scale
        box = (
            max(0.0, (width - w) / 2),
            max(0.0, (height - h) / 2),
            min(width, (width + w) / 2),
            min(height, (height + h) / 2),
        )
        crop = Image.fromarray(first.astype(np.uint8)).resize(
            (width, height), Image.Resampling.BILINEAR, box=box
        )
        errors[round(float(scale), 2)] = mean_abs_diff(np.asarray(crop), last)
    best = min(errors, key=errors.__getitem__)
    return best, errors[best], errors[1.0]


def test_push_in_enlarges_the_middle_of_the_frame() -> None:
    plan = film(shot(duration="3s", camera={"shot": "wide", "move": "fast push-in"}, characters=["heron"]))
    frames = generate(plan.shot("glide")).frames
    scale, error, unzoomed = _best_zoom(picture(frames[0]), picture(frames[-1]))
    assert scale <= 0.8  # the last frame shows at most 80% of the first frame's width
    assert error < unzoomed / 3


def test_pull_out_shows_more_of_the_set() -> None:
    plan = film(shot(duration="3s", camera={"shot": "medium", "move": "pull-out"}))
    frames = generate(plan.shot("glide")).frames
    scale, error, unzoomed = _best_zoom(picture(frames[-1]), picture(frames[0]))
    assert scale <= 0.85  # the first frame is the middle of the last, enlarged
    assert error < unzoomed / 3


def _horizontal_shift(first: np.ndarray, last: np.ndarray) -> int:
    """The shift (pixels) that best lines ``last`` up with ``first``: positive when the view moved right."""
    width = first.shape[1]
    errors = {}
    for shift in range(-width // 2, width // 2 + 1):
        if shift >= 0:
            errors[shift] = mean_abs_diff(first[:, shift:], last[:, : width - shift])
        else:
            errors[shift] = mean_abs_diff(first[:, :shift], last[:, -shift:])
    return min(errors, key=errors.__getitem__)


@pytest.mark.parametrize("move, direction", [("pan right", 1), ("pan left", -1), ("truck right", 1)])
def test_pans_and_trucks_slide_the_view_sideways(move: str, direction: int) -> None:
    plan = film(shot(duration="3s", camera={"shot": "wide", "move": move}, characters=["swan", "heron"]))
    frames = generate(plan.shot("glide")).frames
    shift = _horizontal_shift(picture(frames[0]), picture(frames[-1]))
    assert direction * shift >= 0.15 * 160  # a clear fraction of the frame's width
    assert direction * shift <= 0.5 * 160


def test_tilt_up_slides_the_view_upwards() -> None:
    plan = film(shot(duration="3s", camera={"shot": "wide", "move": "tilt up"}))
    frames = generate(plan.shot("glide")).frames
    first, last = picture(frames[0]), picture(frames[-1])
    shift = _horizontal_shift(first.transpose(1, 0, 2), last.transpose(1, 0, 2))
    assert shift < -5  # the view moved up: the first frame's top is now lower in the frame


# --- framing and look ------------------------------------------------------------------------------------------------


def _share_of_colour(frames: np.ndarray, colour: tuple[int, int, int]) -> float:
    area = picture(frames[0])
    return float((np.abs(area - np.array(colour)).max(axis=-1) < 12).mean())


def test_a_close_up_fills_the_frame_with_the_character() -> None:
    swan = character_colour("swan")
    close = generate(film(shot(camera={"shot": "close-up"})).shot("glide")).frames
    wide = generate(film(shot(camera={"shot": "wide"})).shot("glide")).frames
    assert _share_of_colour(close, swan) > 4 * _share_of_colour(wide, swan) > 0


def test_the_setting_picks_the_light() -> None:
    dawn = generate(film(shot(), setting="a lake at dawn").shot("glide"))
    night = generate(film(shot(), setting="a city street at night").shot("glide"))
    assert night.info["palette"] == "night city"
    assert picture(night.frames[0]).mean() < picture(dawn.frames[0]).mean() - 40


def test_shots_of_a_scene_share_one_set() -> None:
    plan = film(
        shot("glide", prompt="{{ swan }} glides"),
        shot("dip", transition="cut", prompt="{{ swan }} dips its head"),
        setting=None,
    )
    assert plan.shot("dip").mode == "fresh"
    glide, dip = generate(plan.shot("glide")).frames, generate(plan.shot("dip")).frames
    assert np.array_equal(picture(glide[0]), picture(dip[0]))  # same scene, same framing: the same picture
    elsewhere = Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": SMALL,
            "scenes": [{"id": "marsh", "shots": [shot(prompt="a swan glides")]}],
        }
    )
    other = generate(plan_film(elsewhere).shot("glide")).frames
    assert mean_abs_diff(picture(other[0]), picture(glide[0])) > 10  # another scene, another look


# --- continuing and image shots -------------------------------------------------------------------------------------


def test_a_continuing_shot_flows_out_of_its_parents_last_frame() -> None:
    plan = film(
        shot("glide", camera={"shot": "wide", "move": "pan right"}, characters=["swan"]),
        shot("dip", duration="3s", camera={"shot": "close-up", "move": "pan left"}, characters=["swan"]),
    )
    parent, child = plan.shot("glide"), plan.shot("dip")
    assert child.mode == "continue"
    parent_frames = generate(parent).frames
    tail = parent_frames[-child.settings.overlap_history :]
    frames = generate(child, tail_frames=tail).frames
    assert frames.shape == (child.frames, 96, 160, 3)
    last_of_parent = picture(parent_frames[-1])
    assert mean_abs_diff(picture(frames[0]), last_of_parent) < 2
    leaving = [mean_abs_diff(picture(frame), last_of_parent) for frame in frames]
    assert leaving[1] > 0  # the camera moves from the first frame
    assert leaving[1] < leaving[-1] / 3  # and the parent's picture dissolves away gradually
    assert leaving[-1] > 15  # into the shot's own framing
    assert not np.array_equal(frames[0][:8], parent_frames[-1][:8])  # its own slate: shot 'dip'


def test_an_image_shot_starts_on_its_image(tmp_path: Path) -> None:
    # A start image with something to see: a gradient, a dark disc and a bright bar.
    y, x = np.mgrid[0:96, 0:160]
    start = np.stack([x * 1.5, y * 2.5, 255 - x], axis=-1).clip(0, 255).astype(np.uint8)
    start[(x - 60) ** 2 + (y - 48) ** 2 < 300] = (20, 20, 30)
    start[40:50, 100:150] = (250, 240, 200)
    Image.fromarray(start).save(tmp_path / "start.png")
    board = Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": SMALL,
            "characters": {"swan": {"description": "a white swan"}},
            "scenes": [
                {
                    "id": "pond",
                    "shots": [shot(image="start.png", camera={"move": "slow push-in"})],
                }
            ],
        }
    ).with_base_dir(tmp_path)
    plan = plan_film(board).shot("glide")
    assert plan.mode == "image"
    image = load_start_image(plan.image or "", plan.width, plan.height)
    frames = generate(plan, image=image).frames
    assert frames.shape == (17, 96, 160, 3)
    assert mean_abs_diff(picture(frames[0]), picture(image)) < 2
    assert mean_abs_diff(picture(frames[-1]), picture(image)) > 3  # the push-in moved on


# --- the slate --------------------------------------------------------------------------------------------------------


def test_bars_hold_still_while_the_timecode_runs() -> None:
    frames = generate(film(shot(camera={"move": "pan left"})).shot("glide")).frames
    box = Letterbox.for_frame(160, 96)
    top_bars = frames[:, : box.top]
    bottom_bars = frames[:, 96 - box.bottom :]
    assert all(np.array_equal(top_bars[0], bar) for bar in top_bars[1:])
    assert all(not np.array_equal(a, b) for a, b in zip(bottom_bars[:-1], bottom_bars[1:], strict=True))


def test_the_timecode_counts_film_frames_not_shot_frames() -> None:
    # The same frame of a shot, placed later in the film, carries a different timecode.
    early = film(shot("glide")).shot("glide")
    later = film(shot("first"), shot("glide", transition="cut")).shot("glide")
    assert later.film_start_frame > early.film_start_frame
    box = Letterbox.for_frame(160, 96)
    early_bar = generate(early).frames[0, 96 - box.bottom :]
    later_bar = generate(later).frames[0, 96 - box.bottom :]
    assert not np.array_equal(early_bar, later_bar)


@pytest.mark.parametrize(
    "camera",
    [
        {"shot": "extreme close-up", "angle": "pov", "move": "fast pull-out"},
        {"shot": "extreme wide", "angle": "overhead", "move": "orbit"},
        {"shot": "full", "angle": "worm's-eye", "move": "crane up, tilt down"},
        {"shot": "medium", "angle": "over-the-shoulder", "move": "handheld tracking"},
    ],
)
def test_a_tiny_frame_still_works(camera: dict[str, str]) -> None:
    long_prompt = "{{ swan }} " + "drifts past the reeds while the mist lifts " * 6
    plan = film(
        shot(prompt=long_prompt, camera=camera, characters=["swan", "heron"]),
        setting="a small kitchen at night",
        resolution="64x64",
    ).shot("glide")
    frames = generate(plan).frames
    assert frames.shape == (plan.frames, 64, 64, 3)
    assert picture(frames[0]).shape[0] >= 32  # the bars leave at least half the frame to the picture


# --- the animatic draws the camera the caption asks for -----------------------------------------------------------

STILL = "an old lighthouse on a cliff above the sea"  # nothing in it moves
# What a caption says of a still shot's added move, as a move written in the storyboard's words.
ADDED_MOVES = {
    "The camera slowly pushes in.": "slow push-in",
    "The camera slowly pans across the scene.": "slow pan right",
}


def captioned(**fields: Any) -> tuple[str, Clip]:
    """The template enhancer's caption for one shot, and the animatic's clip of it."""
    board = storyboard(shot(**fields))
    plan = plan_film(board)
    enhancer = open_enhancer("template", EnhancerSettings())
    [prompt] = enhancer.enhance(film_context(board), shot_contexts(board, plan))
    return prompt.prompt, generate(plan.shot("glide"))


def pictures(clip: Clip) -> list[np.ndarray]:
    return [picture(frame) for frame in clip.frames]


def same_pictures(one: Clip, other: Clip) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(pictures(one), pictures(other), strict=True))


def test_a_still_shot_without_a_camera_is_drawn_as_its_caption_frames_and_moves_it() -> None:
    caption, clip = captioned(prompt=STILL)
    assert caption.startswith("Medium shot: an old lighthouse")
    assert caption.endswith(" The camera slowly pushes in.")
    _, written_out = captioned(prompt=STILL, camera={"shot": "medium", "move": "slow push-in"})
    assert same_pictures(clip, written_out)
    assert (clip.info["shot_type"], clip.info["move"], clip.info["move_added"]) == (
        "medium",
        ["push-in"],
        True,
    )
    assert not np.array_equal(picture(clip.frames[0]), picture(clip.frames[-1]))


@pytest.mark.parametrize("shot_type", SHOT_TYPES)
def test_every_still_shot_type_is_drawn_with_the_move_its_caption_adds(shot_type: str) -> None:
    caption, clip = captioned(prompt=STILL, camera={"shot": shot_type})
    assert caption.startswith(FRAMINGS[shot_type].phrase + ": ")
    [said] = [move for sentence, move in ADDED_MOVES.items() if caption.endswith(" " + sentence)]
    _, written_out = captioned(prompt=STILL, camera={"shot": shot_type, "move": said})
    assert same_pictures(clip, written_out)


def test_a_prompt_that_opens_with_its_own_shot_type_is_drawn_in_it() -> None:
    caption, clip = captioned(prompt="Close-up of " + STILL)
    assert caption.startswith("Close-up of an old lighthouse")  # no "Medium shot" added
    _, written_out = captioned(prompt=STILL, camera={"shot": "close-up", "move": "slow push-in"})
    assert same_pictures(clip, written_out)


def test_a_moving_subject_without_a_camera_move_is_drawn_with_a_still_camera() -> None:
    caption, clip = captioned(prompt="{{ swan }} glides across the water")
    assert "camera" not in caption.lower()
    assert clip.info["move"] == ["static"]
    assert all(np.array_equal(pictures(clip)[0], later) for later in pictures(clip)[1:])


@pytest.mark.parametrize("angle", ANGLES)
def test_every_angle_is_drawn_as_its_caption_says(angle: str) -> None:
    caption, clip = captioned(prompt=STILL, camera={"angle": angle, "move": "static"})
    drawn = FRAMINGS[clip.info["shot_type"]].phrase + " " + VIEWPOINTS[clip.info["angle"]].phrase + ":"
    assert caption.startswith(drawn)


@pytest.mark.parametrize("move", MOVES)
def test_every_move_is_drawn_as_its_caption_says(move: str) -> None:
    caption, clip = captioned(prompt=STILL, camera={"shot": "wide", "move": f"slow {move}"})
    operator, motion = move_motion(CameraMove(tuple(clip.info["move"]), clip.info["speed"]))
    assert caption.endswith(f" The {operator} {motion}.")
