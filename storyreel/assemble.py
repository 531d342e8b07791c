"""Stage 5 of a render: shots cut together into the film.

Every shot is written once, losslessly enough to look like the frames the generator made
(H.264, yuv420p, CRF 16), to ``shots/<id>.mp4``. The film is then composed frame by frame from
those files, in timeline order, streaming: at most one shot's transition frames are held in
memory, so a film of any length assembles in a few hundred megabytes.

Transitions act on film frames, so the frame counts in the manifest are the file's frame counts:

* ``cut`` and ``continue``: the next shot's first frame follows the previous shot's last one.
* ``dissolve`` over ``d`` frames: the shot starts ``d`` frames before the previous one ends and
  frame ``k`` of the overlap is ``previous * (1 - w) + this * w`` with ``w = (k + 1) / (d + 1)``,
  so neither shot is ever shown at full or zero weight inside the overlap.
* ``fade`` over ``d`` frames: the previous shot's last ``d`` frames go down to black and this
  shot's first ``d`` frames come up from it (weights ``(k + 1) / (d + 1)``); the film's first shot
  may fade in.

Captions are burned in at the bottom centre and written to ``film.srt``; a caption is shown from
its shot's first film frame until the next shot starts (during a dissolve, the incoming shot's
caption replaces the outgoing one). The music bed is trimmed or looped to the film's length, set
to its volume, faded in and out, encoded as AAC and muxed without touching the video.

Files are written under a temporary name and renamed, so a crash never leaves a half-written
file where a finished one is expected. moviepy (and the ffmpeg binary it ships with) is imported
only here, when a film is actually assembled.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .atomic import temporary_beside, write_text_atomic, writing
from .errors import AssemblyError, UserError

SHOT_CRF = 16  # near-transparent for generated footage; the shots are the masters a film is cut from
FILM_CRF = 18
# The same frames must give the same file, every time. x264's frame threads are deterministic; its
# lookahead thread is not: it decides frame types and macroblock-tree offsets from however many frames
# have come through the pipe when it runs, so at 960x544 one film came out as three different bitstreams
# (and decoded pictures) in six runs. `sync-lookahead=0` makes those decisions in step with the frames
# written and keeps the frame threads; a fixed thread count keeps the bytes from depending on how many
# cores the machine (or its container) has. `-threads 1` is deterministic too, but gives up every core
# but one: for that 395-frame 540P film on two busy cores it took 9.0 s against 5.7 s for these settings
# and 5.3 s for x264's own (benchmarks/film_encode.py; the gap grows with the cores).
X264_DETERMINISTIC = ("-threads", "8", "-x264-params", "sync-lookahead=0")
AUDIO_RATE = 44100
AUDIO_BITRATE = "192k"
CAPTION_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


@dataclass(frozen=True)
class Cut:
    """One shot as the editor sees it: its file and where it sits on the film's timeline."""

    shot_id: str
    path: Path
    frames: int
    transition: str  # how this shot is joined to the one before: cut | continue | dissolve | fade
    transition_frames: int  # frames a dissolve overlaps, or a fade lasts on each side
    film_start_frame: int
    caption: str | None = None

    @property
    def film_end_frame(self) -> int:
        """The film frame after this shot's last one."""
        return self.film_start_frame + self.frames


@dataclass(frozen=True)
class AudioBed:
    """The music under the film."""

    path: Path
    volume: float = 1.0
    fade_in: float = 0.0  # seconds
    fade_out: float = 1.0  # seconds


@dataclass(frozen=True)
class FilmFile:
    """What was written, read back from the file itself."""

    path: Path
    frames: int
    fps: int
    seconds: float
    width: int
    height: int
    has_audio: bool


@dataclass(frozen=True)
class CaptionSpan:
    """A caption on screen from film frame ``start`` up to, not including, ``end``."""

    text: str
    start: int
    end: int


FilmProgress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


# --- ffmpeg -----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary moviepy uses (the one bundled with imageio-ffmpeg unless configured otherwise)."""
    from moviepy.config import FFMPEG_BINARY

    return str(FFMPEG_BINARY)


