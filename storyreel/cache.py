"""The shot cache: every generated shot kept under its fingerprint, so no GPU minute is spent twice.

A shot's key (:func:`storyreel.fingerprint.shot_key`) covers everything that decides its frames,
its parent's key included, so an edit re-generates exactly the shots it touches and their
continuations. An entry is a folder named after the key::

    <cache>/shots/ab/ab12.../
        shot.mp4     the shot as it goes into the film (the very file, reused byte for byte)
        tail.npz     the shot's last frames, lossless (zlib): what a continuing shot is conditioned on
        entry.json   what the entry is, what it cost, and the sha256 of both files

An entry is built in a private temporary folder and renamed into place only when complete, so a
reader never sees half of one and two renders never corrupt each other: the first rename wins, the
other copy is dropped. Every use re-checks the checksums; a damaged entry is reported, removed and
the shot generated again, never assembled into a film.

The cache lives in ``$STORYREEL_CACHE``, else the user cache directory (``~/.cache/storyreel`` on
Linux, ``~/Library/Caches/storyreel`` on macOS, ``%LOCALAPPDATA%\\storyreel`` on Windows).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import UMASK
from .fingerprint import file_sha256

ENTRY_VERSION = 1


def default_cache_dir() -> Path:
    """``$STORYREEL_CACHE``, else the platform's per-user cache folder."""
    configured = os.environ.get("STORYREEL_CACHE")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "storyreel"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "storyreel"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "storyreel"


@dataclass
class EntryInfo:
    """``entry.json``: what a cache entry holds."""

    key: str
    shot_id: str
    storyboard: str | None  # the storyboard file that made it
    generator: str
    model: str | None
    frames: int
    width: int
    height: int
    fps: int
    tail_frames: int
    dit_passes: int
    seconds_generating: float
    created: float
    files: dict[str, str]  # name -> sha256
    used_by: list[str] = field(default_factory=list)  # storyboard files that have used it
    version: int = ENTRY_VERSION
    info: dict[str, object] = field(default_factory=dict)  # the generator's own facts


@dataclass(frozen=True)
class CachedShot:
    """A verified entry, ready to be used."""

    info: EntryInfo
    folder: Path

    @property
    def mp4(self) -> Path:
        return self.folder / "shot.mp4"

    def tail(self) -> np.ndarray:
        with np.load(self.folder / "tail.npz", allow_pickle=False) as archive:
            return archive["frames"]


class CacheDamaged(Exception):
    """An entry failed its checks; the message says how."""


