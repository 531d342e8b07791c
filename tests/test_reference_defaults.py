"""storyreel's defaults follow the SkyReels-V2 reference where it depends on the film's size or the model.

- a film of 720P's pixel count or more gets 121-frame windows by default (the 720P models' window), a
  smaller one 97;
- a plain image-to-video model folder gets guidance 5.0 and shift 3.0 by default, diffusion forcing
  keeps 6.0 and 8.0;
- the negative prompt is the reference's own, in Chinese, word for word;
- a film made by a model is at 24 or 16 fps, the only rates its fps conditioning knows (an animatic keeps
  any rate);
- no step caching: every transformer pass of a diffusion-forcing render runs every block;
- a value the storyboard writes always wins.

Checked through plan_film and `storyreel plan`, on model folders that hold only their model_index.json:
planning reads which pipeline a folder is and never loads it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.generate import Clip, GeneratorOptions, ProgressCallback, ShotRequest, ignore_progress
from storyreel.generators.animatic import AnimaticGenerator

from conftest import REPO, small_board

runner = CliRunner()
MODEL = "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"  # named, never loaded: planning does not need it


def board(shots: list[dict[str, Any]] | None = None, **generation: Any) -> dict[str, Any]:
    return {
        "storyreel": 1,
        "generation": generation,
        "scenes": [
            {
                "id": "lake",
                "shots": shots
                or [
                    {"id": "glide", "prompt": "a swan glides", "duration": "7s"},
                    {"id": "dip", "prompt": "the swan dips its head", "duration": "2s"},
                ],
            }
        ],
    }


def plan(story: dict[str, Any], base_dir: Path = REPO / "examples", **options: Any) -> storyreel.FilmPlan:
    return storyreel.plan_film(storyreel.Storyboard.model_validate(story).with_base_dir(base_dir), **options)


def model_folder(folder: Path, class_name: str) -> Path:
    """A diffusers folder as far as planning reads it: its model_index.json."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return folder


def image_shots() -> list[dict[str, Any]]:
    """Two image-to-video shots starting from assets/heron_dawn.png (in examples/, or copied beside a story)."""
    image = "assets/heron_dawn.png"
    return [
        {"id": "heron", "prompt": "a heron", "duration": "2s", "image": image},
        {"id": "still", "prompt": "a heron, still", "duration": "2s", "image": image, "transition": "cut"},
    ]


@pytest.fixture
def heron_beside_story(tmp_path: Path) -> None:
    """The start image, in the folder write_story writes storyboards to."""
    (tmp_path / "assets").mkdir()
    shutil.copy(REPO / "examples/assets/heron_dawn.png", tmp_path / "assets")


# --- the window: 121 frames at 720P -------------------------------------------------------------------------


def test_720p_films_see_121_frame_windows_by_default():
    film = plan(board(resolution="720P"))
    assert {shot.settings.base_num_frames for shot in film.shots} == {121}
    # 7 s at 24 fps: 169 frames, 43 latent frames: a first window of 31 latents, then the rest
    assert [w.latent_frames for w in film.shot("glide").windows] == [31, 17]
    assert film.notes[0] == (
        "base_num_frames is 121 by default at 1280x720, the window SkyReels-V2's 720P models see (films of fewer "
        "pixels than 1280x720 get 97); set base_num_frames to choose another"
    )


def test_540p_films_keep_97_frame_windows_and_say_nothing():
    film = plan(board(resolution="540P"))
    assert {shot.settings.base_num_frames for shot in film.shots} == {97}
    assert [w.latent_frames for w in film.shot("glide").windows] == [25, 23]
    assert not any("base_num_frames" in note for note in film.notes)


@pytest.mark.parametrize(
    ("resolution", "window"),
    [("1280x720", 121), ("720x1280", 121), ("1920x1088", 121), ("1280x704", 97), ("832x480", 97)],
)
def test_sizes_of_720ps_pixel_count_or_more_get_121(resolution: str, window: int):
    assert plan(board(resolution=resolution)).shot("glide").settings.base_num_frames == window


def test_a_window_the_storyboard_writes_wins(write_story):
    film = plan(board(resolution="720P", base_num_frames=97))
    assert {shot.settings.base_num_frames for shot in film.shots} == {97}
    assert not any("base_num_frames" in note for note in film.notes)
    story = board(resolution="720P")
    story["scenes"][0]["shots"][1]["generation"] = {"base_num_frames": 77}
    film = plan(story)
    assert (film.shot("glide").settings.base_num_frames, film.shot("dip").settings.base_num_frames) == (
        121,
        77,
    )


def test_plan_shows_the_720p_window(write_story):
    story = write_story(board(resolution="720P"))
    result = runner.invoke(app, ["plan", str(story), "--json"])
    assert result.exit_code == 0, result.output
    shots = json.loads(result.output)["shots"]
    assert [s["settings"]["base_num_frames"] for s in shots] == [121, 121]
    assert shots[0]["windows"][0]["latent_frames"] == 31
    table = runner.invoke(app, ["plan", str(story)])
    assert "note: base_num_frames is 121 by default at 1280x720" in " ".join(table.output.split())