def _run_ffmpeg(args: list[str], what: str, writing: Path | None = None) -> str:
    """Run ffmpeg to completion; return its log. When it fails writing ``writing`` for a reason of the
    machine's (a full disk, no permission), raise that as an OSError; else AssemblyError with the log's tail."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, text=True, errors="replace"
    )
    if result.returncode != 0:
        if writing is not None:
            _raise_os_reason(result.stderr, writing)
        raise AssemblyError(f"ffmpeg failed while {what}:\n{_tail(result.stderr)}")
    return result.stderr


def _tail(log: str, lines: int = 12) -> str:
    return "\n".join(log.strip().splitlines()[-lines:])


# What the operating system can answer a write with, as ffmpeg prints it (strerror's words).
_WRITE_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
)


def _raise_os_reason(log: str, path: Path) -> None:
    """Raise OSError naming ``path`` if ffmpeg's ``log`` says the operating system refused a write (a full
    disk shows as "No space left on device" somewhere above the encoder's statistics)."""
    for line in log.splitlines():
        for code in _WRITE_ERRNOS:
            if os.strerror(code) in line:
                raise OSError(code, os.strerror(code), str(path))


class VideoWriter:
    """RGB frames in, an H.264 yuv420p ``+faststart`` mp4 out, exactly one video frame per frame written.

    Frames are piped raw to ffmpeg; the file appears at ``path`` only when :meth:`close` succeeds.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int, crf: int = FILM_CRF):
        if width % 2 or height % 2:
            raise AssemblyError(
                f"{path.name}: H.264 yuv420p needs an even width and height, got {width}x{height}"
            )
        self.path, self.width, self.height = Path(path), width, height
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = temporary_beside(self.path)
        self.frames = 0
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                ffmpeg_exe(),
                "-hide_banner",
                "-nostdin",
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-s",
                f"{width}x{height}",
                "-framerate",
                str(fps),
                "-i",
                "-",
                "-an",
                "-c:v",
                "libx264",
                "-preset",
                "medium",
                "-crf",
                str(crf),
                *X264_DETERMINISTIC,
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
                str(self.partial),
            ],  # fmt: skip
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            self.abort()
            raise AssemblyError(
                f"{self.path.name}: frame {self.frames} is {frame.shape} {frame.dtype}, "
                f"expected ({self.height}, {self.width}, 3) uint8"
            )
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.close()  # raises with ffmpeg's own explanation
        self.frames += 1

    def close(self) -> Path:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        code = self.process.wait()
        self.log.seek(0)
        log = self.log.read().decode(errors="replace")
        self.log.close()
        if code != 0 or self.frames == 0:
            self.partial.unlink(missing_ok=True)
            if code != 0:
                _raise_os_reason(log, self.path)
            reason = _tail(log) if code != 0 else "no frames were written"
            raise AssemblyError(f"could not write {self.path}: {reason}")
        with writing(self.path):
            os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file (after an error elsewhere)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def read_frames(path: Path, width: int, height: int) -> Iterator[np.ndarray]:
    """Decode a video file to (height, width, 3) uint8 RGB frames, one at a time."""
    if not Path(path).is_file():
        raise AssemblyError(f"{path} is missing: render the shot again (storyreel render ... --only <shot>)")
    frame_bytes = width * height * 3
    process = subprocess.Popen(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        while True:
            data = process.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            yield np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    finally:
        process.stdout.close()
        if process.poll() is None:
            process.kill()
        process.wait()
        error = process.stderr.read().decode(errors="replace")
        process.stderr.close()
    if process.returncode not in (0, -9) and error.strip():
        raise AssemblyError(f"could not decode {path}:\n{_tail(error)}")


def probe(path: Path) -> tuple[int, float, bool]:
    """(video frames, container seconds, has an audio stream) of a media file; frames are counted, not estimated."""
    log = _run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], f"reading {path}")
    frames = re.findall(r"frame=\s*(\d+)", log)
    times = re.findall(r"Duration:\s*(\d+):(\d+):([\d.]+)", log)
    if not frames:
        raise AssemblyError(f"{path} has no video stream")
    hours, minutes, seconds = times[0] if times else ("0", "0", "0")
    has_audio = re.search(r"Stream #\d+:\d+.*: Audio:", log) is not None
    return int(frames[-1]), int(hours) * 3600 + int(minutes) * 60 + float(seconds), has_audio


def count_frames(path: Path) -> int:
    """The number of video frames in ``path``."""
    return probe(path)[0]


# --- shots ------------------------------------------------------------------------------------------------------


def write_shot(frames: np.ndarray, path: str | Path, fps: int) -> Path:
    """Write one shot's frames, (frames, height, width, 3) uint8, to an mp4 with exactly that many frames."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise AssemblyError(
            f"{Path(path).name}: expected (frames, height, width, 3) uint8, got {frames.shape} {frames.dtype}"
        )
    _, height, width, _ = frames.shape
    with VideoWriter(Path(path), width, height, fps, crf=SHOT_CRF) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