class ShotCache:
    """The shots folder of a cache root. ``warn`` hears about damaged entries and failed writes."""

    def __init__(self, root: str | Path | None = None, warn: Callable[[str], None] = lambda message: None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.shots = self.root / "shots"
        self.warn = warn

    def folder(self, key: str) -> Path:
        return self.shots / key[:2] / key

    # --- reading ----------------------------------------------------------------------------------------------

    def get(self, key: str, *, need_tail: int = 0, used_by: str | None = None) -> CachedShot | None:
        """The verified entry for ``key``, or None (absent, damaged, or holding fewer than ``need_tail`` frames of tail)."""
        folder = self.folder(key)
        if not folder.is_dir():
            return None
        try:
            entry = CachedShot(self._verify(folder, key), folder)
        except CacheDamaged as damage:
            self.warn(
                f"cache entry {key[:12]} is damaged ({damage}); it is removed and the shot generated again"
            )
            self._remove(folder)
            return None
        if entry.info.tail_frames < need_tail:
            return None  # a continuation now wants more of this shot's tail than was kept: make it again
        self._touch(entry, used_by)
        return entry

    def _verify(self, folder: Path, key: str) -> EntryInfo:
        try:
            raw = json.loads((folder / "entry.json").read_text(encoding="utf-8"))
            info = EntryInfo(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise CacheDamaged(f"entry.json unreadable: {exc}") from exc
        if info.key != key or info.version != ENTRY_VERSION:
            raise CacheDamaged("entry.json belongs to another key or format")
        for name, digest in info.files.items():
            path = folder / name
            if not path.is_file():
                raise CacheDamaged(f"{name} is missing")
            if file_sha256(path) != digest:
                raise CacheDamaged(f"{name} does not match its checksum")
        return info

    def _touch(self, entry: CachedShot, used_by: str | None) -> None:
        """Record the use (for ``cache gc``); best effort, never fatal."""
        try:
            os.utime(entry.folder)
            if used_by and used_by not in entry.info.used_by:
                entry.info.used_by.append(used_by)
                _write_json(entry.folder / "entry.json", asdict(entry.info))
        except OSError:
            pass

    # --- writing ----------------------------------------------------------------------------------------------

    def put(self, info: EntryInfo, mp4: Path, tail: np.ndarray) -> bool:
        """Publish an entry (the mp4 is copied, not moved). Returns False, after a warning, if it could not be written."""
        self.shots.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.shots))
        try:
            os.chmod(
                staging, 0o777 & ~UMASK
            )  # as a folder made the ordinary way: a shared cache stays shared
            shutil.copyfile(mp4, staging / "shot.mp4")
            with open(staging / "tail.npz", "wb") as stream:
                np.savez_compressed(stream, frames=np.ascontiguousarray(tail, dtype=np.uint8))
                stream.flush()
                os.fsync(stream.fileno())
            info.files = {name: file_sha256(staging / name) for name in ("shot.mp4", "tail.npz")}
            info.tail_frames = int(tail.shape[0])
            _write_json(staging / "entry.json", asdict(info))
            final = self.folder(info.key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, final)  # atomic; fails if another render published this key first
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                theirs = self.get(info.key)  # removes it if damaged
                if theirs is None or theirs.info.tail_frames < info.tail_frames:
                    self._remove(final)  # ours keeps more of the tail (a new continuation needs it)
                    os.rename(staging, final)
            return True
        except OSError as exc:
            self.warn(
                f"could not cache shot '{info.shot_id}' in {self.root}: {exc.strerror or exc}; the render goes on"
            )
            return False
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    # --- housekeeping -----------------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[Path, EntryInfo | None, int, float]]:
        """(folder, info or None when unreadable, bytes, last used as a timestamp) of every entry."""
        if not self.shots.is_dir():
            return
        for prefix in sorted(self.shots.iterdir()):
            if not prefix.is_dir() or prefix.name.startswith("."):
                continue
            for folder in sorted(prefix.iterdir()):
                if folder.name.startswith("."):  # being removed
                    continue
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                try:
                    info: EntryInfo | None = EntryInfo(**json.loads((folder / "entry.json").read_text()))
                except (OSError, ValueError, TypeError):
                    info = None
                yield folder, info, size, folder.stat().st_mtime

    def abandoned(self, older_than: float = 3600.0) -> list[Path]:
        """Staging and half-removed folders left by processes that were killed (older than ``older_than`` seconds)."""
        if not self.shots.is_dir():
            return []
        cutoff = time.time() - older_than
        leftovers = [*self.shots.glob(".incoming-*"), *self.shots.glob("*/.removing-*")]
        return [p for p in leftovers if p.stat().st_mtime < cutoff]

    def remove(self, folder: Path) -> None:
        self._remove(folder)

    @staticmethod
    def _remove(folder: Path) -> None:
        """Remove an entry so that no reader can see it half-removed: rename it away first."""
        doomed = folder.with_name(f".removing-{folder.name}-{os.getpid()}")
        try:
            os.rename(folder, doomed)
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)


def _write_json(path: Path, document: dict[str, object]) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class GcPlan:
    remove: list[tuple[Path, EntryInfo | None, int]]
    keep_bytes: int
    kept_in_use: int


def plan_gc(
    cache: ShotCache,
    *,
    older_than: float | None = None,
    max_bytes: int | None = None,
    protect: set[str] | None = None,
    everything: bool = False,
) -> GcPlan:
    """What ``cache gc`` removes: damaged entries, entries unused for ``older_than`` seconds, then the least
    recently used until the cache fits in ``max_bytes``; never entries used by a storyboard in ``protect``
    (unless ``everything``)."""
    protect = protect or set()
    now = time.time()
    rows = sorted(cache.entries(), key=lambda row: row[3])  # least recently used first
    remove: list[tuple[Path, EntryInfo | None, int]] = []
    keep: list[tuple[Path, EntryInfo | None, int]] = []
    kept_in_use = 0
    for folder, info, size, used in rows:
        in_use = info is not None and bool(protect.intersection(info.used_by))
        if everything or info is None or (older_than is not None and now - used > older_than and not in_use):
            remove.append((folder, info, size))
        else:
            keep.append((folder, info, size))
            kept_in_use += in_use
    total = sum(size for _, _, size in keep)
    if max_bytes is not None:
        for row in list(keep):
            if total <= max_bytes:
                break
            if row[1] is not None and protect.intersection(row[1].used_by):
                continue
            keep.remove(row)
            remove.append(row)
            total -= row[2]
    return GcPlan(remove, total, kept_in_use)
