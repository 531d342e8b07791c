"""YAML that remembers where every value was written, read the way a person means it, within bounds.

The document is built straight from the parser's events (libyaml's when it is installed) into plain
Python data plus a table from each value's path (``("scenes", 0, "shots", 2, "duration")``) to its
position, so that a validation error deep inside a storyboard can point at ``story.yaml:14:9``.
Duplicate keys, which PyYAML would silently collapse, are reported.

Plain scalars are resolved with the YAML 1.2 core schema, so that ``11:58`` stays "11:58" and ``yes``
stays a word (:mod:`storyreel.yaml_scalars`), and positions are kept in a :class:`SourceMap`
(:mod:`storyreel.source_map`).

A document is bounded: its size, how deeply it nests, how many values it holds, and how many of
those are copies made by aliases (``*name``), so that a few lines of anchors cannot expand into
gigabytes ("billion laughs"). Each bound is a positioned error.

The reader is kept whole though it is long: the builder that turns the parser's events into values is
where positions are recorded, scalars resolved and every bound counted, and each of those needs the state
the others keep (the path being built, the anchors, the counts so far).

>>> data, source = load_yaml("time: 11:58\\nanswer: yes\\nfps: 24\\n", "s.yaml")
>>> data, source.locate(("fps",))
({'time': '11:58', 'answer': 'yes', 'fps': 24}, Position(line=3, column=6))
"""

from __future__ import annotations

import gc
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from .errors import Problem, StoryboardError
from .source_map import Path_, Position, SourceMap, field_name
from .yaml_scalars import HIDDEN_CHARACTERS, YES_NO_WORDS, resolve_plain

# Bounds on what one document may be. A 10,000-shot storyboard is about 1.5 MiB and 150,000 values.
MAX_DOCUMENT_CHARS = 8 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_ALIAS_VALUES = 100_000  # values copied in by aliases and merge keys, all together
MAX_DEPTH = 64

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~20x faster at producing events

_CORE = "tag:yaml.org,2002:"
# What a value tagged !!int, !!float, !!bool or !!null must resolve to.
_TAGGED: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "null": (type(None),),
}


_MERGE = object()  # the pending key is `<<`: the value's keys are merged in
_SKIP = object()  # the pending key was refused: build the value, then drop it


class _Frame:
    """A mapping or sequence being built, and where its values go."""

    __slots__ = (
        "anchor",
        "detached",
        "explicit",
        "key",
        "log_start",
        "path",
        "position",
        "retired",
        "size",
        "value",
    )

    def __init__(self, value: Any, path: Path_, position: Position, detached: bool, anchor: str | None):
        self.value = value
        self.path = path
        self.position = position
        self.detached = detached  # positions are logged but not kept (refused keys, inline merges)
        self.anchor = anchor
        self.size = 1
        self.key: Any = None  # mapping: the key whose value comes next (None: a key comes next)
        self.explicit: set[Any] = set()
        self.log_start: int | None = None  # where its positions start in the builder's log (None: not logged)
        self.retired = False  # logged once, but grew too large for its positions to be needed again


_Entry = tuple[Path_, Position, bool]  # a position logged: the value's (or key's) path, where, whether a key


@dataclass
class _Anchor:
    """What ``&name`` names: the value, how many values it holds, and its positions, entries ``start`` to ``end``
    of the builder's log, at paths under ``base``."""

    value: Any
    size: int
    start: int
    end: int
    base: Path_


class _Refused(Exception):
    def __init__(self, position: Position, message: str, fix: str):
        self.position, self.message, self.fix = position, message, fix