# --- captions ---------------------------------------------------------------------------------------------------


def caption_spans(cuts: Sequence[Cut]) -> list[CaptionSpan]:
    """When each caption is on screen: from its shot's first frame until the next shot starts.

    >>> cuts = [Cut("a", Path("a.mp4"), 10, "cut", 0, 0, "Dawn."), Cut("b", Path("b.mp4"), 10, "dissolve", 4, 6),
    ...         Cut("c", Path("c.mp4"), 8, "cut", 0, 16, "Noon.")]
    >>> caption_spans(cuts)
    [CaptionSpan(text='Dawn.', start=0, end=6), CaptionSpan(text='Noon.', start=16, end=24)]
    """
    spans = []
    for index, cut in enumerate(cuts):
        if not cut.caption or not cut.caption.strip():
            continue
        end = cuts[index + 1].film_start_frame if index + 1 < len(cuts) else cut.film_end_frame
        if end > cut.film_start_frame:
            spans.append(CaptionSpan(" ".join(cut.caption.split()), cut.film_start_frame, end))
    return spans


def _srt_time(frame: int, fps: int) -> str:
    milliseconds = round(frame * 1000 / fps)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, milliseconds = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{milliseconds:03d}"


def srt_text(cuts: Sequence[Cut], fps: int) -> str:
    """The SubRip document for the film's captions ("" when no shot has one).

    >>> print(srt_text([Cut("a", Path("a.mp4"), 48, "cut", 0, 0, "Dawn.")], fps=24), end="")
    1
    00:00:00,000 --> 00:00:02,000
    Dawn.
    """
    blocks = [
        f"{number}\n{_srt_time(span.start, fps)} --> {_srt_time(span.end, fps)}\n{span.text}\n"
        for number, span in enumerate(caption_spans(cuts), start=1)
    ]
    return "\n".join(blocks)


def write_srt(cuts: Sequence[Cut], fps: int, path: str | Path) -> bool:
    """Write ``film.srt``; return False (and write nothing) when no shot has a caption."""
    text = srt_text(cuts, fps)
    if not text:
        return False
    write_text_atomic(Path(path), text)
    return True


def _caption_font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    for candidate in CAPTION_FONTS:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size=size)


