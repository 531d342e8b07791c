"""Files that appear whole or not at all.

Everything storyreel writes (shots, the film, the manifest, captions) is written under a hidden
temporary name in the destination folder (``.film.mp4.k3j9x2ab.partial.mp4``) and renamed into
place, so that a crash or a kill at any moment leaves either the previous file or the new one,
never half of one. What a killed process leaves under such a name is removed by
:func:`remove_partials` the next time that folder is written.

An OSError raised while writing names the file being written (never its temporary name), so that
the message a user sees points at a path they know.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import, while nothing else runs: os.umask can only be read by setting it, which would race
# with threads creating files (the enhancer writes the prompt lock from worker threads).
UMASK = _read_umask()


# mkstemp's names: the prefix, eight characters from [a-z0-9_], the suffix.
_PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial(\.[A-Za-z0-9]+)?$")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Let an OSError raised inside about ``path``'s temporary file, or about no file at all (a full disk
    while writing), name ``path``: the file the user knows. Errors about other files keep their names."""
    try:
        yield
    except OSError as error:
        named = Path(error.filename) if isinstance(error.filename, str) else None
        temporary = (
            named is not None and named.parent == path.parent and named.name.startswith(f".{path.name}.")
        )
        if error.errno is None or not (named is None or temporary):
            raise
        raise OSError(error.errno, error.strerror or os.strerror(error.errno), str(path)) from error


def make_folder(path: Path) -> None:
    """Create ``path`` and its parents; a file in the way is ENOTDIR naming it (``mkdir`` says only EEXIST)."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    path.mkdir(parents=True, exist_ok=True)


def temporary_beside(path: Path, suffix: str | None = None) -> Path:
    """A new empty file in ``path``'s folder (so that renaming it over ``path`` is atomic).

    Its name starts with a dot and ends in ``.partial<suffix>`` (the suffix defaults to ``path``'s,
    so tools that pick a format from the extension still can); its mode follows the umask, like
    a file created the ordinary way.
    """
    with writing(path):
        make_folder(path.parent)
        handle, name = tempfile.mkstemp(
            prefix=f".{path.name}.",
            suffix=f".partial{path.suffix if suffix is None else suffix}",
            dir=path.parent,
        )
        os.close(handle)
        os.chmod(name, 0o666 & ~UMASK)
    return Path(name)


def remove_partials(folder: Path) -> list[tuple[Path, int]]:
    """Remove the temporary files that killed writers left in ``folder`` (not below it); return each
    one's path and size. Call it only while no other process can be writing there."""
    removed = []
    try:
        candidates = [entry for entry in folder.iterdir() if _PARTIAL.match(entry.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for candidate in candidates:
        try:
            size = candidate.lstat().st_size
            if candidate.is_dir():
                continue
            candidate.unlink()
        except FileNotFoundError:
            continue
        removed.append((candidate, size))
    return removed


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: to a temporary file, flushed to disk, then renamed over ``path``."""
    temporary = temporary_beside(path)
    try:
        with writing(path):
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
        with writing(destination):
            shutil.copyfile(source, temporary)
            os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
