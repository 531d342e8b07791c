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
other copy is dropped. Every use re-checks the entry: ``entry.json`` must hold every field with its
type, list exactly ``shot.mp4`` and ``tail.npz`` with checksums both files match, and describe the
tail the archive really holds. Anything else is damage (a disk error, an interrupted copy, a hand
edit): the entry is reported, removed and the shot generated again, never assembled into a film.

The keyframes the keyframe stage draws are kept beside the shots (:mod:`storyreel.keyframe_cache`), ``cache
gc`` trims both (:mod:`storyreel.cache_gc`), and where the cache lives is :mod:`storyreel.cache_root`; the
names of all three are importable from here.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import UMASK
from .cache_gc import GcPlan, apply_gc, kept_storyboards, parse_age, parse_size, plan_gc
from .cache_root import (
    COUNT,
    NUMBER,
    SHA256,
    TEXT,
    CacheDamaged,
    ForeignEntry,
    default_cache_dir,
    folder_locked,
    write_json,
)
from .fingerprint import file_sha256
from .keyframe_cache import KeyframeCache, KeyframeInfo, KeyframeRow, read_keyframe_record

__all__ = [
    "ENTRY_FILES",
    "ENTRY_VERSION",
    "CacheDamaged",
    "CachedShot",
    "EntryInfo",
    "ForeignEntry",
    "GcPlan",
    "KeyframeCache",
    "KeyframeInfo",
    "KeyframeRow",
    "ShotCache",
    "apply_gc",
    "default_cache_dir",
    "kept_storyboards",
    "parse_age",
    "parse_size",
    "plan_gc",
    "read_entry",
    "read_keyframe_record",
]

# The entry format. Any change to entry.json's fields bumps it: an entry of another version belongs to another
# storyreel sharing this cache, and is left alone (neither used, listed, replaced nor removed).
ENTRY_VERSION = 1
ENTRY_FILES = ("shot.mp4", "tail.npz")  # what every entry holds besides entry.json


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


# The type each entry.json field must have. A hand-edited or half-written entry.json is damage, and
# checking types here keeps a string where a number belongs from failing later, inside a render.
_OPTIONAL_TEXT = (str, type(None))
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "key": TEXT,
    "shot_id": TEXT,
    "storyboard": _OPTIONAL_TEXT,
    "generator": TEXT,
    "model": _OPTIONAL_TEXT,
    "frames": COUNT,
    "width": COUNT,
    "height": COUNT,
    "fps": COUNT,
    "tail_frames": COUNT,
    "dit_passes": COUNT,
    "seconds_generating": NUMBER,
    "created": NUMBER,
    "files": (dict,),
    "used_by": (list,),
    "version": COUNT,
    "info": (dict,),
}


