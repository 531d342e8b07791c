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

``cache gc`` removes only what it is plainly asked to: entries unused for longer than a positive
age, the least recently used beyond a positive size, or every entry with ``--all``; never those
of the storyboards it is told to keep; and only folders shaped like entries (a two-hex-digit
folder holding a folder named by a 64-hex-digit key), so a cache folder pointed at the wrong place
loses nothing that storyreel did not write.

The keyframes the keyframe stage draws are kept beside the shots (:class:`KeyframeCache`),
``<cache>/keyframes/ab/ab12....png`` with a ``.json`` record of the storyboards that used each and the
shots made from it; ``cache gc`` applies the same rules to them, and keeps a keyframe while a shot entry
made from it stays (a keyframe redrawn is another picture, and every shot drawn from it would be made
again).

The cache lives in ``$STORYREEL_CACHE``, else the user cache directory (``~/.cache/storyreel`` on
Linux, ``~/Library/Caches/storyreel`` on macOS, ``%LOCALAPPDATA%\\storyreel`` on Windows).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import UMASK
from .errors import UserError
from .fingerprint import file_sha256

# The entry format. Any change to entry.json's fields bumps it: an entry of another version belongs to another
# storyreel sharing this cache, and is left alone (neither used, listed, replaced nor removed).
ENTRY_VERSION = 1
ENTRY_FILES = ("shot.mp4", "tail.npz")  # what every entry holds besides entry.json
_SHA256 = re.compile(r"[0-9a-f]{64}")  # a checksum, and the name of an entry's folder (its key)


def default_cache_dir() -> Path:
    """``$STORYREEL_CACHE``, else the platform's per-user cache folder."""
    configured = os.environ.get("STORYREEL_CACHE")
    if configured:
        return Path(os.path.expanduser(configured))  # ~user of no user here stays as written
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


class ForeignEntry(Exception):
    """An entry written in another entry format, by another storyreel version sharing the cache."""


# The type each entry.json field must have. A hand-edited or half-written entry.json is damage, and
# checking types here keeps a string where a number belongs from failing later, inside a render.
_TEXT, _COUNT, _NUMBER = (str,), (int,), (int, float)
_OPTIONAL_TEXT = (str, type(None))
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "key": _TEXT,
    "shot_id": _TEXT,
    "storyboard": _OPTIONAL_TEXT,
    "generator": _TEXT,
    "model": _OPTIONAL_TEXT,
    "frames": _COUNT,
    "width": _COUNT,
    "height": _COUNT,
    "fps": _COUNT,
    "tail_frames": _COUNT,
    "dit_passes": _COUNT,
    "seconds_generating": _NUMBER,
    "created": _NUMBER,
    "files": (dict,),
    "used_by": (list,),
    "version": _COUNT,
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
            (types is _COUNT and value < 0) or (types is _NUMBER and not math.isfinite(value))
        ):
            raise CacheDamaged(f"entry.json field {name} is {value!r}")
    files = raw["files"]
    if sorted(files) != sorted(ENTRY_FILES):
        raise CacheDamaged(
            f"entry.json lists the files {sorted(files)}; an entry holds exactly {list(ENTRY_FILES)}"
        )
    if not all(isinstance(digest, str) and _SHA256.fullmatch(digest) for digest in files.values()):
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
            with _folder_locked(entry.folder):
                current = read_entry(entry.folder)
                if used_by not in current.used_by:
                    current.used_by.append(used_by)
                    _write_json(entry.folder / "entry.json", asdict(current))
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
            _write_json(staging / "entry.json", asdict(info))
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
                if not (_SHA256.fullmatch(folder.name) and folder.name.startswith(prefix.name)):
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


# The keyframe record format (``<key>.json`` beside ``<key>.png``); as with entries, a record of another
# version belongs to another storyreel sharing this cache and is left alone.
KEYFRAME_VERSION = 1
_KEYFRAME_TYPES: dict[str, tuple[type, ...]] = {
    "key": _TEXT,
    "sha256": _TEXT,
    "created": _NUMBER,
    "used_by": (list,),
    "shots": (list,),
    "version": _COUNT,
}


