"""Loading a storyboard: reading the file (or rendering its template), parsing the YAML, validating it
once, and turning whatever is wrong into :class:`~storyreel.errors.Problem` s at ``file:line:col``.

One pass reports every problem: when fields fail, each failing value is dropped or replaced by a
stand-in and the storyboard validated again, so that the checks of the whole film
(:mod:`storyreel.checks`, and the plan's) still run on the rest. Problems at or under a field that
already failed are not reported twice. pydantic's errors are reworded the way a person writing YAML
reads them: the key as written, the bound that was passed, a "did you mean" for a misspelt key.

>>> try:
...     parse_storyboard("storyreel: 1\\nscenes: [{id: a, shots: [{id: b, prompt: x, duraton: 4}]}]", "s.yaml")
... except StoryboardError as error:
...     print(error.problems[0])
s.yaml:2:45: scenes[0].shots[0].duraton: unknown key 'duraton'; did you mean 'duration'?
"""

from __future__ import annotations

import codecs
import difflib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .checks import unique_problems
from .errors import Problem, StoryboardError
from .fields import MAX_ID_LENGTH, MAX_SHOT_FRAMES, MAX_SHOT_SECONDS
from .format import FORMAT_VERSION, Storyboard, model_at
from .source_map import Path_, SourceMap
from .yaml_source import collector_paused, load_yaml


def storyboard_yaml(path: str | Path, *, template_vars: dict[str, Any] | None = None) -> str:
    """The YAML a storyboard file is read as: the file itself, or what a ``.yaml.j2`` template renders to.

    ``storyreel validate STORY --print-yaml`` prints it, so that positions in a rendered template can be seen.
    """
    return _read_storyboard(Path(path), template_vars)[0]


def _read_storyboard(path: Path, template_vars: dict[str, Any] | None) -> tuple[str, str, bool]:
    """(YAML text, how messages name it, whether it came from a template)."""
    display = str(path)
    try:
        text = decode_text(path.read_bytes(), display)
    except FileNotFoundError:
        raise StoryboardError.single(display, None, None, "", "file not found", "check the path") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoryboardError.single(display, None, None, "", f"cannot read the file: {reason}", "") from None
    templated = path.name.endswith(".j2")
    if templated:
        from .templating import render_storyboard_template

        rendered = render_storyboard_template(text, display, template_vars or {})
        if rendered != text:
            display = f"{display} (rendered)"  # positions are in the rendered text, not in the template
        return rendered, display, True
    if template_vars:
        raise StoryboardError.single(
            display,
            None,
            None,
            "",
            "variables were given but the storyboard is not a template",
            "rename it to end in .yaml.j2 to use variables",
        )
    return text, display, False


