"""The render folder: where a render's files go, one render at a time.

    <out>/
        film.mp4  film.srt  manifest.json
        film.otio              the film as an editor's timeline (storyreel.editorial)
        review.html  review/   the review page and its pictures (storyreel.review)
        shots/<shot id>.mp4
        .storyreel.lock        while a render runs: its pid, and the lock that keeps a second one out

A render holds the folder from the moment its storyboard is loaded to its end. Under the lock it
removes the temporary files that killed renders left behind; when it ends it removes the lock file
and any folder it made but never wrote into. An OSError while rendering is the machine's state (a
folder that cannot be written, a full disk, a file where a folder should be), never a bug:
:func:`machine_errors` turns it into a MachineError naming the path, the OS's reason and which
option moves that place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from .atomic import make_folder, remove_partials, writing
from .errors import MachineError, UserError

LOCK_NAME = ".storyreel.lock"


def default_out_dir(source: str | Path | None, title: str = "film") -> Path:
    """``./renders/<storyboard stem>/``, or the slugged title for a storyboard built in code.

    >>> default_out_dir("stories/swan_lake.yaml.j2"), default_out_dir(None, "Swan Lake!")
    (PosixPath('renders/swan_lake'), PosixPath('renders/swan-lake'))
    """
    if source is not None:
        name = Path(source).name
        for suffix in (".j2", ".yaml", ".yml"):
            name = name.removesuffix(suffix)
    else:
        name = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "film"
    return Path("renders") / name


class RenderFolder:
    """A render's output folder: its paths, and the lock held while a render writes there.

    ``with folder.locked(note): ...`` makes the folder, takes the lock and clears leftovers. The lock is
    ``flock`` on ``.storyreel.lock``, which holds the owner's pid for the message a second render gets.
    The file is removed when the render ends, while the lock is still held; a render that opened the
    file before it was removed finds, once it has the lock, that the path no longer names the file it
    locked, and starts over with a new one. So removing it never lets two renders in.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shots = self.path / "shots"
        self.manifest = self.path / "manifest.json"
        self.film = self.path / "film.mp4"
        self.captions = self.path / "film.srt"
        self.timeline = self.path / "film.otio"
        self.lock_file = self.path / LOCK_NAME

    def shot(self, shot_id: str) -> Path:
        """Where a shot's own file goes."""
        return self.shots / f"{shot_id}.mp4"

    @contextmanager
    def locked(self, note: Callable[[str], None] | None = None) -> Iterator[RenderFolder]:
        """Hold the folder for one render. ``note`` (a callable taking a message) hears what was cleaned up."""
        # Folders that do not exist yet, deepest first: removed on the way out if left empty, so a render
        # refused before writing anything leaves nothing behind.
        created = [p for p in (self.shots, self.path, *self.path.parents) if not p.exists()]
        handle = None
        try:
            make_folder(self.path)
            handle = self._lock()
            self._remove_leftovers(note)
            yield self
        finally:
            if handle is not None:
                with suppress(OSError):
                    self.lock_file.unlink()  # while still locked: see the class docstring
                handle.close()
            _remove_empty(created)

    def _lock(self) -> IO[str] | None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; renders there are not guarded
            return None
        for _ in range(100):  # each retry means another render finished meanwhile: this ends quickly
            try:
                handle = open(self.lock_file, "a+")
            except (
                FileNotFoundError
            ):  # a render that just ended removed the folder it had made: make it again
                make_folder(self.path)
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise UserError(
                    f"another storyreel render ({holder}) is writing to {self.path}; "
                    "wait for it to finish, or render into another folder with --out"
                ) from None
            except BaseException:
                handle.close()
                raise
            if _names(self.lock_file, handle):
                with writing(self.lock_file):
                    handle.seek(0)
                    handle.truncate()
                    handle.write(f"pid {os.getpid()}")
                    handle.flush()
                return handle
            handle.close()  # the render that held it removed the file meanwhile: lock the one there now
        raise UserError(
            f"could not lock {self.lock_file}: it was replaced 100 times while storyreel tried; the file system "
            "may not support locks (fix: render into a folder on a local disk with --out)"
        )

    def _remove_leftovers(self, note: Callable[[str], None] | None) -> None:
        removed = remove_partials(self.path) + remove_partials(self.shots)
        if removed and note is not None:
            size = sum(bytes_ for _, bytes_ in removed)
            note(
                f"removed {len(removed)} unfinished file(s) ({size / 2**20:.1f} MiB) that an interrupted render "
                f"left in {self.path}"
            )


def _names(path: Path, handle: IO[str]) -> bool:
    """Whether ``path`` still names the open file ``handle``."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue  # never made (a render refused early makes no shots/)
        except OSError:
            break  # not empty: neither are the folders above it


@contextmanager
def machine_errors(*places: tuple[Path | None, str]) -> Iterator[None]:
    """An OSError raised inside becomes a MachineError: which path, the OS's reason, and (from ``places``,
    pairs of a folder and a hint such as "--out chooses the render folder") how to move the place it
    happened in."""
    try:
        yield
    except OSError as error:
        raise _machine_error(error, places) from error


def _machine_error(error: OSError, places: Sequence[tuple[Path | None, str]]) -> MachineError:
    path = Path(error.filename).absolute() if isinstance(error.filename, str) else None
    # The deepest place that holds the path, or that the path is a parent of (a folder it could not create).
    near = [
        (len(folder.absolute().parts), hint)
        for folder, hint in places
        if folder is not None
        and path is not None
        and (path.is_relative_to(folder.absolute()) or folder.absolute().is_relative_to(path))
    ]
    if not near:
        return MachineError.from_os_error(error, doing="use")
    return MachineError.from_os_error(error, hint=max(near)[1])