@dataclass
class KeyframeInfo:
    """``<key>.json``: who uses a cached keyframe. Its last use is the PNG's modification time."""

    key: str
    sha256: str  # of the PNG
    created: float
    used_by: list[str] = field(default_factory=list)  # storyboard files that have used it
    shots: list[str] = field(default_factory=list)  # keys of the shot entries made from it
    version: int = KEYFRAME_VERSION


def read_keyframe_record(path: Path) -> KeyframeInfo:
    """A keyframe's record, checked for shape (every field and its type); CacheDamaged or ForeignEntry."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheDamaged(f"{path.name} unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise CacheDamaged(f"{path.name} is not a JSON object")
    if raw.get("version") != KEYFRAME_VERSION and isinstance(raw.get("version"), int):
        raise ForeignEntry(f"keyframe record format {raw['version']}, not {KEYFRAME_VERSION}")
    if sorted(raw) != sorted(_KEYFRAME_TYPES):
        raise CacheDamaged(f"{path.name} holds the fields {sorted(raw)}, not {sorted(_KEYFRAME_TYPES)}")
    for name, types in _KEYFRAME_TYPES.items():
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise CacheDamaged(f"{path.name} field {name} is {value!r}, not a {types[0].__name__}")
    if raw["key"] != path.stem or not _SHA256.fullmatch(raw["sha256"]):
        raise CacheDamaged(f"{path.name} names another key or holds a checksum that is not a sha256")
    if not all(isinstance(item, str) for item in (*raw["used_by"], *raw["shots"])):
        raise CacheDamaged(f"{path.name} lists something that is not a path or a key")
    return KeyframeInfo(**raw)


@dataclass(frozen=True)
class KeyframeRow:
    """One cached keyframe as ``cache ls|du|gc`` see it: its PNG, its record (None: a keyframe cached before
    keyframes had records, used by no storyboard), its bytes, its last use, and whether it is damaged."""

    png: Path
    info: KeyframeInfo | None
    size: int
    used: float
    damaged: bool = False

    @property
    def record(self) -> Path:
        return self.png.with_suffix(".json")

    @property
    def key(self) -> str:
        return self.png.stem


class KeyframeCache:
    """The keyframes folder of a cache root: ``keyframes/<2 hex>/<key>.png``, each with a ``<key>.json``
    record of the storyboards that used it and the shots made from it, so ``cache gc`` treats keyframes as it
    treats shots. A keyframe redrawn is not the same picture (an image model is not bit-reproducible), and
    its bytes are part of every shot key made from it: removing one costs every shot drawn from it."""

    def __init__(self, root: str | Path | None = None, warn: Callable[[str], None] = lambda message: None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.keyframes = self.root / "keyframes"
        self.warn = warn

    def png(self, key: str) -> Path:
        return self.keyframes / key[:2] / f"{key}.png"

    def get(self, key: str, *, used_by: str | None = None) -> Path | None:
        """The cached keyframe's PNG, checked against its record's checksum and marked used (now, by
        ``used_by``); None when absent, or damaged (then it is removed and drawn again)."""
        png, record = self.png(key), self.png(key).with_suffix(".json")
        if not png.is_file():
            return None
        try:
            if record.exists():
                info = read_keyframe_record(record)
                if file_sha256(png) != info.sha256:
                    raise CacheDamaged(f"{png.name} does not match its checksum")
        except ForeignEntry:
            return None
        except OSError:
            return None
        except CacheDamaged as damage:
            self.warn(f"cached keyframe {key[:12]} is damaged ({damage}); it is removed and drawn again")
            self.remove(png)
            return None
        self._touch(png, used_by=used_by)
        return png

    def put(self, key: str, data: bytes, *, used_by: str | None = None) -> None:
        """Cache a drawn keyframe and its record; the PNG first, so a crash between leaves a keyframe that
        reads as one cached before records (used by no storyboard), never a record without its picture."""
        from .atomic import write_bytes_atomic

        png = self.png(key)
        write_bytes_atomic(png, data)
        info = KeyframeInfo(
            key=key, sha256=file_sha256(png), created=time.time(), used_by=[used_by] if used_by else []
        )
        with _folder_locked(png):
            _write_json(png.with_suffix(".json"), asdict(info))

    def record_shots(self, key: str, shots: list[str]) -> None:
        """Note in the keyframe's record the keys of the shot entries made from it, so that ``cache gc``
        keeps it while one of them stays; best effort, never fatal."""
        self._touch(self.png(key), shots=shots, mark_used=False)

    def _touch(
        self, png: Path, *, used_by: str | None = None, shots: Sequence[str] = (), mark_used: bool = True
    ) -> None:
        """Mark the keyframe used and add to its record under a lock on the PNG, re-reading the record
        there, so that two renders recording at once both stay recorded. A keyframe without a record gets
        one (its checksum, created at its modification time)."""
        record = png.with_suffix(".json")
        try:
            cached = png.stat().st_mtime  # when a keyframe without a record was cached
            if mark_used:
                os.utime(png)
            with _folder_locked(png):
                if record.exists():
                    info = read_keyframe_record(record)
                else:
                    info = KeyframeInfo(key=png.stem, sha256=file_sha256(png), created=cached)
                before = (list(info.used_by), list(info.shots))
                if used_by and used_by not in info.used_by:
                    info.used_by.append(used_by)
                info.shots.extend(key for key in shots if key not in info.shots)
                if (info.used_by, info.shots) != before or not record.exists():
                    _write_json(record, asdict(info))
        except (OSError, CacheDamaged, ForeignEntry):
            pass

    def entries(self) -> Iterator[KeyframeRow]:
        """Every cached keyframe (``<2 hex>/<64 hex>.png`` and its record; files shaped otherwise were not
        written by storyreel and are left alone). A record that is unreadable, misshapen or without its PNG
        is damaged; a PNG without a record was cached before records existed: used by no storyboard, last
        used at its modification time. Nothing is hashed here."""
        if not self.keyframes.is_dir():
            return
        for prefix in sorted(self.keyframes.iterdir()):
            if not re.fullmatch(r"[0-9a-f]{2}", prefix.name) or not prefix.is_dir() or prefix.is_symlink():
                continue
            keys = sorted(
                {
                    path.stem
                    for path in prefix.iterdir()
                    if path.suffix in (".png", ".json")
                    and _SHA256.fullmatch(path.stem)
                    and path.stem.startswith(prefix.name)
                }
            )
            for key in keys:
                png = prefix / f"{key}.png"
                record = png.with_suffix(".json")
                try:
                    if png.is_symlink() or record.is_symlink():
                        continue
                    has_png, has_record = png.is_file(), record.is_file()
                    if not has_png and not has_record:
                        continue
                    size = sum(p.stat().st_size for p in (png, record) if p.is_file())
                    used = (png if has_png else record).stat().st_mtime
                except OSError:  # removed while we looked
                    continue
                if not has_record:
                    yield KeyframeRow(png, None, size, used)
                    continue
                try:
                    info = read_keyframe_record(record)
                except ForeignEntry:
                    continue
                except CacheDamaged:
                    yield KeyframeRow(png, None, size, used, damaged=True)
                    continue
                yield KeyframeRow(png, info, size, used, damaged=not has_png)

    def remove(self, png: Path) -> None:
        """Remove a keyframe: its PNG first (so no render reuses it meanwhile), then its record."""
        for path in (png, png.with_suffix(".json")):
            try:
                path.unlink()
            except OSError:
                pass


@contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder`` (or a file) while the block runs (none where there are no
    flocks)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write_json(path: Path, document: dict[str, object]) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


_NUMBER_AND_UNIT = r"([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)"  # sign, number, unit
_SIZE_UNITS = {
    **dict.fromkeys(("b", "byte", "bytes"), 1),
    **dict.fromkeys(("k", "kb", "kib"), 1 << 10),
    **dict.fromkeys(("m", "mb", "mib"), 1 << 20),
    **dict.fromkeys(("g", "gb", "gib"), 1 << 30),
    **dict.fromkeys(("t", "tb", "tib"), 1 << 40),
    **dict.fromkeys(("p", "pb", "pib"), 1 << 50),
}
_DAY = 86400
_AGE_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), _DAY),
    **dict.fromkeys(("w", "week", "weeks"), 7 * _DAY),
    **dict.fromkeys(("mo", "month", "months"), 30 * _DAY),
    **dict.fromkeys(("y", "yr", "year", "years"), 365 * _DAY),
}
_SIZE_EXAMPLES = "write a size such as 500M, 20G or 1.5T (units B, K, M, G, T, P: powers of 1024)"
_AGE_EXAMPLES = "write an age such as 12h, 30d, 6w or 1y (units s, min, h, d, w, mo, y)"
_EVERYTHING = "to remove every cached shot on purpose, run: storyreel cache gc --all"


def _number_and_unit(option: str, text: str, what: str, examples: str) -> tuple[float, str]:
    """(value, unit) of ``12h``, ``1.5 G``; UserError unless it is one positive, finite number and a unit.

    Zero or less is refused before the unit is looked at: it would remove every shot whatever the unit.
    """
    match = re.fullmatch(_NUMBER_AND_UNIT, text.strip())
    if match is None:
        if text.strip().lstrip("+-").lower() in ("inf", "infinity", "nan"):
            raise UserError(f"{option} {text!r} is not a finite number; {examples}")
        raise UserError(f"{option} {text!r} is not a number with a unit; {examples}")
    sign, number, unit = match.groups()
    value = float(number)
    if sign == "-" or value == 0:
        raise UserError(
            f"{option} {text!r}: {what} of zero or less would remove every cached shot, so nothing was "
            f"removed; {examples}, or, {_EVERYTHING}"
        )
    if not math.isfinite(value):
        raise UserError(f"{option} {text!r} is too large; {examples}")
    if not unit:
        raise UserError(f"{option} {text!r} has no unit; {examples}")
    return value, unit


def parse_size(text: str, option: str = "--max-size") -> int:
    """Bytes in '500M', '20G', '1.5T', '4096B': a positive number and a unit, powers of 1024.

    What ``cache gc --max-size`` reads, for :func:`plan_gc`'s ``max_bytes``; ``option`` names the setting
    in the ``UserError`` a bad value raises. A bare number is refused (was '50' meant as bytes, which would
    empty the cache, or as 50G?), and so is zero or less: each would remove every shot by accident, and
    ``--all`` says that on purpose.

    >>> parse_size("1.5G"), parse_size("4096B")
    (1610612736, 4096)
    """
    value, unit = _number_and_unit(option, text, "a size", _SIZE_EXAMPLES)
    if unit.lower() not in _SIZE_UNITS:
        raise UserError(f"{option} {text!r}: unknown unit {unit!r}; {_SIZE_EXAMPLES}")
    size = int(value * _SIZE_UNITS[unit.lower()])
    if size < 1:
        raise UserError(
            f"{option} {text!r} is less than one byte, which would remove every cached shot, so nothing was "
            f"removed; {_SIZE_EXAMPLES}, or, {_EVERYTHING}"
        )
    return size


def parse_age(text: str, option: str = "--older-than") -> float:
    """Seconds in '90min', '12h', '30d', '2w', '6mo', '1y': a positive number and a unit.

    What ``cache gc --older-than`` reads, for :func:`plan_gc`'s ``older_than``; ``option`` names the
    setting in the ``UserError`` a bad value raises. A bare number and 'm' are refused as ambiguous (days
    or seconds? minutes or months?), and so is zero or less: each could remove every shot by accident,
    and ``--all`` says that on purpose.

    >>> parse_age("90min"), parse_age("30d")
    (5400.0, 2592000.0)
    """
    value, unit = _number_and_unit(option, text, "an age", _AGE_EXAMPLES)
    if unit in ("m", "M"):
        number = text.strip()[:-1].strip()
        raise UserError(
            f"{option} {text!r}: 'm' could mean minutes or months; write {number}min or {number}mo"
        )
    if unit.lower() not in _AGE_UNITS:
        raise UserError(f"{option} {text!r}: unknown unit {unit!r}; {_AGE_EXAMPLES}")
    return value * _AGE_UNITS[unit.lower()]


_STORYBOARD_SUFFIXES = (".yaml", ".yml", ".yaml.j2", ".yml.j2")
_FORMAT_KEY = re.compile(rb"^storyreel[ \t]*:", re.MULTILINE)


def kept_storyboards(paths: list[str | Path]) -> set[str]:
    """The storyboards ``cache gc`` must keep the shots of, as entries record them (resolved paths).

    Each must be an existing storyboard file: a path that is mistyped, a folder or another file (a
    prompt lock, a film) would protect nothing, and the shots the user meant to keep would go. Raises
    :class:`~storyreel.errors.UserError` naming every path that is not one.
    """
    problems = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            problems.append(f"{path}: no such file; check the path of the storyboard to keep")
        elif not path.is_file():
            problems.append(f"{path}: not a file; name each storyboard to keep, e.g. films/story.yaml")
        elif path.name.endswith((".lock.yaml", ".lock.yml")):
            problems.append(f"{path}: a prompt lock, not a storyboard; name the storyboard beside it instead")
        elif not path.name.endswith(_STORYBOARD_SUFFIXES):
            problems.append(
                f"{path}: not a storyboard (they end in .yaml, .yml or .yaml.j2); name the storyboard to keep"
            )
        else:
            try:
                with open(path, "rb") as stream:
                    head = stream.read(1 << 20)
            except OSError as exc:
                problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
                continue
            if not _FORMAT_KEY.search(head):
                problems.append(
                    f"{path}: no `storyreel:` line, so it is not a storyboard; name the storyboard to keep"
                )
    if problems:
        raise UserError("nothing was removed: every storyboard to keep must exist\n" + "\n".join(problems))
    return {str(Path(path).resolve()) for path in paths}


@dataclass(frozen=True)
class GcPlan:
    """What ``cache gc`` removes, what it keeps, and why."""

    remove: list[tuple[Path, EntryInfo | None, int]]  # shot entries
    keep_bytes: int  # shots and keyframes
    kept_in_use: int  # shots and keyframes kept for the storyboards given
    damaged: int = 0  # shot entries and keyframes
    remove_keyframes: list[KeyframeRow] = field(default_factory=list)
    kept_for_shots: int = 0  # keyframes a rule would have taken, kept because a shot made from them stays

    @property
    def freed(self) -> int:
        return sum(size for _, _, size in self.remove) + sum(row.size for row in self.remove_keyframes)


def plan_gc(
    cache: ShotCache,
    *,
    older_than: float | None = None,
    max_bytes: int | None = None,
    protect: set[str] | None = None,
    everything: bool = False,
) -> GcPlan:
    """What ``cache gc`` removes, of the shot entries and the keyframes under ``cache``'s root alike: the
    damaged, those unused for ``older_than`` seconds, then the least recently used until the cache fits in
    ``max_bytes``, or with ``everything`` all; never those used by a storyboard in ``protect`` (resolved
    paths, see :func:`kept_storyboards`), and never a keyframe while a shot entry made from it stays (its
    bytes are in that shot's key: redrawn, it would not be the same picture, and the shot and its
    continuations would be generated again).

    ``older_than`` and ``max_bytes`` must be positive and finite: zero or less would remove every shot by
    accident, and removing every shot is asked for with ``everything``. Raises UserError otherwise.
    """
    if older_than is not None and not (math.isfinite(older_than) and older_than > 0):
        raise UserError(
            f"an age of {older_than} seconds would remove every cached shot; give a positive age, "
            "or remove every shot on purpose with everything=True (storyreel cache gc --all)"
        )
    if max_bytes is not None and not max_bytes >= 1:
        raise UserError(
            f"a size of {max_bytes} bytes would remove every cached shot; give a positive size, "
            "or remove every shot on purpose with everything=True (storyreel cache gc --all)"
        )
    protect = protect or set()
    now = time.time()

    def unwanted(used_by: list[str], used: float) -> bool:
        """Whether the age or --all rule takes it (those of the storyboards kept never)."""
        if protect.intersection(used_by):
            return False
        return everything or (older_than is not None and now - used > older_than)

    remove: list[tuple[Path, EntryInfo | None, int]] = []
    kept_shots: dict[str, tuple[Path, EntryInfo, int, float]] = {}
    damaged = 0
    for folder, info, size, used in cache.entries():
        if info is None:  # damaged: no render can use it, whoever made it
            remove.append((folder, info, size))
            damaged += 1
        elif unwanted(info.used_by, used):
            remove.append((folder, info, size))
        else:
            kept_shots[info.key] = (folder, info, size, used)
    remove_keyframes: list[KeyframeRow] = []
    kept_keyframes: list[KeyframeRow] = []
    kept_for_shots: set[str] = set()  # keyframes a rule would take but for the shots made from them
    for row in KeyframeCache(cache.root).entries():
        if row.damaged:
            remove_keyframes.append(row)
            damaged += 1
        elif unwanted(row.info.used_by if row.info else [], row.used):
            if _made_shots(row, kept_shots):
                kept_keyframes.append(row)
                kept_for_shots.add(row.key)
            else:
                remove_keyframes.append(row)
        else:
            kept_keyframes.append(row)
    total = sum(size for _, _, size, _ in kept_shots.values()) + sum(row.size for row in kept_keyframes)
    if max_bytes is not None and total > max_bytes:
        # Least recently used first. A keyframe counts as used as late as the shots made from it, and comes
        # after them on a tie, so that by its turn they are gone unless they stay for a storyboard.
        def last_use(row: KeyframeRow) -> float:
            made = [kept_shots[key][3] for key in (row.info.shots if row.info else []) if key in kept_shots]
            return max([row.used, *made])

        queue: list[tuple[float, int, str | KeyframeRow]] = [
            (used, 0, key) for key, (_, _, _, used) in kept_shots.items()
        ]
        queue += [(last_use(row), 1, row) for row in kept_keyframes]
        for _, _, item in sorted(queue, key=lambda entry: entry[:2]):
            if total <= max_bytes:
                break
            if isinstance(item, str):
                folder, info, size, _ = kept_shots[item]
                if protect.intersection(info.used_by):
                    continue
                del kept_shots[item]
                remove.append((folder, info, size))
                total -= size
            else:
                if item.info and protect.intersection(item.info.used_by):
                    continue
                if _made_shots(item, kept_shots):
                    kept_for_shots.add(item.key)
                    continue
                kept_keyframes.remove(item)
                remove_keyframes.append(item)
                total -= item.size
    in_use = sum(bool(protect.intersection(info.used_by)) for _, info, _, _ in kept_shots.values())
    in_use += sum(bool(row.info and protect.intersection(row.info.used_by)) for row in kept_keyframes)
    return GcPlan(remove, total, in_use, damaged, remove_keyframes, len(kept_for_shots))


def _made_shots(row: KeyframeRow, kept_shots: dict[str, tuple[Path, EntryInfo, int, float]]) -> bool:
    """Whether a shot entry that stays was made from this keyframe."""
    return row.info is not None and any(key in kept_shots for key in row.info.shots)


def apply_gc(cache: ShotCache, plan: GcPlan) -> None:
    """Remove what ``plan`` says to, then the staging folders of renders that were cut off long ago.

    >>> cache = ShotCache()  # doctest: +SKIP
    >>> apply_gc(cache, plan_gc(cache, older_than=parse_age("30d"), max_bytes=parse_size("50G")))  # doctest: +SKIP
    """
    for folder, _, _ in plan.remove:
        cache.remove(folder)
    keyframes = KeyframeCache(cache.root)
    for row in plan.remove_keyframes:
        keyframes.remove(row.png)
    for staging in cache.abandoned():
        cache.remove(staging)
