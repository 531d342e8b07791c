"""Assembly: shots written frame-exact, cut together with transitions, captions and music, read back with PyAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from storyreel.assemble import AudioBed, Cut, assemble_film
from storyreel.captions import CaptionBurner, caption_spans, srt_text, write_srt
from storyreel.errors import AssemblyError, UserError
from storyreel.video import count_frames, ffmpeg_exe, probe, read_frames, write_shot

W, H, FPS = 96, 64, 24
TOLERANCE = 6  # H.264 at CRF 16-18 keeps flat colours within a few levels


def solid(frames: int, value: int, width: int = W, height: int = H) -> np.ndarray:
    return np.full((frames, height, width, 3), value, np.uint8)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def centre(frames: np.ndarray) -> np.ndarray:
    """Mean value of each frame's top-middle patch (clear of burned-in captions)."""
    return frames[:, 4:20, W // 3 : 2 * W // 3].reshape(len(frames), -1).mean(axis=1)


def shots(tmp_path: Path, *specs: tuple[str, int, int]) -> dict[str, Path]:
    paths = {}
    for name, frames, value in specs:
        paths[name] = write_shot(solid(frames, value), tmp_path / f"{name}.mp4", FPS)
    return paths


def tone(path: Path, seconds: float, frequency: int = 440) -> Path:
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={frequency}:duration={seconds}",
            str(path),
        ],
        check=True,
    )
    return path


def audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        chunks = [
            frame.to_ndarray()[0].astype(np.float32) for frame in container.decode(audio=0)
        ]  # first channel
    return np.concatenate(chunks)


# --- shots --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [8, 24, 25, 30])
@pytest.mark.parametrize("frames", [1, 17, 96])
def test_shot_files_hold_exactly_the_frames_given(tmp_path: Path, fps: int, frames: int) -> None:
    rng = np.random.default_rng(frames)
    clip = rng.integers(0, 256, (frames, H, W, 3), dtype=np.uint8)
    path = write_shot(clip, tmp_path / "shot.mp4", fps)
    assert count_frames(path) == frames
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (W, H)
        assert stream.average_rate == fps
    assert len(decode(path)) == frames


def test_shot_file_is_faststart_and_written_atomically(tmp_path: Path) -> None:
    path = write_shot(solid(9, 128), tmp_path / "shots" / "a.mp4", FPS)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: the index comes first, browsers can stream
    assert [p.name for p in path.parent.iterdir()] == ["a.mp4"]  # no temporary left behind


def test_decoded_shot_is_close_to_the_frames_written(tmp_path: Path) -> None:
    gradient = np.broadcast_to(
        np.linspace(0, 255, W, dtype=np.uint8)[None, None, :, None], (5, H, W, 3)
    ).copy()
    path = write_shot(gradient, tmp_path / "g.mp4", FPS)
    assert np.abs(decode(path).astype(int) - gradient.astype(int)).mean() < 2.0
    frames = list(read_frames(path, W, H))
    assert len(frames) == 5 and frames[0].shape == (H, W, 3)


@pytest.mark.parametrize(
    "frames",
    [np.zeros((3, H, W), np.uint8), np.zeros((3, H, W, 3), np.float32), np.zeros((0, H, W, 3), np.uint8)],
    ids=["no-channels", "float", "empty"],
)
def test_write_shot_rejects_what_is_not_a_clip(tmp_path: Path, frames: np.ndarray) -> None:
    with pytest.raises(AssemblyError, match="expected \\(frames, height, width, 3\\) uint8"):
        write_shot(frames, tmp_path / "bad.mp4", FPS)
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="even width and height"):
        write_shot(solid(3, 0, width=95), tmp_path / "odd.mp4", FPS)


# --- transitions ---------------------------------------------------------------------------------------------


def test_cuts_follow_each_other_frame_for_frame(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 17, 40), ("b", 12, 200))
    cuts = [Cut("a", p["a"], 17, "cut", 0, 0), Cut("b", p["b"], 12, "continue", 0, 17)]
    film = assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H)
    assert (film.frames, film.has_audio, film.seconds) == (29, False, round(29 / FPS, 3))
    values = centre(decode(film.path))
    assert np.all(np.abs(values[:17] - 40) < TOLERANCE)
    assert np.all(np.abs(values[17:] - 200) < TOLERANCE)


