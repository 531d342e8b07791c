"""The SkyReels-V2 generator on tiny random-weight pipelines built offline (tests/tiny_skyreels.py).

They load through the path real weights take (a diffusers folder given as GeneratorOptions.model),
run the real diffusers 0.42.1 pipelines, and are checked on what a user would notice: frame counts
and transformer passes equal to the plan, the parent's exact tail handed to a continuing shot,
reproducible seeds. Each workaround for a diffusers quirk has a test here that fails without it.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("ftfy")

from tiny_skyreels import build_tiny_skyreels, tiny_components, write_foreign_pipeline  # noqa: E402

from storyreel.backends import GENERATORS, load_backend  # noqa: E402
from storyreel.errors import GenerationError, MissingExtra, ModelNotFound, UserError  # noqa: E402
from storyreel.frames import dit_passes, latent_count, window_schedule  # noqa: E402
from storyreel.generate import (  # noqa: E402
    Clip,
    GeneratorOptions,
    ProgressEvent,
    PromptRequest,
    ShotRequest,
    ignore_progress,
    load_start_image,
    run_generator,
)
from storyreel.generators.skyreels import SkyReelsGenerator  # noqa: E402
from storyreel.generators.skyreels.attention import KERNELS  # noqa: E402
from storyreel.generators.skyreels.decode import decode_frames, to_uint8  # noqa: E402
from storyreel.generators.skyreels.prompts import PromptEmbeddings  # noqa: E402
from storyreel.generators.skyreels.quirks import modulate_per_frame  # noqa: E402
from storyreel.generators.skyreels.runtime import Runtime  # noqa: E402
from storyreel.plan import FilmPlan, ShotPlan, plan_film  # noqa: E402
from storyreel.rendering import render  # noqa: E402
from storyreel.storyboard import Generation, Storyboard, load_storyboard  # noqa: E402
from storyreel.video import read_frames  # noqa: E402

from conftest import REPO, small_board, torch_threads  # noqa: E402

PIPELINES = (
    "SkyReelsV2DiffusionForcingPipeline",
    "SkyReelsV2DiffusionForcingImageToVideoPipeline",
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
    "SkyReelsV2Pipeline",
    "SkyReelsV2ImageToVideoPipeline",
)
# Tiny and quick: 64x64 (4x4 tokens a latent frame), 2 steps, 5-latent windows with a 2-latent overlap, at
# 16 fps (a rate the model makes, and the fewest frames for a duration).
TINY = {"resolution": "64x64", "fps": 16, "steps": 2, "base_num_frames": 17, "overlap_history": 5}
# Asynchronous diffusion forcing at the same scale: blocks of 2 latent frames, 6 to a window.
ASYNC = {**TINY, "base_num_frames": 21, "ar_step": 1, "causal_block_size": 2}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Oversubscribed OpenMP on a 2-core machine makes these tiny calls 20-100x slower."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_df(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DF-1.3B-shaped diffusion-forcing folder (inject_sample_info on)."""
    return build_tiny_skyreels(tmp_path_factory.mktemp("tiny") / "df")


@pytest.fixture(scope="module")
def sky(tiny_df: Path):
    """One generator for the tests that only need a working model (it loads on its first shot)."""
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
        yield generator


# --- helpers ---------------------------------------------------------------------------------------------------


def film(*shots: dict[str, Any], **generation: Any) -> FilmPlan:
    """Plan a one-scene film of ``shots`` at the tiny size."""
    board = Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": {**TINY, **generation},
            "scenes": [{"id": "lake", "setting": "a lake at dawn", "shots": list(shots)}],
        }
    )
    return plan_film(board.with_base_dir(REPO / "examples"))  # image: assets/heron_dawn.png


def shot(shot_id: str, frames: int, **fields: Any) -> dict[str, Any]:
    return {"id": shot_id, "prompt": f"a white swan on the lake, {shot_id}", "frames": frames, **fields}


def request(
    plan: ShotPlan,
    tail: np.ndarray | None = None,
    image: np.ndarray | None = None,
    end_image: np.ndarray | None = None,
) -> ShotRequest:
    return ShotRequest(
        shot=plan,
        prompt=plan.prompt,
        negative_prompt="blurry",
        tail_frames=tail,
        image=image,
        end_image=end_image,
    )


