"""The machine's state is the user's to fix, not a bug: a folder that cannot be written, a full disk, a file
where a folder should be, a shot too big for the GPU. Each ends with exit code 1 and a message naming the
path and the operating system's reason, never a traceback, and loses nothing already rendered.

Permissions are real: tests run as root, whom permission bits do not stop, so the CLI runs in a
subprocess without the capabilities that let root ignore them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
and meets the owner's bits of the folders it touches like anyone else. (Switching to another uid is not
enough here: that uid could not even reach the Python interpreter, which lives under /root.) A full
disk is a small tmpfs, mounted for the test.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.errors import OutOfMemory
from storyreel.generators.animatic import AnimaticGenerator
from storyreel.manifest import Manifest

from conftest import REPO, small_board

runner = CliRunner()
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _without_permission_override() -> None:
    """In the child, before exec: give up the capabilities that let root ignore permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def bound_by_permissions() -> Iterator[None]:
    """Skip unless the CLI can be run so that read-only folders stop it."""
    if os.geteuid() != 0:
        yield  # an ordinary user is bound by permission bits already
        return
    probe = subprocess.run(
        [sys.executable, "-c", "pass"], preexec_fn=_without_permission_override, capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here, so no folder is read-only to us")
    yield


# Runs the real command line; optionally with a generator that makes the render folder read-only once the
# first shot is on disk (the process owns the folder, so it may).
CLI = """
import os, sys
from pathlib import Path
import storyreel.rendering
from storyreel.generators.animatic import AnimaticGenerator

freeze = os.environ.get("FREEZE_AFTER_FIRST_SHOT")
if freeze:
    class Freezing(AnimaticGenerator):
        made = 0
        def generate(self, request, progress=None):
            if Freezing.made == 1:
                for folder in (Path(freeze) / "shots", Path(freeze)):
                    folder.chmod(0o555)
            Freezing.made += 1
            return super().generate(request, progress)
    storyreel.rendering.load_backend = lambda group, name: Freezing

from storyreel.cli import main
sys.argv[0] = "storyreel"
main()
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The storyreel command in its own process, bound by permission bits, on a wide terminal."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        preexec_fn=_without_permission_override if os.geteuid() == 0 else None,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def story(tmp_path: Path) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(small_board(), sort_keys=False))
    return path


# --- folders that cannot be written -----------------------------------------------------------------------------


def test_a_read_only_render_folder(tmp_path: Path, bound_by_permissions: None) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o555)
    result = cli("render", str(story(tmp_path)), "--out", str(out))
    message = one_line(result.stderr)
    assert result.returncode == 1, result.stderr
    assert f"error: cannot write {out / '.storyreel.lock'}: Permission denied" in message
    assert "(--out chooses the render folder)" in message
    assert "Traceback" not in result.stderr and list(out.iterdir()) == []


def test_a_render_folder_made_read_only_mid_render_loses_no_shot(
    tmp_path: Path, shot_cache: Path, bound_by_permissions: None
) -> None:
    out = tmp_path / "out"
    result = cli("render", str(story(tmp_path)), "--out", str(out), env={"FREEZE_AFTER_FIRST_SHOT": str(out)})
    message = one_line(result.stderr)
    assert result.returncode == 1, result.stderr
    assert f"error: cannot write {out / 'shots' / 'dip.mp4'}: Permission denied" in message
    assert "Traceback" not in result.stderr
    # The shot written before is still there and in the manifest; the one the folder refused went to the cache.
    assert [s.id for s in Manifest.read(out / "manifest.json").shots] == ["glide"]
    assert (out / "shots" / "glide.mp4").is_file()
    (out / "shots").chmod(0o755)
    out.chmod(0o755)
    again = cli("render", str(story(tmp_path)), "--out", str(out), "--json")
    assert again.returncode == 0, again.stderr
    cached = {s["id"]: s["cached"] for s in yaml.safe_load(again.stdout)["shots"]}
    assert cached == {"glide": True, "dip": True, "heron": False, "rise": False}
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no lock, no partial file


def test_a_read_only_storyboard_folder_stops_enhance_before_any_prompt(
    tmp_path: Path, bound_by_permissions: None
) -> None:
    folder = tmp_path / "stories"
    folder.mkdir()
    path = story(folder)
    folder.chmod(0o555)
    result = cli("enhance", str(path))
    message = one_line(result.stderr)
    assert result.returncode == 1, result.stderr
    assert f"error: cannot write {folder / 'story.lock.yaml'}: Permission denied" in message
    assert "(the prompt lock is kept beside the storyboard)" in message
    assert "Traceback" not in result.stderr and sorted(p.name for p in folder.iterdir()) == ["story.yaml"]


# --- a file where a folder should be, and the reverse ----------------------------------------------------------


def test_out_pointing_at_a_file(tmp_path: Path) -> None:
    (tmp_path / "film.mp4").write_bytes(b"an old film")
    result = runner.invoke(app, ["render", str(story(tmp_path)), "--out", str(tmp_path / "film.mp4")])
    assert result.exit_code == 1
    assert f"error: cannot write {tmp_path / 'film.mp4'}: Not a directory" in one_line(result.output)
    assert (tmp_path / "film.mp4").read_bytes() == b"an old film"


def test_cache_dir_pointing_at_a_file(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("not a folder")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["render", str(story(tmp_path)), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    )
    message = one_line(result.output)
    assert result.exit_code == 1
    assert f"error: cannot write {tmp_path / 'cache' / 'shots'}: Not a directory" in message
    assert "(--cache-dir chooses the shot cache)" in message
    assert not out.exists()  # refused before anything was generated


def test_new_force_onto_a_folder(tmp_path: Path) -> None:
    (tmp_path / "films").mkdir()
    result = runner.invoke(app, ["new", str(tmp_path / "films"), "--force"])
    assert result.exit_code == 1
    assert (
        f"error: cannot write {tmp_path / 'films'}: Is a directory; fix: give the storyboard a file name, "
        f"e.g. {tmp_path / 'films' / 'story.yaml'}"
    ) in one_line(result.output)
    assert list((tmp_path / "films").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "films"
    ]


# --- a full disk ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that fills up for real."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "storyreel-test", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill up ({made.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` bytes of free space."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "ab") as stream:
        stream.write(b"\0" * max(0, free - leave))


def test_a_full_disk_while_writing_the_film(tmp_path: Path, small_disk: Path) -> None:
    out = small_disk / "out"
    first = runner.invoke(app, ["render", str(story(tmp_path)), "--out", str(out)])
    assert first.exit_code == 0, first.output
    (out / "film.mp4").unlink()
    fill(small_disk, leave=16 << 10)  # the manifest fits, the film does not
    result = runner.invoke(app, ["render", str(story(tmp_path)), "--out", str(out)])
    message = one_line(result.output)
    assert result.exit_code == 1, result.output
    assert f"error: cannot write {out / 'film.mp4'}: No space left on device; fix: free some space" in message
    assert "x264" not in message and "Traceback" not in message
    assert [p.name for p in sorted((out / "shots").iterdir())] == [
        "dip.mp4",
        "glide.mp4",
        "heron.mp4",
        "rise.mp4",
    ]
    assert not [p for p in out.rglob(".*")]  # no partial film, no lock


def test_a_full_disk_while_writing_a_shot_keeps_it_in_the_cache(tmp_path: Path, small_disk: Path) -> None:
    out = small_disk / "out"
    fill(small_disk, leave=8 << 10)
    result = runner.invoke(app, ["render", str(story(tmp_path)), "--out", str(out)])
    message = one_line(result.output)
    assert result.exit_code == 1, result.output
    assert f"error: cannot write {out / 'shots' / 'glide.mp4'}: No space left on device" in message
    assert "Traceback" not in message
    elsewhere = runner.invoke(
        app, ["render", str(story(tmp_path)), "--out", str(tmp_path / "elsewhere"), "--json"]
    )
    assert elsewhere.exit_code == 0, elsewhere.output
    assert {s.id: s.cached for s in Manifest.read(tmp_path / "elsewhere" / "manifest.json").shots}["glide"]


# --- a shot too big for the GPU ---------------------------------------------------------------------------------


class NeverFits(AnimaticGenerator):
    """Runs out of accelerator memory on shot 'dip', whatever it is offered."""

    def generate(self, request, progress=None):  # type: ignore[no-untyped-def, override]
        if request.shot.id == "dip":
            raise OutOfMemory("shot 'dip' ran out of cuda memory: Tried to allocate 20.00 GiB")
        return super().generate(request, progress)


def test_a_shot_that_fits_no_step_of_the_memory_ladder_is_exit_1_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = small_board(base_num_frames=57)
    for scene in board["scenes"]:
        for shot in scene["shots"]:
            shot["duration"] = "5s"
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(board))
    monkeypatch.setattr("storyreel.rendering.load_backend", lambda group, name: NeverFits)
    result = runner.invoke(app, ["render", str(path), "--out", str(tmp_path / "out")])
    message = one_line(result.output)
    assert result.exit_code == 1, result.output
    assert "error: 2 shot(s) could not be generated; every other shot is saved and will be reused" in message
    assert "shot 'dip' does not fit in GPU memory even with base_num_frames=37" in message
    assert (
        "fix: a smaller resolution, fewer frames per window (generation.base_num_frames), --offload"
        in message
    )
    assert "internal error" not in message and "Traceback" not in message
    assert [s.id for s in Manifest.read(tmp_path / "out" / "manifest.json").shots] == ["glide", "heron"]