def test_a_window_problem_names_the_720p_default(write_story):
    """Causal blocks of 5 do not divide the 720P window's 31 latent frames: the problem names the window the
    shot really has, and a window written for the film that fits is accepted."""
    story = write_story(
        board(
            [{"id": "glide", "prompt": "a swan", "duration": "7s"}],
            resolution="720P",
            ar_step=5,
            causal_block_size=5,
        )
    )
    result = runner.invoke(app, ["validate", str(story)])
    assert result.exit_code == 1
    assert (
        "shot 'glide': base_num_frames 121 is 31 latent frames, not a multiple of causal_block_size 5 (with the "
        "default base_num_frames: 121)"
    ) in " ".join(result.output.split())
    story = write_story(
        board(
            [{"id": "glide", "prompt": "a swan", "duration": "7s"}],
            resolution="720P",
            ar_step=5,
            causal_block_size=5,
            base_num_frames=117,
        )
    )
    assert runner.invoke(app, ["validate", str(story)]).exit_code == 0


# --- guidance and shift: a plain image-to-video model ----------------------------------------------------------


def test_a_plain_image_to_video_model_defaults_to_guidance_5_and_shift_3(tmp_path: Path):
    i2v = model_folder(tmp_path / "i2v", "SkyReelsV2ImageToVideoPipeline")
    film = plan(board(image_shots(), model=str(i2v)))
    assert {(s.settings.guidance_scale, s.settings.shift) for s in film.shots} == {(5.0, 3.0)}
    assert (
        f"model '{i2v}' is a plain image-to-video model: guidance_scale and shift default to 5.0 and 3.0, "
        "SkyReels-V2's values for such a model (6.0 and 8.0 are for diffusion forcing); a value the storyboard "
        "sets is used instead"
    ) in film.notes


def test_values_the_storyboard_writes_win_over_the_image_to_video_defaults(tmp_path: Path):
    i2v = model_folder(tmp_path / "i2v", "SkyReelsV2ImageToVideoPipeline")
    shots = image_shots()
    shots[1]["generation"] = {"shift": 5.0}
    film = plan(board(shots, model=str(i2v), guidance_scale=7.5))
    assert (film.shot("heron").settings.guidance_scale, film.shot("heron").settings.shift) == (7.5, 3.0)
    assert (film.shot("still").settings.guidance_scale, film.shot("still").settings.shift) == (7.5, 5.0)
    written = plan(board(image_shots(), model=str(i2v), guidance_scale=7.5, shift=4.0))
    assert {(s.settings.guidance_scale, s.settings.shift) for s in written.shots} == {(7.5, 4.0)}
    assert not any("plain image-to-video" in note for note in written.notes)  # no default was used


@pytest.mark.parametrize(
    "class_name",
    [
        "SkyReelsV2DiffusionForcingPipeline",
        "SkyReelsV2DiffusionForcingImageToVideoPipeline",
        "SkyReelsV2Pipeline",
    ],
)
def test_diffusion_forcing_and_text_to_video_image_shots_keep_6_and_8(tmp_path: Path, class_name: str):
    folder = model_folder(tmp_path / "model", class_name)
    film = plan(board(image_shots(), model=str(folder)))
    assert {(s.settings.guidance_scale, s.settings.shift) for s in film.shots} == {(6.0, 8.0)}
    assert not any("plain image-to-video" in note for note in film.notes)


def test_a_model_not_on_this_machine_keeps_the_diffusion_forcing_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    hub_id = "Skywork/SkyReels-V2-I2V-14B-540P-Diffusers"
    film = plan(board(image_shots(), model=hub_id))
    assert {(s.settings.guidance_scale, s.settings.shift) for s in film.shots} == {(6.0, 8.0)}
    assert any(
        note.startswith(f"model '{hub_id}' is not in the local Hugging Face cache") for note in film.notes
    )


def test_the_model_given_on_the_command_line_decides(write_story, heron_beside_story, tmp_path: Path):
    i2v = model_folder(tmp_path / "i2v", "SkyReelsV2ImageToVideoPipeline")
    story = write_story(board(image_shots()))
    result = runner.invoke(app, ["plan", str(story), "--json", "--model", str(i2v)])
    assert result.exit_code == 0, result.output
    shots = json.loads(result.output)["shots"]
    assert [(s["settings"]["guidance_scale"], s["settings"]["shift"]) for s in shots] == [(5.0, 3.0)] * 2
    without = json.loads(runner.invoke(app, ["plan", str(story), "--json"]).output)["shots"]
    assert [(s["settings"]["guidance_scale"], s["settings"]["shift"]) for s in without] == [(6.0, 8.0)] * 2


def test_a_relative_model_folder_is_found_beside_the_storyboard(write_story, heron_beside_story, tmp_path):
    model_folder(tmp_path / "models" / "i2v", "SkyReelsV2ImageToVideoPipeline")
    story = write_story(board(image_shots(), model="models/i2v"))
    film = storyreel.plan_film(storyreel.load_storyboard(story))
    assert (film.shot("heron").settings.guidance_scale, film.shot("heron").settings.shift) == (5.0, 3.0)


