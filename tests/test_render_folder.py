"""The render folder: one render at a time, taken before any work; nothing left behind (no lock file, no
unfinished file of a killed render)."""

from __future__ import annotations

import fcntl
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app

from conftest import small_board

runner = CliRunner()


def one_line(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def story(tmp_path: Path, board: dict | None = None) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(board or small_board(), sort_keys=False))
    return path


def hidden_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# --- the lock ---------------------------------------------------------------------------------------------------


def test_a_busy_folder_is_refused_before_planning_or_enhancing(tmp_path: Path) -> None:
    board = {**small_board(), "enhancer": {"backend": "vllm", "url": "http://127.0.0.1:9/v1", "timeout": 1}}
    path = story(tmp_path, board)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".storyreel.lock", "a+") as held:  # another render, in the middle of its work
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        result = runner.invoke(app, ["render", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert (
        f"error: another storyreel render (pid 4242) is writing to {out}; wait for it to finish, or render "
        "into another folder with --out"
    ) in one_line(result.output)
    assert "plan" not in result.output and "enhance" not in result.output  # no stage began
    assert not (tmp_path / "story.lock.yaml").exists()  # no prompt was asked for, none locked


def test_the_lock_file_goes_when_the_render_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = runner.invoke(app, ["render", str(story(tmp_path)), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert hidden_files(out) == []
    failed = runner.invoke(app, ["render", str(story(tmp_path)), "--out", str(out), "--only", "nope"])
    assert failed.exit_code == 1 and "--only names unknown shot(s): nope" in failed.output
    assert hidden_files(out) == []
    refused = runner.invoke(
        app, ["render", str(story(tmp_path)), "--out", str(tmp_path / "new"), "--only", "x"]
    )
    assert refused.exit_code == 1 and not (tmp_path / "new").exists()  # a folder it made for nothing goes too


def test_a_lock_file_removed_under_a_holder_does_not_block_the_next_render(tmp_path: Path) -> None:
    # A render that opened the lock file just before its owner finished and removed it holds a lock on a file
    # no path names any more: it guards nothing, and the next render takes the file at the path.
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".storyreel.lock", "a+") as stale:
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (out / ".storyreel.lock").unlink()
        manifest = storyreel.render(story(tmp_path), out=out)
    assert manifest.film is not None and hidden_files(out) == []


# --- leftovers of a killed render -------------------------------------------------------------------------------

RENDER = """
import sys, storyreel
storyreel.render(sys.argv[1], out=sys.argv[2])
"""


def test_the_unfinished_files_of_a_killed_render_are_removed_by_the_next(tmp_path: Path) -> None:
    board = small_board()
    board["generation"] = {"resolution": "320x192", "fps": 24}
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            shot["duration"] = "4s"
    path, out = story(tmp_path, board), tmp_path / "out"
    render = subprocess.Popen([sys.executable, "-c", RENDER, str(path), str(out)])
    deadline = time.monotonic() + 120
    while (
        not list(out.glob(".film.mp4.*.partial.mp4"))
        and render.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    render.send_signal(signal.SIGKILL)  # while the film is being written
    render.wait()
    time.sleep(0.5)  # the encoder, orphaned, finishes its file
    leftovers = hidden_files(out)
    assert any(re.fullmatch(r"\.film\.mp4\.\w{8}\.partial\.mp4", name) for name in leftovers), leftovers
    (out / ".notes").write_text("mine")  # a file of the user's is never touched
    result = runner.invoke(app, ["render", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    count = len([name for name in leftovers if name != ".storyreel.lock"])
    assert f"removed {count} unfinished file(s)" in one_line(result.output)
    assert hidden_files(out) == [".notes"]
