"""Every file a storyboard names is opened when it is validated, as the render will open it: a broken
picture, music that is not audio or a template that does not parse is a positioned problem with its fix,
found before any shot is generated."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from imageio_ffmpeg import get_ffmpeg_exe
from PIL import Image
from typer.testing import CliRunner

from storyreel.cli import app

from conftest import REPO, small_board

runner = CliRunner()


def validate(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(path)])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def where(path: Path, token: str) -> str:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if token in line:
            return f"{path}:{number}:{line.index(token) + 1}"
    raise AssertionError(token)


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid greyscale PNG of ``width`` x ``height`` black pixels: ~100 kB on disk, ``width * height`` bytes
    once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row, body = zlib.compressobj(9), b"\0" * (width + 1), []
    body += [packer.compress(row) for _ in range(height)]
    body.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b"")
    )
    return path


def tone(path: Path, seconds: float = 1.0) -> Path:
    subprocess.run(
        [get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i", f"sine=duration={seconds}", str(path)],
        check=True,
    )
    return path


def with_image(tmp_path: Path, image: str) -> Path:
    board = small_board()
    board["scenes"][1]["shots"][0]["image"] = image
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False))
    return path


# --- pictures ---------------------------------------------------------------------------------------------------


def test_a_picture_that_is_not_a_picture_is_refused_where_it_is_named(tmp_path: Path) -> None:
    (tmp_path / "heron.png").write_text("a note, not a picture")
    story = with_image(tmp_path, "heron.png")
    code, output = validate(story)
    assert code == 1
    assert (
        f"error: {where(story, 'heron.png')}: scenes[1].shots[0].image: 'heron.png' is not a picture Pillow "
        "can read; use a PNG, JPEG or WebP picture"
    ) in output


def test_a_truncated_picture_is_refused(tmp_path: Path) -> None:
    whole = (REPO / "examples" / "assets" / "heron_dawn.png").read_bytes()
    (tmp_path / "heron.png").write_bytes(whole[: len(whole) // 2])
    code, output = validate(with_image(tmp_path, "heron.png"))
    assert code == 1
    assert "'heron.png' is a 960x544 PNG picture that does not decode: image file is truncated" in output
    assert "the file is damaged or truncated" in output


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    # 10000x10000 is over storyreel's limit but under twice Pillow's, where Pillow would only warn and then
    # decode 100 MB (300 MB as RGB). validate runs with 384 MiB of address space, enough to start and check
    # a storyboard: had the picture been decoded, it would have failed there with another message.
    png_bomb(tmp_path / "heron.png", 10_000, 10_000)
    story = with_image(tmp_path, "heron.png")
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (384 << 20, 384 << 20)); "
    result = subprocess.run(
        [sys.executable, "-c", limit + "from storyreel.cli import main; main()", "validate", str(story)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stderr
    assert (
        "'heron.png' is 10000x10000 pixels, more than the 67 megapixel limit; it was not decoded"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_character_reference_is_checked_like_a_start_image(tmp_path: Path) -> None:
    board = small_board()
    board["characters"]["swan"]["reference"] = "swan.jpg"
    (tmp_path / "swan.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    story = tmp_path / "story.yaml"
    story.write_text(yaml.safe_dump(board, sort_keys=False))
    code, output = validate(story)
    assert code == 1
    assert f"{where(story, 'swan.jpg')}: characters.swan.reference: 'swan.jpg' is not a picture" in output


def test_good_pictures_and_music_pass(tmp_path: Path) -> None:
    Image.new("RGB", (320, 192), "teal").save(tmp_path / "heron.png")
    story = with_image(tmp_path, "heron.png")
    tone(tmp_path / "score.m4a")
    story.write_text(story.read_text() + "audio: {music: score.m4a}\n")
    code, output = validate(story)
    assert code == 0, output


# --- music ------------------------------------------------------------------------------------------------------


def with_music(tmp_path: Path, music: str) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump({**small_board(), "audio": {"music": music}}, sort_keys=False))
    return path


def test_music_that_is_not_audio_is_refused_at_validate(tmp_path: Path) -> None:
    (tmp_path / "score.mp3").write_text("la la la")
    story = with_music(tmp_path, "score.mp3")
    code, output = validate(story)
    assert code == 1
    assert (
        f"{where(story, 'score.mp3')}: audio.music: 'score.mp3' is not audio ffmpeg can read "
        "(Error opening input files: Invalid data found when processing input); "
        "point audio.music at an audio file (mp3, wav, m4a, flac, ogg)"
    ) in output


def test_a_video_without_sound_is_not_music(tmp_path: Path) -> None:
    from storyreel.video import write_shot

    write_shot(np.zeros((8, 64, 64, 3), np.uint8), tmp_path / "clip.mp4", 8)
    code, output = validate(with_music(tmp_path, "clip.mp4"))
    assert code == 1 and "audio.music: 'clip.mp4' has no audio stream" in output


def test_render_refuses_bad_music_before_generating_any_shot(tmp_path: Path) -> None:
    (tmp_path / "score.mp3").write_bytes(b"\0" * 4096)
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(with_music(tmp_path, "score.mp3")), "--out", str(out)])
    assert result.exit_code == 1
    assert "'score.mp3' is not audio ffmpeg can read" in result.output
    assert "Traceback" not in result.output and not out.exists()


# --- enhancer templates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["system_template", "user_template"])
def test_an_enhancer_template_must_parse_as_jinja2(tmp_path: Path, field: str) -> None:
    (tmp_path / "prompt.j2").write_text(
        "Describe {{ shot.prompt }}.\n{% for c in film.characters %}\n{{ c }}\n"
    )
    path = tmp_path / "story.yaml"
    board = {**small_board(), "enhancer": {"backend": "vllm", field: "prompt.j2"}}
    path.write_text(yaml.safe_dump(board, sort_keys=False))
    code, output = validate(path)
    assert code == 1
    assert (
        f"{where(path, 'prompt.j2')}: enhancer.{field}: 'prompt.j2' line 3: Unexpected end of template. "
        "Jinja was looking for the following tags: 'endfor' or 'else'."
    ) in output
    assert "fix the template's Jinja2 syntax" in output


def test_a_template_that_is_a_folder_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    path = tmp_path / "story.yaml"
    board = {**small_board(), "enhancer": {"system_template": "prompts"}}
    path.write_text(yaml.safe_dump(board, sort_keys=False))
    code, output = validate(path)
    assert code == 1 and "enhancer.system_template: 'prompts' is a folder, not a file" in output


def test_an_enhancer_template_nested_past_what_python_compiles_is_refused_by_validate_and_enhance(
    tmp_path: Path,
) -> None:
    # It parses, but Python compiles at most 20 nested loops: only compiling it finds that out.
    loops = "".join(f"{{% for i{n} in [1] %}}\n" for n in range(21)) + "x\n" + "{% endfor %}\n" * 21
    (tmp_path / "prompt.j2").write_text(loops)
    path = tmp_path / "story.yaml"
    board = {**small_board(), "enhancer": {"backend": "vllm", "system_template": "prompt.j2"}}
    path.write_text(yaml.safe_dump(board, sort_keys=False))
    code, output = validate(path)
    assert code == 1
    assert (
        f"{where(path, 'prompt.j2')}: enhancer.system_template: 'prompt.j2' line 21: the template nests its tags "
        "or brackets too deeply to be read; nest fewer {% if %}/{% for %} blocks or brackets inside each other"
    ) in output
    enhanced = runner.invoke(app, ["enhance", str(path)])
    assert enhanced.exit_code == 1 and "'prompt.j2' line 21: the template nests" in enhanced.output


# --- paths that cannot name anything here -----------------------------------------------------------------------

NO_USER_FIX = "write the path in full, or relative to the storyboard's folder"


@pytest.mark.parametrize(
    ("setting", "field", "value"),
    [
        ({"image": "~nosuchuser/a.png"}, "scenes[0].shots[0].image", "~nosuchuser/a.png"),
        ({"generation": {"model": "~nosuch/x"}}, "scenes[0].shots[0].generation.model", "~nosuch/x"),
    ],
)
def test_a_home_folder_of_no_user_here_is_a_problem_at_its_field(
    tmp_path: Path, setting: dict, field: str, value: str
) -> None:
    board = small_board()
    board["scenes"][0]["shots"][0].update(setting)
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False))
    user = value[1:].split("/")[0]
    for extra in ([], ["--allow-outside"]):
        result = runner.invoke(app, ["validate", str(path), *extra])
        assert result.exit_code == 1, result.output
        assert (
            f"{where(path, value)}: {field}: '{value}' starts with ~{user}, but there is no user '{user}' on this "
            f"machine; {NO_USER_FIX}"
        ) in " ".join(result.output.split())


def test_a_model_path_longer_than_the_file_system_takes_is_a_problem_at_its_field(tmp_path: Path) -> None:
    board = {**small_board(), "generation": {"model": "a/" * 3000}}
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False, width=10**6))
    code, output = validate(path)
    assert code == 1
    assert (
        f"{where(path, 'a/a/')}: generation.model: '{'a/' * 30}... (6,000 characters)' is a path this machine "
        "cannot use: File name too long; give a shorter path"
    ) in output


def test_a_model_given_on_the_command_line_is_checked_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(small_board(), sort_keys=False))
    result = runner.invoke(app, ["plan", str(path), "--model", "~nosuch/x"])
    assert result.exit_code == 1
    assert (
        f"--model: '~nosuch/x' starts with ~nosuch, but there is no user 'nosuch' on this machine; {NO_USER_FIX}"
    ) in " ".join(result.output.split())
