"""How a plain YAML scalar is read: the YAML 1.2 core schema, the way a person means it.

Plain scalars are resolved with the YAML 1.2 core schema, not PyYAML's YAML 1.1 rules, so that
nothing a person writes as text turns into something else: ``11:58`` stays "11:58" (not 718
seconds), ``yes``/``no``/``on``/``off`` stay words (only ``true``/``false`` are booleans), and
``0x0``, ``0o17``, ``1_000`` and ``2024-05-01`` stay text. A plain number remembers how it was
written, so a text field given ``007`` or ``1.50`` gets exactly that text.

The characters a scalar may not hold unseen, and the words YAML 1.1 read as booleans, are here too: the
reader (:mod:`storyreel.yaml_source`) reports both where they are written.

>>> resolve_plain("11:58"), resolve_plain("007", written_numbers=True)
('11:58', 007)
"""

from __future__ import annotations

import math
import re
from typing import Any

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
# Characters that show as nothing, or change what the text around them looks like, so that what a storyboard
# says differs from what it seems to say: control characters (terminal escapes, NUL, BEL; tab and line breaks
# are text) and the bidirectional embeddings, overrides and isolates that can reorder a line on screen.
HIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Words YAML 1.1 read as booleans. Storyboard fields are typed, so they are read as the words they are; a
# template variable is untyped, where `night: no` would be the word "no", true in `{% if night %}`.
YES_NO_WORDS = frozenset("y Y yes Yes YES n N no No NO on On ON off Off OFF".split())


class WrittenInt(int):
    """An integer read from a plain scalar; ``str()`` gives it back as it was written (``007``)."""

    text: str

    def __new__(cls, text: str) -> WrittenInt:
        number = super().__new__(cls, int(text))
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __getnewargs__(self) -> tuple[str]:  # type: ignore[override]  # copies keep the text
        return (self.text,)


class WrittenFloat(float):
    """A float read from a plain scalar; ``str()`` gives it back as it was written (``1.50``)."""

    text: str

    def __new__(cls, text: str, value: float) -> WrittenFloat:
        number = super().__new__(cls, value)
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __getnewargs__(self) -> tuple[str, float]:  # type: ignore[override]  # copies keep the text
        return (self.text, float(self))


def resolve_plain(text: str, *, written_numbers: bool = False) -> Any:
    """A plain (unquoted) scalar under the YAML 1.2 core schema, decimal numbers only.

    >>> [resolve_plain(t) for t in ("1:30", "yes", "off", "0x10", "1_000", "12", "2.5", "true", "~")]
    ['1:30', 'yes', 'off', '0x10', '1_000', 12, 2.5, True, None]
    """
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        if len(text) > 4000:  # past what Python converts (4300 digits); no field wants such a number
            return text
        return WrittenInt(text) if written_numbers else int(text)
    if _FLOAT.match(text):
        value = float(text)  # may be inf for 1e999, which the fields that need a finite number refuse
    elif _INF.match(text):
        value = -math.inf if text.startswith("-") else math.inf
    elif _NAN.match(text):
        value = math.nan
    else:
        return text
    return WrittenFloat(text, value) if written_numbers else value
