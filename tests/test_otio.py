"""film.otio: read back with OpenTimelineIO, its clips, transitions, captions and music agree with the manifest
and the storyboard, and it converts to an EDL through an adapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import opentimelineio as otio
import pytest

import storyreel
from storyreel.manifest import Manifest

from conftest import REPO, small_board


def board_with_every_transition() -> dict:
    board = small_board(fps=24)  # a rate SMPTE timecode (and so an EDL) knows
    glide, dip = board["scenes"][0]["shots"]
    heron, rise = board["scenes"][1]["shots"]
    glide.update(transition="fade", transition_duration="0.5s")  # the film fades in
    heron["caption"] = "Meanwhile, the heron."
    rise.pop("continues")
    rise.update(transition="fade", transition_duration="0.5s", caption="Up.")
    board["scenes"][1]["shots"].append(
        {"id": "gone", "prompt": "an empty lake", "duration": "2s", "transition": "dissolve"}
    )
    board["audio"] = {"music": "score.mp3", "volume": 0.5}
    return board


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest, storyreel.FilmPlan]:
    import yaml

    folder = tmp_path_factory.mktemp("otio")
    shutil.copy(REPO / "examples" / "assets" / "score.mp3", folder / "score.mp3")
    story = folder / "story.yaml"
    story.write_text(yaml.safe_dump(board_with_every_transition(), sort_keys=False), encoding="utf-8")
    manifest = storyreel.render(story, out=folder / "out")
    return folder / "out", manifest, storyreel.plan_film(storyreel.load_storyboard(story))


def test_every_clip_points_at_its_shot_file_with_the_manifests_frames(rendered):
    out, manifest, plan = rendered
    timeline = otio.adapters.read_from_file(str(out / "film.otio"))
    (video,) = timeline.video_tracks()
    clips = list(video.find_clips())
    assert [clip.name for clip in clips] == [shot.id for shot in manifest.shots]
    assert manifest.film is not None
    assert video.duration() == otio.opentime.RationalTime(manifest.film.frames, manifest.film.fps)
    for clip, shot in zip(clips, manifest.shots, strict=True):
        assert clip.media_reference.target_url == shot.path == f"shots/{shot.id}.mp4"
        assert (out / clip.media_reference.target_url).is_file()
        assert clip.available_range() == otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, manifest.film.fps),
            otio.opentime.RationalTime(shot.frames, manifest.film.fps),
        )
        # where the shot's frame 0 sits in the film is where the plan puts the shot
        record = video.range_of_child(clip).start_time - clip.source_range.start_time
        assert record.to_frames() == plan.shot(shot.id).film_start_frame
        assert clip.metadata["storyreel"]["frames"] == shot.frames


def test_transitions_stand_where_the_storyboard_has_them(rendered):
    out, manifest, plan = rendered
    (video,) = otio.adapters.read_from_file(str(out / "film.otio")).video_tracks()
    transitions = [(item.name, item.in_offset.to_frames(), item.out_offset.to_frames()) for item in video
                   if isinstance(item, otio.schema.Transition)]  # fmt: skip
    fade, dissolve = plan.shot("rise").transition_frames, plan.shot("gone").transition_frames
    assert transitions == [
        ("fade in glide", plan.shot("glide").transition_frames, 0),
        ("dissolve to heron", 0, plan.shot("heron").transition_frames),
        ("fade out heron", 0, fade),
        ("fade in rise", fade, 0),
        ("dissolve to gone", 0, dissolve),
    ]
    assert all(
        item.transition_type == otio.schema.TransitionTypes.SMPTE_Dissolve
        for item in video
        if isinstance(item, otio.schema.Transition)
    )
    # the continuation from glide to dip is a plain cut: no transition between them
    names = [item.name for item in video]
    assert names[names.index("glide") + 1] == "dip"


def test_captions_are_markers_and_the_music_is_on_an_audio_track(rendered):
    out, manifest, plan = rendered
    timeline = otio.adapters.read_from_file(str(out / "film.otio"))
    (video,) = timeline.video_tracks()
    markers = {marker.name: marker.marked_range for marker in video.markers}
    assert set(markers) == {"Dawn.", "Meanwhile, the heron.", "Up."}
    assert markers["Up."].start_time.to_frames() == plan.shot("rise").film_start_frame
    (audio,) = timeline.audio_tracks()
    (music,) = list(audio.find_clips())
    assert music.media_reference.target_url.endswith("/score.mp3")
    assert music.source_range.duration.to_frames() == manifest.film.frames
    assert music.metadata["storyreel"]["volume"] == 0.5


def test_it_converts_to_an_edl_through_an_adapter(rendered):
    out, manifest, _ = rendered
    timeline = otio.adapters.read_from_file(str(out / "film.otio"))
    video_only = otio.schema.Timeline(name=timeline.name, tracks=[timeline.video_tracks()[0].clone()])
    edl = otio.adapters.write_to_string(video_only, "cmx_3600")
    events = [line for line in edl.splitlines() if line[:3].isdigit()]
    assert any(" D " in line for line in events)  # dissolves survive as EDL dissolves
    for shot in manifest.shots:
        assert f"FROM CLIP NAME: {shot.id}" in edl or f"shots/{shot.id}.mp4" in edl
    # the last event ends where the film ends
    hours, minutes, seconds, frames = (int(part) for part in events[-1].split()[-1].split(":"))
    fps = manifest.film.fps
    assert ((hours * 60 + minutes) * 60 + seconds) * fps + frames == manifest.film.frames