def test_dissolve_overlaps_and_blends_with_rising_weights(tmp_path: Path) -> None:
    d = 4
    p = shots(tmp_path, ("a", 17, 200), ("b", 16, 40))
    cuts = [Cut("a", p["a"], 17, "cut", 0, 0), Cut("b", p["b"], 16, "dissolve", d, 17 - d)]
    film = assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H)
    assert film.frames == 17 + 16 - d
    values = centre(decode(film.path))
    expected = [200 * (1 - (k + 1) / (d + 1)) + 40 * (k + 1) / (d + 1) for k in range(d)]
    assert np.all(np.abs(values[13:17] - expected) < TOLERANCE)
    assert np.all(np.abs(values[:13] - 200) < TOLERANCE)
    assert np.all(np.abs(values[17:] - 40) < TOLERANCE)


def test_fade_goes_down_to_black_and_comes_back_up(tmp_path: Path) -> None:
    d = 3
    p = shots(tmp_path, ("a", 9, 180), ("b", 9, 180))
    cuts = [Cut("a", p["a"], 9, "fade", 2, 0), Cut("b", p["b"], 9, "fade", d, 9)]
    values = centre(decode(assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H).path))
    assert len(values) == 18  # a fade does not overlap the shots
    assert values[0] < values[1] < values[2] - TOLERANCE  # the first shot fades in
    down, up = values[6:9], values[9:12]
    assert np.all(np.diff(down) < 0) and np.all(np.diff(up) > 0)
    assert down[-1] < 180 / (d + 1) + TOLERANCE and up[0] < 180 / (d + 1) + TOLERANCE
    assert np.all(np.abs(values[12:] - 180) < TOLERANCE)


def test_a_shot_file_with_the_wrong_length_is_refused_by_name(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 9, 100), ("b", 7, 100))
    cuts = [Cut("a", p["a"], 9, "cut", 0, 0), Cut("b", p["b"], 8, "cut", 0, 9)]
    with pytest.raises(AssemblyError, match=r"b.mp4 has 7 frames but the plan gives shot 'b' 8.*--only b"):
        assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H)
    assert not (tmp_path / "film.mp4").exists()
    assert not [f for f in tmp_path.iterdir() if "partial" in f.name]


def test_a_missing_shot_file_is_refused(tmp_path: Path) -> None:
    cuts = [Cut("gone", tmp_path / "gone.mp4", 9, "cut", 0, 0)]
    with pytest.raises(AssemblyError, match="gone.mp4 is missing"):
        assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H)


def test_cuts_that_do_not_tile_the_timeline_are_refused(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 9, 100), ("b", 9, 100))
    cuts = [Cut("a", p["a"], 9, "cut", 0, 0), Cut("b", p["b"], 9, "cut", 0, 7)]
    with pytest.raises(AssemblyError, match="starts on film frame 7"):
        assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H)


# --- captions ------------------------------------------------------------------------------------------------


def test_caption_spans_hand_over_when_the_next_shot_starts() -> None:
    cuts = [
        Cut("a", Path("a"), 24, "cut", 0, 0, "Dawn."),
        Cut("b", Path("b"), 24, "dissolve", 6, 18, "The   heron\nwatches."),
        Cut("c", Path("c"), 24, "cut", 0, 42),
    ]
    spans = caption_spans(cuts)
    assert [(s.text, s.start, s.end) for s in spans] == [("Dawn.", 0, 18), ("The heron watches.", 18, 42)]
    assert srt_text(cuts, 24) == (
        "1\n00:00:00,000 --> 00:00:00,750\nDawn.\n\n2\n00:00:00,750 --> 00:00:01,750\nThe heron watches.\n"
    )


def test_srt_is_written_only_when_there_are_captions(tmp_path: Path) -> None:
    silent = [Cut("a", Path("a"), 24, "cut", 0, 0)]
    assert write_srt(silent, 24, tmp_path / "film.srt") is False
    assert not (tmp_path / "film.srt").exists()
    assert write_srt([Cut("a", Path("a"), 90, "cut", 0, 0, "Hello.")], 30, tmp_path / "film.srt")
    assert (tmp_path / "film.srt").read_text() == "1\n00:00:00,000 --> 00:00:03,000\nHello.\n"