def random_frames(count: int, seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def generate(generator: SkyReelsGenerator, plan: ShotPlan, **conditioning: Any) -> Clip:
    """Through the contract's checks, the way render() calls a generator."""
    return run_generator(generator, request(plan, **conditioning), ignore_progress)


@dataclass
class PipelineCall:
    shot_id: str
    pipeline: Any
    kwargs: dict[str, Any]
    latents: torch.Tensor  # (1, channels, latent frames, h, w): the generator decodes them itself


@dataclass
class Spy:
    """Records every SkyReels-V2 pipeline call (arguments and raw output) and every clip, by shot."""

    calls: list[PipelineCall] = field(default_factory=list)
    clips: dict[str, tuple[ShotRequest, Clip]] = field(default_factory=dict)
    loads: int = 0
    current: str = ""

    def call(self, shot_id: str) -> PipelineCall:
        (found,) = [c for c in self.calls if c.shot_id == shot_id]
        return found


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    record = Spy()

    def wrap_call(original):
        @functools.wraps(original)  # keeps the signature, which the generator reads max_sequence_length from
        def call(pipeline, **kwargs):
            output = original(pipeline, **kwargs)
            record.calls.append(PipelineCall(record.current, pipeline, kwargs, output.frames))
            return output

        return call

    for name in PIPELINES:
        cls = getattr(diffusers, name)
        monkeypatch.setattr(cls, "__call__", wrap_call(cls.__call__))

    original_generate = SkyReelsGenerator.generate

    def generate(generator, request, progress=ignore_progress):
        record.current = request.shot.id
        clip = original_generate(generator, request, progress)
        record.clips[request.shot.id] = (request, clip)
        return clip

    monkeypatch.setattr(SkyReelsGenerator, "generate", generate)

    original_load = diffusers.DiffusionPipeline.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        record.loads += 1
        return original_load(cls, *args, **kwargs)

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", classmethod(from_pretrained))
    return record


def as_video_input(frames: np.ndarray) -> torch.Tensor:
    """(frames, height, width, 3) uint8 -> the (1, frames, 3, height, width) [0, 1] tensor V2V should get."""
    return (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0).unsqueeze(0)


def encoded(pipeline: Any, text: str) -> torch.Tensor:
    """``text`` encoded as the pipeline encodes a prompt it is given as text (in its call: without gradients)."""
    with torch.no_grad():
        return pipeline.encode_prompt(
            prompt=text, do_classifier_free_guidance=False, max_sequence_length=512
        )[0]


def stock_frames(
    pipeline: Any, kwargs: dict[str, Any], prompt: str, negative_prompt: str, seed: int
) -> np.ndarray:
    """What ``pipeline`` returns, as uint8 frames, when given the prompts as text and left to decode the video
    itself: the generator's call (``kwargs``) the way diffusers' own examples make it."""
    kwargs = {
        **{k: v for k, v in kwargs.items() if k not in ("prompt_embeds", "negative_prompt_embeds")},
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "output_type": "np",
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # addnoise_condition's noise (quirk 6), as the generator seeds it
        video = pipeline(**kwargs).frames[0]  # (frames, height, width, 3) floats in [0, 1]
    return to_uint8(np.asarray(video))


def tiny_board(board: Storyboard) -> Storyboard:
    """A storyboard with its film-wide generation settings shrunk to the tiny size."""
    generation = Generation.model_validate({**board.generation.model_dump(exclude_none=True), **TINY})
    return board.model_copy(update={"generation": generation})


# --- every example renders as planned ---------------------------------------------------------------------------

EXAMPLES = sorted(p for p in (REPO / "examples").iterdir() if p.name.endswith((".yaml", ".yaml.j2", ".py")))


def example_board(path: Path) -> Storyboard:
    """An example's storyboard: a file, or the one examples/scripted_film.py builds in code."""
    if path.suffix != ".py":
        return load_storyboard(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tide_pool_film(["steps out from under a rock", "scuttles to the water's edge"])


@pytest.fixture(scope="session")
def tiny_klein(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FLUX.2 [klein] folder: the keyframe model of examples with keyframes:."""
    from tiny_flux2 import build_tiny_flux2

    return build_tiny_flux2(tmp_path_factory.mktemp("tiny") / "klein")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_renders_exactly_its_plan(
    example: Path, tiny_df: Path, tiny_klein: Path, spy: Spy, tmp_path: Path
) -> None:
    board = tiny_board(example_board(example))
    if board.keyframes is not None:
        board = board.model_copy(
            update={"keyframes": board.keyframes.model_copy(update={"model": str(tiny_klein)})}
        )
    plan = plan_film(board, model=str(tiny_df))
    manifest = render(board, tmp_path / "out", generator="skyreels", model=str(tiny_df), use_cache=False)

    # Weights load once per render, not per shot (and the keyframe model once, when there is one).
    assert spy.loads == 1 + (plan.keyframes is not None)
    assert manifest.film is not None and manifest.film.frames == plan.film_frames
    for entry in manifest.shots:
        planned = plan.shot(entry.id)
        assert (entry.frames, entry.dit_passes) == (planned.frames, planned.dit_passes)
        clip = spy.clips[entry.id][1]
        assert clip.info["windows"] == [w.model_dump() for w in planned.windows]
        expected_pipeline = {
            "fresh": "SkyReelsV2DiffusionForcingPipeline",
            "image": "SkyReelsV2DiffusionForcingImageToVideoPipeline",
            "continue": "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
        }[planned.mode]
        assert clip.info["pipeline"] == expected_pipeline
    # A continuing shot's pipeline got the last overlap_history frames of its parent's footage, exactly (or of
    # the clip it extends, as decoded).
    continuing = [s for s in plan.shots if s.mode == "continue"]
    assert continuing or example.name.startswith("festival")
    for planned in continuing:
        if planned.video is not None:
            footage = np.stack(list(read_frames(Path(planned.video), planned.width, planned.height)))
        else:
            parent_request, parent_clip = spy.clips[planned.conditioned_on]
            footage = parent_clip.frames
            if parent_request.tail_frames is not None:
                footage = np.concatenate([parent_request.tail_frames, footage])
        tail = footage[-planned.settings.overlap_history :]
        assert torch.equal(spy.call(planned.id).kwargs["video"], as_video_input(tail))
    # A shot that ends on an image gets it fitted to the film like a start image, and holds its frame itself
    # (tests/test_frame_controls.py): diffusers' last_image is not used.
    for planned in plan.shots:
        if planned.end_image is not None:
            end = load_start_image(planned.end_image, planned.width, planned.height)
            assert np.array_equal(spy.clips[planned.id][0].end_image, end)
            assert "last_image" not in spy.call(planned.id).kwargs


def test_command_line_render_with_a_model_folder(write_story, tiny_df: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storyreel.cli import app

    story = write_story(small_board(**{k: v for k, v in TINY.items() if k != "resolution"}))
    out, cache = tmp_path / "out", tmp_path / "cache"
    command = ["render", str(story), "--generator", "skyreels", "--out", str(out), "--cache-dir", str(cache)]
    result = CliRunner().invoke(app, [*command, "--model", str(tiny_df)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    plan = plan_film(Storyboard.model_validate(yaml.safe_load(story.read_text())), model=str(tiny_df))
    assert manifest["generator"] == "skyreels"
    assert [(s["id"], s["frames"], s["dit_passes"]) for s in manifest["shots"]] == [
        (s.id, s.frames, s.dit_passes) for s in plan.shots
    ]

    result = CliRunner().invoke(app, [*command, "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such folder" in result.output and "Traceback" not in result.output


def test_image_shot_starts_from_its_image_synchronously(sky: SkyReelsGenerator, spy: Spy) -> None:
    plan = film(shot("heron", 17, image="assets/heron_dawn.png"), ar_step=2, causal_block_size=1)
    heron = plan.shot("heron")
    image = load_start_image(REPO / "examples/assets/heron_dawn.png", 64, 64)
    clip = generate(sky, heron, image=image)
    kwargs = spy.call("heron").kwargs
    assert np.array_equal(np.asarray(kwargs["image"]), image)
    assert (kwargs["ar_step"], kwargs["causal_block_size"]) == (0, 1)  # the plan made the shot synchronous
    assert clip.info["windows"] == [{"latent_frames": 5, "prefix_latent_frames": 1, "denoise_steps": 2}]
    assert clip.frames.shape == (17, 64, 64, 3)


# --- schedule, passes, progress, reproducibility ---------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="sync"),
        pytest.param(ASYNC, id="async"),
        pytest.param({"guidance_scale": 1.0}, id="no-guidance"),
        pytest.param({"addnoise_condition": 0, "shift": 3.0}, id="no-addnoise"),
    ],
)
def test_long_shots_run_the_planned_windows_and_passes(sky: SkyReelsGenerator, settings: dict) -> None:
    plan = film(shot("glide", 37), shot("dip", 24), **settings)
    glide, dip = plan.shot("glide"), plan.shot("dip")
    assert len(glide.windows) > 1 and len(dip.windows) > 1
    first = generate(sky, glide)
    second = generate(sky, dip, tail=first.frames[-glide.settings.overlap_history :])
    for planned, clip in ((glide, first), (dip, second)):
        assert clip.frames.shape == (planned.frames, 64, 64, 3)
        assert clip.dit_passes == planned.dit_passes
        assert clip.info["windows"] == [w.model_dump() for w in planned.windows]


def test_settings_reach_the_pipeline(sky: SkyReelsGenerator, spy: Spy) -> None:
    settings = {"guidance_scale": 4.5, "steps": 3, "shift": 3.0, "addnoise_condition": 10, "fps": 24}
    glide = film(shot("glide", 33), **settings).shot("glide")
    clip = generate(sky, glide)
    call = spy.call("glide")
    assert {
        k: call.kwargs[k] for k in ("guidance_scale", "num_inference_steps", "addnoise_condition", "fps")
    } == {
        "guidance_scale": 4.5,
        "num_inference_steps": 3,
        "addnoise_condition": 10,
        "fps": 24,
    }
    assert (call.kwargs["base_num_frames"], call.kwargs["overlap_history"]) == (17, 5)
    assert (call.kwargs["height"], call.kwargs["width"]) == (64, 64)
    for text, embeds in (
        (glide.prompt, call.kwargs["prompt_embeds"]),
        ("blurry", call.kwargs["negative_prompt_embeds"]),
    ):
        assert torch.equal(embeds, encoded(call.pipeline, text))
    assert call.pipeline.scheduler.config.flow_shift == 3.0
    assert clip.dit_passes == glide.dit_passes == 2 * 3 * len(glide.windows)


def test_progress_reports_load_every_denoising_row_and_decode(tiny_df: Path) -> None:
    plan = film(shot("glide", 25))
    glide = plan.shot("glide")
    events: list[ProgressEvent] = []
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
        generator.generate(request(glide), events.append)
        events_again: list[ProgressEvent] = []
        generator.generate(request(glide), events_again.append)
    rows = sum(w.denoise_steps for w in glide.windows)
    assert [(e.stage, e.completed, e.total) for e in events if e.stage == "load"] == [
        ("load", 0, 1),
        ("load", 1, 1),
    ]
    assert [(e.completed, e.total) for e in events if e.stage == "denoise"] == [
        (i, rows) for i in range(1, rows + 1)
    ]
    latent_frames = latent_count(glide.frames)
    decoding = [(e.completed, e.total) for e in events if e.stage == "decode"]
    assert decoding == [(i, latent_frames) for i in range(latent_frames + 1)]  # decoded latent frame by frame
    assert events[-1].stage == "decode"
    assert "load" not in {e.stage for e in events_again}  # loaded once


def test_offload_on_the_cpu_makes_no_room_and_says_so(tiny_df: Path) -> None:
    """The out-of-memory ladder asks for offloading; on the CPU there is nowhere to move the weights, so the
    generator declines (and the ladder goes on to smaller windows instead of retrying the same thing)."""
    glide = film(shot("glide", 9)).shot("glide")
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
        first = generate(generator, glide)
        assert generator.enable_offload() is False
        second = generate(generator, glide)
        assert not generator.offloading
    assert first.info["offload"] == second.info["offload"] == "none"
    assert first.info["text_encoder"] == "cpu"
    assert np.array_equal(first.frames, second.frames)


@pytest.mark.gpu
def test_offload_can_be_switched_on_after_loading_on_a_gpu(tiny_df: Path) -> None:
    """render() switches offloading on when a shot runs out of GPU memory; frames must not change."""
    glide = film(shot("glide", 9)).shot("glide")
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), device="cuda", compile="false")) as generator:
        first = generate(generator, glide)
        assert generator.enable_offload() is True
        second = generate(generator, glide)
        assert generator.offloading
    assert second.info["offload"].startswith("group offloading")
    assert np.array_equal(first.frames, second.frames)


def test_same_seed_same_frames_other_seed_other_frames(tiny_df: Path) -> None:
    plan = film(shot("glide", 17), shot("dip", 8))
    other = film(shot("glide", 17), shot("dip", 8), seed=7)

    def run(plan: FilmPlan) -> list[np.ndarray]:
        with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
            glide = generate(generator, plan.shot("glide"))
            dip = generate(generator, plan.shot("dip"), tail=glide.frames[-5:])
        return [glide.frames, dip.frames]

    first, again, different = run(plan), run(plan), run(other)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a, b) for a, b in zip(first, different, strict=True))


# --- the diffusers 0.42.1 quirks, one guard test each ----------------------------------------------------------


def test_guard_causal_block_size_does_not_stick(tiny_df: Path, spy: Spy, tmp_path: Path) -> None:
    """Quirk 1: an async shot must leave no num_frame_per_block in the transformer's config.

    The generator passes causal_block_size on every call, so a later call overwrites it; what sticks is
    the state between calls: what anyone holding the pipeline, or saving it, would get.
    """
    sync = film(shot("still", 17)).shot("still")
    asynchronous = film(shot("wave", 21), **ASYNC).shot("wave")
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as fresh:
        expected = generate(fresh, sync).frames
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
        generate(generator, asynchronous)
        transformer = spy.calls[-1].pipeline.transformer
        assert transformer.config.num_frame_per_block == 1
        transformer.save_pretrained(tmp_path / "saved")
        after_async = generate(generator, sync)
    assert '"num_frame_per_block": 1' in (tmp_path / "saved" / "config.json").read_text()
    assert np.array_equal(after_async.frames, expected)


def test_guard_folder_saved_with_causal_blocks_is_reset(tmp_path: Path, spy: Spy) -> None:
    """Quirk 1 as found in the wild: a folder saved after the quirk struck loads with bidirectional attention."""
    folder = build_tiny_skyreels(tmp_path / "sticky", num_frame_per_block=2)
    with SkyReelsGenerator(GeneratorOptions(model=str(folder))) as generator:
        clip = generate(generator, film(shot("still", 17)).shot("still"))
    assert spy.calls[0].pipeline.transformer.config.num_frame_per_block == 1
    assert "num_frame_per_block 2" in clip.info["notes"][0]


def test_guard_async_attention_stays_bidirectional(sky: SkyReelsGenerator, spy: Spy) -> None:
    """Quirk 2: async mode must not build the block-causal mask the released models were not trained with."""
    masks: list[Any] = []

    def record_mask(module, args, kwargs):
        masks.append(args[4] if len(args) > 4 else kwargs.get("attention_mask"))

    plan = film(shot("wave", 37), **ASYNC)
    generate(sky, plan.shot("wave"))  # loads the model (if no test has yet), so its blocks can be hooked
    transformer = spy.calls[-1].pipeline.transformer
    hook = transformer.blocks[0].register_forward_pre_hook(record_mask, with_kwargs=True)
    try:
        clip = generate(sky, plan.shot("wave"))
    finally:
        hook.remove()
    assert clip.dit_passes == plan.shot("wave").dit_passes > 0
    assert len(masks) == clip.dit_passes and all(mask is None for mask in masks)
    assert transformer.config.num_frame_per_block == 1


def partial_block_plan() -> ShotPlan:
    """A fresh async shot of 5 latent frames with causal blocks of 2: plan_film never makes one."""
    valid = film(shot("wave", 21), **ASYNC).shot("wave")  # 6 latent frames
    settings = valid.settings
    windows = window_schedule(
        latent_frames=5,
        base_latent=latent_count(settings.base_num_frames),
        overlap_latent=latent_count(settings.overlap_history),
        first_prefix=0,
        steps=settings.steps,
        ar_step=settings.ar_step,
        causal_block_size=settings.causal_block_size,
    )
    passes = dit_passes(windows, settings.guidance_scale)
    return valid.model_copy(update={"frames": 17, "windows": windows, "dit_passes": passes})


def test_guard_window_of_partial_blocks_is_refused_before_running(sky: SkyReelsGenerator, spy: Spy) -> None:
    """Quirk 3: the pipeline would leave the 5th latent frame as pure noise; refuse before any step."""
    with pytest.raises(GenerationError, match=r"window 1 has 5 latent frames.*last 1 as noise"):
        generate(sky, partial_block_plan())
    assert spy.calls == []


def test_guard_what_ran_is_checked_against_the_plan(
    sky: SkyReelsGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quirk 3, second line of defence: the watched run shows the unscheduled frame even if the plan slipped by."""
    monkeypatch.setattr("storyreel.generators.skyreels.generator.check_runnable", lambda shot, family: None)
    with pytest.raises(
        GenerationError, match=r"scheduled 4 of its 5 latent frames; the rest were left as noise"
    ):
        generate(sky, partial_block_plan())


def test_guard_truncated_prefix_is_refused_before_running(sky: SkyReelsGenerator, spy: Spy) -> None:
    """Quirk 4: a 3-latent prefix with blocks of 2 would be cut to 2; an async image shot loses its image."""
    valid = film(shot("wave", 21), shot("swell", 16), **ASYNC).shot("swell")
    settings = valid.settings.model_copy(update={"overlap_history": 9})  # 3 latent frames
    windows = window_schedule(
        latent_frames=latent_count(9 + 16),
        base_latent=6,
        overlap_latent=3,
        first_prefix=3,
        steps=2,
        ar_step=1,
        causal_block_size=2,
    )
    truncated = valid.model_copy(update={"settings": settings, "windows": windows})
    with pytest.raises(GenerationError, match=r"conditioned on 3 latent frames.*cut the prefix to 2"):
        generate(sky, truncated, tail=random_frames(9))

    image_shot = film(shot("heron", 21, image="assets/heron_dawn.png")).shot("heron")
    asynchronous = image_shot.model_copy(
        update={"settings": image_shot.settings.model_copy(update={"ar_step": 1, "causal_block_size": 2})}
    )
    with pytest.raises(GenerationError, match="image latent would be re-denoised"):
        generate(sky, asynchronous, image=random_frames(1)[0])
    assert spy.calls == []


def test_guard_video_to_video_keeps_only_the_new_frames(sky: SkyReelsGenerator, spy: Spy) -> None:
    """Quirk 5: V2V generates the overlap again before the new frames (and would return the input video first)."""
    dip = film(shot("glide", 17), shot("dip", 12)).shot("dip")
    tail = random_frames(5, seed=3)
    clip = generate(sky, dip, tail=tail)
    call = spy.call("dip")
    decoded = decode_frames(call.pipeline, call.latents)
    assert decoded.shape[0] == 5 + 12  # the re-generated overlap, then the new frames
    assert clip.frames.shape == (12, 64, 64, 3)
    assert np.array_equal(clip.frames, decoded[-12:])
    kwargs = {**call.kwargs, "generator": torch.Generator("cpu").manual_seed(dip.seed)}
    stock = stock_frames(call.pipeline, kwargs, "a white swan on the lake, dip", "blurry", dip.seed)
    assert stock.shape[0] == 5 + 5 + 12  # what the pipeline itself returns: input, overlap, new frames
    assert np.array_equal(clip.frames, stock[-12:])


def test_guard_addnoise_condition_noise_is_seeded(sky: SkyReelsGenerator) -> None:
    """Quirk 6: the noise mixed into the clean prefix must follow the shot's seed, not the global RNG."""
    dip = film(shot("glide", 17), shot("dip", 8), addnoise_condition=200).shot("dip")
    tail = random_frames(5, seed=4)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = generate(sky, dip, tail=tail)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is left as it was
    torch.manual_seed(2)
    second = generate(sky, dip, tail=tail)
    assert np.array_equal(first.frames, second.frames)


def test_guard_one_video_per_call(tiny_df: Path, spy: Spy, tmp_path: Path) -> None:
    """Quirk 7: batch > 1 crashes the DF-1.3B configuration (inject_sample_info), so every call makes one video."""
    board = Storyboard.model_validate(small_board(**{k: v for k, v in TINY.items() if k != "resolution"}))
    render(board, tmp_path / "out", generator="skyreels", model=str(tiny_df), use_cache=False)
    assert len(spy.calls) == 4
    for call in spy.calls:
        assert call.pipeline.transformer.config.inject_sample_info
        assert call.kwargs["prompt_embeds"].shape[0] == 1 and call.kwargs["num_videos_per_prompt"] == 1


def test_quirk_batch_of_two_crashes_the_df_1_3b_configuration() -> None:
    """Why quirk 7 is guarded: the pinned diffusers still fails on two videos per prompt."""
    pipeline = diffusers.SkyReelsV2DiffusionForcingPipeline(**tiny_components("df"))
    pipeline.set_progress_bar_config(disable=True)
    with pytest.raises(RuntimeError, match="size of tensor"):
        pipeline(
            prompt="a swan", height=32, width=32, num_frames=9, num_inference_steps=1, num_videos_per_prompt=2
        )


def test_guard_shared_modules_keep_their_dtype(tiny_df: Path, spy: Spy) -> None:
    """Quirk 8: building the V2V pipeline from the T2V one must not cast the shared bf16 transformer to fp32."""
    plan = film(shot("glide", 9), shot("dip", 4), steps=1)
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), dtype="bfloat16")) as generator:
        glide = generate(generator, plan.shot("glide"))
        dip = generate(generator, plan.shot("dip"), tail=glide.frames[-5:])
    t2v, v2v = spy.calls[0].pipeline, spy.calls[1].pipeline
    assert type(t2v) is not type(v2v)
    assert t2v.transformer is v2v.transformer and t2v.vae is v2v.vae and t2v.text_encoder is v2v.text_encoder
    assert (dip.info["dtype"], dip.info["vae_dtype"]) == ("bfloat16", "float32")
    assert v2v.text_encoder.dtype == torch.bfloat16


def test_guard_image_shot_whose_last_window_is_short(sky: SkyReelsGenerator) -> None:
    """Quirk 9: DF image-to-video schedules a short last window as a full one and crashes."""
    heron = film(shot("heron", 25, image="assets/heron_dawn.png")).shot("heron")
    assert [w.latent_frames for w in heron.windows] == [5, 4]  # the last window is shorter than the base
    clip = generate(sky, heron, image=random_frames(1, seed=6)[0])
    assert (clip.frames.shape[0], clip.dit_passes) == (25, heron.dit_passes)
    assert clip.info["windows"] == [w.model_dump() for w in heron.windows]


def test_guard_modulation_is_held_per_frame(sky: SkyReelsGenerator, spy: Spy) -> None:
    """Quirk 10: the blocks get the timestep modulation once per latent frame, not repeated to every token."""
    plan = film(shot("glide", 25))  # windows of 5 and 4 latent frames, 16 tokens each
    glide = plan.shot("glide")
    generate(sky, glide)  # loads the model (if no test has yet), so its blocks can be hooked
    transformer = spy.calls[-1].pipeline.transformer
    shapes: list[tuple[int, ...]] = []
    hook = transformer.blocks[0].register_forward_pre_hook(lambda module, args: shapes.append(args[2].shape))
    try:
        clip = generate(sky, glide)
    finally:
        hook.remove()
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    expected = [(1, w.latent_frames, 1, 6, width) for w in glide.windows for _ in range(2 * w.denoise_steps)]
    assert [tuple(s) for s in shapes] == expected == [(1, 5, 1, 6, 24)] * 4 + [(1, 4, 1, 6, 24)] * 4
    # diffusers' own layout repeats it to all 16 tokens of each frame: (1, 6, frames * 16, width)
    assert clip.dit_passes == len(shapes)


@pytest.mark.parametrize("inject_sample_info", [True, False], ids=["df-1.3b", "df-14b"])
def test_guard_per_frame_modulation_changes_no_output(inject_sample_info: bool) -> None:
    """Quirk 10's replacement forward gives diffusers' output bit for bit, with and without diffusion forcing."""
    stock = tiny_components("df", inject_sample_info=inject_sample_info)["transformer"]
    patched = copy.deepcopy(stock)
    modulate_per_frame(patched)
    generator = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn(1, 16, 5, 8, 8, generator=generator)  # 5 latent frames of 4x4 tokens
    text = torch.randn(1, 512, 32, generator=generator)
    fps = [1] if inject_sample_info else None
    calls = {
        "diffusion forcing": {
            "timestep": torch.tensor([[0, 0, 333, 666, 999]]),
            "enable_diffusion_forcing": True,
        },
        "one timestep": {"timestep": torch.tensor([500]), "enable_diffusion_forcing": False},
    }
    for name, call in calls.items():
        inputs = {
            "hidden_states": latents,
            "encoder_hidden_states": text,
            "fps": fps,
            "return_dict": False,
            **call,
        }
        with torch.no_grad():
            assert torch.equal(patched(**inputs)[0], stock(**inputs)[0]), name


@pytest.mark.parametrize("mode", ["fresh", "continue", "image"])
def test_frames_are_those_the_pipeline_makes_itself(
    sky: SkyReelsGenerator, spy: Spy, tiny_df: Path, mode: str
) -> None:
    """Prompts encoded in advance, the per-frame modulation and decoding piece by piece change no frame: the
    generator's frames are, bit for bit, those the unpatched pipeline makes from the prompts as text."""
    plan = film(
        shot("glide", 37), shot("dip", 12), shot("heron", 17, image="assets/heron_dawn.png", transition="cut")
    )
    planned = plan.shot({"fresh": "glide", "continue": "dip", "image": "heron"}[mode])
    conditioning: dict[str, Any] = {
        "fresh": {},
        "continue": {"tail": random_frames(5, seed=8)},
        "image": {"image": random_frames(1, seed=9)[0]},
    }[mode]
    clip = generate(sky, planned, **conditioning)
    call = spy.call(planned.id)
    pipeline_class = type(call.pipeline)
    fresh_pipeline = pipeline_class.from_pretrained(tiny_df)  # without any of storyreel's changes
    fresh_pipeline.set_progress_bar_config(disable=True)
    kwargs = {**call.kwargs, "generator": torch.Generator("cpu").manual_seed(planned.seed)}
    stock = stock_frames(fresh_pipeline, kwargs, planned.prompt, "blurry", planned.seed)
    assert mode != "fresh" or len(planned.windows) == 3
    assert np.array_equal(clip.frames, stock[-planned.frames :])


def test_decoding_holds_one_piece_of_frames_at_a_time() -> None:
    """The pipelines decode a whole shot into one float32 video; decode_frames never holds more than a piece of
    it, and gives the same frames."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LargestTensor(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    self.largest = max(self.largest, tensor.numel())
            return out

    pipeline = diffusers.SkyReelsV2DiffusionForcingPipeline(**tiny_components("df"))
    latents = torch.randn(1, 16, 11, 8, 8, generator=torch.Generator("cpu").manual_seed(0))  # 41 frames
    done: list[tuple[int, int]] = []
    with LargestTensor() as watch, torch.no_grad():
        frames = decode_frames(pipeline, latents, lambda d, t: done.append((d, t)))
    video_values = 41 * 3 * 64 * 64  # the whole shot as one float video
    assert watch.largest <= video_values // 4
    assert done == [(i, 11) for i in range(1, 12)]

    with LargestTensor() as whole, torch.no_grad():
        video = pipeline.vae.decode(latents_for_vae(pipeline, latents), return_dict=False)[0]
    assert whole.largest >= video_values
    expected = to_uint8(pipeline.video_processor.postprocess_video(video, output_type="np")[0])
    assert np.array_equal(frames, expected)


def latents_for_vae(pipeline: Any, latents: torch.Tensor) -> torch.Tensor:
    """The pipelines' scaling of latents before their VAE decodes them."""
    config = pipeline.vae.config
    mean = torch.tensor(config.latents_mean).view(1, 16, 1, 1, 1)
    inverse_std = 1.0 / torch.tensor(config.latents_std).view(1, 16, 1, 1, 1)
    return latents / inverse_std + mean


def test_a_text_encoder_without_room_on_the_device_streams_through_it_and_encodes_the_same() -> None:
    """Where umT5 does not fit beside the transformer (or on the GPU at all), its layers pass through the device
    one at a time while it encodes: the same embeddings, to the bit. (The device here is the CPU: the hooks and
    the encoding path are the GPU's, without its copies.)"""
    pipeline = diffusers.SkyReelsV2DiffusionForcingPipeline(**tiny_components("df"))
    cpu, texts = torch.device("cpu"), ["a swan glides across the lake", "blurry, low quality"]
    whole = PromptEmbeddings(pipeline, cpu, 32, park=True, room=lambda device: None)
    assert whole.encode([*texts, "a heron"]) == 3
    assert (whole.placement, whole.streamed) == ("on cpu while encoding, on the CPU between", False)
    encoder_bytes = sum(p.numel() * p.element_size() for p in pipeline.text_encoder.parameters())
    streamed = PromptEmbeddings(pipeline, cpu, 32, park=True, room=lambda device: encoder_bytes)
    assert streamed.encode(texts) == 2
    assert streamed.streamed and streamed.placement.startswith("streamed through cpu layer by layer")
    assert hasattr(pipeline.text_encoder.shared, "_diffusers_hook")  # the group offloading hooks ran it
    for text in texts:
        assert torch.equal(streamed.embeddings[text], whole.embeddings[text])
    assert streamed.encode([texts[0], "a heron"]) == 1  # later texts stream the same way
    assert torch.equal(streamed.on_device("a heron"), whole.embeddings["a heron"])


def test_render_encodes_each_prompt_once_before_the_shots(
    write_story, tiny_df: Path, spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """render() hands the generator the prompts of the shots it will make (not those the cache holds); each
    distinct text is encoded once, before the first shot, and the pipelines never run the text encoder."""
    import transformers

    prepared: list[list[str]] = []
    encodes: list[int] = []  # pipeline calls made before each text encoder pass
    original_prepare = SkyReelsGenerator.prepare_prompts
    original_forward = transformers.UMT5EncoderModel.forward

    def prepare_prompts(generator, prompts, progress=ignore_progress):
        prepared.append([p.shot_id for p in prompts])
        return original_prepare(generator, prompts, progress)

    def forward(model, *args, **kwargs):
        encodes.append(len(spy.calls))
        return original_forward(model, *args, **kwargs)

    monkeypatch.setattr(SkyReelsGenerator, "prepare_prompts", prepare_prompts)
    monkeypatch.setattr(transformers.UMT5EncoderModel, "forward", forward)
    board = small_board(**{k: v for k, v in TINY.items() if k != "resolution"})
    story = write_story(board)
    cache = tmp_path / "cache"
    manifest = render(story, tmp_path / "out", generator="skyreels", model=str(tiny_df), cache_dir=cache)
    assert prepared == [["glide", "dip", "heron", "rise"]]
    negative = plan_film(Storyboard.model_validate(board)).shots[0].settings.negative_prompt
    texts = {entry.enhanced_prompt for entry in manifest.shots} | {negative}
    assert len(encodes) == len(texts) == 5 and set(encodes) == {0}  # all before the first pipeline call

    board["scenes"][1]["shots"][0]["prompt"] = "a grey heron in the reeds"  # only heron changes
    board["scenes"][0]["shots"][1]["prompt"] = "{{ swan }} dips its long neck"  # dip, and rise continuing it
    render(write_story(board), tmp_path / "out", generator="skyreels", model=str(tiny_df), cache_dir=cache)
    assert prepared[1] == ["dip", "heron", "rise"]


# --- other model folders: plain pipelines, the 14B configuration ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plain")
    return {kind: build_tiny_skyreels(root / kind, kind) for kind in ("t2v", "i2v")}


def test_plain_text_to_video_makes_single_window_fresh_shots(tiny_plain: dict[str, Path]) -> None:
    plan = film(shot("glide", 17), shot("dip", 8), shot("long", 33, transition="cut"))
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_plain["t2v"]))) as generator:
        clip = generate(generator, plan.shot("glide"))
        assert clip.info["pipeline"] == "SkyReelsV2Pipeline"
        assert (clip.frames.shape[0], clip.dit_passes) == (17, plan.shot("glide").dit_passes)
        with pytest.raises(
            UserError, match=r"shot 'dip' continues 'glide', but a plain SkyReels-V2 text-to-video"
        ):
            generate(generator, plan.shot("dip"), tail=clip.frames[-5:])
        with pytest.raises(UserError, match=r"shot 'long' needs 3 diffusion-forcing windows"):
            generate(generator, plan.shot("long"))


