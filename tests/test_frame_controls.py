"""A shot's frame controls: ``end_image`` (the shot ends on a picture) and ``video`` (the shot extends a clip).

Checked where a user would notice: the pictures and the clip's last frames as the SkyReels-V2 pipelines
receive them (tiny random-weight model, tests/tiny_skyreels.py), the end image's latent frame as the
transformer sees it on every pass (clean, at timestep 0, in the last window only), the plan's windows and
passes equal to what ran, exact frame counts, the clip's own frames kept out of the film, the cache key
following the clip's bytes, the animatic's preview of both, and a positioned error for every input that
cannot work.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.generate import load_start_image
from storyreel.plan import ShotPlan, plan_film
from storyreel.rendering import render
from storyreel.storyboard import load_storyboard
from storyreel.video import count_frames, ffmpeg_exe, read_frames, write_shot

from conftest import torch_threads

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
# The tiny model's scale (as in tests/test_skyreels.py): 5-latent windows, a 2-latent overlap, 2 steps.
TINY = {"resolution": "64x64", "fps": 16, "steps": 2, "base_num_frames": 17, "overlap_history": 5}


# --- files a storyboard names, made with the real tools ------------------------------------------------------------


def make_clip(path: Path, frames: int, size: str = "64x64", source: str = "testsrc") -> Path:
    """An H.264 clip from ffmpeg's own test pattern: moving, colourful, nothing a random model would make."""
    command = [ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i", f"{source}=size={size}:rate=16"]
    subprocess.run([*command, "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def make_pictures(folder: Path) -> None:
    """start.png (the example heron) and last.png (a red card with a white square), and take.mp4 (20 frames)."""
    from PIL import Image, ImageDraw

    (folder / "start.png").write_bytes((REPO / "examples/assets/heron_dawn.png").read_bytes())
    card = Image.new("RGB", (64, 64), (200, 30, 30))
    ImageDraw.Draw(card).rectangle((20, 20, 44, 44), fill=(250, 250, 250))
    card.save(folder / "last.png")
    make_clip(folder / "take.mp4", 20)


def write_board(folder: Path, shots: list[dict[str, Any]], **generation: Any) -> Path:
    story = {
        "storyreel": 1,
        "title": "Frame controls",
        "generation": {**TINY, **generation},
        "scenes": [{"id": "lake", "setting": "a lake at dawn", "shots": shots}],
    }
    path = folder / "story.yaml"
    path.write_text(yaml.safe_dump(story, sort_keys=False), encoding="utf-8")
    return path


def frames_of(path: Path, size: int = 64) -> np.ndarray:
    return np.stack(list(read_frames(path, size, size)))  # (frames, height, width, 3)


ENDING = {
    "id": "heron",
    "prompt": "a heron lands",
    "frames": 17,
    "image": "start.png",
    "end_image": "last.png",
}
EXTENDING = {
    "id": "more",
    "prompt": "the swan swims on",
    "frames": 8,
    "video": "take.mp4",
    "transition": "cut",
}
AFTER = {"id": "after", "prompt": "the swan turns", "frames": 8}
# A fresh shot (no start image) and a continuation, each ending on the end image.
FRESH_ENDING = {"id": "glide", "prompt": "a swan glides", "frames": 17, "end_image": "last.png"}
CONTINUING_ENDING = {"id": "turn", "prompt": "the swan turns", "frames": 8, "end_image": "last.png"}


def without_end_image(shot: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in shot.items() if key != "end_image"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_pictures(tmp_path)
    return tmp_path


# --- the plan -------------------------------------------------------------------------------------------------------


def test_plan_shows_the_held_end_frame_and_the_clip(folder: Path) -> None:
    plan = plan_film(load_storyboard(write_board(folder, [ENDING, EXTENDING, AFTER])))
    heron, more, after = plan.shots
    # 17 frames are 5 latent frames; the end image's one latent frame rides in the same window, held clean.
    assert (heron.mode, heron.frames, heron.end_image) == ("image", 17, str(folder / "last.png"))
    assert [w.model_dump() for w in heron.windows] == [
        {"latent_frames": 6, "prefix_latent_frames": 1, "denoise_steps": 2}
    ]
    assert heron.dit_passes == 2 * 2  # two rows, each with and without the prompt (guidance)
    # The clip extension is a continuation with no parent shot: 8 new frames after the clip's last 5.
    assert (more.mode, more.conditioned_on, more.video) == ("continue", None, str(folder / "take.mp4"))
    assert [w.model_dump() for w in more.windows] == [
        {"latent_frames": 4, "prefix_latent_frames": 2, "denoise_steps": 2}
    ]
    assert after.conditioned_on == "more"
    assert plan.film_frames == 17 + 8 + 8  # the clip's own 20 frames are not the film's

    result = CliRunner().invoke(app, ["plan", str(folder / "story.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    shots = yaml.safe_load(result.output)["shots"]
    assert [(s["end_image"], s["video"]) for s in shots] == [
        (str(folder / "last.png"), None),
        (None, str(folder / "take.mp4")),
        (None, None),
    ]


@pytest.mark.parametrize(
    "shots",
    [
        [FRESH_ENDING, CONTINUING_ENDING],  # text-to-video, then video-to-video
        [{**ENDING, "frames": 33}],  # image-to-video in 3 windows
        [{**EXTENDING, "end_image": "last.png"}],  # a clip's extension
        [{**FRESH_ENDING, "frames": 25, "generation": {"ar_step": 1}}],  # asynchronous, 2 windows
    ],
    ids=["fresh-and-continuing", "image-in-several-windows", "clip-extension", "asynchronous"],
)
def test_plan_holds_the_end_frame_in_the_last_window_of_any_shot(folder: Path, shots: list[dict]) -> None:
    """Whatever starts the shot, its last window carries the end image's one latent frame after its own; the
    other windows, the rows and the passes are those of the same shot without an end image."""
    ending = plan_film(load_storyboard(write_board(folder, shots)))
    plain = plan_film(load_storyboard(write_board(folder, [without_end_image(s) for s in shots])))
    for shot, same in zip(ending.shots, plain.shots, strict=True):
        assert (shot.frames, shot.dit_passes) == (same.frames, same.dit_passes)
        assert shot.end_image == str(folder / "last.png")
        last = same.windows[-1]
        assert shot.windows == [
            *same.windows[:-1],
            last.model_copy(update={"latent_frames": last.latent_frames + 1}),
        ]
    assert len(ending.shots[0].windows) == {17: 1, 33: 3, 8: 1, 25: 2}[shots[0]["frames"]]


# --- the SkyReels-V2 pipelines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_df(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from tiny_skyreels import build_tiny_skyreels

    return build_tiny_skyreels(tmp_path_factory.mktemp("tiny") / "df")


@pytest.fixture
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, one_thread: None) -> dict[str, Any]:
    """Every diffusion-forcing pipeline call (by shot), with its arguments, output latents and the clip made."""
    import diffusers

    from storyreel.generators.skyreels import SkyReelsGenerator

    record: dict[str, Any] = {"current": "", "calls": {}, "clips": {}, "passes": {}}

    def wrap(original):
        @functools.wraps(original)  # the generator reads max_sequence_length from the signature
        def call(pipeline, **kwargs):
            passes = record["passes"][record["current"]] = []  # this call's

            def seen(module, args, inputs):  # every transformer pass: the window's latents and timesteps
                passes.append((inputs["hidden_states"].clone(), inputs["timestep"].clone()))

            hook = pipeline.transformer.register_forward_pre_hook(seen, with_kwargs=True)
            try:
                output = original(pipeline, **kwargs)
            finally:
                hook.remove()
            record["calls"][record["current"]] = (pipeline, kwargs, output.frames)
            return output

        return call

    for name in (
        "SkyReelsV2DiffusionForcingPipeline",
        "SkyReelsV2DiffusionForcingImageToVideoPipeline",
        "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
    ):
        cls = getattr(diffusers, name)
        monkeypatch.setattr(cls, "__call__", wrap(cls.__call__))
    original_generate = SkyReelsGenerator.generate

    def generate(generator, request, progress=None):
        record["current"] = request.shot.id
        clip = (
            original_generate(generator, request)
            if progress is None
            else original_generate(generator, request, progress)
        )
        record["clips"][request.shot.id] = clip
        return clip

    monkeypatch.setattr(SkyReelsGenerator, "generate", generate)
    return record


def end_latent(pipeline: Any, picture: np.ndarray) -> torch.Tensor:
    """``picture`` encoded alone as the reference encodes its end image: diffusers' preprocessing, the VAE's
    mode, the latents' mean and scale. (1, channels, h, w)."""
    import torch
    from PIL import Image

    vae = pipeline.vae
    pixels = pipeline.video_processor.preprocess(Image.fromarray(picture), height=64, width=64).unsqueeze(2)
    with torch.no_grad():
        latent = vae.encode(pixels).latent_dist.mode()  # (1, channels, 1, h, w)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    scale = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    return ((latent - mean) * scale)[:, :, 0]


def assert_end_frame_held(shot: ShotPlan, passes: list, latents: torch.Tensor, end: torch.Tensor) -> None:
    """The transformer saw the end latent ``end`` (1, channels, h, w) after the last window's own frames, at
    timestep 0, on every pass of that window and of no other; the pipeline's latents end with it unchanged."""
    import torch

    per_row = 2  # guidance: each row runs the transformer with and without the prompt
    assert len(passes) == sum(w.denoise_steps for w in shot.windows) * per_row
    first_of_last = len(passes) - shot.windows[-1].denoise_steps * per_row
    window = 0
    for number, (hidden, timestep) in enumerate(passes):  # (1, channels, frames, h, w), (1, frames)
        if number < first_of_last:
            while number >= sum(w.denoise_steps for w in shot.windows[: window + 1]) * per_row:
                window += 1
            assert hidden.shape[2] == shot.windows[window].latent_frames  # its own frames only
        else:
            assert hidden.shape[2] == shot.windows[-1].latent_frames  # its own frames, then the held one
            assert torch.equal(hidden[:, :, -1], end), (hidden[:, :, -1] - end).abs().max()
            assert timestep[0, -1].item() == 0
            assert timestep[0, :-1].max().item() > 0  # while its own frames are being denoised
    assert torch.equal(latents[:, :, -1], end)


def test_image_shot_of_one_window_ends_as_diffusers_last_image_ends_it(
    folder: Path, tiny_df: Path, calls: dict[str, Any]
) -> None:
    """In one window, where diffusers' own ``last_image`` works, the held end frame gives exactly its frames."""
    import torch
    from PIL import Image

    from storyreel.generators.skyreels.decode import to_uint8

    story = write_board(folder, [ENDING])
    plan = plan_film(load_storyboard(story), model=str(tiny_df))
    manifest = render(story, folder / "out", generator="skyreels", model=str(tiny_df), use_cache=False)
    heron = plan.shot("heron")
    passes = list(calls["passes"]["heron"])  # the render's, not those of the calls below

    pipeline, kwargs, latents = calls["calls"]["heron"]
    assert type(pipeline).__name__ == "SkyReelsV2DiffusionForcingImageToVideoPipeline"
    assert np.array_equal(np.asarray(kwargs["image"]), load_start_image(folder / "start.png", 64, 64))
    assert "last_image" not in kwargs  # held by storyreel, not by diffusers
    assert kwargs["num_frames"] == 17 and (kwargs["ar_step"], kwargs["causal_block_size"]) == (0, 1)
    assert latents.shape[2] == 5 + 1  # the shot's 5 latent frames, then the held end frame
    clip = calls["clips"]["heron"]
    assert clip.info["windows"] == [w.model_dump() for w in heron.windows]  # what ran is the plan
    (entry,) = manifest.shots
    assert (entry.frames, entry.dit_passes) == (17, heron.dit_passes) == (17, 4)
    assert count_frames(folder / "out/shots/heron.mp4") == 17

    # diffusers' own last_image, which encodes the end image beside the start image, decoding itself (and
    # dropping the held frame too): the same latents and the same frames.
    end = Image.fromarray(load_start_image(folder / "last.png", 64, 64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(heron.seed)  # addnoise_condition's noise, as the generator seeds it
        seeded = {**kwargs, "last_image": end, "generator": torch.Generator("cpu").manual_seed(heron.seed)}
        own_latents = pipeline(**seeded).frames
        torch.manual_seed(heron.seed)
        seeded["generator"] = torch.Generator("cpu").manual_seed(heron.seed)
        own = pipeline(**{**seeded, "output_type": "np"}).frames[0]
    assert torch.equal(latents, own_latents)
    assert np.array_equal(clip.frames, to_uint8(np.asarray(own)))
    assert_end_frame_held(heron, passes, latents, own_latents[:, :, -1])


def test_fresh_and_continuing_shots_end_on_their_end_image(
    folder: Path, tiny_df: Path, calls: dict[str, Any]
) -> None:
    """A fresh shot (text-to-video, asynchronous, two windows) and its continuation (video-to-video) each hold
    the end image's latent frame in their last window; the fresh shot's first window is untouched by it."""
    fresh = {**FRESH_ENDING, "frames": 25, "generation": {"ar_step": 1}}
    story = write_board(folder, [fresh, CONTINUING_ENDING])
    plan = plan_film(load_storyboard(story), model=str(tiny_df))
    manifest = render(story, folder / "out", generator="skyreels", model=str(tiny_df), use_cache=False)
    end_picture = load_start_image(folder / "last.png", 64, 64)

    glide, turn = plan.shot("glide"), plan.shot("turn")
    assert [w.model_dump() for w in glide.windows] == [
        {"latent_frames": 5, "prefix_latent_frames": 0, "denoise_steps": 6},  # 2 steps + 4 blocks behind
        {"latent_frames": 4 + 1, "prefix_latent_frames": 2, "denoise_steps": 3},  # the held frame adds no row
    ]
    pipeline, kwargs, latents = calls["calls"]["glide"]
    assert type(pipeline).__name__ == "SkyReelsV2DiffusionForcingPipeline"
    assert not {"image", "last_image"} & set(kwargs)
    assert (kwargs["num_frames"], kwargs["ar_step"]) == (25, 1)
    assert_end_frame_held(glide, calls["passes"]["glide"], latents, end_latent(pipeline, end_picture))

    pipeline, kwargs, latents = calls["calls"]["turn"]
    assert type(pipeline).__name__ == "SkyReelsV2DiffusionForcingVideoToVideoPipeline"
    assert kwargs["num_frames"] == 5 + 8  # the overlap, then the new frames
    assert_end_frame_held(turn, calls["passes"]["turn"], latents, end_latent(pipeline, end_picture))

    for entry in manifest.shots:
        planned = plan.shot(entry.id)
        assert (entry.frames, entry.dit_passes) == (planned.frames, planned.dit_passes)
        assert calls["clips"][entry.id].info["windows"] == [w.model_dump() for w in planned.windows]
        assert count_frames(folder / f"out/shots/{entry.id}.mp4") == planned.frames

    # The same shot without the end image: the first window's 17 frames are the same, the last window's differ.
    held = calls["clips"]["glide"].frames
    plain = write_board(folder, [without_end_image(fresh)])
    render(plain, folder / "plain", generator="skyreels", model=str(tiny_df), use_cache=False)
    free = calls["clips"]["glide"].frames
    assert np.array_equal(held[:17], free[:17])
    assert not np.array_equal(held[17:], free[17:])


def test_clip_extension_continues_the_clip_and_leaves_it_out_of_the_film(
    folder: Path, tiny_df: Path, calls: dict[str, Any]
) -> None:
    import torch

    story = write_board(folder, [EXTENDING, AFTER])
    plan = plan_film(load_storyboard(story), model=str(tiny_df))
    manifest = render(story, folder / "out", generator="skyreels", model=str(tiny_df), use_cache=False)

    clip_frames = frames_of(folder / "take.mp4")  # (20, 64, 64, 3) as decoded
    pipeline, kwargs, _ = calls["calls"]["more"]
    assert type(pipeline).__name__ == "SkyReelsV2DiffusionForcingVideoToVideoPipeline"
    tail = torch.from_numpy(clip_frames[-5:]).permute(0, 3, 1, 2).float().div(255.0).unsqueeze(0)
    assert torch.equal(kwargs["video"], tail)  # the clip's last overlap_history frames, exactly as decoded
    assert kwargs["num_frames"] == 5 + 8  # video-to-video counts the overlap in
    # The next shot continues the extension's own footage, as any continuation does.
    made = calls["clips"]["more"].frames
    after_tail = torch.from_numpy(made[-5:]).permute(0, 3, 1, 2).float().div(255.0).unsqueeze(0)
    assert torch.equal(calls["calls"]["after"][1]["video"], after_tail)

    for entry in manifest.shots:
        planned = plan.shot(entry.id)
        assert (entry.frames, entry.dit_passes) == (planned.frames, planned.dit_passes)
        assert calls["clips"][entry.id].info["windows"] == [w.model_dump() for w in planned.windows]
    film = frames_of(folder / "out/film.mp4")
    assert len(film) == plan.film_frames == 16
    # None of the clip's own frames is repeated in the film.
    distance = np.abs(film[:, None].astype(int) - clip_frames[None].astype(int)).mean(axis=(2, 3, 4))
    assert distance.min() > 20, distance.min()


def test_quirk_end_image_in_several_windows_crashes(folder: Path, tiny_df: Path, one_thread: None) -> None:
    """Why storyreel holds the end frame itself (quirk 11): diffusers 0.42.1's ``last_image`` appends the end
    image's one latent frame to the last window but lengthens that window's schedule by the window's prefix
    (the overlap's 2 latent frames here), so the timesteps and the frames disagree and the call fails."""
    import diffusers
    from PIL import Image

    pipeline = diffusers.SkyReelsV2DiffusionForcingImageToVideoPipeline.from_pretrained(str(tiny_df))
    pipeline.set_progress_bar_config(disable=True)
    with pytest.raises(RuntimeError, match="must match the size"):
        pipeline(
            image=Image.open(folder / "start.png").convert("RGB").resize((64, 64)),
            last_image=Image.open(folder / "last.png"),
            prompt="a swan",
            num_frames=33,
            base_num_frames=17,
            overlap_history=5,
            height=64,
            width=64,
            num_inference_steps=2,
            output_type="latent",
        )


def test_image_shot_of_several_windows_ends_on_its_end_image(
    folder: Path, tiny_df: Path, calls: dict[str, Any]
) -> None:
    """The shot the quirk crashes on: held by storyreel, the end frame rides only the last of its 3 windows,
    and the earlier windows' frames are those of the same shot without an end image."""
    import torch

    long = {**ENDING, "frames": 33}
    story = write_board(folder, [long])
    plan = plan_film(load_storyboard(story), model=str(tiny_df))
    manifest = render(story, folder / "out", generator="skyreels", model=str(tiny_df), use_cache=False)
    heron = plan.shot("heron")
    assert [(w.latent_frames, w.prefix_latent_frames) for w in heron.windows] == [(5, 1), (5, 2), (3 + 1, 2)]

    pipeline, kwargs, latents = calls["calls"]["heron"]
    assert type(pipeline).__name__ == "SkyReelsV2DiffusionForcingImageToVideoPipeline"
    assert np.array_equal(np.asarray(kwargs["image"]), load_start_image(folder / "start.png", 64, 64))
    assert "last_image" not in kwargs
    assert (kwargs["num_frames"], kwargs["base_num_frames"], kwargs["overlap_history"]) == (33, 17, 5)
    clip = calls["clips"]["heron"]
    assert clip.info["windows"] == [w.model_dump() for w in heron.windows]
    (entry,) = manifest.shots
    assert (entry.frames, entry.dit_passes) == (33, heron.dit_passes) == (33, 3 * 2 * 2)
    assert count_frames(folder / "out/shots/heron.mp4") == 33
    # The end image is encoded beside the start image in one batch, as diffusers' last_image encodes it: within
    # float rounding of the lone encoding.
    held = latents[:, :, -1]
    alone = end_latent(pipeline, load_start_image(folder / "last.png", 64, 64))
    assert torch.allclose(held, alone, atol=1e-5)
    assert_end_frame_held(heron, calls["passes"]["heron"], latents, held)

    # Without the end image: latent frames 0 to 7 (pixel frames 0 to 28) come from the first two windows and
    # the last window's overlap, and are the same but for rounding; the last window's new latent frame (frames
    # 29 to 32) differs.
    render(
        write_board(folder, [without_end_image(long)]),
        folder / "plain",
        generator="skyreels",
        model=str(tiny_df),
        use_cache=False,
    )
    free = calls["clips"]["heron"].frames
    # The start image shares its encoding batch with the end image (as in diffusers' last_image), which moves
    # its latent by float rounding: a level in a few values. The last window is another matter.
    before, after = np.abs(clip.frames.astype(int) - free)[:29], np.abs(clip.frames.astype(int) - free)[29:]
    assert before.max() <= 1 and (before > 0).mean() < 1e-4, (before.max(), (before > 0).mean())
    assert after.max() > 20


def test_guard_end_frame_is_held_only_in_the_code_it_was_written_for(
    folder: Path, tiny_df: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A diffusers whose schedule code is not 0.42.1's could use the wrapped methods otherwise: refused up front."""
    import diffusers

    cls = diffusers.SkyReelsV2DiffusionForcingPipeline
    original = cls.generate_timestep_matrix

    def generate_timestep_matrix(self, *args, **kwargs):  # another diffusers' code, as far as the guard sees
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "generate_timestep_matrix", generate_timestep_matrix)
    story = write_board(folder, [FRESH_ENDING])
    result = CliRunner().invoke(
        app, ["render", str(story), "--out", str(folder / "out"), "--model", str(tiny_df)]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "SkyReelsV2DiffusionForcingPipeline" in result.output
    assert "pip install diffusers==0.42.1" in result.output
    assert not (folder / "out/shots/glide.mp4").exists()


def test_plain_model_cannot_hold_an_end_frame(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A plain text-to-video model has one timestep for all frames: a frame held clean cannot be, so refused."""
    pytest.importorskip("diffusers")
    from tiny_skyreels import build_tiny_skyreels

    plain = build_tiny_skyreels(tmp_path_factory.mktemp("tiny") / "t2v", kind="t2v")
    story = write_board(folder, [FRESH_ENDING])
    result = CliRunner().invoke(
        app, ["render", str(story), "--out", str(folder / "out"), "--model", str(plain)]
    )
    assert result.exit_code == 1, result.output
    assert (
        "shot 'glide' ends on an end image, which storyreel runs only with a diffusion-forcing"
        in result.output
    )


# --- the cache and the animatic ------------------------------------------------------------------------------------


def test_the_clip_and_end_image_bytes_are_in_the_cache_key(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storyreel.video

    glide = {**FRESH_ENDING, "transition": "cut"}  # a fresh shot ending on the same end image
    story = write_board(folder, [ENDING, EXTENDING, AFTER, glide])
    decoded: list[Path] = []  # every video decoded frame by frame, in order
    read_frames = storyreel.video.read_frames

    def reading(path, *args, **kwargs):
        decoded.append(Path(path))
        return read_frames(path, *args, **kwargs)

    monkeypatch.setattr(storyreel.video, "read_frames", reading)
    render(story, folder / "out")
    assert folder / "take.mp4" in decoded  # the extension is made from the clip's last frames
    decoded.clear()
    again = render(story, folder / "out")
    assert [e.cached for e in again.shots] == [True, True, True, True]
    assert folder / "take.mp4" not in decoded  # a cached extension does not decode its clip

    make_clip(folder / "take.mp4", 20, source="testsrc2")  # another clip at the same path
    changed = render(story, folder / "out")
    assert {e.id: e.cached for e in changed.shots} == {
        "heron": True,
        "more": False,
        "after": False,
        "glide": True,
    }

    (folder / "last.png").write_bytes((folder / "start.png").read_bytes())  # another end image
    ending = render(story, folder / "out")
    assert {e.id: e.cached for e in ending.shots} == {
        "heron": False,
        "more": True,
        "after": True,
        "glide": False,
    }


def test_animatic_ends_on_the_end_image_and_starts_from_the_clip(folder: Path) -> None:
    static = {"camera": {"move": "static"}}
    glide = {**FRESH_ENDING, "transition": "cut", **static}  # a fresh shot: no start image
    story = write_board(folder, [{**ENDING, **static}, {**EXTENDING, **static}, glide])
    manifest = render(story, folder / "out")
    assert [e.frames for e in manifest.shots] == [17, 8, 17]
    from storyreel.generators.animatic.slate import Letterbox

    box = Letterbox.for_frame(64, 64)
    end = load_start_image(folder / "last.png", 64, 64)

    def distance(frame: np.ndarray) -> float:
        return float(np.abs(box.picture(frame).astype(int) - box.picture(end).astype(int)).mean())

    # The last frame's picture is the end image; the first is still the start image, or the fresh shot's set.
    for shot_id in ("heron", "glide"):
        frames = frames_of(folder / f"out/shots/{shot_id}.mp4")
        assert distance(frames[-1]) < 12 and distance(frames[0]) > 40, shot_id
    more = frames_of(folder / "out/shots/more.mp4")
    clip_last = frames_of(folder / "take.mp4")[-1]
    assert np.abs(box.picture(more[0]).astype(int) - box.picture(clip_last).astype(int)).mean() < 12
    assert len(frames_of(folder / "out/film.mp4")) == 17 + 8 + 17


# --- bad input: a positioned error at validate time, before any model loads --------------------------------------


def shot_line(text: str, marker: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if marker in line)


BAD = {
    "end image missing": (
        "{id: a, prompt: a heron, frames: 17, image: start.png, end_image: gone.png}",
        "shots[0].end_image",
        ["file 'gone.png' not found"],
    ),
    "end image not an image": (
        "{id: a, prompt: a heron, frames: 17, image: start.png, end_image: notes.png}",
        "shots[0].end_image",
        ["'notes.png' is not a picture"],
    ),
    "clip missing": (
        "{id: a, prompt: a swan, frames: 8, video: gone.mp4}",
        "shots[0].video",
        ["file 'gone.mp4' not found"],
    ),
    "clip not a video": (
        "{id: a, prompt: a swan, frames: 8, video: notes.png}",
        "shots[0].video",
        ["'notes.png' is not a video"],
    ),
    "clip of sound only": (
        "{id: a, prompt: a swan, frames: 8, video: sound.m4a}",
        "shots[0].video",
        ["'sound.m4a' has no video stream"],
    ),
    "clip shorter than overlap_history": (
        "{id: a, prompt: a swan, frames: 8, video: short.mp4}",
        "shots[0].video",
        ["from its last 5 frames (overlap_history), but it has only 3", "set overlap_history to 1 or less"],
    ),
    "clip of another size": (
        "{id: a, prompt: a swan, frames: 8, video: wide.mp4}",
        "shots[0].video",
        ["is 96x64, but the film is 64x64", "scale=64:64"],
    ),
    "clip on a continuing shot": (
        "{id: b, prompt: a swan, frames: 8, video: take.mp4}",
        "shots[1].video",
        ["continues the previous footage, so it cannot also extend the clip", "transition: cut"],
    ),
    "clip and a start image": (
        "{id: a, prompt: a swan, frames: 8, video: take.mp4, image: start.png}",
        "shots[0].image",
        ["cannot also start from an image"],
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=lambda c: c.replace(" ", "-"))
def test_bad_frame_controls_are_positioned_errors(folder: Path, case: str) -> None:
    shot, field, fragments = BAD[case]
    (folder / "notes.png").write_text("not a picture at all\n")
    make_clip(folder / "short.mp4", 3)
    make_clip(folder / "wide.mp4", 20, size="96x64")
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            str(folder / "sound.m4a"),
        ],
        check=True,
    )
    first = shot if field.startswith("shots[0]") else "{id: a, prompt: a swan, frames: 17}"
    second = "" if field.startswith("shots[0]") else f"\n      - {shot}"
    text = (
        "storyreel: 1\n"
        "generation: {resolution: 64x64, fps: 16, steps: 2, base_num_frames: 17, overlap_history: 5}\n"
        "scenes:\n"
        "  - id: lake\n"
        "    shots:\n"
        f"      - {first}{second}\n"
    )
    story = folder / "story.yaml"
    story.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(story)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = shot_line(text, shot)
    assert f"story.yaml:{line}:" in result.output, result.output
    assert f"scenes[0].{field}" in result.output, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_a_clip_changed_after_the_plan_is_the_users_error(folder: Path) -> None:
    from storyreel.errors import UserError
    from storyreel.tails import clip_tail

    make_clip(folder / "short.mp4", 3)
    with pytest.raises(UserError, match="now decodes to 3 frames, fewer than the 5"):
        clip_tail(folder / "short.mp4", 64, 64, 5)
    write_shot(np.zeros((6, 64, 64, 3), np.uint8), folder / "black.mp4", 16)
    assert clip_tail(folder / "black.mp4", 64, 64, 5).shape == (5, 64, 64, 3)
