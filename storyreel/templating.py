"""Templated storyboards: ``story.yaml.j2`` files rendered by Jinja2 in a sandbox before they are parsed.

The file declares its variables in a top-level ``vars:`` block of plain YAML; callers may override
them (``storyreel render story.yaml.j2 --var hero=fox``). Undefined variables are errors. Character
references such as ``{{ swan }}`` are left for the storyboard stage to expand, so prompts read the
same in templated and plain storyboards.

The template is compiled once and rendered twice, in the bounded sandbox of
:mod:`storyreel.template_sandbox` and in a child process with bounded memory and time
(:mod:`storyreel.template_child`), within one deadline: a lenient pass finds the characters the
template defines, then a strict pass renders with each character left as its ``{{ name }}`` and every
other undefined name an error. Every error, limits included, names the template line (a child stopped
for its time or memory names the file).

>>> print(render_storyboard_template("vars:\\n  n: 2\\nshots: {{ n * 2 }}\\n", "t.yaml.j2", {}), end="")
vars:
  n: 2
shots: 4
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Generator, Iterator
from typing import Any

import jinja2

from .errors import Problem, StoryboardError
from .template_child import ChildStopped, render_in_child
from .template_limits import MAX_TEMPLATE_MEMORY, MAX_TEMPLATE_SECONDS, TemplateLimitError
from .template_sandbox import (
    BoundedSandbox,
    TemplateUnreadable,
    check_template_size,
    compile_template,
    render_bounded,
)
from .yaml_source import load_yaml, read_yaml_value

# --- vars: and --var --------------------------------------------------------------------------------------------


def _vars_block(text: str, file: str) -> tuple[dict[str, Any], int]:
    """The ``vars:`` mapping written at the top level of the template, and the line it starts on."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^vars\s*:", line)), None)
    if start is None:
        return {}, 0
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
        end += 1
    block = "\n".join(lines[start:end])
    if "{{" in block or "{%" in block:
        raise StoryboardError.single(
            file,
            start + 1,
            1,
            "vars",
            "`vars:` must be plain YAML",
            "move template expressions out of `vars:`",
        )
    try:
        data = read_yaml_value(block, file) or {}
    except StoryboardError as exc:  # positions in the block are lines of the file, `start` lines down
        raise StoryboardError(
            [dataclasses.replace(p, line=None if p.line is None else p.line + start) for p in exc.problems]
        ) from None
    values = data.get("vars") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise StoryboardError.single(
            file, start + 1, 1, "vars", "`vars:` must be a mapping", "write `name: value` pairs"
        )
    return values, start + 1


def _declared_on(text: str, vars_line: int, name: str) -> int | None:
    """The line of the template that declares variable ``name`` in the ``vars:`` block starting on ``vars_line``."""
    declaration = re.compile(rf"^\s+{re.escape(name)}\s*:")
    for number, line in enumerate(text.splitlines()[vars_line:], start=vars_line + 1):
        if line.strip() and line[0] not in " \t#":
            break  # past the block
        if declaration.match(line):
            return number
    return vars_line or None


