"""Templated storyboards: ``story.yaml.j2`` files rendered by Jinja2 in a sandbox before they are parsed.

The file declares its variables in a top-level ``vars:`` block of plain YAML; callers may override
them (``storyreel render story.yaml.j2 --var hero=fox``). Undefined variables are errors. Character
references such as ``{{ swan }}`` are left for the storyboard stage to expand, so prompts read the
same in templated and plain storyboards.

>>> print(render_storyboard_template("vars:\\n  n: 2\\nshots: {{ n * 2 }}\\n", "t.yaml.j2", {}))
vars:
  n: 2
shots: 4
"""

from __future__ import annotations

import re
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

from .errors import StoryboardError

_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


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
        data = yaml.safe_load(block) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = start + 1 + (mark.line if mark else 0)
        raise StoryboardError.single(file, line, None, "vars", f"YAML syntax error: {exc}", "") from None
    values = data.get("vars") or {}
    if not isinstance(values, dict):
        raise StoryboardError.single(
            file, start + 1, 1, "vars", "`vars:` must be a mapping", "write `name: value` pairs"
        )
    return values, start + 1


class _EchoUndefined(jinja2.Undefined):
    """Renders an undefined name back as ``{{ name }}``; used only to discover character names."""

    def __str__(self) -> str:
        return "{{ " + str(self._undefined_name) + " }}"


def _environment(undefined: type[jinja2.Undefined]) -> jinja2.sandbox.SandboxedEnvironment:
    return jinja2.sandbox.SandboxedEnvironment(
        undefined=undefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
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


def render_storyboard_template(text: str, file: str, overrides: dict[str, Any]) -> str:
    """Render a ``.yaml.j2`` storyboard; errors name the template line and the variable."""
    declared, _ = _vars_block(text, file)
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
    values = {**declared, **overrides}
    try:
        template = _environment(jinja2.StrictUndefined).from_string(text)
        template.filename = file  # so tracebacks (and _template_line) name this file
        template_echo = _environment(_EchoUndefined).from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise StoryboardError.single(
            file,
            exc.lineno,
            None,
            "template",
            f"template syntax error: {exc.message}",
            "check the {% %} and {{ }} tags",
        ) from None

    # Pass 1, lenient: find the characters the template defines, so `{{ swan }}` survives pass 2.
    characters: list[str] = []
    try:
        draft = yaml.safe_load(template_echo.render(values))
        if isinstance(draft, dict) and isinstance(draft.get("characters"), dict):
            characters = [str(name) for name in draft["characters"]]
    except Exception:  # noqa: BLE001 - pass 2 reports the real error with its line
        pass
    clashes = sorted(set(characters) & set(values))
    if clashes:
        raise StoryboardError.single(
            file,
            None,
            None,
            "vars",
            f"{', '.join(clashes)} is both a variable and a character",
            "rename one of them",
        )
    placeholders = {name: "{{ " + name + " }}" for name in characters}

    # Pass 2, strict: every other undefined name is an error.
    try:
        return template.render({**values, **placeholders})
    except jinja2.UndefinedError as exc:
        raise StoryboardError.single(
            file,
            _template_line(exc, file),
            None,
            "template",
            f"undefined variable: {exc.message}",
            "declare it under `vars:` or pass it with --var NAME=VALUE",
        ) from None
    except jinja2.TemplateError as exc:
        raise StoryboardError.single(
            file, _template_line(exc, file), None, "template", f"template error: {exc}", ""
        ) from None
    except Exception as exc:  # noqa: BLE001 - a template's own arithmetic error, say
        line = _template_line(exc, file)
        raise StoryboardError.single(
            file, line, None, "template", f"template failed: {type(exc).__name__}: {exc}", ""
        ) from None


def parse_var(assignment: str) -> tuple[str, Any]:
    """``name=value`` from the command line; the value is read as YAML (``n=3`` is a number).

    >>> parse_var("hero=fox"), parse_var("n=3")
    (('hero', 'fox'), ('n', 3))
    """
    name, sep, value = assignment.partition("=")
    if not sep or not name.strip():
        raise StoryboardError.single(
            "--var", None, None, "", f"{assignment!r} is not NAME=VALUE", "e.g. --var hero=fox"
        )
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return name.strip(), value if parsed is None else parsed