class _Builder:
    """Turns the parser's events into data, positions and problems, counting what it builds."""

    def __init__(self, source: SourceMap, written_numbers: bool, refuse_yes_no: bool):
        self.source = source
        self.written_numbers = written_numbers
        self.refuse_yes_no = refuse_yes_no
        self.problems: list[Problem] = []
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchor] = {}
        # Positions inside anchored collections and inline merges are logged, once each, so that an alias or a
        # merge can record them again under its own path. One log for all of them: a log per collection would
        # hold each value once for every collection around it.
        self.log: list[_Entry] = []
        self.loggers: list[_Frame] = []  # the collections being logged, outermost first
        self.values = 0
        self.alias_values = 0
        self.root: Any = None
        self.documents = 0

    # --- positions -----------------------------------------------------------------------------------------

    def record(self, path: Path_, position: Position, is_key: bool, detached: bool) -> None:
        if not detached:
            (self.source.keys if is_key else self.source.values)[path] = position
        if self.loggers:
            self.log.append((path, position, is_key))
            # A collection logged past what aliases may copy can never be aliased or merged: stop logging it.
            while self.loggers and len(self.log) - (self.loggers[0].log_start or 0) > MAX_ALIAS_VALUES:
                self.loggers.pop(0).retired = True

    def entries(self, start: int, end: int, base: Path_) -> Iterator[_Entry]:
        """Logged positions ``start`` to ``end``, their paths relative to ``base``."""
        cut = len(base)
        for index in range(start, end):  # the log may grow meanwhile: what is replayed is logged again
            path, position, is_key = self.log[index]
            yield path[cut:], position, is_key

    def replay(self, entries: Iterable[_Entry], base: Path_, detached: bool) -> None:
        for relative, position, is_key in entries:
            self.record(base + relative, position, is_key, detached)

    # --- where the next value goes -------------------------------------------------------------------------

    def slot(self) -> tuple[Path_, bool, bool]:
        """(path, detached, is_key) of the node that starts now."""
        if not self.stack:
            return (), False, False
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            return parent.path + (len(parent.value),), parent.detached, False
        if parent.key is None:
            return parent.path, True, True
        if parent.key is _MERGE:
            return parent.path, True, False
        if parent.key is _SKIP:
            return parent.path + ("<refused>",), True, False
        return parent.path + (parent.key,), parent.detached, False

    def count(self, size: int, position: Position, through_alias: bool) -> None:
        self.values += size
        if through_alias:
            self.copied(size, position)
        if self.values > MAX_VALUES:
            raise _Refused(
                position,
                f"the document holds more than {MAX_VALUES:,} values",
                "split the film into several storyboards",
            )
        if self.stack:
            self.stack[-1].size += size

    def copied(self, size: int, position: Position, by: str = "aliases (*name)") -> None:
        """``size`` more values copied in by aliases or merge keys."""
        self.alias_values += size
        if self.alias_values > MAX_ALIAS_VALUES:
            raise _Refused(
                position,
                f"{by} here expand the document past {MAX_ALIAS_VALUES:,} copied values",
                "write the values out, or reuse fewer anchors; a storyboard never needs this many copies",
            )

    # --- events --------------------------------------------------------------------------------------------

    def scalar(self, event: ScalarEvent) -> None:
        position = _position(event.start_mark)
        path, detached, is_key = self.slot()
        value = self.scalar_value(event, position)
        self.count(1, position, False)
        if is_key:
            self.key(value, position, event.tag is None and event.implicit[0] and value == "<<", event.value)
            return
        if self.stack and self.stack[-1].key is _MERGE:  # `<<: 5`: reported by merge()
            self.merge(self.stack[-1], [(value, [])], position)
            return
        logged = len(self.log)
        self.record(path, position, False, detached)
        if self.refuse_yes_no and event.tag is None and event.implicit[0] and value in YES_NO_WORDS:
            self.problems.append(
                Problem(self.source.file, position.line, position.column, field_name(path),
                        f"'{value}' could mean the word or a yes/no value",
                        f'write true or false for yes/no, or quote it ("{value}") for the word')
            )  # fmt: skip
        if event.anchor is not None:
            if len(self.log) == logged:  # not logged by record(): no collection around it is
                self.log.append((path, position, False))
            self.anchors[event.anchor] = _Anchor(value, 1, logged, logged + 1, path)
        self.add(value, position)

    def scalar_value(self, event: ScalarEvent, position: Position) -> Any:
        text, tag = event.value, event.tag
        hidden = HIDDEN_CHARACTERS.search(text)
        if hidden is not None:
            path = self.slot()[0]
            self.problems.append(
                Problem(self.source.file, position.line, position.column, field_name(path),
                        f"holds U+{ord(hidden.group()):04X} ({_character_name(hidden.group())}), a character that "
                        "changes how the text around it shows, so it would not read as it is written",
                        "remove it")
            )  # fmt: skip
            text = HIDDEN_CHARACTERS.sub("", text)
        if tag is None or tag == "!":
            if tag is None and event.implicit[0]:
                return resolve_plain(text, written_numbers=self.written_numbers)
            return text
        name = tag.removeprefix(_CORE)
        if name == "str":
            return text
        if name in _TAGGED:
            value = resolve_plain(text.strip(), written_numbers=self.written_numbers)
            resolves = isinstance(value, _TAGGED[name]) and not (
                name in ("int", "float") and isinstance(value, bool)
            )
            if resolves:
                return float(value) if name == "float" else value
            self.problems.append(
                Problem(self.source.file, position.line, position.column, field_name(self.slot()[0]),
                        f"{text!r} is not a !!{name}",
                        "remove the tag or fix the value")
            )  # fmt: skip
            return text
        raise _Refused(position, f"the tag {_tag(tag)} is not supported", "remove it; write the value itself")

    def key(self, key: Any, position: Position, merge: bool, written: str | None = None) -> None:
        """The key of the mapping being built; ``written``: a scalar key as the document writes it."""
        parent = self.stack[-1]
        if merge:
            parent.key = _MERGE
            return
        problem = None
        if isinstance(key, (list, dict)):
            problem = ("a key must be a plain word", "")
        elif _key_identity(key) in parent.explicit:
            shown = key if written is None else written
            problem = (f"'{shown}' is written twice in the same mapping", "keep one of them")
        if problem is not None:
            where = parent.path if isinstance(key, (list, dict)) else parent.path + (key,)
            self.problems.append(
                Problem(self.source.file, position.line, position.column, field_name(where), *problem)
            )
            parent.key = _SKIP
            return
        parent.explicit.add(_key_identity(key))
        parent.key = key
        self.record(parent.path + (key,), position, True, parent.detached)

    def alias(self, event: AliasEvent) -> None:
        position = _position(event.start_mark)
        anchor = self.anchors.get(event.anchor or "")  # the parser gives every alias a name
        if anchor is None:
            raise _Refused(
                position, f"*{event.anchor} names no anchor", f"define it first with &{event.anchor}"
            )
        path, detached, is_key = self.slot()
        self.count(anchor.size, position, True)
        if is_key:
            self.key(anchor.value, position, False)
            return
        parent = self.stack[-1] if self.stack else None
        entries = self.entries(anchor.start, anchor.end, anchor.base)
        if parent is not None and parent.key is _MERGE:
            self.merge(parent, [(anchor.value, list(entries))], position)
            return
        self.replay(entries, path, detached)
        self.add(anchor.value, position)

    def start(self, event: CollectionStartEvent) -> None:
        position = _position(event.start_mark)
        if len(self.stack) >= MAX_DEPTH:
            raise _Refused(
                position,
                f"the document nests more than {MAX_DEPTH} levels deep",
                "a storyboard needs about 6; check the brackets and indentation here",
            )
        tag = event.tag
        expected = "map" if isinstance(event, MappingStartEvent) else "seq"
        if tag is not None and tag != "!" and tag != _CORE + expected:
            raise _Refused(
                position, f"the tag {_tag(tag)} is not supported", "remove it; write the value itself"
            )
        path, detached, is_key = self.slot()
        if is_key:
            detached = True
        self.count(1, position, False)
        frame = _Frame({} if expected == "map" else [], path, position, detached, event.anchor)
        parent = self.stack[-1] if self.stack else None
        merging = parent is not None and parent.key is _MERGE
        if event.anchor is not None or merging:
            frame.log_start = len(self.log)
            self.loggers.append(frame)
        self.record(path, position, False, detached)
        self.stack.append(frame)

    def end(self) -> None:
        frame = self.stack.pop()
        if self.loggers and self.loggers[-1] is frame:
            self.loggers.pop()
        start, end = frame.log_start or 0, len(self.log)
        if frame.anchor is not None:
            # A retired collection holds more than any alias may copy: the first alias to it is refused.
            size = max(frame.size, MAX_ALIAS_VALUES + 1) if frame.retired else frame.size
            self.anchors[frame.anchor] = _Anchor(frame.value, size, start, end, frame.path)
        if self.stack:
            self.stack[-1].size += frame.size - 1  # count() already added the frame itself
        parent = self.stack[-1] if self.stack else None
        if parent is not None and isinstance(parent.value, dict) and parent.key is None:
            self.key(frame.value, frame.position, False)  # a mapping or sequence used as a key
            return
        if parent is not None and parent.key is _MERGE:
            if frame.retired:
                raise _Refused(
                    frame.position,
                    f"`<<:` here merges more than {MAX_ALIAS_VALUES:,} values",
                    "write the values out; a storyboard never needs to merge this many",
                )
            items = frame.value if isinstance(frame.value, list) else [frame.value]
            log = list(self.entries(start, end, frame.path))
            # Items of an inline `<<: [*a, *b]` list were logged relative to the list; their keys start after the index.
            if isinstance(frame.value, list):
                logs = [_item_log(log, i) for i in range(len(items))]
            else:
                logs = [[(rel, pos, is_key) for rel, pos, is_key in log if rel]]
            self.merge(parent, list(zip(items, logs, strict=True)), frame.position, copies=True)
            return
        self.add(frame.value, frame.position)

    def merge(
        self,
        parent: _Frame,
        sources: list[tuple[Any, list[_Entry]]],
        position: Position,
        copies: bool = False,
    ) -> None:
        """``<<: *defaults``: keys the mapping does not set itself come from the merged mappings, first wins.

        ``copies``: the positions recorded again count as values copied in (an alias counted its own already),
        so that merges nested in merges cannot double what they record at each level.
        """
        parent.key = None
        for value, log in sources:
            if not isinstance(value, dict):
                self.problems.append(
                    Problem(self.source.file, position.line, position.column, field_name(parent.path),
                            "`<<:` merges a mapping into this one", "write `<<: *name` with &name on a mapping")
                )  # fmt: skip
                continue
            taken = [k for k in value if k not in parent.value]
            for k in taken:
                parent.value[k] = value[k]
            taken_set = set(taken)
            merged = [e for e in log if e[0] and e[0][0] in taken_set]
            if copies:
                self.copied(len(merged), position, "merge keys (<<:)")
            self.replay(merged, parent.path, parent.detached)

    def add(self, value: Any, position: Position) -> None:
        if not self.stack:
            self.root = value
            return
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            parent.value.append(value)
        else:
            if parent.key is not _SKIP:
                parent.value[parent.key] = value
            parent.key = None


