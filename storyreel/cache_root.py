"""Where the cache lives, and what the shots and keyframes kept in it share.

The cache lives in ``$STORYREEL_CACHE``, else the user cache directory (``~/.cache/storyreel`` on
Linux, ``~/Library/Caches/storyreel`` on macOS, ``%LOCALAPPDATA%\\storyreel`` on Windows). Under it the
shot cache (:mod:`storyreel.cache`) keeps ``shots/`` and the keyframe cache
(:mod:`storyreel.keyframe_cache`) keeps ``keyframes/``; ``cache gc`` (:mod:`storyreel.cache_gc`) trims
both. Both check a record the same way before trusting it (the shape of a key, the type of each field;
anything else is :class:`CacheDamaged`, another storyreel version's format is :class:`ForeignEntry`), and
update it the same way: under a lock, written whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHA256 = re.compile(r"[0-9a-f]{64}")  # a checksum, and the name of an entry's folder or a keyframe (its key)


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


class CacheDamaged(Exception):
    """An entry failed its checks; the message says how."""


class ForeignEntry(Exception):
    """An entry written in another entry format, by another storyreel version sharing the cache."""


# The types a record's fields are checked against. A hand-edited or half-written record is damage, and
# checking types keeps a string where a number belongs from failing later, inside a render.
TEXT, COUNT, NUMBER = (str,), (int,), (int, float)


@contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
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


def write_json(path: Path, document: dict[str, object]) -> None:
    """``document`` as indented JSON at ``path``, which appears whole or not at all."""
    from .atomic import write_text_atomic

    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
