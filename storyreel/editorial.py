"""``film.otio``: the film as an editor's timeline (OpenTimelineIO), so the cut can be refined in an editor.

One video track holds every shot as a clip pointing at its file, ``shots/<id>.mp4`` relative to the
render folder, with the frames the film shows of it; an audio track holds the music bed. Times are
frames at the film's rate, so every range is exact.

The film's transitions become OpenTimelineIO transitions, which overlap the clips on either side of
a cut and take the overlap from their unused frames (handles):

* ``dissolve`` over ``d`` frames: the outgoing clip shows its first ``frames - d`` frames, the cut
  falls where the next shot starts, and a ``d``-frame SMPTE dissolve after the cut plays the outgoing
  shot's last ``d`` frames under the incoming shot's first ``d``;
* ``fade`` over ``d`` frames: the outgoing clip is followed by a ``2d``-frame gap (black); a
  dissolve into the gap plays its last ``d`` frames down to black, a dissolve out of it brings the
  incoming shot's first ``d`` frames up, and the incoming clip goes on from its frame ``d``. The
  film's first shot fading in starts with a ``d``-frame gap the same way.

So the track lasts exactly the film's frames, and each clip's file (``available_range``) holds the
shot's frames as the manifest counts them. Captions are markers on the video track over the frames
they are on screen; each clip's metadata (``storyreel``) keeps its shot id and frame counts.

>>> from pathlib import Path
>>> from storyreel.assemble import Cut
>>> cuts = [Cut("a", Path("shots/a.mp4"), 10, "cut", 0, 0, "Dawn."), Cut("b", Path("shots/b.mp4"), 10, "dissolve", 4, 6)]
>>> timeline = film_timeline("Swan", cuts, fps=8, render_folder=Path("."))
>>> track = timeline.video_tracks()[0]
>>> [type(item).__name__ for item in track], track.duration().to_frames()
(['Clip', 'Transition', 'Clip'], 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_text_atomic
from .captions import caption_spans

if TYPE_CHECKING:
    from .assemble import AudioBed, Cut


def _otio() -> Any:
    import opentimelineio

    return opentimelineio


def _frames(count: int, fps: int, start: int = 0) -> Any:
    otio = _otio()
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(start, fps), otio.opentime.RationalTime(count, fps)
    )


def _dissolve(name: str, fps: int, before: int, after: int) -> Any:
    otio = _otio()
    return otio.schema.Transition(
        name=name,
        transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
        in_offset=otio.opentime.RationalTime(before, fps),
        out_offset=otio.opentime.RationalTime(after, fps),
    )


def _media(cut: Cut, render_folder: Path, fps: int) -> Any:
    otio = _otio()
    path = Path(cut.path)
    try:
        target = path.relative_to(render_folder).as_posix()  # the folder can move with its timeline
    except ValueError:
        target = path.as_posix()
    return otio.schema.ExternalReference(target_url=target, available_range=_frames(cut.frames, fps))


def film_timeline(
    title: str, cuts: Sequence[Cut], fps: int, render_folder: Path, audio: AudioBed | None = None
) -> Any:
    """The film's ``opentimelineio.schema.Timeline`` (see the module docstring for how cuts map onto it)."""
    otio = _otio()
    timeline = otio.schema.Timeline(name=title, global_start_time=otio.opentime.RationalTime(0, fps))
    video = otio.schema.Track(name="shots", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(video)
    for index, cut in enumerate(cuts):
        following = cuts[index + 1] if index + 1 < len(cuts) else None
        first = 0  # the shot's first frame the clip shows
        shown = cut.frames
        if cut.transition == "fade" and cut.transition_frames:
            if index == 0:  # the film fades in from black
                video.append(otio.schema.Gap(source_range=_frames(cut.transition_frames, fps)))
            video.append(_dissolve(f"fade in {cut.shot_id}", fps, cut.transition_frames, 0))
            first = cut.transition_frames
            shown -= first
        if (
            following is not None
            and following.transition in ("dissolve", "fade")
            and following.transition_frames
        ):
            shown -= following.transition_frames  # the rest plays as the handle under the transition
        clip = otio.schema.Clip(
            name=cut.shot_id,
            media_reference=_media(cut, render_folder, fps),
            source_range=_frames(shown, fps, first),
            metadata={
                "storyreel": {
                    "shot": cut.shot_id,
                    "frames": cut.frames,
                    "film_start_frame": cut.film_start_frame,
                    "transition": cut.transition,
                    "transition_frames": cut.transition_frames,
                }
            },
        )
        video.append(clip)
        if following is not None and following.transition_frames:
            if following.transition == "dissolve":
                video.append(
                    _dissolve(f"dissolve to {following.shot_id}", fps, 0, following.transition_frames)
                )
            elif following.transition == "fade":
                video.append(_dissolve(f"fade out {cut.shot_id}", fps, 0, following.transition_frames))
                video.append(otio.schema.Gap(source_range=_frames(2 * following.transition_frames, fps)))
    for span in caption_spans(cuts):
        video.markers.append(
            otio.schema.Marker(
                name=span.text,
                marked_range=_frames(span.end - span.start, fps, span.start),
                color=otio.schema.MarkerColor.YELLOW,
                metadata={"storyreel": {"caption": span.text}},
            )
        )
    if audio is not None:
        sound = otio.schema.Track(name="music", kind=otio.schema.TrackKind.Audio)
        film_frames = max((cut.film_end_frame for cut in cuts), default=0)
        sound.append(
            otio.schema.Clip(
                name=Path(audio.path).name,
                media_reference=otio.schema.ExternalReference(target_url=Path(audio.path).resolve().as_uri()),
                source_range=_frames(film_frames, fps),
                metadata={
                    "storyreel": {
                        "volume": audio.volume,
                        "fade_in": audio.fade_in,
                        "fade_out": audio.fade_out,
                    }
                },
            )
        )
        timeline.tracks.append(sound)
    return timeline


def write_film_otio(
    path: Path, title: str, cuts: Sequence[Cut], fps: int, audio: AudioBed | None = None
) -> Path:
    """Write ``film.otio`` for ``cuts`` (the shots relative to ``path``'s folder); it appears whole or not at all."""
    otio = _otio()
    timeline = film_timeline(title, cuts, fps, path.parent, audio)
    write_text_atomic(path, otio.adapters.write_to_string(timeline, "otio_json"))
    return path
