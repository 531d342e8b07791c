"""Cached keyframes are managed like cached shots: recorded, listed, trimmed by `cache gc` under the same
rules, and never removed while a shot made from them stays (redrawn, a keyframe is another picture, and
every shot drawn from it would be generated again)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from test_cache import REFUSED_GC, listing
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.rendering import RenderProgress

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DAY = 86400


class Notes(RenderProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lighthouse (5 shots, 3 keyframes) and the same film with another seed (5 other shots, 3 other
    keyframes), rendered as animatics into one cache."""
    base = tmp_path_factory.mktemp("lighthouses")
    shutil.copytree(EXAMPLES / "assets", base / "assets")
    text = (EXAMPLES / "lighthouse.yaml").read_text()
    (base / "story.yaml").write_text(text)
    (base / "other.yaml").write_text(text.replace("seed: 1903", "seed: 1904"))
    for name in ("story", "other"):
        storyreel.render(base / f"{name}.yaml", out=base / "renders" / name, cache_dir=base / "cache")
    return base


@pytest.fixture
def films(built: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(story, other, a copy of the cache for this test): the shots and keyframes of `other` last used 60
    days ago, those of `story` just now."""
    cache = tmp_path / "cache"
    shutil.copytree(built / "cache", cache)
    story, other = (built / "story.yaml").resolve(), (built / "other.yaml").resolve()
    now, old = time.time(), time.time() - 60 * DAY
    for entry in shot_entries(cache):
        used = old if json.loads((entry / "entry.json").read_text())["storyboard"] == str(other) else now
        os.utime(entry, (used, used))
    for png, record in keyframes(cache).items():
        used = old if record["used_by"] == [str(other)] else now
        os.utime(png, (used, used))
    return story, other, cache


def shot_entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "shots").glob("??/*") if p.is_dir())


def keyframes(cache: Path) -> dict[Path, dict]:
    """Each cached keyframe's PNG and its record ({} when it has none)."""
    found = {}
    for png in sorted((cache / "keyframes").glob("??/*.png")):
        record = png.with_suffix(".json")
        found[png] = json.loads(record.read_text()) if record.exists() else {}
    return found


def gc(cache: Path, *arguments: str) -> str:
    result = CliRunner().invoke(app, ["cache", "gc", *arguments, "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    return result.output


def users(cache: Path) -> list[list[str]]:
    return sorted(record.get("used_by", []) for record in keyframes(cache).values())


def test_a_render_records_who_used_each_keyframe_and_the_shots_made_from_it(films) -> None:
    story, other, cache = films
    records = list(keyframes(cache).values())
    assert len(records) == 6
    assert sorted(r["used_by"] for r in records) == [[str(other)]] * 3 + [[str(story)]] * 3
    # arrival's keyframe made arrival and climb (which continues it); lamp's and watch's one shot each
    assert sorted(len(r["shots"]) for r in records) == [1, 1, 1, 1, 2, 2]
    shot_keys = {entry.name for entry in shot_entries(cache)}
    assert {key for r in records for key in r["shots"]} == shot_keys - _keys_of(cache, "waves")


def _keys_of(cache: Path, shot_id: str) -> set[str]:
    return {
        entry.name
        for entry in shot_entries(cache)
        if json.loads((entry / "entry.json").read_text())["shot_id"] == shot_id
    }


def test_ls_and_du_count_keyframes_apart_from_shots(films) -> None:
    _, _, cache = films
    runner = CliRunner()
    du = runner.invoke(app, ["cache", "du", "--cache-dir", str(cache)])
    assert du.exit_code == 0, du.output
    assert "in 10 shot(s)" in du.output and "in 6 keyframe(s)" in du.output
    size = sum(p.stat().st_size for p in (cache / "keyframes").glob("??/*"))
    assert f"{size / 1024:.1f} KiB in 6 keyframe(s)" in du.output
    ls = runner.invoke(app, ["cache", "ls", "--cache-dir", str(cache)])
    assert ls.exit_code == 0, ls.output
    assert "10 shot(s) in" in ls.output and "6 keyframe(s) in" in ls.output
    assert ls.output.count("other.yaml") == 5 + 3 and ls.output.count("story.yaml") == 5 + 3


def test_a_keyframe_reused_is_marked_used_by_that_storyboard_now(films, tmp_path: Path) -> None:
    story, _, cache = films
    again = story.with_name("again.yaml")
    shutil.copyfile(story, again)  # the same film under another name: every keyframe and shot reused
    for png in keyframes(cache):
        os.utime(png, (1, 1))
    before = {png: png.read_bytes() for png in keyframes(cache)}
    notes = Notes()
    storyreel.render(again, out=tmp_path / "again", cache_dir=cache, progress=notes)
    assert not any("drawing" in note for note in notes.notes), notes.notes
    assert {png: png.read_bytes() for png in keyframes(cache)} == before
    reused = [(png, r) for png, r in keyframes(cache).items() if str(again.resolve()) in r["used_by"]]
    assert len(reused) == 3
    assert all(r["used_by"] == [str(story), str(again.resolve())] for _, r in reused)
    assert all(time.time() - png.stat().st_mtime < 600 for png, _ in reused)


def test_gc_older_than_removes_old_keyframes_unless_their_storyboard_is_kept(films) -> None:
    story, other, cache = films
    before = listing(cache)
    output = gc(cache, "--older-than", "30d", "--dry-run")
    assert "would remove 5 shot(s) and 3 keyframe(s)" in output and listing(cache) == before
    output = gc(cache, "--older-than", "30d", str(other))
    assert "removed 0 shot(s) and 0 keyframe(s)" in output and "(8 used by the storyboards given)" in output
    output = gc(cache, "--older-than", "30d")
    assert "removed 5 shot(s) and 3 keyframe(s)" in output
    assert users(cache) == [[str(story)]] * 3 and len(shot_entries(cache)) == 5


def test_gc_max_size_counts_keyframes_in_the_total(films) -> None:
    story, other, cache = films
    story_bytes = sum(_bytes(cache, story))
    output = gc(cache, "--max-size", f"{story_bytes}B", "--dry-run")
    assert "would remove 5 shot(s) and 3 keyframe(s)" in output  # everything of `other`, the older film
    output = gc(cache, "--max-size", f"{story_bytes - 1}B", "--dry-run")
    assert "would remove 6 shot(s) and 3 keyframe(s)" in output
    output = gc(cache, "--max-size", "1K", str(story))
    assert "removed 5 shot(s) and 3 keyframe(s)" in output
    assert users(cache) == [[str(story)]] * 3 and len(shot_entries(cache)) == 5


def _bytes(cache: Path, storyboard: Path) -> tuple[int, int]:
    """(bytes of the shots, bytes of the keyframes) that ``storyboard`` used."""
    shots = sum(
        f.stat().st_size
        for entry in shot_entries(cache)
        if json.loads((entry / "entry.json").read_text())["used_by"] == [str(storyboard)]
        for f in entry.iterdir()
    )
    drawn = sum(
        png.stat().st_size + png.with_suffix(".json").stat().st_size
        for png, record in keyframes(cache).items()
        if record["used_by"] == [str(storyboard)]
    )
    return shots, drawn


def test_a_keyframe_stays_while_a_shot_made_from_it_stays(films) -> None:
    story, other, cache = films
    ancient = time.time() - 400 * DAY
    for png, record in keyframes(cache).items():
        if record["used_by"] == [str(other)]:
            os.utime(png, (ancient, ancient))  # unused for longer than its shots
    output = gc(cache, "--older-than", "100d")
    assert "removed 0 shot(s) and 0 keyframe(s)" in output
    assert "(3 keyframe(s) for the shots made from them)" in output
    # --max-size takes the shots first (a keyframe counts as used as late as its shots), and then it
    total = sum(_bytes(cache, story)) + sum(_bytes(cache, other))
    output = gc(cache, "--max-size", f"{total - 1}B")
    assert "removed 1 shot(s) and 0 keyframe(s)" in output and len(keyframes(cache)) == 6
    output = gc(cache, "--older-than", "30d")
    assert "removed 4 shot(s) and 3 keyframe(s)" in output and users(cache) == [[str(story)]] * 3


def test_gc_all_removes_keyframes_but_those_of_the_storyboards_kept(films, tmp_path: Path) -> None:
    story, _, cache = films
    output = gc(cache, "--all", str(story))
    assert "removed 5 shot(s) and 3 keyframe(s)" in output and "(8 used by the storyboards given)" in output
    notes = Notes()
    manifest = storyreel.render(story, out=tmp_path / "again", cache_dir=cache, progress=notes)
    assert all(entry.cached for entry in manifest.shots) and not any("drawing" in n for n in notes.notes)
    output = gc(cache, "--all")
    assert "removed 5 shot(s) and 3 keyframe(s)" in output
    assert keyframes(cache) == {} and shot_entries(cache) == []


def test_a_keyframe_cached_before_records_is_still_read(films, tmp_path: Path) -> None:
    story, other, cache = films
    old = time.time() - 60 * DAY
    bare = [png for png, record in keyframes(cache).items() if record["used_by"] == [str(story)]]
    for png in bare:
        png.with_suffix(".json").unlink()
        os.utime(png, (old, old))
    ls = CliRunner().invoke(app, ["cache", "ls", "--cache-dir", str(cache)])
    assert ls.exit_code == 0 and ls.output.count("(none recorded)") == 3 and "6 keyframe(s)" in ls.output
    assert "removed 0 shot(s) and 0 keyframe(s)" in gc(cache, "--older-than", "90d")
    notes = Notes()
    storyreel.render(story, out=tmp_path / "again", cache_dir=cache, progress=notes)
    assert not any("drawing" in n for n in notes.notes)  # reused, and recorded again
    assert all(keyframes(cache)[png]["used_by"] == [str(story)] for png in bare)
    assert all(keyframes(cache)[png]["shots"] for png in bare)
    assert all(time.time() - png.stat().st_mtime < 600 for png in bare)


def test_damaged_keyframes_are_removed_by_gc_and_drawn_again_by_a_render(films, tmp_path: Path) -> None:
    story, other, cache = films
    mine = [png for png, record in keyframes(cache).items() if record["used_by"] == [str(story)]]
    mine[0].with_suffix(".json").write_text("{not json")
    mine[1].unlink()  # a record without its picture
    output = gc(cache, "--older-than", "1y")
    assert "removed 0 shot(s) and 2 keyframe(s)" in output and "(2 damaged)" in output
    assert not mine[0].exists() and not mine[1].with_suffix(".json").exists() and len(keyframes(cache)) == 4
    with mine[2].open("ab") as stream:
        stream.write(b"\0")  # bytes that no longer match the record
    notes = Notes()
    storyreel.render(story, out=tmp_path / "again", cache_dir=cache, progress=notes)
    assert any(f"cached keyframe {mine[2].stem[:12]} is damaged" in n for n in notes.notes), notes.notes
    assert "drawing 3 keyframe(s) with animatic" in notes.notes
    assert len(keyframes(cache)) == 6


def test_a_refused_gc_leaves_keyframes_untouched(films, tmp_path: Path) -> None:
    story, _, cache = films
    (tmp_path / "story.lock.yaml").write_text("storyreel_lock: 1\n")
    (tmp_path / "notes.yaml").write_text("todo: buy film\n")
    (tmp_path / "film.mp4").write_bytes(b"\0\0\0\x18ftypmp42")
    places = {
        "story": story,
        "folder": tmp_path,
        "lock": tmp_path / "story.lock.yaml",
        "film": tmp_path / "film.mp4",
        "notes": tmp_path / "notes.yaml",
    }
    before = listing(cache)
    for arguments, message in REFUSED_GC:
        given = [a.format(**{k: str(v) for k, v in places.items()}) for a in arguments]
        result = CliRunner().invoke(app, ["cache", "gc", *given, "--cache-dir", str(cache)])
        assert result.exit_code == 1 and message in result.output, (arguments, result.output)
        assert listing(cache) == before