def read_entry(folder: Path) -> EntryInfo:
    """``folder``'s entry.json, checked for shape (every field, its type, exactly the files an entry holds).

    Cheap: no file is hashed. :meth:`ShotCache.get` adds the checksums before anything is used.
    Raises :class:`CacheDamaged` saying what is wrong.
    """
    try:
        raw = json.loads((folder / "entry.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheDamaged(f"entry.json unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise CacheDamaged("entry.json is not a JSON object")
    if raw.get("version") != ENTRY_VERSION and isinstance(raw.get("version"), int):
        raise ForeignEntry(f"entry format {raw['version']}, not {ENTRY_VERSION}")
    missing = sorted(set(_ENTRY_TYPES) - set(raw))
    unknown = sorted(set(raw) - set(_ENTRY_TYPES))
    if missing or unknown:
        raise CacheDamaged(
            "entry.json "
            + "; ".join(
                part
                for part in (
                    f"lacks {', '.join(missing)}" if missing else "",
                    f"has unknown fields {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
        )
    for name, types in _ENTRY_TYPES.items():
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, types):  # bool is an int to Python, not here
            raise CacheDamaged(f"entry.json field {name} is {value!r}, not a {types[0].__name__}")
        if isinstance(value, (int, float)) and (
            (types is COUNT and value < 0) or (types is NUMBER and not math.isfinite(value))
        ):
            raise CacheDamaged(f"entry.json field {name} is {value!r}")
    files = raw["files"]
    if sorted(files) != sorted(ENTRY_FILES):
        raise CacheDamaged(
            f"entry.json lists the files {sorted(files)}; an entry holds exactly {list(ENTRY_FILES)}"
        )
    if not all(isinstance(digest, str) and SHA256.fullmatch(digest) for digest in files.values()):
        raise CacheDamaged("entry.json holds a checksum that is not a sha256")
    if not all(isinstance(user, str) for user in raw["used_by"]):
        raise CacheDamaged("entry.json field used_by is not a list of storyboard paths")
    return EntryInfo(**raw)


def _tail_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and type of the frames in a tail archive, read from the array header only."""
    with zipfile.ZipFile(path) as archive, archive.open("frames.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unknown array format {version}")
    return shape, dtype


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
        except ForeignEntry:
            return None  # another storyreel version's: a miss, and left as it is
        except (FileNotFoundError, PermissionError) as error:  # removed meanwhile, or not ours to read
            self.warn(
                f"cache entry {key[:12]} cannot be read ({error.strerror}); the shot is generated again"
            )
            return None
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
        info = read_entry(folder)
        if info.key != key:
            raise CacheDamaged("entry.json belongs to another key")
        for name in ENTRY_FILES:
            path = folder / name
            if not path.is_file():
                raise CacheDamaged(f"{name} is missing")
            if file_sha256(path) != info.files[name]:
                raise CacheDamaged(f"{name} does not match its checksum")
        # The archive is the one that was written; entry.json must also say truly what it holds, since a
        # continuing shot trusts tail_frames to hold the frames it is conditioned on.
        try:
            shape, dtype = _tail_header(folder / "tail.npz")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise CacheDamaged(f"tail.npz unreadable: {exc}") from exc
        if shape != (info.tail_frames, info.height, info.width, 3) or dtype != np.uint8:
            raise CacheDamaged(
                f"tail.npz holds {dtype} frames of shape {shape} but entry.json describes "
                f"{info.tail_frames} frames of {info.width}x{info.height}"
            )
        return info

    def _touch(self, entry: CachedShot, used_by: str | None) -> None:
        """Record the use (for ``cache gc``); best effort, never fatal. The storyboard is added to ``used_by``
        under a lock on the entry's folder, re-reading entry.json there, so two renders recording their
        storyboards at once both stay recorded (a lost record would let ``gc`` remove a kept shot)."""
        try:
            os.utime(entry.folder)
            if not used_by or used_by in entry.info.used_by:
                return
            with folder_locked(entry.folder):
                current = read_entry(entry.folder)
                if used_by not in current.used_by:
                    current.used_by.append(used_by)
                    write_json(entry.folder / "entry.json", asdict(current))
                entry.info.used_by[:] = current.used_by
        except (OSError, CacheDamaged, ForeignEntry):
            pass

    # --- writing ----------------------------------------------------------------------------------------------

    def put(self, info: EntryInfo, mp4: Path, tail: np.ndarray, *, replace: bool = False) -> bool:
        """Publish an entry (the mp4 is copied, not moved). Returns False, after a warning, if it could not be
        written: a cache that is full or not writable never stops a render.

        An entry already under the key is kept, unless ours keeps more of the tail (a new continuation needs
        it), or ``replace`` (the shot was generated again on purpose, ``--no-cache``), or it is damaged; an
        entry of another storyreel version is always left alone.
        """
        staging: Path | None = None
        try:
            self.shots.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.shots))
            os.chmod(
                staging, 0o777 & ~UMASK
            )  # as a folder made the ordinary way: a shared cache stays shared
            shutil.copyfile(mp4, staging / "shot.mp4")
            with open(staging / "tail.npz", "wb") as stream:
                np.savez_compressed(stream, frames=np.ascontiguousarray(tail, dtype=np.uint8))
                stream.flush()
                os.fsync(stream.fileno())
            info.files = {name: file_sha256(staging / name) for name in ENTRY_FILES}
            info.tail_frames = int(tail.shape[0])
            write_json(staging / "entry.json", asdict(info))
            final = self.folder(info.key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, final)  # atomic; fails if another render published this key first
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if self._gives_way(final, info, replace):
                    self._remove(final)
                    os.rename(staging, final)
            return True
        except OSError as exc:
            self.warn(
                f"could not cache shot '{info.shot_id}' in {self.root}: {exc.strerror or exc}; the render goes on"
            )
            return False
        finally:
            if staging is not None and staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _gives_way(self, final: Path, ours: EntryInfo, replace: bool) -> bool:
        """Whether the entry already at ``final`` is to be replaced by ``ours`` (see :meth:`put`)."""
        try:
            read_entry(final)
        except ForeignEntry:
            return False
        except CacheDamaged:
            return True
        if replace:
            return True
        theirs = self.get(ours.key)  # verified in full; removed if damaged
        return theirs is None or theirs.info.tail_frames < ours.tail_frames

    # --- housekeeping -----------------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[Path, EntryInfo | None, int, float]]:
        """(folder, info or None when damaged, bytes, last used as a timestamp) of every entry.

        Only folders shaped like entries are listed (``<2 hex digits>/<64 hex digits>``, the key starting
        with its folder's digits): anything else in the folder was not written by storyreel and is left
        alone by every command. Files are not hashed here; see :func:`read_entry`.
        """
        if not self.shots.is_dir():
            return
        for prefix in sorted(self.shots.iterdir()):
            if not re.fullmatch(r"[0-9a-f]{2}", prefix.name) or not prefix.is_dir() or prefix.is_symlink():
                continue
            for folder in sorted(prefix.iterdir()):
                if not (SHA256.fullmatch(folder.name) and folder.name.startswith(prefix.name)):
                    continue  # not an entry; folders being removed start with a dot
                try:
                    if not folder.is_dir() or folder.is_symlink():
                        continue
                    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                    used = folder.stat().st_mtime
                except OSError:  # removed while we looked
                    continue
                try:
                    info: EntryInfo | None = read_entry(folder)
                except ForeignEntry:
                    continue  # another storyreel version's: left alone
                except CacheDamaged:
                    info = None
                yield folder, info, size, used

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
