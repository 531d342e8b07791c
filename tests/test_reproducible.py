"""The same shots make the same film, byte for byte, at the default 540P size (960x544).

Small frames happened to encode the same way every time, which hid that x264's lookahead thread made
the bitstream depend on how fast frames came through the pipe; these tests use the film's real size
and a film with cuts, where that showed.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

import storyreel
from storyreel.assemble import Cut, assemble_film
from storyreel.video import read_frames, write_shot

from conftest import REPO

SWAN_LAKE = REPO / "examples" / "swan_lake.yaml"


def digest(path: Path, width: int, height: int) -> tuple[str, str]:
    """(sha256 of the file, sha256 of its decoded RGB frames)."""
    pixels = hashlib.sha256()
    for frame in read_frames(path, width, height):
        pixels.update(frame.tobytes())
    return hashlib.sha256(path.read_bytes()).hexdigest(), pixels.hexdigest()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, storyreel.FilmPlan]:
    """examples/swan_lake.yaml, 540P with cuts, a dissolve, captions and music, rendered once (animatic)."""
    out = tmp_path_factory.mktemp("swan")
    storyreel.render(SWAN_LAKE, out=out / "film", cache_dir=out / "cache")
    plan = storyreel.plan_film(storyreel.load_storyboard(SWAN_LAKE))
    assert (plan.width, plan.height) == (960, 544)
    return out / "film", plan


def test_assembling_the_same_shots_twice_gives_the_same_film(rendered, tmp_path: Path) -> None:
    out, plan = rendered
    cuts = [
        Cut(s.id, out / "shots" / f"{s.id}.mp4", s.frames, s.transition, s.transition_frames, s.film_start_frame, s.caption)
        for s in plan.shots
    ]  # fmt: skip
    films = [tmp_path / f"film-{take}.mp4" for take in range(2)]
    for film in films:
        assemble_film(cuts, film, fps=plan.fps, width=plan.width, height=plan.height)
    digests = [digest(film, plan.width, plan.height) for film in films]
    assert len({pixels for _, pixels in digests}) == 1, "decoded pixels differ between assemblies"
    assert len({data for data, _ in digests}) == 1, "the files differ between assemblies"


def test_a_second_render_from_the_cache_makes_the_same_film(rendered, tmp_path: Path) -> None:
    out, plan = rendered
    again = storyreel.render(SWAN_LAKE, out=tmp_path / "again", cache_dir=out.parent / "cache")
    assert all(shot.cached for shot in again.shots)
    assert digest(tmp_path / "again" / "film.mp4", plan.width, plan.height) == digest(
        out / "film.mp4", plan.width, plan.height
    )


def test_encoding_the_same_frames_gives_the_same_file(rendered, tmp_path: Path) -> None:
    # The film's frames piped as fast as the pipe takes them: the pace x264's lookahead thread used to see
    # varied from run to run, and so did its decisions.
    out, plan = rendered
    decoded = read_frames(out / "film.mp4", plan.width, plan.height)
    frames = np.stack(list(itertools.islice(decoded, 200)))  # (200, 544, 960, 3): a cut and a dissolve
    files = [write_shot(frames, tmp_path / f"take-{take}.mp4", plan.fps) for take in range(3)]
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == 1