def test_plain_image_to_video_makes_image_shots(tiny_plain: dict[str, Path]) -> None:
    plan = film(shot("heron", 17, image="assets/heron_dawn.png"), shot("glide", 17, transition="cut"))
    image = random_frames(1, seed=5)[0]
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_plain["i2v"]))) as generator:
        clip = generate(generator, plan.shot("heron"), image=image)
        assert clip.info["pipeline"] == "SkyReelsV2ImageToVideoPipeline"
        assert (clip.frames.shape[0], clip.dit_passes) == (17, plan.shot("heron").dit_passes)
        with pytest.raises(
            UserError, match=r"shot 'glide' starts fresh, but a plain SkyReels-V2 image-to-video"
        ):
            generate(generator, plan.shot("glide"))


def test_df_14b_configuration(tmp_path: Path) -> None:
    """DF-14B has no fps embedding (inject_sample_info off); the same calls work."""
    folder = build_tiny_skyreels(tmp_path / "df14", inject_sample_info=False)
    plan = film(shot("glide", 17), shot("dip", 8))
    with SkyReelsGenerator(GeneratorOptions(model=str(folder))) as generator:
        glide = generate(generator, plan.shot("glide"))
        dip = generate(generator, plan.shot("dip"), tail=glide.frames[-5:])
    assert (dip.frames.shape[0], dip.dit_passes) == (8, plan.shot("dip").dit_passes)


