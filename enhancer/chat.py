"""What the LLM enhancers (``vllm`` over HTTP, ``vllm-offline`` in process) send and how they fail.

Both backends ask a chat model the same thing for each shot, so that a film enhanced through a
server and one enhanced in process get the same requests: a system message from
``prompts/system.j2`` (how a SkyReels-V2 caption reads, and the film's title, logline and style,
identical for every shot so that the server's prefix cache serves it once) and a user message from
``prompts/user.j2`` (the shot's scene, setting, characters, camera and prompt, and nothing of any
other shot). Sampling is greedy with a fixed seed; an answer that cannot be used is asked for again
with a little temperature and the next seed, still reproducible.

>>> from storyreel.enhance import FilmContext, ShotContext
>>> from storyreel.storyboard import Camera
>>> shot = ShotContext(id="watch", scene="marsh", scene_title=None, setting="a marsh at dawn",
...     prompt="a grey heron watches the water", camera=Camera(shot="wide", move="slow push-in"),
...     characters={}, mode="fresh", seconds=3.0)
>>> system, user = ChatPrompts().messages(FilmContext(title="Heron"), shot, max_words=80)
>>> print(user["content"])
Scene: marsh
Setting: a marsh at dawn
Shot type: Wide shot
Camera angle: not given
Camera motion: the camera slowly pushes in
Length: 3.0 seconds.
<BLANKLINE>
Prompt: a grey heron watches the water
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from storyreel.camera import shot_camera
from storyreel.enhance import EnhancedPrompt, Enhancer, FilmContext, ShotContext
from storyreel.errors import UserError
from storyreel.storyboard import EnhancerSettings

from .clean import CLEAN_VERSION
from .text import bundled_prompt, prompt_environment

SYSTEM_TEMPLATE = "prompts/system.j2"
USER_TEMPLATE = "prompts/user.j2"

# Greedy first; a retry after an unusable answer samples a little, each try with its own seed.
SEED = 42
RETRY_TEMPERATURE = 0.7
ANSWER_TRIES = 3

# The model the docs and `storyreel enhancer serve` default to: SkyReels-V2's own prompt enhancer.
DEFAULT_MODEL = "Qwen/Qwen2.5-32B-Instruct"


class EnhancerError(UserError):
    """An LLM enhancer could not produce prompts; the message names the server or model and the fix."""


class EnhancerUnavailable(EnhancerError):
    """The server cannot be reached, or keeps failing (refused, timed out, 5xx, 429) past the time allowed."""


class EnhancerRejected(EnhancerError):
    """The server refused the request itself (wrong model name, bad key, prompt too long): retrying cannot help."""


class EnhancerAnswerUnusable(EnhancerError):
    """The model answered, but some shots got no usable caption in any try.

    ``failures`` maps each such shot id to the reason; ``results`` holds the prompts of the shots
    that did succeed (already passed to ``on_result``), so a caller can fall back for the rest alone.
    """

    def __init__(self, message: str, failures: dict[str, str], results: list[Any]):
        super().__init__(message)
        self.failures = failures
        self.results = results


def max_tokens(max_words: int) -> int:
    """Room for ``max_words`` English words (about 1.3 tokens each) and an overshoot to cut at a sentence."""
    return 2 * max_words + 64


def sampling(max_words: int, attempt: int = 0) -> dict[str, Any]:
    """The sampling parameters of a request, the same in an OpenAI request body and vLLM's ``SamplingParams``.

    >>> sampling(120)
    {'temperature': 0.0, 'top_p': 1.0, 'seed': 42, 'max_tokens': 304}
    """
    return {
        "temperature": 0.0 if attempt == 0 else RETRY_TEMPERATURE,
        "top_p": 1.0,
        "seed": SEED + attempt,
        "max_tokens": max_tokens(max_words),
    }


class ChatPrompts:
    """The system and user templates of a request, loaded once: the bundled ones, or files given by path."""

    def __init__(self, system_template: str | Path | None = None, user_template: str | Path | None = None):
        self.system_source = _read_template(system_template, SYSTEM_TEMPLATE, "system_template")
        self.user_source = _read_template(user_template, USER_TEMPLATE, "user_template")
        environment = prompt_environment()
        self._system = _compile(environment, self.system_source, system_template or SYSTEM_TEMPLATE)
        self._user = _compile(environment, self.user_source, user_template or USER_TEMPLATE)
        self._names = (str(system_template or SYSTEM_TEMPLATE), str(user_template or USER_TEMPLATE))

    def messages(self, film: FilmContext, shot: ShotContext, max_words: int) -> list[dict[str, str]]:
        """``[system, user]`` chat messages for one shot; they depend only on that shot and the film."""
        variables = template_variables(film, shot, max_words)
        return [
            {"role": "system", "content": _render(self._system, variables, self._names[0])},
            {"role": "user", "content": _render(self._user, variables, self._names[1])},
        ]


def template_variables(film: FilmContext, shot: ShotContext, max_words: int) -> dict[str, Any]:
    """What system.j2 and user.j2 are rendered with (documented at the top of system.j2)."""
    camera = shot.camera
    # The model is told only what the storyboard's camera says: the default shot type and a still
    # shot's gentle move are the template's completions, and the system prompt asks for the latter.
    asked = shot_camera(camera, shot.prompt)
    motion = f"the {asked.operator} {asked.motion}" if camera is not None and camera.move else None
    return {
        "film": film.model_dump(),
        "shot": shot.model_dump(exclude={"camera"}),
        "shot_type": asked.shot_type_phrase if camera is not None and camera.shot else None,
        "angle": asked.angle_phrase,
        "camera_move": camera.move if camera is not None else None,
        "camera_motion": motion,
        "max_words": max_words,
    }


class ChatEnhancer(Enhancer):
    """What the LLM backends share: their chat prompts, built from the settings, and their fingerprint.

    ``system_template`` and ``user_template`` override the settings of the same name (handy in code
    and tests).
    """

    def __init__(
        self,
        settings: EnhancerSettings,
        *,
        system_template: str | Path | None = None,
        user_template: str | Path | None = None,
    ):
        super().__init__(settings)
        self.model: str | None = settings.model
        self.max_words = settings.max_words
        self.prompts = ChatPrompts(
            system_template or settings.system_template, user_template or settings.user_template
        )

    def fingerprint(self) -> str:
        """A hash of everything that decides the answers, for invalidating locked prompts.

        Where the model runs is not part of it: the same model behind another URL writes the same prompts.
        """
        decisive = {
            "backend": self.name,
            "model": self.model,
            "max_words": self.max_words,
            "sampling": [sampling(self.max_words, attempt) for attempt in range(ANSWER_TRIES)],
            "system_template": self.prompts.system_source,
            "user_template": self.prompts.user_source,
            "clean_version": CLEAN_VERSION,
        }
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def answer_unusable(
    who: str, shots: Sequence[ShotContext], failures: dict[int, str], results: list[EnhancedPrompt]
) -> EnhancerAnswerUnusable:
    """The error for the shots (``failures``: index in ``shots`` -> reason) that got no usable caption from ``who``.

    ``results`` are the prompts of the shots that did get one.
    """
    listed = "; ".join(f"shot '{shots[i].id}': {reason}" for i, reason in sorted(failures.items()))
    return EnhancerAnswerUnusable(
        f"{who} gave no usable caption in {ANSWER_TRIES} tries for {len(failures)} of {len(shots)} shots "
        f"({listed}); use a larger instruct model, or --enhancer template",
        {shots[i].id: reason for i, reason in sorted(failures.items())},
        results,
    )


def _read_template(path: str | Path | None, bundled: str, field: str) -> str:
    if path is None:
        return bundled_prompt(bundled)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(
            f"enhancer.{field}: cannot read {str(path)!r} ({error.strerror or error}); "
            f"give the path of a Jinja2 template, or leave {field} out to use the bundled {bundled}"
        ) from None


def _compile(environment: jinja2.Environment, source: str, name: str | Path) -> jinja2.Template:
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise UserError(f"{name}:{error.lineno}: {error.message}; fix the template's Jinja2 syntax") from None


def _render(template: jinja2.Template, variables: dict[str, Any], name: str) -> str:
    try:
        text = template.render(variables)
    except jinja2.UndefinedError as error:
        raise UserError(
            f"{name}: {error.message}; the variables are: {', '.join(sorted(variables))}"
        ) from None
    return re.sub(r"\n{3,}", "\n\n", text).strip()