def _walk(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but the tab


def parse_var(assignment: str) -> tuple[str, Any]:
    """``name=value`` from the command line; the value is read as YAML (``n=3`` is a number).

    A value may not hold a newline or another control character: pasted into the template it could
    add keys of its own to the storyboard.

    >>> parse_var("hero=fox"), parse_var("n=3")
    (('hero', 'fox'), ('n', 3))
    """
    name, sep, value = assignment.partition("=")
    if not sep or not name.strip():
        raise StoryboardError.single(
            "--var", None, None, "", f"{assignment!r} is not NAME=VALUE", "e.g. --var hero=fox"
        )
    name = name.strip()
    if _CONTROL.search(assignment):
        raise StoryboardError.single(
            "--var",
            None,
            None,
            "",
            f"the value of {name} holds a newline or another control character",
            "give a one-line value; put longer text under `vars:` in the template",
        )
    parsed = read_yaml_value(value, "--var")
    for _, item in _walk(parsed, ()):
        if isinstance(item, str) and _CONTROL.search(item):
            raise StoryboardError.single(
                "--var",
                None,
                None,
                "",
                f"the value of {name} holds a newline or another control character (written as an escape)",
                "give a one-line value; put longer text under `vars:` in the template",
            )
    return name, value if parsed is None else parsed


# --- rendering --------------------------------------------------------------------------------------------------


def render_storyboard_template(text: str, file: str, overrides: dict[str, Any]) -> str:
    """Render a ``.yaml.j2`` storyboard; errors name the template line and the variable.

    The template is compiled once and rendered twice in a child process (see
    :func:`~storyreel.template_child.render_in_child`): a template is code from wherever the storyboard
    came from, and only there are its memory and time bounded whatever it does. The lenient pass's YAML is
    read here, for the characters it defines.
    """
    try:
        check_template_size(text)
    except TemplateUnreadable as exc:
        raise StoryboardError.single(file, None, None, "template", str(exc.message), exc.fix) from None
    values, vars_line = _variables(text, file, overrides)

    def characters_in(draft: str) -> list[str]:
        characters = _characters_defined(draft, file)
        _refuse_clashes(characters, values, text, vars_line, file)
        return characters

    try:
        rendered = render_in_child(lambda: _render_passes(text, file, values), characters_in)
    except ChildStopped as stopped:
        raise StoryboardError.single(
            file, None, None, "template", f"template limit: {stopped.message}", stopped.fix
        ) from None
    if isinstance(rendered, list):
        raise StoryboardError(rendered)
    return rendered


def _render_passes(
    text: str, file: str, values: dict[str, Any]
) -> Generator[str, list[str], str | list[Problem]]:
    """Compile the template, render the lenient pass and yield it; given the characters it defines, render the
    strict pass. Returns the YAML, or the problems found (values that cross from a child process)."""
    try:
        # Pass 1, lenient: every undefined name is written back as `{{ name }}`, so that the characters the
        # template defines can be found.
        sandbox = BoundedSandbox(_EchoUndefined, time.process_time() + MAX_TEMPLATE_SECONDS)  # both passes
        template = _compile(sandbox, text, file)
        draft = render_bounded(template, values)
        characters = yield draft  # reading the draft takes the parent's CPU time, not this process's
        # Pass 2, strict: each character is left as its `{{ name }}`; every other undefined name is an error.
        sandbox.undefined = jinja2.StrictUndefined
        placeholders = {name: "{{ " + name + " }}" for name in characters}
        return render_bounded(template, {**values, **placeholders})
    except StoryboardError as exc:
        return exc.problems
    except Exception as exc:  # noqa: BLE001 - said with the template line, whatever the template did
        return _render_error(exc, file).problems


def _variables(text: str, file: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The template's variables: those ``vars:`` declares, overridden by the caller's; and the block's line."""
    declared, vars_line = _vars_block(text, file)
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise StoryboardError.single(
            file,
            None,
            None,
            "vars",
            f"unknown template variable(s): {', '.join(unknown)}",
            "declared variables: "
            + (", ".join(sorted(declared)) or "none")
            + " (declare new ones under `vars:`)",
        )
    return {**declared, **overrides}, vars_line


def _compile(sandbox: BoundedSandbox, text: str, file: str) -> jinja2.Template:
    """The template compiled in the sandbox; a syntax error, or a template too large or too deeply nested to
    compile, is a StoryboardError with its line."""
    try:
        return compile_template(sandbox, text, file)
    except jinja2.TemplateSyntaxError as exc:
        raise StoryboardError.single(
            file,
            exc.lineno,
            None,
            "template",
            f"template syntax error: {exc.message}",
            "check the {% %} and {{ }} tags",
        ) from None
    except TemplateUnreadable as exc:
        raise StoryboardError.single(file, exc.lineno, None, "template", str(exc.message), exc.fix) from None


class _EchoUndefined(jinja2.Undefined):
    """Renders an undefined name back as ``{{ name }}``; used only to discover character names."""

    def __str__(self) -> str:
        return "{{ " + str(self._undefined_name) + " }}"


def _characters_defined(draft: str, file: str) -> list[str]:
    """The names under ``characters:`` in what the lenient pass rendered."""
    try:
        data, _ = load_yaml(draft, file)
        characters = (
            list(data["characters"])
            if isinstance(data, dict) and isinstance(data.get("characters"), dict)
            else []
        )
    except StoryboardError:
        # The YAML is broken: still find the characters, so that the YAML error is the one reported
        # (the storyboard stage reports it with its line) and not their references as undefined.
        characters = _character_names(draft)
    return [str(name) for name in characters]


def _character_names(draft: str) -> list[str]:
    """The keys under a top-level ``characters:``, read line by line: used when the YAML does not parse."""
    names: list[str] = []
    lines = draft.splitlines()
    for i, line in enumerate(lines):
        if not re.match(r"^characters\s*:", line):
            continue
        rest = line.split(":", 1)[1].strip()
        if rest.startswith("{"):  # flow style: the keys at the first nesting level
            depth = 0
            for match in re.finditer(r"[{}\[\]]|([A-Za-z_]\w*)\s*:", rest):
                if match.group(0) in "{[":
                    depth += 1
                elif match.group(0) in "}]":
                    depth -= 1
                elif depth == 1:
                    names.append(match.group(1))
            continue
        indent = None
        for following in lines[i + 1 :]:
            if not following.strip() or following.lstrip().startswith("#"):
                continue
            width = len(following) - len(following.lstrip())
            if width == 0:
                break
            indent = width if indent is None else indent
            key = re.match(r"^\s*([A-Za-z_]\w*)\s*:", following)
            if width == indent and key:
                names.append(key.group(1))
    return names


def _refuse_clashes(
    characters: list[str], values: dict[str, Any], text: str, vars_line: int, file: str
) -> None:
    """A name may be a variable or a character, not both: ``{{ name }}`` could only mean one of them."""
    clashes = sorted(set(characters) & set(values))
    if clashes:
        raise StoryboardError.single(
            file,
            _declared_on(text, vars_line, clashes[0]),
            None,
            f"vars.{clashes[0]}",
            f"{', '.join(clashes)} is both a variable and a character",
            "rename one of them",
        )


def _render_error(exc: Exception, file: str) -> StoryboardError:
    """What went wrong while the template rendered, at the template line it went wrong on."""
    line = _template_line(exc, file)
    if isinstance(exc, TemplateLimitError):
        return StoryboardError.single(file, line, None, "template", f"template limit: {exc.message}", exc.fix)
    if isinstance(exc, jinja2.UndefinedError):
        return StoryboardError.single(
            file,
            line,
            None,
            "template",
            f"undefined variable: {exc.message}",
            "declare it under `vars:` or pass it with --var NAME=VALUE",
        )
    if isinstance(exc, jinja2.TemplateError):
        return StoryboardError.single(file, line, None, "template", f"template error: {exc}", "")
    if isinstance(exc, RecursionError):
        return StoryboardError.single(
            file,
            line,
            None,
            "template",
            "template failed: RecursionError",
            "a macro may be calling itself without end; simplify it",
        )
    if isinstance(exc, MemoryError):
        return StoryboardError.single(
            file,
            line,
            None,
            "template",
            f"template limit: the template needs more than the {MAX_TEMPLATE_MEMORY >> 20:,} MiB of memory a "
            "template may use",
            "build smaller strings and lists",
        )
    # a template's own arithmetic error, say
    return StoryboardError.single(
        file, line, None, "template", f"template failed: {type(exc).__name__}: {exc}", ""
    )


def _template_line(exc: BaseException, file: str) -> int | None:
    """The template line an error was raised on, read from the traceback Jinja2 rewrites to point at it."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