# --- how the transformer runs: attention kernel, compilation, precision -----------------------------------------


def test_auto_attention_is_sdpa_on_the_cpu(tiny_df: Path) -> None:
    options = GeneratorOptions(model=str(tiny_df))  # attention auto, compile auto, precision bf16
    with SkyReelsGenerator(options) as generator:
        clip = generate(generator, film(shot("glide", 9)).shot("glide"))
    assert {k: clip.info[k] for k in ("attention", "compile", "precision", "dtype")} == {
        "attention": "sdpa",
        "compile": False,
        "precision": "float32",
        "dtype": "float32",
    }
    assert SkyReelsGenerator.identity(options) == "cpu/float32/sdpa/eager"


UNAVAILABLE = [
    pytest.param(
        "flash3", r"'flash3' needs FlashAttention-3 \(the flash_attn_3 package.* on a CUDA GPU", id="flash3"
    ),
    pytest.param(
        "sage", r"'sage' needs SageAttention 2 \(sageattention>=2\.1\.1.*not installed here", id="sage"
    ),
    pytest.param(
        "flash", r"'flash' needs flash-attn>=2\.6\.3 \(pip install flash-attn\) on a CUDA", id="flash"
    ),
    pytest.param(
        "cudnn", r"attention 'cudnn' runs on CUDA GPUs only, and this render runs on cpu", id="cudnn"
    ),
    pytest.param(
        "flash4", r"unknown attention kernel 'flash4'; use auto .* flash3, cudnn, flash, sdpa, sage", id="?"
    ),
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="which kernels are missing is this CPU machine's")
@pytest.mark.parametrize("kernel, message", UNAVAILABLE)
def test_unavailable_attention_kernel_is_refused_before_any_work(
    kernel: str, message: str, tiny_df: Path, spy: Spy
) -> None:
    """check_plan (which render() calls before enhancing prompts) and the constructor both refuse it."""
    options = GeneratorOptions(model=str(tiny_df), attention=kernel)
    plan = film(shot("glide", 9))
    with pytest.raises(UserError, match=message):
        SkyReelsGenerator.check_plan(plan.shots, options)
    with pytest.raises(UserError, match=message):
        SkyReelsGenerator(options)
    with pytest.raises(UserError, match=message):
        SkyReelsGenerator.identity(options)
    assert spy.loads == 0 and spy.calls == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_fp8_without_an_fp8_gpu_is_refused_before_any_work(tiny_df: Path, spy: Spy) -> None:
    options = GeneratorOptions(model=str(tiny_df), precision="fp8")
    message = r"precision fp8 needs a CUDA GPU with FP8 \(compute capability 8\.9 or newer.*runs on cpu; use precision: bf16"
    with pytest.raises(UserError, match=message):
        SkyReelsGenerator.check_plan(film(shot("glide", 9)).shots, options)
    with pytest.raises(UserError, match=message):
        SkyReelsGenerator(options)
    assert spy.loads == 0