class CaptionBurner:
    """Draws a caption over the bottom of a frame: white text with a dark outline, wrapped to fit.

    Each caption is rasterised once into an alpha mask and then blended into every frame it covers.
    """

    def __init__(self, width: int, height: int, reserved_bottom: int = 0):
        self.width, self.height, self.reserved = width, height, reserved_bottom
        self.size = max(10, round(height * 0.05))
        self.font = _caption_font(self.size)
        self.cache: dict[str, tuple[int, int, np.ndarray, np.ndarray]] = {}

    def _wrap(self, text: str) -> list[str]:
        limit = self.width * 0.9
        lines: list[str] = []
        for word in text.split():
            if lines and self.font.getlength(f"{lines[-1]} {word}") <= limit:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        if len(lines) > 3:  # a caption is not a paragraph: three lines, then an ellipsis
            lines = lines[:3]
            while lines[2] and self.font.getlength(lines[2] + " …") > limit:
                lines[2] = lines[2].rsplit(" ", 1)[0] if " " in lines[2] else lines[2][:-1]
            lines[2] += " …"
        return lines

    def _raster(self, text: str) -> tuple[int, int, np.ndarray, np.ndarray]:
        from PIL import Image, ImageDraw

        if text not in self.cache:
            lines = "\n".join(self._wrap(text))
            stroke = max(1, self.size // 12)
            canvas = Image.new("L", (self.width, self.height))
            draw = ImageDraw.Draw(canvas)
            box = [
                round(v)
                for v in draw.multiline_textbbox(
                    (0, 0), lines, font=self.font, stroke_width=stroke, align="center"
                )
            ]
            text_w, text_h = box[2] - box[0], box[3] - box[1]
            x = (self.width - text_w) // 2 - box[0]
            y = self.height - self.reserved - text_h - max(4, round(self.height * 0.06)) - box[1]
            outline = Image.new("L", canvas.size)
            ImageDraw.Draw(outline).multiline_text(
                (x, y), lines, font=self.font, fill=255, stroke_width=stroke, stroke_fill=255, align="center"
            )
            ImageDraw.Draw(canvas).multiline_text((x, y), lines, font=self.font, fill=255, align="center")
            top = max(0, y + box[1] - stroke)
            bottom = min(self.height, y + box[3] + stroke + 1)
            fill = np.asarray(canvas, dtype=np.float32)[top:bottom, :, None] / 255.0
            edge = np.asarray(outline, dtype=np.float32)[top:bottom, :, None] / 255.0
            self.cache[text] = (top, bottom, fill, edge)
        return self.cache[text]

    def burn(self, frame: np.ndarray, text: str) -> np.ndarray:
        top, bottom, fill, edge = self._raster(text)
        band: np.ndarray = frame[top:bottom].astype(np.float32)
        band = band * (1.0 - 0.85 * edge)  # a dark halo keeps white text legible on any footage
        band = band * (1.0 - fill) + 255.0 * fill
        out = frame.copy()
        out[top:bottom] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
        return out


# --- the film ---------------------------------------------------------------------------------------------------


def check_cuts(cuts: Sequence[Cut]) -> int:
    """Check that the cuts tile the timeline as the plan placed them; return the film's frame count."""
    if not cuts:
        raise AssemblyError("there are no shots to assemble")
    cursor = 0
    for index, cut in enumerate(cuts):
        overlap = cut.transition_frames if cut.transition == "dissolve" and index > 0 else 0
        if cut.film_start_frame != cursor - overlap or overlap > min(
            cut.frames, cuts[index - 1].frames if index else 0
        ):
            raise AssemblyError(
                f"shot '{cut.shot_id}' starts on film frame {cut.film_start_frame}, "
                f"but the shots before it end on {cursor} (dissolve overlap {overlap})"
            )
        cursor = cut.film_end_frame
    return cursor


def _weight(k: int, d: int) -> float:
    return (k + 1) / (d + 1)


def _compose(cuts: Sequence[Cut], width: int, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """Film frames in order, as (film frame, pixels), with dissolves and fades applied."""
    held: list[np.ndarray] = []  # the previous shot's last frames, waiting to be dissolved into this shot
    for index, cut in enumerate(cuts):
        following = cuts[index + 1] if index + 1 < len(cuts) else None
        hold = following.transition_frames if following and following.transition == "dissolve" else 0
        fade_out = following.transition_frames if following and following.transition == "fade" else 0
        fade_in = cut.transition_frames if cut.transition == "fade" else 0
        dissolve = cut.transition_frames if cut.transition == "dissolve" and index > 0 else 0
        if len(held) != dissolve:
            raise AssemblyError(
                f"shot '{cut.shot_id}': {len(held)} frames held for a {dissolve}-frame dissolve"
            )
        count = 0
        for k, source in enumerate(read_frames(cut.path, width, height)):
            if k >= cut.frames:
                count += 1
                continue
            frame: np.ndarray = source
            if (
                fade_in
                and k < fade_in
                or fade_out
                and k >= cut.frames - fade_out
                or dissolve
                and k < dissolve
            ):
                pixels = source.astype(np.float32)
                if fade_in and k < fade_in:
                    pixels *= _weight(k, fade_in)
                if fade_out and k >= cut.frames - fade_out:
                    pixels *= _weight(cut.frames - 1 - k, fade_out)
                if dissolve and k < dissolve:
                    w = _weight(k, dissolve)
                    pixels = held[k].astype(np.float32) * (1.0 - w) + pixels * w
                frame = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
            if k >= cut.frames - hold:
                held.append(frame)
            else:
                yield cut.film_start_frame + k, frame
            count += 1
        if count != cut.frames:
            raise AssemblyError(
                f"{cut.path} has {count} frames but the plan gives shot '{cut.shot_id}' {cut.frames}: "
                f"render it again (storyreel render ... --only {cut.shot_id})"
            )
        if dissolve:
            held = held[dissolve:]


def assemble_film(
    cuts: Sequence[Cut],
    out: str | Path,
    *,
    fps: int,
    width: int,
    height: int,
    audio: AudioBed | None = None,
    burn_captions: bool = True,
    reserved_bottom: int = 0,
    progress: FilmProgress | None = None,
) -> FilmFile:
    """Cut the shots together into ``out`` and return what was written, as read back from the file.

    Captions are burned in unless ``burn_captions`` is false, above the bottom ``reserved_bottom``
    rows (where a generator draws its own overlay, like the animatic's prompt bar).
    """
    out = Path(out)
    report = progress or _no_progress
    total = check_cuts(cuts)
    spans = caption_spans(cuts) if burn_captions else []
    burner = CaptionBurner(width, height, reserved_bottom) if spans else None
    video_path = out if audio is None else temporary_beside(out)
    try:
        with VideoWriter(video_path, width, height, fps, crf=FILM_CRF) as writer:
            span_index = 0
            for film_frame, frame in _compose(cuts, width, height):
                if film_frame != writer.frames:
                    raise AssemblyError(f"film frame {writer.frames} expected, composed {film_frame}")
                while span_index < len(spans) and spans[span_index].end <= film_frame:
                    span_index += 1
                if burner and span_index < len(spans) and spans[span_index].start <= film_frame:
                    frame = burner.burn(frame, spans[span_index].text)
                writer.write(frame)
                if writer.frames % fps == 0 or writer.frames == total:
                    report(writer.frames, total)
        if audio is not None:
            _mux_audio(video_path, audio, total / fps, out)
    finally:
        if video_path != out:
            video_path.unlink(missing_ok=True)

    frames, _, has_audio = probe(out)
    if frames != total:
        raise AssemblyError(f"{out} has {frames} frames, the plan has {total}")
    return FilmFile(out, frames, fps, round(frames / fps, 3), width, height, has_audio)


def _mux_audio(video: Path, bed: AudioBed, seconds: float, out: Path) -> None:
    """Lay the music bed under ``video``: looped or trimmed to ``seconds``, at its volume, faded; AAC."""
    from moviepy import AudioFileClip, afx

    from .assets import check_asset

    try:
        music = AudioFileClip(str(bed.path), fps=AUDIO_RATE)
    except Exception as exc:
        # Checked when the storyboard loaded; a file that broke since is described by the same check.
        trouble = check_asset("music", bed.path, str(bed.path))
        message, fix = (trouble.message, trouble.fix) if trouble else (f"'{bed.path}' cannot be read", "")
        raise UserError(
            f"{message}; fix: {fix or 'point audio.music at an audio file (mp3, wav, m4a, flac, ogg)'}"
        ) from exc
    audio_path = temporary_beside(out, ".m4a")
    try:
        if music.duration is None or music.duration <= 0:
            raise UserError(f"{bed.path}: the music file has no sound; fix: use another file for audio.music")
        if music.duration < seconds:
            music = music.with_effects([afx.AudioLoop(duration=seconds)])
        else:
            music = music.subclipped(0, seconds)
        effects = [afx.MultiplyVolume(bed.volume)]
        if bed.fade_in > 0:
            effects.append(afx.AudioFadeIn(min(bed.fade_in, seconds)))
        if bed.fade_out > 0:
            effects.append(afx.AudioFadeOut(min(bed.fade_out, seconds)))
        music = music.with_effects(effects)
        try:
            music.write_audiofile(
                str(audio_path),
                fps=AUDIO_RATE,
                codec="aac",
                bitrate=AUDIO_BITRATE,
                ffmpeg_params=["-f", "mp4"],
                logger=None,
            )
        except OSError as exc:  # moviepy's message is ffmpeg's whole log: keep the reason, name the film
            _raise_os_reason(str(exc), out)
            raise AssemblyError(
                f"ffmpeg failed while encoding the music bed for {out.name}: {_tail(str(exc), 3)}"
            ) from None
        partial = temporary_beside(out)
        try:
            _run_ffmpeg(
                [
                    "-y",
                    "-i",
                    str(video),
                    "-i",
                    str(audio_path),
                    "-map",
                    "0:v:0",
                    "-map",
                    "1:a:0",
                    "-c",
                    "copy",
                    "-t",
                    f"{seconds:.6f}",
                    "-movflags",
                    "+faststart",
                    "-f",
                    "mp4",
                    str(partial),
                ],  # fmt: skip
                f"adding the music bed to {out.name}",
                writing=out,
            )
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        music.close()
        audio_path.unlink(missing_ok=True)
