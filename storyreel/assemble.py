"""Stage 5 of a render: shots cut together into the film.

Every shot is written once to ``shots/<id>.mp4`` (:func:`storyreel.video.write_shot`). The film is
then composed frame by frame from those files, in timeline order, streaming: at most one shot's
transition frames are held in memory, so a film of any length assembles in a few hundred megabytes.

Transitions act on film frames, so the frame counts in the manifest are the file's frame counts:

* ``cut`` and ``continue``: the next shot's first frame follows the previous shot's last one.
* ``dissolve`` over ``d`` frames: the shot starts ``d`` frames before the previous one ends and
  frame ``k`` of the overlap is ``previous * (1 - w) + this * w`` with ``w = (k + 1) / (d + 1)``,
  so neither shot is ever shown at full or zero weight inside the overlap.
* ``fade`` over ``d`` frames: the previous shot's last ``d`` frames go down to black and this
  shot's first ``d`` frames come up from it (weights ``(k + 1) / (d + 1)``); the film's first shot
  may fade in.

Captions (:mod:`storyreel.captions`) are burned in as the frames go to the encoder
(:mod:`storyreel.video`). The music bed is trimmed or looped to the film's length, set to its
volume, faded in and out, encoded as AAC and muxed without touching the video; moviepy is imported
only for that, when a film with music is actually assembled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import temporary_beside
from .captions import CaptionTrack, caption_spans
from .errors import AssemblyError, UserError
from .video import FILM_CRF, VideoWriter, log_tail, probe, raise_os_reason, read_frames, run_ffmpeg

AUDIO_RATE = 44100
AUDIO_BITRATE = "192k"


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


FilmProgress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


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
    captions = CaptionTrack(caption_spans(cuts) if burn_captions else [], width, height, reserved_bottom)
    video_path = out if audio is None else temporary_beside(out)
    try:
        with VideoWriter(video_path, width, height, fps, crf=FILM_CRF) as writer:
            for film_frame, frame in _compose(cuts, width, height):
                if film_frame != writer.frames:
                    raise AssemblyError(f"film frame {writer.frames} expected, composed {film_frame}")
                writer.write(captions.burn(film_frame, frame))
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
    music = _open_music(bed)
    audio_path = temporary_beside(out, ".m4a")
    try:
        if music.duration is None or music.duration <= 0:
            raise UserError(f"{bed.path}: the music file has no sound; fix: use another file for audio.music")
        music = _fit_music(music, bed, seconds)
        _encode_music(music, bed.path, audio_path, out)
        _add_music(video, audio_path, seconds, out)
    finally:
        music.close()
        audio_path.unlink(missing_ok=True)


def _open_music(bed: AudioBed) -> Any:
    """The music bed as a moviepy clip; UserError when the file cannot be read as audio."""
    from moviepy import AudioFileClip

    from .assets import check_asset

    try:
        return AudioFileClip(str(bed.path), fps=AUDIO_RATE)
    except Exception as exc:
        # Checked when the storyboard loaded; a file that broke since is described by the same check.
        trouble = check_asset("music", bed.path, str(bed.path))
        message, fix = (trouble.message, trouble.fix) if trouble else (f"'{bed.path}' cannot be read", "")
        raise UserError(
            f"{message}; fix: {fix or 'point audio.music at an audio file (mp3, wav, m4a, flac, ogg)'}"
        ) from exc


def _fit_music(music: Any, bed: AudioBed, seconds: float) -> Any:
    """``music`` looped or trimmed to ``seconds``, at the bed's volume, with its fades."""
    from moviepy import afx

    if music.duration < seconds:
        music = music.with_effects([afx.AudioLoop(duration=seconds)])
    else:
        music = music.subclipped(0, seconds)
    effects = [afx.MultiplyVolume(bed.volume)]
    if bed.fade_in > 0:
        effects.append(afx.AudioFadeIn(min(bed.fade_in, seconds)))
    if bed.fade_out > 0:
        effects.append(afx.AudioFadeOut(min(bed.fade_out, seconds)))
    return music.with_effects(effects)


def _encode_music(music: Any, source: Path, audio_path: Path, out: Path) -> None:
    """Write ``music`` (read from ``source``) as AAC to ``audio_path``; a refused read or write is raised as the
    OSError it was, naming ``source`` or ``out``."""
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
        raise_os_reason(str(exc), out, inputs=(source,))
        raise AssemblyError(
            f"ffmpeg failed while encoding the music bed for {out.name}: {log_tail(str(exc), 3)}"
        ) from None


def _add_music(video: Path, audio_path: Path, seconds: float, out: Path) -> None:
    """Write ``out``: the video stream of ``video`` as it is, with the encoded music as its sound."""
    partial = temporary_beside(out)
    try:
        run_ffmpeg(
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