def decode_text(data: bytes, file: str) -> str:
    """A storyboard file's bytes as text: UTF-8 (a byte-order mark is dropped), or UTF-16 when it starts with
    the UTF-16 byte-order mark, as YAML allows. Anything else is a StoryboardError at the first byte that
    is not UTF-8.

    >>> decode_text("title: Café".encode(), "s.yaml"), decode_text("a: 1".encode("utf-16"), "s.yaml")
    ('title: Café', 'a: 1')
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        # The mark is dropped first: decoded as utf-8-sig, an error's position would not count its three bytes.
        encoding, data = "utf-8", data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        line_start = data.rfind(b"\n", 0, start) + 1
        column = len(data[line_start:start].decode(encoding, errors="replace")) + 1
        raise StoryboardError.single(
            file,
            line,
            column,
            "",
            f"the file is not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text: byte "
            f"0x{data[start]:02x} here is not a character (is it a binary file, or saved as Latin-1?)",
            "save the storyboard as UTF-8 text",
        ) from None


def load_storyboard(
    path: str | Path,
    *,
    allow_outside: bool = False,
    template_vars: dict[str, Any] | None = None,
    film_checks: bool = True,
    on_text: Callable[[str], None] | None = None,
) -> Storyboard:
    """Load and check a storyboard file (``.yaml``, or a Jinja2 template ``.yaml.j2``).

    Raises StoryboardError listing every problem with ``file:line:col``, the field and the fix: when anything
    is wrong, the checks of :func:`storyreel.plan_film` run too, so that one pass reports every problem.
    ``film_checks=False`` leaves the film's checks of a storyboard whose format is right to a
    :func:`storyreel.plan_film` that comes next (it runs them anyway). ``on_text`` is given the YAML the file
    is read as (what a template renders to) before it is parsed.

    >>> board = load_storyboard("examples/swan_lake.yaml")  # doctest: +SKIP
    >>> [shot.id for _, _, _, shot in board.iter_shots()]  # doctest: +SKIP
    ['glide', 'dip', ...]
    """
    path = Path(path)
    text, display, templated = _read_storyboard(path, template_vars)
    if on_text is not None:
        on_text(text)
    with collector_paused():
        board, problems, failed = _parse(text, display, base_dir=path.resolve().parent, templated=templated)
        if board is None:
            raise StoryboardError(problems)
        board._path = path
        if not problems:
            if not film_checks:
                return board
            problems = board.problems(allow_outside=allow_outside)
            if not problems:
                return board
        from .plan import film_problems

        more = film_problems(board, allow_outside=allow_outside)
        raise StoryboardError(unique_problems(problems + [p for p in more if not _under(p.field, failed)]))


def parse_storyboard(
    text: str, file: str = "<storyboard>", *, base_dir: Path | None = None, templated: bool = False
) -> Storyboard:
    """Parse storyboard YAML text into a Storyboard; structural errors carry file:line:col."""
    board, problems, _ = _parse(text, file, base_dir=base_dir, templated=templated)
    StoryboardError.raise_if_any(problems)
    assert board is not None
    return board


def _parse(
    text: str, file: str, *, base_dir: Path | None, templated: bool
) -> tuple[Storyboard | None, list[Problem], set[str]]:
    """The storyboard, the problems of its format, and the fields they are at.

    When fields fail, the storyboard returned is the one they leave when neutralised (dropped, or given a
    stand-in value), so that the other checks can still run; None if even that does not validate.
    """
    data, source = load_yaml(text, file)
    if data is None:
        raise StoryboardError.single(
            file, 1, 1, "", "the storyboard is empty", "start from a template: storyreel new story.yaml"
        )
    if not isinstance(data, dict):
        raise StoryboardError.single(
            file,
            1,
            1,
            "",
            "a storyboard must be a mapping of keys (storyreel:, title:, scenes:, ...)",
            "start from a template: storyreel new story.yaml",
        )
    if templated:
        data.pop("vars", None)
    problems: list[Problem] = []
    unreadable: set[str] = set()
    try:
        board: Storyboard | None = Storyboard.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from_validation(exc, source, data)
        board = _stand_in_board(data, exc, unreadable)
    if board is not None:
        board._source = source
        board._base_dir = base_dir
        board._rendered = templated
        board._display = file
        board._refused_names = frozenset(unreadable)
    return board, problems, {p.field for p in problems}


def _under(field: str, failed: set[str]) -> bool:
    """Whether a problem at ``field`` lies at or under a field that already failed (one lookup per level)."""
    return field in failed or any(field[:i] in failed for i, c in enumerate(field) if c in ".[" and i)


# Values that let a storyboard validate when a required (or referenced) field of it failed; problems found at
# or under a stand-in are not reported, since the field's own problem already is.
_STAND_INS: dict[str, Any] = {
    "storyreel": FORMAT_VERSION,
    "prompt": "stand-in",
    "description": "stand-in",
    "music": "stand-in",
    "duration": 4.0,
    "frames": 97,
    "transition": "cut",  # a fresh start asks the least of the shots around it
}


def _stand_in_board(data: dict[str, Any], error: ValidationError, unreadable: set[str]) -> Storyboard | None:
    """The storyboard ``data`` makes once every failing value is dropped or replaced by a stand-in. ``data`` is
    changed in place: its caller is done with it."""
    counter = itertools.count(1)
    # A stand-in can uncover a problem the first pass could not see; a few rounds settle it.
    for _ in range(4):
        for entry in error.errors(include_url=False):
            if not _neutralise(data, entry, counter, unreadable):
                return None
        try:
            return Storyboard.model_validate(data)
        except ValidationError as again:
            error = again
    return None


def _stand_in(name: str, counter: Iterator[int]) -> Any:
    if name == "id":
        return f"stand-in-{next(counter)}"
    if name == "shots":
        return [
            {"id": f"stand-in-{next(counter)}", "prompt": "stand-in", "duration": 4.0, "transition": "cut"}
        ]
    if name == "scenes":
        return [{"id": f"stand-in-{next(counter)}", "shots": _stand_in("shots", counter)}]
    return _STAND_INS.get(name)


def _neutralise(data: dict[str, Any], error: Any, counter: Iterator[int], unreadable: set[str]) -> bool:
    """Drop or replace the value an error is about; False when there is nothing sensible to do."""
    loc: list[Any] = [part for part in error["loc"] if isinstance(part, (str, int))]
    name_is_bad = bool(loc) and loc[-1] == "[key]"
    if name_is_bad:
        loc = loc[:-1]
    chain: list[tuple[Any, str | int]] = []  # (container, key) from the root down to the failing value
    node: Any = data
    for part in loc:
        if (
            isinstance(node, dict)
            and part in node
            or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        ):
            chain.append((node, part))
            node = node[part]
        else:
            break
    if error["type"] == "missing" and isinstance(node, dict) and len(chain) == len(loc) - 1:
        node[loc[-1]] = _stand_in(str(loc[-1]), counter)
        return node[loc[-1]] is not None
    if not chain:
        return False
    container, key = chain[-1]
    parent_name = chain[-2][1] if len(chain) >= 2 else None
    if isinstance(key, int):
        if parent_name in ("scenes", "shots"):
            container[key] = _stand_in(str(parent_name), counter)[0]
            return True
        if len(chain) < 2:
            return False
        container, key = chain[-2]  # an item of a plain list (characters, after): drop the whole list
        del container[key]
        return True
    if len(chain) == 2 and chain[0][1] == "characters":
        if name_is_bad:
            unreadable.add(str(key))
            del container[key]
        else:
            container[key] = {"description": "stand-in"}  # shots may reference it: keep the name
        return True
    if error["type"] == "extra_forbidden":
        # A misspelt key is checked as the key it is closest to (`duraton` as `duration`), so that the shot is
        # not also reported as having no length.
        model = model_at(tuple(loc[:-1]))
        close = difflib.get_close_matches(str(key), list(model.model_fields), n=1) if model else []
        if close and close[0] not in container:
            container[close[0]] = container.pop(key)
        else:
            del container[key]
        return True
    if key == "id" and isinstance(container[key], str):
        unreadable.add(container[key])
    stand_in = _stand_in(key, counter)
    if stand_in is not None:
        container[key] = stand_in
    else:
        del container[key]  # every other field is optional: its default takes its place
    return True


def _problems_from_validation(exc: ValidationError, source: SourceMap, data: Any) -> list[Problem]:
    """pydantic's errors as Problems at the place each failing value (or key) was written."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        path: Path_ = tuple(part for part in error["loc"] if isinstance(part, (str, int)))
        key = bool(path) and path[-1] == "[key]"  # a mapping's key (a character's name) is what failed
        if key:
            path = path[:-1]
        path = _as_written(path, data)
        if error["type"] == "extra_forbidden":
            key = True  # the key itself is unknown
        problems.append(source.problem(path, *_reworded(error, path, data), key=key))
    return unique_problems(problems)


