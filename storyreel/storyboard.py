"""Stage 1 of a render: the storyboard, loaded from YAML (or built in code) and checked.

A storyboard is a film in scenes and shots. This stage owns its format (``storyreel: 1``); every name it
offers is importable from here, and each job has a module of its own:

- :mod:`storyreel.fields`: what a field may hold: durations, resolutions, 4k+1 frame counts, camera
  words, and the bounds on all of them;
- :mod:`storyreel.prompts`: the ``{{ character }}`` references a prompt may hold, read without a
  template engine, and their expansion;
- :mod:`storyreel.format`: the pydantic models (:class:`Storyboard`, :class:`Scene`, :class:`Shot`, ...)
  and the JSON Schema they make;
- :mod:`storyreel.checks`: what needs the whole film: unique ids, references, prompt sizes, assets;
- :mod:`storyreel.loading`: reading a file or a ``.yaml.j2`` template (:mod:`storyreel.templating`),
  validating it in one pass, and every error pinned to ``file:line:col`` with a fix.

>>> board = parse_storyboard(
...     "storyreel: 1\\n"
...     "characters: {swan: {description: a white swan}}\\n"
...     'scenes: [{id: lake, shots: [{id: glide, prompt: "{{ swan }} glides", duration: 4s}]}]\\n'
... )
>>> [board.expanded_prompt(shot) for _, _, _, shot in board.iter_shots()]
['a white swan glides']
"""

from __future__ import annotations

from .fields import (
    CHARACTER_NAME,
    FILM_ONLY_SETTINGS,
    IDENTIFIER,
    MAX_AR_STEP,
    MAX_AUDIO_FADE_SECONDS,
    MAX_BASE_NUM_FRAMES,
    MAX_CAUSAL_BLOCK_SIZE,
    MAX_FILM_PROMPT_CHARS,
    MAX_ID_LENGTH,
    MAX_PIXELS,
    MAX_PROMPT_CHARS,
    MAX_SHOT_FRAMES,
    MAX_SHOT_SECONDS,
    MAX_SIDE,
    MAX_TRANSITION_SECONDS,
    RESOLUTIONS,
    TRANSITIONS,
    FadeDuration,
    ShotDuration,
    Transition,
    TransitionDuration,
    parse_duration,
    parse_resolution,
    resolution_size,
)
from .format import (
    DEFAULT_NEGATIVE_PROMPT,
    FORMAT_VERSION,
    GENERATION_DEFAULTS,
    TRANSFORMER_DEFAULTS,
    Audio,
    Camera,
    Character,
    EnhancerSettings,
    Generation,
    Keyframes,
    Scene,
    Shot,
    Storyboard,
    storyboard_schema,
)
from .loading import load_storyboard, parse_storyboard, storyboard_yaml
from .prompts import RESERVED_NAMES, PromptSyntaxError, prompt_references

__all__ = [
    "CHARACTER_NAME",
    "DEFAULT_NEGATIVE_PROMPT",
    "FILM_ONLY_SETTINGS",
    "FORMAT_VERSION",
    "GENERATION_DEFAULTS",
    "IDENTIFIER",
    "MAX_AR_STEP",
    "MAX_AUDIO_FADE_SECONDS",
    "MAX_BASE_NUM_FRAMES",
    "MAX_CAUSAL_BLOCK_SIZE",
    "MAX_FILM_PROMPT_CHARS",
    "MAX_ID_LENGTH",
    "MAX_PIXELS",
    "MAX_PROMPT_CHARS",
    "MAX_SHOT_FRAMES",
    "MAX_SHOT_SECONDS",
    "MAX_SIDE",
    "MAX_TRANSITION_SECONDS",
    "RESERVED_NAMES",
    "RESOLUTIONS",
    "TRANSFORMER_DEFAULTS",
    "TRANSITIONS",
    "Audio",
    "Camera",
    "Character",
    "Keyframes",
    "EnhancerSettings",
    "FadeDuration",
    "Generation",
    "PromptSyntaxError",
    "Scene",
    "Shot",
    "ShotDuration",
    "Storyboard",
    "Transition",
    "TransitionDuration",
    "load_storyboard",
    "parse_duration",
    "parse_resolution",
    "parse_storyboard",
    "prompt_references",
    "resolution_size",
    "storyboard_schema",
    "storyboard_yaml",
]