def test_bad_runtime_settings_are_user_errors(tiny_df: Path) -> None:
    model = str(tiny_df)
    with pytest.raises(UserError, match=r"unknown compile setting 'sometimes'; use auto, true or false"):
        SkyReelsGenerator(GeneratorOptions(model=model, compile="sometimes"))
    with pytest.raises(UserError, match=r"unknown precision 'int4'; use bf16 or fp8"):
        SkyReelsGenerator(GeneratorOptions(model=model, precision="int4"))
    with pytest.raises(UserError, match=r"compile: true and offload do not go together"):
        SkyReelsGenerator(GeneratorOptions(model=model, compile="true", offload=True))


def test_cache_identity_names_kernel_compilation_and_precision(tiny_df: Path) -> None:
    """A shot made compiled, with another kernel or in FP8 is never taken for one made otherwise."""
    model = str(tiny_df)
    settings = ({}, {"compile": "false"}, {"compile": "true"}, {"dtype": "bfloat16"})
    identities = [SkyReelsGenerator.identity(GeneratorOptions(model=model, **s)) for s in settings]
    assert identities == [
        "cpu/float32/sdpa/eager",
        "cpu/float32/sdpa/eager",
        "cpu/float32/sdpa/compiled",
        "cpu/bfloat16/sdpa/eager",
    ]
    # What a GPU resolves to: every kernel, compiled or not, FP8 or not, is a different identity.
    runtimes = [
        Runtime("cuda", "bfloat16", KERNELS[kernel], compiled, fp8)
        for kernel in KERNELS
        for compiled in (False, True)
        for fp8 in (False, True)
    ]
    assert len({runtime.identity for runtime in runtimes}) == len(runtimes) == 20
    assert (
        Runtime("cuda", "bfloat16", KERNELS["flash3"], True, True).identity
        == "cuda/bfloat16+fp8/flash3/compiled"
    )


