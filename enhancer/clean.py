"""Turning an LLM's answer into a caption SkyReels-V2 can use, or saying why it cannot be used.

Chat models wrap the caption they were asked for: "Sure! Here is the enhanced prompt:", a
``**Caption:**`` label, quotes, markdown, a closing "Let me know if you want changes". Some drift
into another language (Qwen models answer in Chinese now and then). SkyReels-V2 was trained on
plain English captions, so :func:`clean_caption` keeps only the caption, in English, in one
paragraph, within ``max_words`` (ending after its last whole sentence that fits), and raises
:class:`UnusableAnswer` when nothing usable is left, so that the backend can ask again.

>>> clean_caption('Sure! Here is the enhanced prompt:\\n\\n**"Wide shot: a swan glides across the lake."**', 120)
'Wide shot: a swan glides across the lake.'
>>> clean_caption("A swan glides. The mist rises. The camera slowly pushes in.", 6)
'A swan glides. The mist rises.'
"""

from __future__ import annotations

import re
import unicodedata

from .text import cap_words, sentences, tidy

# Bumped whenever a change here can change a caption, so that locked prompts are re-enhanced.
CLEAN_VERSION = 1

# An answer is rejected when more than this share of its letters are not Latin script.
MAX_NON_LATIN_SHARE = 0.2
# Fewer words than this is not a caption (an empty answer, "OK.", a lone label).
MIN_WORDS = 4


class UnusableAnswer(ValueError):
    """An answer with no usable caption in it; the message says why, for the error a user finally sees."""


