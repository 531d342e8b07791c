"""The exceptions storyreel raises, and what the command line does with them.

    StoryreelError                   base of everything below
    ├── UserError                    the input, the setup or the machine is wrong: exit code 1, no traceback
    │   ├── StoryboardError          a storyboard problem, with file:line:col, field and fix
    │   ├── BackendNotFound          an unknown generator or enhancer name
    │   ├── MissingExtra             a backend needs an optional extra that is not installed
    │   ├── ModelNotFound            a model folder or hub id that cannot be found locally
    │   └── MachineError             the machine's state stops the work: the path and the OS's reason
    │       └── OutOfMemory          a shot does not fit in the device's memory
    └── InternalError                a bug (in storyreel or a backend): exit code 2
        ├── GenerationError          a generator failed while making a shot
        └── AssemblyError            ffmpeg / moviepy failed while writing a file

Every message says what is wrong, where, the offending value, and how to fix it. A folder that cannot
be written, a full disk or a file where a folder should be is not a bug: it is a ``MachineError``
(exit code 1) naming the path and the operating system's reason; exit code 2 is kept for bugs.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StoryreelError(Exception):
    """Base class of every error storyreel raises on purpose."""

    exit_code = 2


class UserError(StoryreelError):
    """The input or the setup is wrong; the message tells the user what to change."""

    exit_code = 1


class InternalError(StoryreelError):
    """Something failed that the user's input does not explain."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a storyboard, pinned to where it was written.

    >>> str(Problem("story.yaml", 14, 9, "scenes[0].shots[2].duration", "0s must be > 0", "set a duration such as 4s"))
    'story.yaml:14:9: scenes[0].shots[2].duration: 0s must be > 0; set a duration such as 4s'
    """

    file: str
    line: int | None
    column: int | None
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text}; {self.fix}" if self.fix else text


class StoryboardError(UserError):
    """One or more problems in a storyboard, reported together so the user can fix them in one pass."""

    def __init__(self, problems: Sequence[Problem]):
        if not problems:
            raise ValueError("StoryboardError needs at least one problem")
        # In file order, so the user can fix them top to bottom; problems without a position keep their order.
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.column or 0))
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(
        cls, file: str | Path, line: int | None, column: int | None, field: str, message: str, fix: str = ""
    ) -> StoryboardError:
        return cls([Problem(str(file), line, column, field, message, fix)])

    @staticmethod
    def raise_if_any(problems: Iterable[Problem]) -> None:
        problems = list(problems)
        if problems:
            raise StoryboardError(problems)


class BackendNotFound(UserError):
    """No generator or enhancer is registered under the requested name."""


class MissingExtra(UserError):
    """A backend needs packages from an optional extra.

    >>> str(MissingExtra("skyreels", "diffusers", "the skyreels generator"))
    "the skyreels generator needs diffusers, which is not installed; install it with: pip install 'storyreel[skyreels]'"
    """

    def __init__(self, extra: str, package: str, needed_by: str):
        self.extra = extra
        self.package = package
        super().__init__(
            f"{needed_by} needs {package}, which is not installed; "
            f"install it with: pip install 'storyreel[{extra}]'"
        )


class ModelNotFound(UserError):
    """A model named by the storyboard or the command line cannot be found on this machine."""


class GenerationError(InternalError):
    """A generator failed while producing a shot."""


class AssemblyError(InternalError):
    """Writing a shot or the film failed."""


# What to do about each reason the operating system gives, when the caller knows nothing better.
_FIXES = {
    errno.ENOSPC: "free some space on that disk, or write somewhere else",
    errno.EDQUOT: "free some of your disk quota, or write somewhere else",
    errno.EACCES: "make it writable for this user, or write somewhere else",
    errno.EPERM: "make it writable for this user, or write somewhere else",
    errno.EROFS: "that file system is mounted read-only; write somewhere else",
    errno.ENOTDIR: "a file is in the way where a folder is needed; move it, or choose another folder",
    errno.EEXIST: "a file is in the way where a folder is needed; move it, or choose another folder",
    errno.EISDIR: "a folder is in the way where a file is needed; choose a file name",
    errno.ENOENT: "check the path",
}


class MachineError(UserError):
    """The machine's state stops the work (permissions, a full disk, a file where a folder should be, GPU
    memory): nothing the storyboard says and no bug; the message names the path and the reason.

    >>> str(MachineError.from_os_error(OSError(errno.ENOSPC, "No space left on device", "out/film.mp4")))
    'cannot write out/film.mp4: No space left on device; fix: free some space on that disk, or write somewhere else'
    """

    def __init__(self, message: str, path: str | Path | None = None, reason: str | None = None):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(message)

    @classmethod
    def from_os_error(
        cls,
        error: OSError,
        *,
        doing: str = "write",
        path: str | Path | None = None,
        fix: str = "",
        hint: str = "",
    ) -> MachineError:
        """``cannot <doing> <path>: <the OS's reason>; fix: ... (<hint>)`` for an OSError raised while touching
        ``path`` (default: the file the error names)."""
        where = path if path is not None else error.filename
        reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
        fix = fix or _FIXES.get(error.errno or 0, "check the path and its permissions")
        subject = f"cannot {doing} {where}" if where is not None else f"cannot {doing}"
        return cls(f"{subject}: {reason}; fix: {fix}" + (f" ({hint})" if hint else ""), where, reason)


class OutOfMemory(MachineError):
    """A shot does not fit in the device's memory.

    A generator raises it for one attempt, instead of its library's own error; render() then frees memory
    and tries again along its ladder (offloading, then smaller windows), and raises it itself, with the
    fix, for a shot that fits at no step.
    """