# inductor, imported when the blocks compile, imports a deprecated torch.jit name
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_blocks_give_eager_frames_and_compile_once(tiny_df: Path) -> None:
    """compile: true gives the eager frames within one 8-bit level on at most 0.1% of the pixels, shot by shot
    from the same conditioning, and every window length of every example film runs one compiled graph: no
    recompilation (a length marked dynamic; a static trace would recompile at the second length)."""
    torch._dynamo.reset()  # count from nothing, whatever compiled earlier in this process
    lengths: set[int] = set()
    graphs: list[int] = []
    with (
        SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), compile="false")) as eager,
        SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), compile="true")) as compiled,
    ):
        for example in EXAMPLES:
            plan = plan_film(tiny_board(example_board(example)), model=str(tiny_df))
            made: dict[str, np.ndarray] = {}
            for shot_id in plan.render_order:
                planned = plan.shot(shot_id)
                tail = None
                if planned.conditioned_on:
                    tail = made[planned.conditioned_on][-planned.settings.overlap_history :]
                image = load_start_image(planned.image, 64, 64) if planned.image else None
                if planned.keyframe:  # the keyframe stage would draw its start frame: a grey one stands in
                    image = np.full((64, 64, 3), 128, np.uint8)
                end = load_start_image(planned.end_image, 64, 64) if planned.end_image else None
                want = generate(eager, planned, tail=tail, image=image, end_image=end)
                got = generate(compiled, planned, tail=tail, image=image, end_image=end)
                made[shot_id] = want.frames
                levels = np.abs(got.frames.astype(np.int16) - want.frames.astype(np.int16))
                assert levels.max() <= 1 and (levels > 0).mean() <= 0.001, (example.name, shot_id)
                assert (got.info["compile"], want.info["compile"]) == (True, False)
                graphs.append(got.info["compiled_graphs"])
                lengths |= {w["latent_frames"] for w in got.info["windows"]}
    assert len(lengths) >= 3
    assert graphs[0] == 1 and sum(graphs[1:]) == 0, graphs


# --- errors a user can act on ----------------------------------------------------------------------------------


