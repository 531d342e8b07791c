"""Video files in and out, through the ffmpeg binary that ships with moviepy (imageio-ffmpeg).

Frames go to ffmpeg as raw RGB through a pipe and come back the same way, one at a time, so no
clip is ever held whole in memory. Every file is H.264 yuv420p with ``+faststart``, encoded with
x264 settings that give the same bytes for the same frames on any machine; it is written under a
temporary name and renamed only once ffmpeg succeeded, so a crash never leaves a half-written file
where a finished one is expected.

When ffmpeg fails because the operating system refused a write (a full disk, no permission), the
reason is read from its log and raised as the ``OSError`` it was, naming the file, so that it
reaches the user as the machine's state rather than as a bug. moviepy is imported only to find
the binary, when a video is actually read or written.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .atomic import temporary_beside, writing
from .errors import AssemblyError

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


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary moviepy uses (the one bundled with imageio-ffmpeg unless configured otherwise)."""
    from moviepy.config import FFMPEG_BINARY

    return str(FFMPEG_BINARY)


def run_ffmpeg(args: list[str], what: str, writing: Path | None = None) -> str:
    """Run ffmpeg to completion; return its log. When it fails writing ``writing`` for a reason of the
    machine's (a full disk, no permission), raise that as an OSError; else AssemblyError with the log's tail."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, text=True, errors="replace"
    )
    if result.returncode != 0:
        if writing is not None:
            raise_os_reason(result.stderr, writing)
        raise AssemblyError(f"ffmpeg failed while {what}:\n{log_tail(result.stderr)}")
    return result.stderr


def log_tail(log: str, lines: int = 12) -> str:
    """The last ``lines`` lines of an ffmpeg log: where it says what went wrong."""
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


def raise_os_reason(log: str, path: Path, inputs: Sequence[Path] = ()) -> None:
    """Raise OSError if ffmpeg's ``log`` says the operating system refused it (a full disk shows as "No space
    left on device" somewhere above the encoder's statistics). The error names the input ffmpeg names on that
    line (one of ``inputs`` it could not read), else ``path``, the file being written."""
    for line in log.splitlines():
        for code in _WRITE_ERRNOS:
            if os.strerror(code) in line:
                named = next((str(source) for source in inputs if str(source) in line), str(path))
                raise OSError(code, os.strerror(code), named)


def _raw_rgb(width: int, height: int) -> list[str]:
    """How frames travel through the pipe, in ffmpeg's words: raw RGB, one byte a channel, at this size."""
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]


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
                *_raw_rgb(width, height),
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
                raise_os_reason(log, self.path)
            reason = log_tail(log) if code != 0 else "no frames were written"
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
            *_raw_rgb(width, height),
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
        raise AssemblyError(f"could not decode {path}:\n{log_tail(error)}")


def probe(path: Path) -> tuple[int, float, bool]:
    """(video frames, container seconds, has an audio stream) of a media file; frames are counted, not estimated."""
    log = run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], f"reading {path}")
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