def test_captions_are_burned_in_at_the_bottom_only_while_their_shot_is_on(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 9, 60), ("b", 9, 60))
    cuts = [Cut("a", p["a"], 9, "cut", 0, 0, "Dawn."), Cut("b", p["b"], 9, "cut", 0, 9)]
    frames = decode(assemble_film(cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H).path).astype(int)
    bottom_a, bottom_b = frames[:9, H // 2 :], frames[9:, H // 2 :]
    assert bottom_a.max() > 200  # white text
    assert np.abs(bottom_b - 60).max() < TOLERANCE  # untouched after the caption's shot
    assert np.abs(frames[:, :8] - 60).max() < TOLERANCE  # nothing at the top
    plain = decode(
        assemble_film(cuts, tmp_path / "plain.mp4", fps=FPS, width=W, height=H, burn_captions=False).path
    )
    assert np.abs(plain.astype(int) - 60).max() < TOLERANCE


def test_long_captions_wrap_to_three_lines_and_keep_their_beginning() -> None:
    burner = CaptionBurner(320, 180)
    lines = burner._wrap(" ".join(f"word{i}" for i in range(60)))
    assert len(lines) == 3 and lines[0].startswith("word0 ") and lines[2].endswith("…")
    frame = np.zeros((180, 320, 3), np.uint8)
    burned = burner.burn(frame, "A caption.")
    rows = np.nonzero(burned.max(axis=(1, 2)) > 0)[0]
    assert rows.min() > 120 and rows.max() < 180  # bottom band, clear of the edge
    above = CaptionBurner(320, 180, reserved_bottom=40).burn(frame, "A caption.")
    assert np.nonzero(above.max(axis=(1, 2)) > 0)[0].max() < 140  # lifted above a generator's overlay


# --- music ---------------------------------------------------------------------------------------------------


def test_music_is_trimmed_to_the_film_and_muxed_as_aac(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 24, 100))
    cuts = [Cut("a", p["a"], 24, "cut", 0, 0)]
    music = tone(tmp_path / "long.wav", 5.0)
    film = assemble_film(
        cuts, tmp_path / "film.mp4", fps=FPS, width=W, height=H, audio=AudioBed(music, 1.0, 0.0, 0.0)
    )
    assert film.has_audio and film.frames == 24
    with av.open(str(film.path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert len(audio_samples(film.path)) / 44100 == pytest.approx(1.0, abs=0.06)
    frames, seconds, has_audio = probe(film.path)
    assert (frames, has_audio) == (24, True) and seconds == pytest.approx(1.0, abs=0.06)


def test_short_music_loops_under_the_whole_film_at_its_volume(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 48, 100))
    cuts = [Cut("a", p["a"], 48, "cut", 0, 0)]
    music = tone(tmp_path / "short.wav", 0.5)
    loud = assemble_film(
        cuts, tmp_path / "loud.mp4", fps=FPS, width=W, height=H, audio=AudioBed(music, 1.0, 0, 0)
    )
    soft = assemble_film(
        cuts, tmp_path / "soft.mp4", fps=FPS, width=W, height=H, audio=AudioBed(music, 0.5, 0, 0)
    )
    loud_samples, soft_samples = audio_samples(loud.path), audio_samples(soft.path)
    assert len(loud_samples) / 44100 == pytest.approx(2.0, abs=0.06)
    second_half = slice(len(loud_samples) * 3 // 4 - 4410, len(loud_samples) * 3 // 4)
    assert np.sqrt(np.mean(loud_samples[second_half] ** 2)) > 0.05  # still sounding after the file ran out
    ratio = np.sqrt(np.mean(soft_samples[: 44100 // 2] ** 2) / np.mean(loud_samples[: 44100 // 2] ** 2))
    assert ratio == pytest.approx(0.5, abs=0.05)


def test_music_fades_in_and_out(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 48, 100))
    music = tone(tmp_path / "m.wav", 3.0)
    film = assemble_film(
        [Cut("a", p["a"], 48, "cut", 0, 0)],
        tmp_path / "film.mp4",
        fps=FPS,
        width=W,
        height=H,
        audio=AudioBed(music, 1.0, fade_in=0.5, fade_out=0.5),
    )
    samples = audio_samples(film.path)

    def rms(start: float, end: float) -> float:
        return float(np.sqrt(np.mean(samples[int(start * 44100) : int(end * 44100)] ** 2)))

    assert rms(0.0, 0.1) < rms(0.9, 1.1) / 3
    assert rms(1.9, 1.98) < rms(0.9, 1.1) / 3


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # moviepy's reader destructor
def test_an_unreadable_music_file_is_a_user_error_and_leaves_no_film(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 9, 100))
    bad = tmp_path / "score.mp3"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(UserError, match="score.mp3. is not audio ffmpeg can read"):
        assemble_film(
            [Cut("a", p["a"], 9, "cut", 0, 0)],
            tmp_path / "film.mp4",
            fps=FPS,
            width=W,
            height=H,
            audio=AudioBed(bad),
        )
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.mp4", "score.mp3"]


def test_progress_reaches_the_last_frame(tmp_path: Path) -> None:
    p = shots(tmp_path, ("a", 30, 100))
    seen: list[tuple[int, int]] = []
    assemble_film(
        [Cut("a", p["a"], 30, "cut", 0, 0)],
        tmp_path / "film.mp4",
        fps=FPS,
        width=W,
        height=H,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(24, 30), (30, 30)]