def test_missing_extra_is_reported_when_the_backend_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """render() loads the backend before enhancing: without torch, that is where MissingExtra must come from."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    )
    monkeypatch.delitem(sys.modules, "storyreel.generators.skyreels")
    with pytest.raises(
        MissingExtra, match=r"needs torch, which is not installed.*pip install 'storyreel\[skyreels\]'"
    ):
        load_backend(GENERATORS, "skyreels")


def test_missing_diffusers_at_construction(monkeypatch: pytest.MonkeyPatch, tiny_df: Path) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(MissingExtra, match=r"needs diffusers==0.42.1.*pip install 'storyreel\[skyreels\]'"):
        SkyReelsGenerator(GeneratorOptions(model=str(tiny_df)))


def test_model_folder_that_is_not_skyreels_is_refused(tmp_path: Path) -> None:
    wan = write_foreign_pipeline(tmp_path / "wan", "WanPipeline")
    with pytest.raises(UserError, match=r"is a WanPipeline folder, not a SkyReels-V2 pipeline"):
        SkyReelsGenerator(GeneratorOptions(model=str(wan)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no model_index.json"):
        SkyReelsGenerator(GeneratorOptions(model="empty", base_dir=tmp_path))


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty local Hugging Face cache for this test."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hub_id_not_in_the_cache_says_how_to_download(hub_cache: Path) -> None:
    model = "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"
    with pytest.raises(
        ModelNotFound, match=rf"not in the local Hugging Face cache.*hf download {model}.*huggingface-cli"
    ):
        SkyReelsGenerator(GeneratorOptions(model=model))
    assert not hub_cache.exists() or not any(hub_cache.rglob("*.safetensors"))  # nothing was downloaded
    with pytest.raises(ModelNotFound, match=r"model './nowhere': no such folder"):
        SkyReelsGenerator(GeneratorOptions(model="./nowhere"))


def test_hub_id_in_the_cache_loads_from_it(hub_cache: Path, tiny_df: Path) -> None:
    """A hub id resolves to its snapshot in the local cache, laid out as `hf download` leaves it."""
    import shutil

    commit = "0" * 40
    repo = hub_cache / "models--Skywork--SkyReels-V2-DF-1.3B-540P-Diffusers"
    shutil.copytree(tiny_df, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    glide = film(shot("glide", 9), model="Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers").shot("glide")
    with SkyReelsGenerator(GeneratorOptions(model="Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers")) as generator:
        assert generator.model is not None and generator.model.path == repo / "snapshots" / commit
        clip = generate(generator, glide)
    assert clip.frames.shape == (9, 64, 64, 3)


def test_missing_model_and_bad_options_are_user_errors(tiny_df: Path) -> None:
    with SkyReelsGenerator(GeneratorOptions()) as generator, pytest.raises(UserError, match="needs a model"):
        generator.generate(request(film(shot("glide", 9)).shot("glide")))
    with pytest.raises(UserError, match="unknown dtype 'float8'"):
        SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), dtype="float8"))
    with pytest.raises(UserError, match="unknown device 'banana'"):
        SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), device="banana"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="torch sees no CUDA GPU"):
            SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), device="cuda"))


def test_prompt_longer_than_the_text_window_is_refused(sky: SkyReelsGenerator, spy: Spy) -> None:
    glide = film(shot("glide", 9)).shot("glide")
    long_prompt = " ".join(["swan"] * 600)
    with pytest.raises(UserError, match=r"shot 'glide': its prompt is 601 tokens, more than the 512"):
        sky.generate(ShotRequest(shot=glide, prompt=long_prompt, negative_prompt=""))
    assert spy.calls == []


def test_a_shot_asking_for_another_model_is_refused(sky: SkyReelsGenerator) -> None:
    glide = film(shot("glide", 9), model="Skywork/other").shot("glide")
    with pytest.raises(UserError, match=r"shot 'glide' asks for model 'Skywork/other'"):
        sky.generate(request(glide))


# --- the benchmark script --------------------------------------------------------------------------------------


@pytest.fixture
def benchmark_script(monkeypatch: pytest.MonkeyPatch):
    """benchmarks/skyreels_dit.py imported as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("skyreels_dit", REPO / "benchmarks" / "skyreels_dit.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "skyreels_dit", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke_on_cpu(benchmark_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parts = ["--parts", "runtime", "shot", "settings"]
    assert benchmark_script.main(["--tiny", "--device", "cpu", "--out", str(tmp_path), *parts]) == 0
    (result,) = tmp_path.glob("skyreels_dit-tiny-cpu-*.json")
    document = json.loads(result.read_text())
    runtime = {row["config"]: row for row in document["runtime"]}
    assert list(runtime) == [
        "flash3/eager/bf16",
        "cudnn/eager/bf16",
        "flash/eager/bf16",
        "sdpa/eager/bf16",
        "sage/eager/bf16",
        "sdpa/eager/fp8",
    ]
    assert runtime["sdpa/eager/bf16"]["seconds_per_step"] > 0 and runtime["sdpa/eager/bf16"]["error"] is None
    assert runtime["sdpa/eager/bf16"]["graphs_timed"] == 0
    if not torch.cuda.is_available():
        assert runtime["flash3/eager/bf16"]["error"].startswith("not available: attention 'flash3' needs")
        assert "needs a CUDA GPU with FP8" in runtime["sdpa/eager/fp8"]["error"]
    assert document["auto_kernel"] == {"tiny": "sdpa"}
    (shot_row,) = document["shot"]
    assert (shot_row["frames"], shot_row["windows"], shot_row["attention"]) == (25, 2, "sdpa")
    assert shot_row["seconds_per_video_second"] > 0 and shot_row["error"] is None
    assert [row["settings"] for row in document["settings"]] == [
        "diffusers defaults",
        "diffusers async",
        "storyreel",
        "storyreel async",
    ]
    assert [row["causal_mask"] for row in document["settings"]] == [False, True, False, False]
    assert all(row["seconds_per_step"] > 0 and row["tflop_per_step"] > 0 for row in document["settings"])
    out = capsys.readouterr().out
    assert "s per s of video" in out and "storyreel async" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_benchmark_refuses_without_cuda(benchmark_script, capsys: pytest.CaptureFixture[str]) -> None:
    assert benchmark_script.main([]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err


# --- on a real GPU ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("offload", [False, True], ids=["resident", "offload"])
def test_gpu_bf16_render(tiny_df: Path, offload: bool) -> None:
    plan = film(shot("glide", 37), shot("dip", 24))
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df), offload=offload)) as generator:
        glide = generate(generator, plan.shot("glide"))
        dip = generate(generator, plan.shot("dip"), tail=glide.frames[-5:])
    assert (dip.info["device"], dip.info["dtype"], dip.info["vae_dtype"]) == ("cuda", "bfloat16", "float32")
    assert dip.dit_passes == plan.shot("dip").dit_passes
    assert dip.info["offload"].startswith("group offloading") == offload
    assert dip.info["compile"] is not offload  # compile auto: on for CUDA, off when offloading


@pytest.fixture(scope="module")
def tiny_df16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DF folder whose linear layers are all multiples of 16 wide (FP8, and most attention kernels)."""
    return build_tiny_skyreels(tmp_path_factory.mktemp("tiny16") / "df", attention_head_dim=16)


@pytest.mark.gpu
def test_gpu_prompts_leave_the_gpu_and_frames_stay(tiny_df16: Path, spy: Spy, tmp_path: Path) -> None:
    board = Storyboard.model_validate(small_board(**{k: v for k, v in TINY.items() if k != "resolution"}))
    options = GeneratorOptions(model=str(tiny_df16), compile="false")
    with SkyReelsGenerator(options) as generator:
        manifest = render(board, tmp_path / "out", generator=generator, model=str(tiny_df16), use_cache=False)
        text_encoder = spy.calls[0].pipeline.text_encoder
        assert next(text_encoder.parameters()).device.type == "cpu"
    assert len(manifest.shots) == 4 and all(
        entry.generator_info["compile"] is False for entry in manifest.shots
    )


@pytest.mark.gpu
def test_gpu_a_text_encoder_without_room_streams_through_the_gpu_and_frames_stay(
    tiny_df16: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text encoder comes to the GPU whole to encode where it fits, streamed layer by layer where it does
    not (here: told the GPU has no room); the shot is the same."""
    from storyreel.generators.skyreels import prompts

    glide = film(shot("glide", 25)).shot("glide")
    options = GeneratorOptions(model=str(tiny_df16), compile="false")
    with SkyReelsGenerator(options) as generator:
        whole = generate(generator, glide)
    monkeypatch.setattr(prompts, "device_room", lambda device: 0)
    with SkyReelsGenerator(options) as generator:
        streamed = generate(generator, glide)
        again = generate(generator, glide)  # the hooks stay; nothing is moved twice
    assert whole.info["text_encoder"] == "on cuda while encoding, on the CPU between"
    assert streamed.info["text_encoder"].startswith("streamed through cuda layer by layer")
    assert np.abs(whole.frames.astype(np.int16) - streamed.frames.astype(np.int16)).max() <= 1
    assert np.array_equal(streamed.frames, again.frames)


