"""Prompts and scene settings: the ``{{ character }}`` references they may hold, read without a template engine.

A prompt is plain text in which ``{{ name }}`` stands for a character's description. It is read by a
scanner, never run as a template, so that a prompt cannot compute, loop or call anything: any other
``{{``, ``{%`` or ``{#`` is a :class:`PromptSyntaxError`. The size of a prompt filled in is counted before
it is built, so that a long description referenced many times is refused rather than built.

>>> text = "{{ swan }} meets {{heron}}"
>>> fill_in(text, prompt_references(text), {"swan": "a white swan", "heron": "a grey heron"})
'a white swan meets a grey heron'
"""

from __future__ import annotations

import functools
import re

from .fields import MAX_PROMPT_CHARS, field_error

References = tuple[tuple[int, int, str], ...]

# Names Jinja2 reads as something else inside {{ }}: its literals and operators, the objects a template
# sees (self, loop, caller...) and its global functions. A character with such a name could not be
# referenced from a templated storyboard ({{ none }} would print "None"), so such names are refused.
RESERVED_NAMES = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else", "elif"}
    | {"self", "loop", "super", "caller", "varargs", "kwargs", "vars"}
    | {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)

_TAG_START = re.compile(r"\{[{%#]")
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TAG_END = re.compile(r"[}%#]\}")


class PromptSyntaxError(ValueError):
    """A prompt or setting holds something in braces that is not a ``{{ name }}`` reference."""

    def __init__(self, fragment: str):
        super().__init__(fragment)
        self.fragment = fragment

    def problem(self) -> tuple[str, str]:
        """(message, fix) for a Problem."""
        return (
            f"{self.fragment!r} is not a character reference: prompts and settings only hold "
            "{{ character }} references",
            "write a character as {{ name }} with a name from `characters:`, or remove the braces "
            "(expressions and loops belong in a .yaml.j2 template)",
        )


# A prompt is read by several checks in a row, a setting once per shot of its scene: a small cache serves both
# without keeping every prompt of every storyboard a long-lived process has loaded.
@functools.lru_cache(maxsize=1024)
def prompt_references(text: str) -> References:
    """``(start, end, name)`` of every ``{{ name }}`` in a prompt; PromptSyntaxError for any other ``{{``,
    ``{%`` or ``{#``. A plain reading, never a template: a prompt cannot compute, loop or call anything.

    >>> prompt_references("{{ swan }} meets {{heron}}")
    ((0, 10, 'swan'), (17, 26, 'heron'))
    """
    references: list[tuple[int, int, str]] = []
    position = 0
    while (tag := _TAG_START.search(text, position)) is not None:
        reference = _REFERENCE.match(text, tag.start())
        if reference is None:
            end = _TAG_END.search(text, tag.start() + 2)
            stop = end.end() if end is not None and end.end() - tag.start() <= 60 else tag.start() + 40
            raise PromptSyntaxError(text[tag.start() : stop])
        references.append((reference.start(), reference.end(), reference.group(1)))
        position = reference.end()
    return tuple(references)


def fill_in(text: str, references: References, descriptions: dict[str, str]) -> str:
    """``text`` with each reference replaced by its description, runs of whitespace collapsed."""
    parts: list[str] = []
    start = 0
    for begin, end, name in references:
        parts += [text[start:begin], descriptions[name]]
        start = end
    parts.append(text[start:])
    return " ".join("".join(parts).split())


def expanded_size(text: str, references: References, descriptions: dict[str, str]) -> int:
    """Characters of the expansion, counted before it is built (a long description referenced often adds up)."""
    return len(text) + sum(len(descriptions.get(name, "")) - (end - start) for start, end, name in references)


def too_long(size: int) -> tuple[str, str]:
    """(message, fix) for a prompt of ``size`` characters filled in, more than :data:`MAX_PROMPT_CHARS`."""
    return (
        f"filled in with the character descriptions it is {size:,} characters, more than the "
        f"{MAX_PROMPT_CHARS:,} a prompt may have",
        "shorten it or the descriptions (the video model's text encoder reads only about 512 tokens)",
    )


def referable_name(name: str) -> str:
    """A check for a character's name: one a template reads as its own (``none``, ``loop``) is refused."""
    if name in RESERVED_NAMES:
        raise field_error(
            f"a character cannot be called '{name}': templates read {{{{ {name} }}}} as their own '{name}'",
            f"rename it, e.g. '{name}_character' or a name that says who it is",
        )
    return name