_THINKING = re.compile(r"<think>.*?(?:</think>|\Z)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
# Openers a chat model puts before the caption; each is removed from the start, repeatedly.
_PREAMBLES = (
    # "Sure!", "Certainly, here's a caption:", "Okay." (an interjection ending its own clause)
    re.compile(
        r"^(?:sure(?:\s+thing)?|certainly|of course|absolutely|okay|ok|alright|all right|great|gladly)\b"
        r"(?:[^.!:\n]{0,80}:|[,.!]+)\s*",
        re.IGNORECASE,
    ),
    # "Here is the enhanced prompt for shot 'glide':" / "Here's a detailed caption" on its own line
    re.compile(r"^here(?:'s|’s| is| are)\b[^\n]{0,120}?(?::\s*|\n\s*)", re.IGNORECASE),
    # "I'd be happy to help. " / "I have rewritten the prompt:"
    re.compile(r"^i(?:'d|’d| would) be (?:happy|glad) to[^.!:\n]*[.!:]\s*", re.IGNORECASE),
    re.compile(r"^i(?:'ve|’ve| have) (?:rewritten|enhanced|expanded)[^:\n]{0,120}:\s*", re.IGNORECASE),
    # "**Enhanced prompt:**", "Caption -", "Rewritten video prompt:"
    re.compile(
        r"^(?:the\s+)?(?:final\s+|enhanced\s+|rewritten\s+|revised\s+|improved\s+|detailed\s+|expanded\s+)*"
        r"(?:video\s+|shot\s+)?(?:prompt|caption|description|version)\s*(?:\([^)]*\)\s*)?[:\-–—]\s*",
        re.IGNORECASE,
    ),
)
# A paragraph that is only a label: "Enhanced prompt", "**Caption**".
_LABEL = re.compile(
    r"^(?:[\w-]+\s+){0,2}(?:prompt|caption|description|version)\s*(?:\([^)]*\))?\s*[:\-–—]?$", re.IGNORECASE
)
# Closing remarks, removed paragraph by paragraph from the end.
_POSTAMBLE = re.compile(
    r"^(?:let me know|i hope|feel free|hope this|note:|notes:|this (?:caption|prompt|description) "
    r"(?:captures|emphasi[sz]es|highlights|keeps|uses|is)|\(?word count|if you(?:'d| would) like|"
    r"would you like)",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^(?:i'm sorry|i am sorry|sorry,|i cannot|i can't|i can not|i’m sorry|i can’t|as an ai|"
    r"i'm unable|i am unable|i’m unable)",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "「": "」", "`": "`"}


def clean_caption(answer: str, max_words: int, *, truncated: bool = False) -> str:
    """The caption in ``answer``: English, one paragraph, no preamble, quotes or markdown, within ``max_words``.

    ``truncated`` says that the server stopped the answer at its token limit, so that a sentence
    left unfinished at the end is dropped. Raises :class:`UnusableAnswer` when nothing usable is left.

    >>> clean_caption("Close-up: a heron strikes at the water. A spray of droplets", 120, truncated=True)
    'Close-up: a heron strikes at the water.'
    >>> try:
    ...     clean_caption("一只白天鹅在湖面上滑行。", 120)
    ... except UnusableAnswer as error:
    ...     print(error)
    the answer is not in English (100% of its letters are not Latin script)
    """
    text = _THINKING.sub(" ", answer)
    # Replacement characters (a multi-byte character cut between tokens) and control characters go.
    text = "".join(c for c in text if c in "\n\t" or (c != "\ufffd" and unicodedata.category(c)[0] != "C"))
    text = _FENCE.sub("", text)
    paragraphs = [_strip_markdown(p) for p in re.split(r"\n\s*\n", text)]
    paragraphs = [p for p in paragraphs if p]
    while paragraphs and _POSTAMBLE.match(paragraphs[-1]):
        paragraphs.pop()
    # A first paragraph that only announces the caption ("Here is the enhanced prompt:") goes whole.
    while len(paragraphs) > 1 and (
        paragraphs[0].endswith(":") or _LABEL.match(paragraphs[0]) or not _strip_preamble(paragraphs[0])
    ):
        paragraphs.pop(0)
    text = _strip_quotes(_strip_preamble(" ".join(paragraphs)))
    if _REFUSAL.match(text):
        raise UnusableAnswer(f"the model declined: {_excerpt(text)}")

    share = _non_latin_share(text)
    if share > MAX_NON_LATIN_SHARE:
        raise UnusableAnswer(
            f"the answer is not in English ({share:.0%} of its letters are not Latin script)"
        )
    text = _drop_non_latin(text)
    if not text.strip():
        raise UnusableAnswer("the answer is empty")
    unfinished = truncated and not text.endswith((".", "!", "?"))
    text = tidy(text)
    if unfinished and len(sentences(text)) > 1:
        text = " ".join(sentences(text)[:-1])  # the sentence the token limit cut off goes
    text = cap_words(text, max_words)
    if len(text.split()) < MIN_WORDS:
        raise UnusableAnswer(f"the answer is too short to be a caption: {_excerpt(text)}")
    return text


def _strip_markdown(paragraph: str) -> str:
    """One paragraph without headings, list markers, emphasis, inline code or link syntax, on one line.

    Lines that read as separate items (list items, or a line starting with a capital after one without
    a closing mark) are joined as sentences: "- Wide shot: a swan glides" and "- Mist rises" become
    "Wide shot: a swan glides. Mist rises".
    """
    joined = ""
    for line in paragraph.splitlines():
        if re.match(r"^\s{0,3}#{1,6}\s", line):
            continue  # a heading ("## Enhanced prompt") is never part of the caption
        item = re.match(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+", line) is not None
        line = re.sub(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+", "", line)  # "- item", "1. item"
        line = _strip_emphasis(re.sub(r"^\s*>\s?", "", line))  # "> quoted"
        if not line:
            continue
        if joined and not joined.endswith((".", "!", "?", ":", ";", ",")) and (item or line[0].isupper()):
            joined += "."
        joined = f"{joined} {line}" if joined else line
    return joined


def _strip_emphasis(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # [text](url)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)  # **bold**, __bold__
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)  # *italic*
    text = re.sub(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])", r"\1", text)  # _italic_
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"(?:^|\s)(?:\*{1,3}|_{1,3})(?=\s|$)", " ", text)  # stray markers left alone
    return " ".join(text.split())


def _strip_preamble(text: str) -> str:
    changed = True
    while changed:
        changed = False
        for pattern in _PREAMBLES:
            stripped = pattern.sub("", text, count=1).lstrip()
            if stripped != text:
                text, changed = stripped, True
    return text


def _strip_quotes(text: str) -> str:
    """Remove quotes that wrap the whole caption (once, or nested), keeping quotes inside it."""
    while len(text) >= 2 and text[0] in _QUOTES:
        close = _QUOTES[text[0]]
        body = text[1:]
        if body.endswith(close):
            body = body[:-1]
        elif len(body) > 1 and body[-1] in ".!?" and body[-2] == close:
            body = body[:-2] + body[-1]  # "A swan glides". -> A swan glides.
        elif close in body:
            break  # an opening quote that closes inside: a quote within the caption
        text = body.strip()
    if text.endswith(tuple(_QUOTES.values())) and not any(q in text[:-1] for q in _QUOTES):
        text = text[:-1].rstrip()  # a stray closing quote
    return text


def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def _non_latin_share(text: str) -> float:
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return 0.0
    return sum(not _is_latin(char) for char in letters) / len(letters)


def _drop_non_latin(text: str) -> str:
    """Remove the few words in another script (a name in Chinese in brackets, say) from an English caption."""
    if not any(char.isalpha() and not _is_latin(char) for char in text):
        return text
    words = [word for word in text.split() if not any(c.isalpha() and not _is_latin(c) for c in word)]
    text = " ".join(words)
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)
    return " ".join(text.split())


def _excerpt(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
