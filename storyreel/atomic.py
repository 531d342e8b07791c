"""Files that appear whole or not at all.

Everything storyreel writes (shots, the film, the manifest, captions) is written under a hidden
temporary name in the destination folder and renamed into place, so that a crash or a kill at
any moment leaves either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import, while nothing else runs: os.umask can only be read by setting it, which would race
# with threads creating files (the enhancer writes the prompt lock from worker threads).
UMASK = _read_umask()


def temporary_beside(path: Path, suffix: str | None = None) -> Path:
    """A new empty file in ``path``'s folder (so that renaming it over ``path`` is atomic).

    Its name starts with a dot and ends in ``.partial<suffix>`` (the suffix defaults to ``path``'s,
    so tools that pick a format from the extension still can); its mode follows the umask, like
    a file created the ordinary way.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=f".partial{path.suffix if suffix is None else suffix}",
        dir=path.parent,
    )
    os.close(handle)
    os.chmod(name, 0o666 & ~UMASK)
    return Path(name)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: to a temporary file, flushed to disk, then renamed over ``path``."""
    temporary = temporary_beside(path)
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def copy_atomic(source: Path, destination: Path) -> None:
    """Copy ``source`` over ``destination`` atomically (nothing to do when it already holds the same bytes)."""
    import filecmp
    import shutil

    if destination.is_file() and filecmp.cmp(source, destination, shallow=False):
        return
    temporary = temporary_beside(destination)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