def _key_identity(key: Any) -> tuple[str, Any]:
    """A key as YAML tells keys apart, by type and value: ``1``, ``1.0`` and ``true`` are three keys (Python's
    equality makes them one), ``1`` and ``01`` are one.

    >>> from storyreel.yaml_scalars import WrittenInt
    >>> len({_key_identity(k) for k in (1, 1.0, True, "1")}), _key_identity(WrittenInt("01")) == _key_identity(1)
    (4, True)
    """
    if isinstance(key, bool):
        return "bool", key
    if isinstance(key, int):
        return "int", int(key)
    if isinstance(key, float):
        return "float", float(key)
    return type(key).__name__, key


def _item_log(log: list[_Entry], index: int) -> list[_Entry]:
    return [(rel[1:], pos, is_key) for rel, pos, is_key in log if rel[:1] == (index,) and len(rel) > 1]


def _position(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a large tree of objects is built (a document, its models, its plan).

    Such trees hold no reference cycles, but each full collection walks every object built so far, which made
    validating 10,000 shots cost twice as much per shot as 500. Reference counting still frees everything.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@collector_paused()
def load_yaml(
    text: str, file: str, *, written_numbers: bool = True, refuse_yes_no: bool = False
) -> tuple[Any, SourceMap]:
    """Parse ``text`` into Python data and a SourceMap; every problem becomes a StoryboardError with position.

    ``written_numbers`` makes plain numbers :class:`~storyreel.yaml_scalars.WrittenInt` and
    :class:`~storyreel.yaml_scalars.WrittenFloat`, which text fields read back as written; template
    variables, which Jinja2 computes with, get plain numbers.
    ``refuse_yes_no`` makes an unquoted yes/no/on/off an error (see YES_NO_WORDS).
    """
    source = SourceMap(file)
    check_document_size(text, file)
    builder = _Builder(source, written_numbers, refuse_yes_no)
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as exc:  # libyaml reads UTF-8: a lone surrogate is bytes that were not text
        at_line, at_column = _line_and_column(text, exc.start)
        raise StoryboardError.single(
            file,
            at_line,
            at_column,
            "",
            f"the text holds U+{ord(text[exc.start]):04X}, which is not a character (bytes that are not UTF-8)",
            "write it as UTF-8 text",
        ) from None
    try:
        while True:
            event = loader.get_event()
            if isinstance(event, ScalarEvent):
                builder.scalar(event)
            elif isinstance(event, (MappingStartEvent, SequenceStartEvent)):
                builder.start(event)
            elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
                builder.end()
            elif isinstance(event, AliasEvent):
                builder.alias(event)
            elif isinstance(event, DocumentStartEvent):
                builder.documents += 1
                if builder.documents > 1:
                    position = _position(event.start_mark)
                    raise _Refused(
                        position,
                        "a storyboard is a single YAML document, but a second one starts here",
                        "remove the `---` line and what follows, or merge the two",
                    )
            elif isinstance(event, StreamEndEvent):
                break
    except _Refused as exc:
        raise StoryboardError.single(
            file, exc.position.line, exc.position.column, "", exc.message, exc.fix
        ) from None
    except yaml.MarkedYAMLError as exc:  # syntax errors
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem += " (a tab: YAML is indented with spaces)"
        raise StoryboardError.single(
            file,
            line,
            col,
            "",
            f"YAML syntax error: {problem}",
            "check the indentation and quoting here (a value with ': ' or '#' needs quotes)",
        ) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow anywhere in a document
        at_line, at_column = _line_and_column(text, _reader_index(text, exc.position))
        character = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        raise StoryboardError.single(
            file,
            at_line,
            at_column,
            "",
            f"the file holds the character U+{ord(character):04X} ({_character_name(character)}), which YAML "
            "does not allow",
            "remove it; a storyboard is plain text",
        ) from None
    except yaml.YAMLError as exc:
        raise StoryboardError.single(file, None, None, "", f"YAML error: {exc}", "") from None
    finally:
        loader.dispose()
    StoryboardError.raise_if_any(builder.problems)
    return builder.root, source


def check_document_size(text: str, file: str) -> None:
    """A StoryboardError when ``text`` is longer than a storyboard may be (a template is held to it too)."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise StoryboardError.single(
            file,
            None,
            None,
            "",
            f"the file holds {len(text):,} characters, more than the {MAX_DOCUMENT_CHARS:,} a storyboard may have",
            "split the film into several storyboards",
        )


def read_yaml_value(text: str, file: str) -> Any:
    """A YAML value read with the same rules and bounds as a storyboard, for template variables (``vars:``,
    ``--var``): plain numbers, and an unquoted yes/no/on/off refused rather than guessed at.

    >>> read_yaml_value("[amber, 3, 'no']", "--var")
    ['amber', 3, 'no']
    """
    return load_yaml(text, file, written_numbers=False, refuse_yes_no=True)[0]


def _reader_index(text: str, position: int) -> int:
    """The index in ``text`` of the character at the reader's ``position``: libyaml reads the text as UTF-8 and
    counts bytes, PyYAML's own reader counts characters.

    >>> _reader_index("é\x07", 2) if _Loader is not yaml.SafeLoader else 1
    1
    """
    if _Loader is yaml.SafeLoader:
        return position
    return len(text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore"))


def _line_and_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of the character at ``index``."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _character_name(character: str) -> str:
    return unicodedata.name(character, "a control character")


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    if line < len(lines) and column < len(lines[line]):
        return lines[line][column]
    return ""


def _tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
