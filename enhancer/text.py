"""What every enhancer does with text: tidy a caption, split it into sentences, cap its words, render a prompt.

The ``template`` backend writes captions and the LLM backends clean the answers of a model; both end
the same way (:func:`tidy`, then :func:`cap_words`), so that a caption reads alike whichever backend
wrote it. Their prompt templates are strict sandboxed Jinja2 (:func:`prompt_environment`), read from
``prompts/`` when bundled (:func:`bundled_prompt`).

>>> cap_words(tidy("a swan  glides ,slowly..  The mist rises. The camera pans"), 6)
'A swan glides, slowly.'
"""

from __future__ import annotations

import re
from importlib.resources import files

import jinja2
import jinja2.sandbox

# Words a caption cut between words must not end on.
_DANGLING = frozenset(
    "a an the and or but of with in on at to from by as its their his her into onto".split()
)


def upper_first(text: str) -> str:
    """The text with its first letter capitalised and the rest as written (names and acronyms stay)."""
    return text[:1].upper() + text[1:]


def tidy(text: str) -> str:
    """Single spaces, no space before punctuation, one mark where marks pile up, a capital and a full stop.

    >>> tidy("a swan  glides ,slowly..  The  mist rises?.")
    'A swan glides, slowly. The mist rises?'
    """
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"[,;:]+(?=[.!?])", "", text)  # "lake,." -> "lake."
    text = re.sub(r"([.!?])[.,;:]+", r"\1", text)  # "lake.." or "feed?." -> one mark
    text = re.sub(r"([,;:])[,;:]+", r"\1", text)
    text = re.sub(r"([,;])(?=[A-Za-z])", r"\1 ", text)  # "glides,slowly" -> "glides, slowly"
    text = upper_first(text.strip())
    if text and text[-1] not in ".!?":
        text += "."
    return text


def sentences(text: str) -> list[str]:
    """Split tidied text after . ! or ? where the next sentence starts with a capital, a digit or a quote."""
    return [part for part in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text) if part]


def cap_words(text: str, max_words: int) -> str:
    """The longest run of whole leading sentences within ``max_words``; one long sentence is cut between words.

    >>> cap_words("One two three. Four five six. Seven.", 6)
    'One two three. Four five six.'
    >>> cap_words("One two three four, five six.", 4)
    'One two three four.'
    """
    if len(text.split()) <= max_words:
        return text
    kept: list[str] = []
    for sentence in sentences(text):
        if len(" ".join([*kept, sentence]).split()) > max_words:
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    words = text.split()[:max_words]
    while len(words) > 1 and words[-1].lower().strip(",;:-") in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(",;:-") + "."


def bundled_prompt(name: str) -> str:
    """The text of a prompt template shipped in ``prompts/``, such as ``"prompts/system.j2"``."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def prompt_environment() -> jinja2.sandbox.SandboxedEnvironment:
    """The Jinja2 environment prompt templates render in: sandboxed, an undefined name is an error, no escaping.

    Block tags take their line with them (``trim_blocks``, ``lstrip_blocks``), so a template can put
    one sentence or message line on each line of its source.
    """
    return jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