# --- the negative prompt -----------------------------------------------------------------------------------------

# The negative prompt SkyReels-V2's reference scripts give the model, as they write it.
REFERENCE_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
    "杂乱的背景，三条腿，背景人很多，倒着走"
)


class NegativePrompts(AnimaticGenerator):
    """The animatic, keeping the negative prompt each shot's request carries."""

    def __init__(self) -> None:
        super().__init__(GeneratorOptions())
        self.given: dict[str, str] = {}

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        self.given[request.shot.id] = request.negative_prompt
        return super().generate(request, progress)


def test_the_generator_is_given_the_references_own_negative_prompt(tmp_path: Path):
    generator = NegativePrompts()
    storyreel.render(
        storyreel.Storyboard.model_validate(small_board()), tmp_path / "out", generator=generator
    )
    assert generator.given == dict.fromkeys(["glide", "dip", "heron", "rise"], REFERENCE_NEGATIVE_PROMPT)


def test_a_negative_prompt_the_storyboard_writes_replaces_it(tmp_path: Path):
    generator = NegativePrompts()
    story = {**small_board(), "negative_prompt": "blurry, text"}
    storyreel.render(storyreel.Storyboard.model_validate(story), tmp_path / "out", generator=generator)
    assert set(generator.given.values()) == {"blurry, text"}


# --- the frame rate ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [24, 16])
def test_a_model_renders_at_24_or_16_fps(fps: int):
    film = plan(board(fps=fps, model=MODEL))
    assert film.fps == fps


@pytest.mark.parametrize("fps", [30, 25, 8])
def test_another_rate_with_a_model_is_refused_at_its_line_with_the_fix(write_story, fps: int):
    story = write_story(board(fps=fps, model=MODEL))
    result = runner.invoke(app, ["validate", str(story)])
    assert result.exit_code == 1
    line = next(
        n for n, text in enumerate(story.read_text().splitlines(), 1) if text.strip() == f"fps: {fps}"
    )
    column = story.read_text().splitlines()[line - 1].index(str(fps)) + 1
    assert (
        f"error: {story}:{line}:{column}: generation.fps: {fps} fps cannot be made with a SkyReels-V2 model "
        f"('{MODEL}'): its frame-rate conditioning tells only 16 fps from every other rate, which it was trained "
        f"on as 24 fps, so at {fps} fps the film's motion would play at the wrong speed; set fps: 24 (or 16); for "
        "a previs at this rate, render without a model (an animatic)"
    ) in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_model_given_on_the_command_line_is_held_to_it_too(write_story):
    story = write_story(board(fps=30))
    assert runner.invoke(app, ["plan", str(story)]).exit_code == 0  # the animatic draws any rate
    result = runner.invoke(app, ["plan", str(story), "--model", MODEL])
    assert result.exit_code == 1
    assert "generation.fps: 30 fps cannot be made with a SkyReels-V2 model" in " ".join(result.output.split())


def test_the_animatic_renders_at_any_rate(tmp_path: Path):
    manifest = storyreel.render(storyreel.Storyboard.model_validate(small_board(fps=8)), tmp_path / "out")
    assert manifest.film is not None and manifest.film.fps == 8


# --- no step caching ---------------------------------------------------------------------------------------------


def test_every_transformer_pass_runs_every_block(write_story, tmp_path: Path):
    """Step caches (TeaCache, FirstBlockCache...) skip transformer blocks on steps they judge alike; SkyReels-V2's
    authors say TeaCache does not work with its diffusion-forcing models, and storyreel enables none. A tiny
    diffusion-forcing render through the command line: blocks run = transformer passes x layers, and the
    transformer has no diffusers cache switched on."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("ftfy")
    from diffusers.models.transformers import transformer_skyreels_v2 as skyreels_v2
    from tiny_skyreels import build_tiny_skyreels

    model = build_tiny_skyreels(tmp_path / "tiny-df")
    layers = json.loads((model / "transformer" / "config.json").read_text())["num_layers"]
    blocks_run: list[int] = []
    caches_on: list[bool] = []

    def watch(module, args, output):  # type: ignore[no-untyped-def]
        # A global hook sees every module call, however the generator wraps or patches a forward.
        if isinstance(module, skyreels_v2.SkyReelsV2TransformerBlock):
            blocks_run.append(1)
        elif isinstance(module, skyreels_v2.SkyReelsV2Transformer3DModel):
            caches_on.append(module.is_cache_enabled)

    hook = torch.nn.modules.module.register_module_forward_hook(watch)
    story = write_story(small_board(fps=16, steps=3, base_num_frames=17, overlap_history=5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # oversubscribed OpenMP makes tiny calls many times slower on a small machine
    try:
        out = tmp_path / "out"
        result = runner.invoke(app, ["render", str(story), "--out", str(out), "--model", str(model)])
    finally:
        torch.set_num_threads(threads)
        hook.remove()
    assert result.exit_code == 0, result.output
    passes = sum(shot["dit_passes"] for shot in json.loads((out / "manifest.json").read_text())["shots"])
    assert passes == len(caches_on) > 0
    assert len(blocks_run) == passes * layers
    assert not any(caches_on)