def _reworded(error: ErrorDetails, path: Path_, data: Any) -> tuple[str, str]:
    """(message, fix) for one of pydantic's errors, worded for a person who wrote the YAML."""
    kind = error["type"]
    fix = ""
    shown = error.get("input")
    limit = next(
        (error.get("ctx", {}).get(k) for k in ("le", "lt", "ge", "gt") if k in error.get("ctx", {})), None
    )
    if kind == "storyreel":
        message, fix = error["ctx"]["message"], error["ctx"].get("fix", "")
    elif kind == "extra_forbidden":
        message = f"unknown key '{path[-1]}'"
        fix = _key_fix(path, data)
    elif kind == "missing":
        message = f"`{path[-1]}` is required"
        fix = _missing_fix(path)
    elif kind == "too_short" and path and path[-1] in ("scenes", "shots"):
        message = f"there are no {path[-1]}"
        fix = "add at least one" + (" scene with a shot" if path[-1] == "scenes" else " shot")
    elif kind == "string_pattern_mismatch" and path and path[-1] == "id":
        message = f"id {_shown(error['input'])} may hold only letters, digits, '-', '_' and '.'"
        fix = "it names the shot's file, e.g. `id: swan-glide`"
    elif kind == "string_too_long" and path and path[-1] == "id":
        message = (
            f"an id of {len(error['input'])} characters is longer than the {MAX_ID_LENGTH} an id may have"
        )
        fix = "shorten it (a shot's id names its file, shots/<id>.mp4)"
    elif kind == "string_pattern_mismatch":
        message = f"{_shown(error['input'])} is not a valid name"
        fix = "use letters, digits and '_' (it is written as {{ name }} in prompts)"
    elif kind == "literal_error":
        message = f"{_shown(error['input'])} is not allowed"
        fix = error["msg"].replace("Input should be", "use")
    elif kind in ("less_than_equal", "less_than", "greater_than_equal", "greater_than"):
        bound = {
            "less_than_equal": "at most",
            "less_than": "below",
            "greater_than_equal": "at least",
            "greater_than": "above",
        }[kind]
        message = f"{_shown(shown, quote=False)} is out of bounds: `{path[-1]}` must be {bound} {limit}"
        fix = _BOUND_FIXES.get(str(path[-1]), "")
    elif kind == "finite_number":
        message = f"{_shown(shown, quote=False)} is not a finite number"
        fix = _BOUND_FIXES.get(str(path[-1]), "write a number")
    elif kind == "string_type" and isinstance(shown, bool):
        message = f"{str(shown).lower()} was read as true/false, not as text"
        fix = f'write it in quotes: "{str(shown).lower()}"'
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
        if not isinstance(shown, (dict, list)):
            message = f"{_shown(shown)}: {message}"
    if path and path[-1] == "storyreel" and kind in ("int_parsing", "int_from_float"):
        fix = f"write `storyreel: {FORMAT_VERSION}`"
    return message, fix


