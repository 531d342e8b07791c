"""The ``template`` enhancer: SkyReels-style captions written offline, the same every time.

SkyReels-V2 was trained on captions that open with the shot type, then say who is in the shot and
what they do, what changes over time, where it happens, the light and atmosphere, and how the
camera moves. Its own prompt enhancer (a Qwen LLM) rewrites a short prompt into that shape. This
backend writes the same shape from what the storyboard already says, with no model: phrases are
worked out here and filled into ``prompts/caption.j2`` (a strict Jinja2 sandbox), then the text is
tidied and capped at ``max_words``.

What it adds to a shot's prompt:

* the shot type and angle from ``camera:`` ("Wide shot at eye level: ..."), "Medium shot" if unset;
* each character's description, unless the prompt already holds it (``{{ swan }}`` puts it there);
* for a continuing shot, that the action flows on from the previous moment;
* the scene's setting; a light and atmosphere phrase when neither prompt, setting nor style
  speaks of light; the film's style;
* the camera move as a sentence, or, with no move and nothing moving in the prompt, a gentle one,
  so that the video does not come out static. An explicit ``move: static`` is respected.

The camera it writes is the one :func:`storyreel.camera.shot_camera` decides, which the animatic
draws too, so that the previs shows the shot the model is asked for.

It adds only English and never rewrites the prompt's own words. Over ``max_words``, whole
sentences go first (the style, then light, setting, characters); then the caption ends after its
last whole sentence that fits; only a single sentence longer than the cap is cut, between words.

>>> from storyreel.enhance import FilmContext, ShotContext
>>> from storyreel.storyboard import Camera, EnhancerSettings
>>> shot = ShotContext(id="watch", scene="marsh", scene_title=None, setting="a marsh at dawn",
...     prompt="a grey heron watches the water", camera=Camera(shot="wide"), characters={},
...     mode="fresh", seconds=3.0)
>>> film = FilmContext(title="Heron", style="watercolour animation")
>>> print(TemplateEnhancer(EnhancerSettings()).enhance(film, [shot])[0].prompt)
Wide shot: a grey heron watches the water. The setting is a marsh at dawn. Soft, warm dawn light and a calm, hushed atmosphere. Visual style: watercolour animation. The camera slowly pans across the scene.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import jinja2

from storyreel.camera import shot_camera
from storyreel.enhance import EnhancedPrompt, Enhancer, FilmContext, ShotContext
from storyreel.storyboard import EnhancerSettings

from .text import bundled_prompt, cap_words, prompt_environment, tidy, upper_first

TEMPLATE = "prompts/caption.j2"

# Light and atmosphere by time of day or weather, first match wins; used only when nothing speaks of light.
LIGHT_BY_KEYWORD: tuple[tuple[tuple[str, ...], str], ...] = (
    (("dawn", "sunrise", "daybreak", "first light"), "Soft, warm dawn light and a calm, hushed atmosphere"),
    (
        ("sunset", "dusk", "twilight", "evening", "golden hour"),
        "Warm golden-hour light with long shadows and a tranquil atmosphere",
    ),
    (
        ("night", "midnight", "moon", "stars", "starry"),
        "Dim night light with deep shadows and a quiet, mysterious atmosphere",
    ),
    (
        ("storm", "rain", "rainy", "thunder"),
        "Diffused grey light under heavy clouds and a brooding atmosphere",
    ),
    (
        ("fog", "foggy", "mist", "misty", "haze", "hazy"),
        "Hazy, diffused light and a soft, dreamlike atmosphere",
    ),
    (("studio", "plinth", "pedestal", "backdrop"), "Clean, controlled studio lighting with soft reflections"),
    (("noon", "midday", "sunny", "summer"), "Bright, clear daylight and a lively atmosphere"),
)
DEFAULT_LIGHT = "Natural, balanced lighting with gentle contrast"
_LIGHT_WORDS = re.compile(
    r"\b(light|lights|lit|lighting|sunlight|sunlit|moonlight|moonlit|candlelight|lamplight|glow|glows|"
    r"glowing|shadow|shadows|backlit|silhouette|silhouetted|neon|illuminated|golden hour|chiaroscuro|"
    r"lamp|lamps|lantern|lanterns|candle|candles|torch|torches|fire|firelight|spotlight|spotlights)\b",
    re.IGNORECASE,
)
# Words that open a noun phrase: "a swan", "the lake", "two herons".
DETERMINERS = frozenset(
    "a an the this that these those his her its their our my your some several many few one two three four "
    "five every each".split()
)
# Sentences dropped first when a caption is over max_words, in order.
DROP_ORDER: tuple[str, ...] = ("style", "lighting", "setting", "characters")
_EMPTY: dict[str, Any] = {"style": None, "lighting": None, "setting": None, "characters": []}


# --- text ------------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def _starts_with_determiner(text: str) -> bool:
    first = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    return first in DETERMINERS


def _clean(text: str) -> str:
    """One line, no final full stop or dangling comma (the template adds the sentence's end)."""
    return " ".join(text.split()).rstrip(" .,;:")


# --- phrases ---------------------------------------------------------------------------------------------------


def _lighting(shot: ShotContext, film: FilmContext) -> str | None:
    """A light and atmosphere phrase, unless the prompt, the setting or the style already speaks of light."""
    if _LIGHT_WORDS.search(" ".join(filter(None, [shot.prompt, shot.setting, film.style]))):
        return None
    words = " ".join(_words(" ".join(filter(None, [shot.prompt, shot.setting, shot.scene_title]))))
    for keywords, phrase in LIGHT_BY_KEYWORD:
        if any(re.search(rf"\b{re.escape(keyword)}\b", words) for keyword in keywords):
            return phrase
    return DEFAULT_LIGHT


def _characters(shot: ShotContext) -> list[dict[str, Any]]:
    """The characters whose description the prompt does not already hold, each with how the prompt names them."""
    woven = []
    prompt = _normalised(shot.prompt)
    for name, description in shot.characters.items():
        description = _clean(description)
        if not description or _normalised(description) in prompt:
            continue
        spoken = name.replace("_", " ")
        match = re.search(rf"\b(?:(the)\s+)?({re.escape(spoken)})\b", shot.prompt, re.IGNORECASE)
        if match is None:
            who = None
        elif match.group(1) or match.group(2)[0].islower():
            who = "The " + match.group(2)  # "the swan" or "a swan" -> "The swan is ..."
        else:
            who = match.group(2)  # a name as written: "Mia is ..."
        woven.append(
            {"who": who, "description": description, "has_article": _starts_with_determiner(description)}
        )
    return woven


def caption_parts(film: FilmContext, shot: ShotContext) -> dict[str, Any]:
    """The variables ``prompts/caption.j2`` is rendered with, for one shot."""
    camera = shot_camera(shot.camera, shot.prompt)
    prompt = _clean(shot.prompt)
    shot_type = camera.shot_type_phrase
    action = prompt
    if shot_type and _starts_with_determiner(prompt):
        action = prompt[:1].lower() + prompt[1:]  # "The swan ..." after a colon; names keep their capital
    setting = _clean(shot.setting or "")
    if setting and _normalised(setting) in _normalised(prompt):
        setting = ""
    style = _clean(film.style or "")
    if style and _normalised(style) in _normalised(prompt):
        style = ""
    return {
        "shot_type": shot_type,
        "angle": camera.angle_phrase,
        "action": action,
        "continuing": shot.mode == "continue",
        "characters": _characters(shot),
        "setting": setting or None,
        "setting_has_article": _starts_with_determiner(setting),
        "lighting": _lighting(shot, film),
        "style": style or None,
        "camera_subject": camera.operator,
        "camera_motion": camera.motion,
    }


def _load_template() -> jinja2.Template:
    environment = prompt_environment()
    environment.filters["upper_first"] = upper_first
    return environment.from_string(bundled_prompt(TEMPLATE))


class TemplateEnhancer(Enhancer):
    """Deterministic SkyReels-style captions from ``prompts/caption.j2``; needs no model or network."""

    name = "template"
    version = "1"  # bump when the phrasing code changes, so that locked prompts are written again
    reproducible = True  # the same shot always gives the same caption, at no cost: nothing to lock

    def __init__(self, settings: EnhancerSettings):
        super().__init__(settings)
        self._template = _load_template()

    def fingerprint(self) -> str:
        """What decides this backend's captions: its version, the cap and the template's text."""
        identity = f"{self.name}\n{self.version}\n{self.settings.max_words}\n{bundled_prompt(TEMPLATE)}"
        return hashlib.sha256(identity.encode()).hexdigest()

    def enhance(
        self,
        film: FilmContext,
        shots: Sequence[ShotContext],
        on_result: Callable[[EnhancedPrompt], None] | None = None,
    ) -> list[EnhancedPrompt]:
        results = []
        for shot in shots:
            results.append(EnhancedPrompt(shot.id, self.caption(film, shot), source=self.name))
            if on_result is not None:
                on_result(results[-1])
        return results

    def caption(self, film: FilmContext, shot: ShotContext) -> str:
        """One shot's caption, within ``max_words``: optional sentences go first, then it ends at a sentence."""
        parts = caption_parts(film, shot)
        text = tidy(self._template.render(parts))
        for key in DROP_ORDER:
            if len(text.split()) <= self.settings.max_words:
                break
            parts = {**parts, key: _EMPTY[key]}
            text = tidy(self._template.render(parts))
        return cap_words(text, self.settings.max_words)
