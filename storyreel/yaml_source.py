"""YAML that remembers where every value was written.

PyYAML composes a node tree with line and column marks; this module turns that tree into plain
Python data plus a table from each value's path (``("scenes", 0, "shots", 2, "duration")``) to its
position, so that a validation error deep inside a storyboard can point at ``story.yaml:14:9``.
Duplicate keys, which PyYAML would silently collapse, are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem, StoryboardError

Path_ = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def _mark(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, source: SourceMap):
        self.source = source
        self.constructor = SafeConstructor()
        self.problems: list[Problem] = []

    def build(self, node: Node, path: Path_, depth: int = 0) -> Any:
        if depth > 64:
            raise StoryboardError.single(
                self.source.file, *_position_tuple(_mark(node)), "", "the document nests too deeply", ""
            )
        self.source.values.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self.constructor.construct_object(node, deep=True)
        if isinstance(node, SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            result: dict[Any, Any] = {}
            explicit: set[Any] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    # `<<: *defaults` merges keys the mapping does not set itself.
                    merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                    for source_node in merged:
                        value = self.build(source_node, path, depth + 1)
                        if isinstance(value, dict):
                            for k, v in value.items():
                                result.setdefault(k, v)
                    continue
                key = self.constructor.construct_object(key_node, deep=True)
                if isinstance(key, (list, dict)):
                    line, col = _position_tuple(_mark(key_node))
                    self.problems.append(
                        Problem(self.source.file, line, col, _field(path), "a key must be a plain word", "")
                    )
                    continue
                if key in explicit:
                    line, col = _position_tuple(_mark(key_node))
                    self.problems.append(
                        Problem(
                            self.source.file,
                            line,
                            col,
                            _field(path + (key,)),
                            f"'{key}' is written twice in the same mapping",
                            "keep one of them",
                        )
                    )
                    continue
                explicit.add(key)
                self.source.keys[path + (key,)] = _mark(key_node)
                self.source.values[path + (key,)] = _mark(value_node)
                result[key] = self.build(value_node, path + (key,), depth + 1)
            return result
        raise TypeError(f"unexpected YAML node {node!r}")


def _position_tuple(position: Position | None) -> tuple[int | None, int | None]:
    return (position.line, position.column) if position else (None, None)


def _field(path: Path_) -> str:
    """Render a path the way a user reads it: ``scenes[0].shots[2].duration``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


field_name = _field


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse ``text`` into Python data and a SourceMap; YAML errors become a StoryboardError with position."""
    source = SourceMap(file)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        if node is None:
            return None, source
        builder = _Builder(source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:  # syntax errors, and tags no safe constructor accepts
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise StoryboardError.single(
            file,
            line,
            col,
            "",
            f"YAML syntax error: {problem}",
            "check the indentation and quoting here (a value with ': ' or '#' needs quotes)",
        ) from None
    except yaml.YAMLError as exc:
        raise StoryboardError.single(file, None, None, "", f"YAML error: {exc}", "") from None
    StoryboardError.raise_if_any(builder.problems)
    return data, source