@pytest.mark.gpu
def test_gpu_every_installed_kernel_runs_and_auto_is_the_first(tiny_df16: Path) -> None:
    from storyreel.generators.skyreels.attention import AUTO_ORDER, choose_kernel

    glide = film(shot("glide", 25)).shot("glide")
    device = torch.device("cuda")
    frames: dict[str, np.ndarray] = {}
    for name in KERNELS:
        try:
            choose_kernel(torch, name, device, 16)
        except UserError as exc:
            print(f"{name}: {exc}")
            continue
        options = GeneratorOptions(model=str(tiny_df16), attention=name, compile="false")
        with SkyReelsGenerator(options) as generator:
            clip = generate(generator, glide)
        assert clip.info["attention"] == name
        frames[name] = clip.frames.astype(np.int16)
    assert "sdpa" in frames
    auto = SkyReelsGenerator(GeneratorOptions(model=str(tiny_df16))).runtime.attention
    assert auto == next(name for name in AUTO_ORDER if name in frames)
    for name, got in frames.items():  # bf16 kernels agree with sdpa up to rounding; sage is lossy
        if KERNELS[name].exact:
            assert np.abs(got - frames["sdpa"]).mean() < 2.0, name


@pytest.mark.gpu
def test_gpu_compiled_blocks_compile_once(tiny_df16: Path) -> None:
    torch._dynamo.reset()
    plan = film(shot("glide", 37), shot("dip", 24), shot("lift", 12))
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df16))) as generator:  # compile auto: on for CUDA
        glide = generate(generator, plan.shot("glide"))
        dip = generate(generator, plan.shot("dip"), tail=glide.frames[-5:])
        lift = generate(generator, plan.shot("lift"), tail=dip.frames[-5:])
    assert [c.info["compile"] for c in (glide, dip, lift)] == [True] * 3
    assert (
        glide.info["compiled_graphs"] >= 1
        and dip.info["compiled_graphs"] == lift.info["compiled_graphs"] == 0
    )


@pytest.mark.gpu
def test_gpu_fp8(tiny_df16: Path) -> None:
    if torch.cuda.get_device_capability() < (8, 9) or importlib.util.find_spec("torchao") is None:
        pytest.skip("FP8 needs compute capability 8.9 and torchao")
    glide = film(shot("glide", 25)).shot("glide")
    with SkyReelsGenerator(
        GeneratorOptions(model=str(tiny_df16), precision="fp8", compile="false")
    ) as generator:
        clip = generate(generator, glide)
    assert clip.info["precision"] == "fp8"
    assert any(note.startswith("fp8: ") and not note.startswith("fp8: 0 ") for note in clip.info["notes"])
    assert clip.frames.shape == (25, 64, 64, 3)
    with pytest.raises(UserError, match="fp8 and offload do not go together"):
        SkyReelsGenerator(GeneratorOptions(model=str(tiny_df16), precision="fp8", offload=True))


@pytest.mark.gpu
def test_gpu_fp8_weights_come_to_the_gpu_a_block_at_a_time(tmp_path: Path) -> None:
    """DF-14B's 28 GB of bf16 weights do not fit the 24 GB GPU its 14 GB of float8 weights do: loading in FP8
    never holds the whole transformer in bf16 on the GPU."""
    if torch.cuda.get_device_capability() < (8, 9) or importlib.util.find_spec("torchao") is None:
        pytest.skip("FP8 needs compute capability 8.9 and torchao")
    # eight blocks holding 97% of the weights (20 MB in bf16), their linear layers multiples of 16 wide
    folder = build_tiny_skyreels(tmp_path / "df", attention_head_dim=64, ffn_dim=4096, num_layers=8)
    transformer = diffusers.SkyReelsV2Transformer3DModel.from_pretrained(folder / "transformer")
    bf16_bytes = sum(p.numel() for p in transformer.parameters()) * 2
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    options = GeneratorOptions(model=str(folder), precision="fp8", compile="false")
    with SkyReelsGenerator(options) as generator:
        generator.prepare_prompts([PromptRequest("glide", "a swan glides", "")])  # loads, encodes
        torch.cuda.synchronize()
        loading = torch.cuda.max_memory_allocated() - before
        held = torch.cuda.memory_allocated() - before
        clip = generate(generator, film(shot("glide", 17)).shot("glide"))
    assert held < 0.7 * bf16_bytes, (held, bf16_bytes)  # float8 blocks: a little over half
    # at most the float8 blocks, one block in bf16 and its quantisation's scratch; moved whole, all of it in bf16
    assert loading < 0.85 * bf16_bytes, (loading, bf16_bytes)
    assert clip.info["precision"] == "fp8" and clip.frames.shape == (17, 64, 64, 3)


@pytest.mark.gpu
def test_gpu_decoding_piece_by_piece_needs_less_memory() -> None:
    pipeline = diffusers.SkyReelsV2DiffusionForcingPipeline(**tiny_components("df")).to("cuda")
    latents = torch.randn(
        1, 16, 41, 32, 32, generator=torch.Generator("cpu").manual_seed(0)
    ).cuda()  # 161 frames

    def peak(decode) -> tuple[int, Any]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.no_grad():
            out = decode()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, out

    pieces, frames = peak(lambda: decode_frames(pipeline, latents))
    whole, video = peak(lambda: pipeline.vae.decode(latents_for_vae(pipeline, latents), return_dict=False)[0])
    assert pieces < whole / 4, (pieces, whole)
    expected = to_uint8(pipeline.video_processor.postprocess_video(video, output_type="np")[0])
    assert np.abs(frames.astype(np.int16) - expected.astype(np.int16)).max() <= 1


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.61 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000 bytes"),
    ],
    ids=["torch", "allocator"],
)
def test_the_device_running_out_of_memory_is_reported_through_the_contract(
    tiny_df: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """The core never sees torch's errors: a shot that does not fit is storyreel's OutOfMemory, which render()
    answers with its degrade ladder; any other failure stays a failure."""
    from storyreel.errors import OutOfMemory

    glide = film(shot("glide", 9)).shot("glide")

    @functools.wraps(diffusers.SkyReelsV2DiffusionForcingPipeline.__call__)  # keeps its signature
    def fails(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(diffusers.SkyReelsV2DiffusionForcingPipeline, "__call__", fails)
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
        with pytest.raises(OutOfMemory, match="shot 'glide' ran out of cpu memory") as raised:
            generator.generate(request(glide))
    assert raised.value.__cause__ is error


def test_another_failure_is_not_taken_for_running_out_of_memory(
    tiny_df: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    glide = film(shot("glide", 9)).shot("glide")

    @functools.wraps(diffusers.SkyReelsV2DiffusionForcingPipeline.__call__)  # keeps its signature
    def fails(self, *args, **kwargs):
        raise RuntimeError("shapes cannot be multiplied (2x3 and 4x5)")

    monkeypatch.setattr(diffusers.SkyReelsV2DiffusionForcingPipeline, "__call__", fails)
    with SkyReelsGenerator(GeneratorOptions(model=str(tiny_df))) as generator:
        with pytest.raises(GenerationError, match="shapes cannot be multiplied"):
            run_generator(generator, request(glide), ignore_progress)
