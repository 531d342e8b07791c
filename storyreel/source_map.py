"""Where each value of a storyboard was written, so that a problem deep inside it names ``file:line:col``.

A value is named by its path from the top of the document (``("scenes", 0, "shots", 2, "duration")``,
:data:`Path_`), shown to a person as ``scenes[0].shots[2].duration`` (:func:`field_name`). The YAML reader
(:mod:`storyreel.yaml_source`) fills a :class:`SourceMap` from each path to its :class:`Position` as it
builds the document; the checks of every later stage pin their problems to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Problem
from .yaml_scalars import WrittenInt

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a document was written."""

    file: str
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def locate(self, path: Path_, *, key: bool = False) -> Position | None:
        """The position of ``path``, or of its nearest written ancestor when the value itself is absent."""
        if key and path in self.keys:
            return self.keys[path]
        while True:
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: Path_, message: str, fix: str = "", *, key: bool = False) -> Problem:
        """A Problem pinned to where ``path`` was written (or its nearest written ancestor)."""
        position = self.locate(path, key=key)
        return Problem(
            self.file,
            position.line if position else None,
            position.column if position else None,
            field_name(path),
            message,
            fix,
        )


def field_name(path: Path_) -> str:
    """Render a path the way a user reads it: ``scenes[0].shots[2].duration``.

    >>> field_name(("scenes", 0, "shots", 2, "duration"))
    'scenes[0].shots[2].duration'
    """
    out = ""
    for part in path:
        if isinstance(part, bool):  # a key YAML read as true/false
            out += ("." if out else "") + str(part).lower()
        elif isinstance(
            part, WrittenInt
        ):  # a key YAML read as a number, shown as written (a list index is an int)
            out += ("." if out else "") + str(part)
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