def _shown(value: Any, *, quote: bool = True) -> str:
    """A value as a message shows it: as written, cut short when it is long."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= 60 else text[:50] + f"... ({len(text):,} characters)"


def _as_written(path: Path_, data: Any) -> Path_:
    """The path with each mapping key as the document holds it (pydantic reports a key `true` as 1)."""
    out: list[Any] = []
    node = data
    for part in path:
        if isinstance(node, dict):
            part = next((k for k in node if k == part and type(k) is not type(part)), part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        out.append(part)
    return tuple(out)


# What to write instead of a number beyond a field's bounds.
_BOUND_FIXES: dict[str, str] = {
    "frames": f"split it into shots of up to {MAX_SHOT_FRAMES} frames ({MAX_SHOT_SECONDS:g}s at 24 fps); shots "
    "that continue each other (`transition: continue`) stay one continuous take",
    "fps": "use 24 (SkyReels-V2's rate) or another rate up to 120",
    "steps": "use 30 (50 for the finest detail)",
    "guidance_scale": "use 6.0 (5.0 for a plain image-to-video model)",
    "shift": "use 8.0 (3.0 for a plain image-to-video model)",
    "base_num_frames": "use 97 (540P) or 121 (720P); 77 or 57 save memory",
    "overlap_history": "use 17 or 37",
    "addnoise_condition": "use 20",
    "ar_step": "use 0 (synchronous) or 5 (asynchronous)",
    "causal_block_size": "use 1, or 5 with ar_step 5",
    "seed": f"use a number from 0 to {2**32 - 1}",
    "volume": "use a volume from 0 (silent) to 4",
    "max_words": "use 120",
    "concurrency": "use 8",
    "timeout": "use 120 (seconds)",
    "request_timeout": "use 120 (seconds)",
}


def _key_fix(path: Path_, data: Any) -> str:
    model = model_at(path[:-1])
    if model is None:
        return "remove it"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "remove it; allowed keys here: " + ", ".join(allowed)


def _missing_fix(path: Path_) -> str:
    examples = {
        "storyreel": f"add `storyreel: {FORMAT_VERSION}` at the top",
        "scenes": "add `scenes:` with at least one scene",
        "shots": "add `shots:` with at least one shot",
        "id": "add an `id:` such as `id: opening`",
        "prompt": "add a `prompt:` describing what happens",
        "description": "add a `description:` of how the character looks",
        "music": "add `music: path/to/score.mp3`",
    }
    return examples.get(str(path[-1]), f"add `{path[-1]}:`")
