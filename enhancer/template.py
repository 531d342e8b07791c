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

from storyreel.camera import parse_move
from storyreel.enhance import EnhancedPrompt, Enhancer, FilmContext, ShotContext
from storyreel.storyboard import Camera, EnhancerSettings

from .text import bundled_prompt, cap_words, prompt_environment, tidy, upper_first

TEMPLATE = "prompts/caption.j2"

# How captions name the shot types and angles of the storyboard vocabulary (storyreel.camera).
SHOT_TYPE_PHRASES: dict[str, str] = {
    "extreme close-up": "Extreme close-up",
    "close-up": "Close-up",
    "medium close-up": "Medium close-up",
    "medium": "Medium shot",
    "medium wide": "Medium wide shot",
    "full": "Full shot",
    "wide": "Wide shot",
    "extreme wide": "Extreme wide shot",
}
DEFAULT_SHOT_TYPE = "medium"
ANGLE_PHRASES: dict[str, str] = {
    "eye-level": "at eye level",
    "high": "from a high angle",
    "low": "from a low angle",
    "overhead": "from directly overhead",
    "worm's-eye": "from a worm's-eye view",
    "dutch": "at a Dutch angle",
    "over-the-shoulder": "over the shoulder",
    "pov": "from a first-person point of view",
}

# Camera moves as what "the camera" does; static and handheld are phrased on their own.
MOVE_VERBS: dict[str, str] = {
    "push-in": "pushes in",
    "pull-out": "pulls back",
    "pan left": "pans left",
    "pan right": "pans right",
    "tilt up": "tilts up",
    "tilt down": "tilts down",
    "truck left": "trucks left",
    "truck right": "trucks right",
    "crane up": "cranes up",
    "crane down": "cranes down",
    "orbit": "orbits around the subject",
    "tracking": "follows the subject",
}
WIDE_SHOT_TYPES = ("extreme wide", "wide", "medium wide", "full")
GENTLE_MOVE_WIDE = "slowly pans across the scene"
GENTLE_MOVE_CLOSE = "slowly pushes in"

# Verbs whose presence means something in the shot moves, so no camera motion needs adding.
# Looking, standing and sitting are deliberately absent: a heron that watches is a still subject. So
# are verbs that are more often nouns in a prompt (track, cross, pan, sink, rush, rose, fell).
_MOTION_VERBS = """
    swim glide walk run fly soar dance move turn spin twirl rotate jump leap hop skip bounce fall drop
    tumble rise lift dip dive splash flow pour drip stream spill drift float sway wave roll ripple
    flutter flap crash race dart sprint chase climb crawl scuttle swirl burst blow shake spread reach
    step stride march wander stroll gallop ride drive sail paddle nod blink laugh sing play strum clap
    throw catch grab pull push slide sweep emerge approach enter leave orbit tilt zoom follow travel
    flicker unfold wade stalk strike peck creep hover stir tremble shiver
"""
_IRREGULAR_MOTION = """
    ran swam flew flown fallen risen rode ridden drove driven leapt sank sunk threw thrown caught blew
    blown shook shaken swept
"""

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
_OWN_SHOT_TYPE = re.compile(
    r"^\s*(?:an?\s+)?(?:(?:extreme\s+|medium\s+)?close[- ]?up|(?:extreme\s+|medium\s+)?(?:wide|long|full|"
    r"medium|establishing|aerial|overhead|tracking)\s+shot)\b",
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


def _verb_forms(verb: str) -> set[str]:
    """A verb and its -s, -ing and -ed forms; a rule that makes a non-word (wanderring) is harmless."""
    forms = {verb, verb + "s", verb + "es", verb + "ing", verb + "ed"}
    if verb.endswith("e"):
        forms |= {verb + "d", verb[:-1] + "ing"}
    if verb.endswith("y") and verb[-2] not in "aeiou":
        forms |= {verb[:-1] + "ies", verb[:-1] + "ied"}
    if len(verb) >= 3 and verb[-1] not in "aeiouwxy" and verb[-2] in "aeiou" and verb[-3] not in "aeiou":
        forms |= {verb + verb[-1] + "ing", verb + verb[-1] + "ed"}  # swim -> swimming, dip -> dipped
    return forms


MOTION_WORDS = frozenset(
    {form for verb in _MOTION_VERBS.split() for form in _verb_forms(verb)} | set(_IRREGULAR_MOTION.split())
)


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


def _has_motion(prompt: str) -> bool:
    return any(word in MOTION_WORDS for word in _words(prompt))


def camera_motion(camera: Camera | None, prompt: str) -> tuple[str, str | None]:
    """("camera" or "handheld camera", what it does), the second None when nothing should be said.

    >>> camera_motion(Camera(move="slow push-in"), "a bottle stands on a plinth")
    ('camera', 'slowly pushes in')
    >>> camera_motion(None, "a swan glides"), camera_motion(None, "a bottle on a plinth")
    (('camera', None), ('camera', 'slowly pushes in'))
    """
    move = parse_move(camera.move if camera else None)
    if not camera or not camera.move:
        if _has_motion(prompt):
            return "camera", None
        shot_type = (camera.shot if camera else None) or DEFAULT_SHOT_TYPE
        return "camera", GENTLE_MOVE_WIDE if shot_type in WIDE_SHOT_TYPES else GENTLE_MOVE_CLOSE
    if move.is_static:
        return "camera", "holds still"
    subject = "handheld camera" if "handheld" in move.kinds else "camera"
    verbs = [MOVE_VERBS[kind] for kind in move.kinds if kind in MOVE_VERBS]
    if not verbs:
        verbs = ["moves with a slight, natural shake"]
    motion = verbs[0] if len(verbs) == 1 else ", ".join(verbs[:-1]) + " and " + verbs[-1]
    adverb = (
        "subtly" if move.speed < 0.5 else "slowly" if move.speed < 1 else "quickly" if move.speed > 1 else ""
    )
    return subject, f"{adverb} {motion}".strip()


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
    camera = shot.camera
    prompt = _clean(shot.prompt)
    shot_type: str | None = None
    if camera is not None and camera.shot is not None:
        shot_type = SHOT_TYPE_PHRASES[camera.shot]
    elif not _OWN_SHOT_TYPE.match(prompt):
        shot_type = SHOT_TYPE_PHRASES[DEFAULT_SHOT_TYPE]
    action = prompt
    if shot_type and _starts_with_determiner(prompt):
        action = prompt[:1].lower() + prompt[1:]  # "The swan ..." after a colon; names keep their capital
    setting = _clean(shot.setting or "")
    if setting and _normalised(setting) in _normalised(prompt):
        setting = ""
    style = _clean(film.style or "")
    if style and _normalised(style) in _normalised(prompt):
        style = ""
    camera_subject, motion = camera_motion(camera, prompt)
    return {
        "shot_type": shot_type,
        "angle": ANGLE_PHRASES[camera.angle] if camera is not None and camera.angle else None,
        "action": action,
        "continuing": shot.mode == "continue",
        "characters": _characters(shot),
        "setting": setting or None,
        "setting_has_article": _starts_with_determiner(setting),
        "lighting": _lighting(shot, film),
        "style": style or None,
        "camera_subject": camera_subject,
        "camera_motion": motion,
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
