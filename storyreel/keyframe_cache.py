"""The keyframe cache: every keyframe the keyframe stage draws kept under its key, beside the shots.

A keyframe is ``<cache>/keyframes/ab/ab12....png`` with a ``.json`` record of the storyboards that used it
and the shots made from it. ``cache gc`` (:mod:`storyreel.cache_gc`) applies the shots' rules to them, and
keeps a keyframe while a shot entry made from it stays (a keyframe redrawn is another picture, and every
shot drawn from it would be made again).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

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

# The keyframe record format (``<key>.json`` beside ``<key>.png``); as with entries, a record of another
# version belongs to another storyreel sharing this cache and is left alone.
KEYFRAME_VERSION = 1
_KEYFRAME_TYPES: dict[str, tuple[type, ...]] = {
    "key": TEXT,
    "sha256": TEXT,
    "created": NUMBER,
    "used_by": (list,),
    "shots": (list,),
    "version": COUNT,
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
    if raw["key"] != path.stem or not SHA256.fullmatch(raw["sha256"]):
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
        with folder_locked(png):
            write_json(png.with_suffix(".json"), asdict(info))

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
            with folder_locked(png):
                if record.exists():
                    info = read_keyframe_record(record)
                else:
                    info = KeyframeInfo(key=png.stem, sha256=file_sha256(png), created=cached)
                before = (list(info.used_by), list(info.shots))
                if used_by and used_by not in info.used_by:
                    info.used_by.append(used_by)
                info.shots.extend(key for key in shots if key not in info.shots)
                if (info.used_by, info.shots) != before or not record.exists():
                    write_json(record, asdict(info))
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
                    and SHA256.fullmatch(path.stem)
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
