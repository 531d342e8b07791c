"""The storyboard format, ``storyreel: 1``: the pydantic models a storyboard is read into.

A film is a :class:`Storyboard` of :class:`Scene` s of :class:`Shot` s, with :class:`Character` s whose
descriptions fill the prompts, :class:`Generation` settings a shot inherits from its scene and the film,
the :class:`EnhancerSettings` and a music bed (:class:`Audio`). Each field checks its own value as it is
set (formats and bounds: :mod:`storyreel.fields`); what needs the whole film (unique ids, references,
assets) is :meth:`Storyboard.problems` (:mod:`storyreel.checks`). Loading files is :mod:`storyreel.loading`.

>>> board = Storyboard.model_validate({
...     "storyreel": 1, "title": "Swan",
...     "characters": {"swan": {"description": "a white swan"}},
...     "scenes": [{"id": "lake", "shots": [{"id": "glide", "prompt": "{{ swan }} glides", "duration": "4s"}]}],
... })
>>> board.expanded_prompt(board.scenes[0].shots[0])
'a white swan glides'
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from .camera import ANGLES, MOVES, SHOT_TYPES, Angle, ShotType, parse_move
from .checks import storyboard_problems
from .errors import Problem, StoryboardError
from .fields import (
    ATTENTION_KERNELS,
    CHARACTER_NAME,
    COLOR_MATCH_CHOICES,
    COLOR_MATCH_DEFAULT,
    COMPILE_CHOICES,
    IDENTIFIER,
    MAX_AR_STEP,
    MAX_BASE_NUM_FRAMES,
    MAX_CAUSAL_BLOCK_SIZE,
    MAX_ID_LENGTH,
    MAX_PROMPT_CHARS,
    MAX_SHOT_FRAMES,
    PRECISIONS,
    FadeDuration,
    ShotDuration,
    Transition,
    TransitionDuration,
    camera_angle,
    field_error,
    four_k_plus_one,
    not_blank,
    parse_attention,
    parse_color_match,
    parse_compile,
    parse_precision,
    parse_resolution,
    shot_type,
)
from .frames import VAE_TEMPORAL_STRIDE
from .prompts import PromptSyntaxError, expanded_size, fill_in, prompt_references, referable_name, too_long
from .source_map import Path_, SourceMap, field_name

FORMAT_VERSION = 1

# SkyReels-V2's own negative prompt, character for character: its reference scripts give the model this
# Chinese text, the negative prompt the Wan-family models were tuned with, so a translation would be another
# input than the one the model knows. In English: garish colours, overexposed, static, blurry details,
# subtitles, style, artwork, painting, picture, still, greyish overall, worst quality, low quality, JPEG
# compression artefacts, ugly, mutilated, extra fingers, badly drawn hands, badly drawn face, deformed,
# disfigured, malformed limbs, fused fingers, motionless frame, cluttered background, three legs, many
# people in the background, walking backwards.
DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


class _Model(BaseModel):
    # A number where text is expected is kept as text (`caption: 1984`; a plain YAML number remembers how it
    # was written, so `id: 007` stays "007"); no float may be inf or nan.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for a number: `frames: true` would be one frame.
        if isinstance(value, bool) and info.field_name is not None:
            types = _types_in(cls.model_fields[info.field_name].annotation)
            if bool not in types and types & {int, float}:
                raise field_error(
                    f"{str(value).lower()} was read as true/false, not as a number", "write a number"
                )
        return value


def _types_in(annotation: Any) -> set[Any]:
    """Every type a field annotation admits (``int | None`` -> {int, NoneType})."""
    found = {annotation}
    for argument in typing.get_args(annotation):
        found |= _types_in(argument)
    return found


# --- the models -----------------------------------------------------------------------------------------------


class Camera(_Model):
    """How a shot is framed and moved, in SkyReels-V2's caption vocabulary."""

    shot: Annotated[ShotType | None, BeforeValidator(shot_type)] = Field(
        None, description="shot type: " + ", ".join(SHOT_TYPES)
    )
    angle: Annotated[Angle | None, BeforeValidator(camera_angle)] = Field(
        None, description="camera angle: " + ", ".join(ANGLES)
    )
    move: str | None = Field(
        None, description="camera move from these words, optionally slow/fast: " + ", ".join(MOVES)
    )

    @field_validator("move")
    @classmethod
    def _known_move(cls, value: str | None) -> str | None:
        try:
            parse_move(value)
        except ValueError:
            raise field_error(
                f"no camera move recognised in {value!r}",
                "describe it with: " + ", ".join(MOVES) + " (optionally slow/fast)",
            ) from None
        return value


def _unless_none(parse: Callable[[Any], str]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else parse(value)


class Generation(_Model):
    """Diffusion-forcing settings. Every key is optional: a shot inherits what it does not set from its scene,
    the scene from the film, the film from storyreel's defaults (SkyReels-V2's recommended values)."""

    model: str | None = Field(
        None,
        description="hub id (resolved from the local cache) or a local diffusers folder; absent: animatic",
    )
    resolution: Annotated[str | None, BeforeValidator(lambda v: v if v is None else parse_resolution(v))] = (
        Field(None, description="540P (960x544), 720P (1280x720) or WIDTHxHEIGHT, multiples of 16")
    )
    fps: int | None = Field(None, ge=1, le=120)
    steps: int | None = Field(None, ge=1, le=1000, description="denoising steps")
    guidance_scale: float | None = Field(
        None, ge=0, le=50, description="classifier-free guidance; > 1 doubles the passes"
    )
    shift: float | None = Field(None, gt=0, le=100, description="flow-matching timestep shift")
    base_num_frames: Annotated[int | None, four_k_plus_one("base_num_frames", "97, 77 and 57 are usual")] = (
        Field(
            None,
            ge=5,
            le=MAX_BASE_NUM_FRAMES,
            description="frames per diffusion-forcing window (97 for 540P, 121 for 720P)",
        )
    )
    overlap_history: Annotated[
        int | None, four_k_plus_one("overlap_history", "17 and 37 are recommended")
    ] = Field(
        None,
        ge=1,
        le=MAX_BASE_NUM_FRAMES - VAE_TEMPORAL_STRIDE,
        description="tail frames a continuing shot or window is conditioned on",
    )
    addnoise_condition: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="noise mixed into the clean prefix (20 recommended, > 60 hurts consistency)",
    )
    ar_step: int | None = Field(
        None, ge=0, le=MAX_AR_STEP, description="0 synchronous, > 0 asynchronous diffusion forcing"
    )
    causal_block_size: int | None = Field(
        None, ge=1, le=MAX_CAUSAL_BLOCK_SIZE, description="latent frames per causal block (5 with ar_step 5)"
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="film seed; shots derive their own")
    # How the transformer runs: film-wide (a render loads the model once), and not part of any shot's settings.
    attention: Annotated[
        str | None,
        BeforeValidator(_unless_none(parse_attention)),
        WithJsonSchema({"enum": list(ATTENTION_KERNELS)}),
    ] = Field(None, description="attention kernel: auto (default) picks the fastest exact one installed")
    compile: Annotated[
        str | None,
        BeforeValidator(_unless_none(parse_compile)),
        WithJsonSchema({"anyOf": [{"type": "boolean"}, {"enum": list(COMPILE_CHOICES)}]}),
    ] = Field(
        None, description="compile the transformer's blocks: auto (default, on for CUDA), true or false"
    )
    precision: Annotated[
        str | None,
        BeforeValidator(_unless_none(parse_precision)),
        WithJsonSchema({"enum": list(PRECISIONS)}),
    ] = Field(None, description="the transformer's precision: bf16 (default) or fp8 (faster, lossy)")
    color_match: Annotated[
        str | None,
        BeforeValidator(_unless_none(parse_color_match)),
        WithJsonSchema({"anyOf": [{"type": "boolean"}, {"enum": list(COLOR_MATCH_CHOICES)}]}),
    ] = Field(
        None,
        description="off (default) | on: a continuing shot's colour matched to its parent's last frames",
    )


GENERATION_DEFAULTS: dict[str, Any] = {
    "model": None,
    "resolution": "540P",
    "fps": 24,
    "steps": 30,
    "guidance_scale": 6.0,
    "shift": 8.0,
    "base_num_frames": 97,
    "overlap_history": 17,
    "addnoise_condition": 20,
    "ar_step": 0,
    "causal_block_size": 1,
    "seed": 42,
}
# The film-wide settings of how the transformer runs, by default.
TRANSFORMER_DEFAULTS: dict[str, str] = {"attention": "auto", "compile": "auto", "precision": "bf16"}


class Character(_Model):
    description: Annotated[str, not_blank("description", "describe how the character looks")] = Field(
        min_length=1, description="how the character looks; replaces {{ name }} in prompts"
    )
    reference: str | list[str] | None = Field(
        None,
        description="image(s) of the character, relative to the storyboard: a path or a list of paths; "
        "keyframes are drawn from them",
    )

    @field_validator("reference")
    @classmethod
    def _some_reference(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise field_error(
                "an empty list names no picture", "name at least one image, or leave reference out"
            )
        return value

    @property
    def references(self) -> list[str]:
        """The reference images as written, always as a list (empty without any)."""
        if self.reference is None:
            return []
        return [self.reference] if isinstance(self.reference, str) else list(self.reference)


KEYFRAME_SHOTS = ("auto", "all", "none")


class Keyframes(_Model):
    """The keyframe stage: a start frame drawn by an image model for each chosen fresh shot, from the shot's
    prompt and the reference images of the characters in it, so the same cast appears across cuts."""

    model: str | None = Field(
        None, description="image model that takes reference images: a hub id (local cache) or a folder"
    )
    shots: typing.Literal["auto", "all", "none"] = Field(
        "auto",
        description="auto: fresh shots showing a character with a reference; all: every fresh shot; none",
    )
    steps: int = Field(4, ge=1, le=200, description="denoising steps per keyframe (4 for a distilled model)")

    @field_validator("model")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise field_error(
                "an empty model names nothing", "name an image model, e.g. black-forest-labs/FLUX.2-klein-4B"
            )
        return value


class Shot(_Model):
    id: str = Field(
        pattern=IDENTIFIER,
        max_length=MAX_ID_LENGTH,
        description="unique across the film; names shots/<id>.mp4",
    )
    prompt: Annotated[str, not_blank("prompt", "describe what happens in the shot")] = Field(
        min_length=1, description="what happens; {{ name }} inserts a character's description"
    )
    duration: ShotDuration | None = Field(None, description="length, snapped to a valid frame count")
    frames: int | None = Field(
        None, ge=1, le=MAX_SHOT_FRAMES, description="length in frames instead of a duration"
    )
    camera: Camera | None = None
    characters: list[str] = Field(default_factory=list, description="characters in the shot")
    caption: str | None = Field(None, description="subtitle shown during the shot")
    transition: Transition | None = Field(
        None,
        description="how the shot joins the previous one; default: cut for a scene's first shot, else continue",
    )
    transition_duration: TransitionDuration | None = Field(
        None, description="length of a dissolve or fade (default 0.5s)"
    )
    continues: str | None = Field(None, description="shot id whose tail frames this shot is conditioned on")
    image: str | None = Field(None, description="start frame (image-to-video), relative to the storyboard")
    end_image: str | None = Field(
        None,
        description="the frame the shot ends on (start/end frame control), relative to the storyboard",
    )
    video: str | None = Field(
        None,
        description="an existing clip this shot extends from its last overlap_history frames, relative to the "
        "storyboard; the clip's size must be the film's",
    )
    generation: Generation | None = None


class Scene(_Model):
    id: str = Field(pattern=IDENTIFIER, max_length=MAX_ID_LENGTH)
    title: str | None = None
    setting: str | None = Field(None, description="where and when the scene happens; context for every shot")
    after: list[str] = Field(default_factory=list, description="scene ids this scene comes after")
    generation: Generation | None = None
    shots: list[Shot] = Field(min_length=1)


class EnhancerSettings(_Model):
    backend: str = Field("template", description="none | template | vllm (or any installed enhancer)")
    url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="model name the endpoint serves")
    max_words: int = Field(120, ge=10, le=1000, description="cap on an enhanced prompt's length")
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once (server backends)")
    timeout: float = Field(
        120.0,
        gt=0,
        description="seconds a server backend keeps retrying an unreachable server before it gives up",
    )
    request_timeout: float = Field(120.0, gt=0, description="seconds one answer may take")
    wait: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="seconds to wait for a server that is not listening yet (still loading); 0: a refused "
        "connection fails within seconds",
    )
    system_template: str | None = Field(
        None, description="your own Jinja2 system prompt for LLM backends, relative to the storyboard"
    )
    user_template: str | None = Field(
        None, description="your own Jinja2 per-shot message for LLM backends, relative to the storyboard"
    )
    fallback: str | None = Field(
        None, description="enhancer to use for shots the backend cannot enhance (e.g. template)"
    )


class Audio(_Model):
    music: str = Field(description="music bed, relative to the storyboard")
    volume: float = Field(1.0, ge=0, le=4)
    fade_in: FadeDuration | None = None
    fade_out: FadeDuration | None = Field(None, description="fade at the film's end (default 1s)")


class Storyboard(_Model):
    """A whole film. Load one with :func:`load_storyboard`, or build it in code."""

    storyreel: int = Field(description="format version; this storyreel reads version 1")
    title: str = Field("Untitled", min_length=1)
    logline: str | None = None
    style: str | None = Field(None, description="look every shot inherits")
    negative_prompt: str | None = Field(
        None, description="what to avoid; SkyReels-V2's own negative prompt (in Chinese) by default"
    )
    generation: Generation = Field(default_factory=lambda: Generation())
    enhancer: EnhancerSettings = Field(default_factory=lambda: EnhancerSettings())
    keyframes: Keyframes | None = Field(
        None, description="draw a start frame for chosen fresh shots from the characters' reference images"
    )
    characters: dict[
        Annotated[str, Field(pattern=CHARACTER_NAME), AfterValidator(referable_name)], Character
    ] = Field(default_factory=dict)
    scenes: list[Scene] = Field(min_length=1, description="the film's scenes")
    audio: Audio | None = None
    vars: dict[str, Any] | None = Field(None, description="template variables (templated storyboards only)")

    _source: SourceMap | None = PrivateAttr(None)
    _path: Path | None = PrivateAttr(None)
    _base_dir: Path | None = PrivateAttr(None)
    _rendered: bool = PrivateAttr(False)
    _display: str | None = PrivateAttr(None)
    _shot_index: dict[str, tuple[int, int]] | None = PrivateAttr(None)
    # Ids and names that were written but refused: references to them are not also "unknown".
    _refused_names: frozenset[str] = PrivateAttr(frozenset())

    @field_validator("storyreel")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise field_error(
                f"unsupported storyboard format version {value}",
                f"this storyreel reads version {FORMAT_VERSION}; write `storyreel: {FORMAT_VERSION}`",
            )
        return value

    # --- where things are -------------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The file this storyboard was loaded from (None when built in code)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative asset paths are resolved against."""
        if self._base_dir is not None:
            return self._base_dir
        return self._path.parent if self._path else Path.cwd()

    def with_base_dir(self, base_dir: str | Path) -> Storyboard:
        """Resolve assets of a storyboard built in code against ``base_dir`` instead of the working directory."""
        self._base_dir = Path(base_dir).resolve()
        return self

    @property
    def display_name(self) -> str:
        """How messages name this storyboard: its file (marked "(rendered)" for a template), or <storyboard>."""
        return self._display or "<storyboard>"

    def problem(self, path: Path_, message: str, fix: str = "", *, key: bool = False) -> Problem:
        """A Problem pinned to where ``path`` was written (or its nearest ancestor)."""
        if self._source is not None:
            return self._source.problem(path, message, fix, key=key)
        return Problem(self.display_name, None, None, field_name(path), message, fix)

    # --- walking the film -------------------------------------------------------------------------------------

    def iter_shots(self) -> Iterator[tuple[int, int, Scene, Shot]]:
        """(scene index, shot index, scene, shot) in file order."""
        for si, scene in enumerate(self.scenes):
            for hi, shot in enumerate(scene.shots):
                yield si, hi, scene, shot

    def find_shot(self, shot_id: str) -> tuple[int, int, Scene, Shot]:
        """(scene index, shot index, scene, shot) of the first shot with this id; KeyError if there is none."""
        found = self._shot_position(shot_id)
        if found is None:
            raise KeyError(shot_id)
        si, hi = found
        scene = self.scenes[si]
        return si, hi, scene, scene.shots[hi]

    def _shot_position(self, shot_id: str) -> tuple[int, int] | None:
        # An index makes every lookup O(1), so validating and planning stay linear in the number of shots.
        # A storyboard built in code may change after a lookup: an entry is checked before use and the index
        # rebuilt when it no longer matches.
        index = self._shot_index
        if index is not None and shot_id in index:
            si, hi = index[shot_id]
            if (
                si < len(self.scenes)
                and hi < len(self.scenes[si].shots)
                and self.scenes[si].shots[hi].id == shot_id
            ):
                return si, hi
        index = {}
        for si, hi, _, shot in self.iter_shots():
            index.setdefault(shot.id, (si, hi))
        self._shot_index = index
        return index.get(shot_id)

    def setting(self, shot: Shot, key: str) -> tuple[Any, Path_ | None]:
        """The effective generation setting ``key`` for ``shot`` and the path where it was set (None: default)."""
        return self.settings_of(shot, (key,))[key]

    def settings_of(
        self, shot: Shot, keys: tuple[str, ...] = tuple(GENERATION_DEFAULTS)
    ) -> dict[str, tuple[Any, Path_ | None]]:
        """:meth:`setting` for several keys at once (every generation setting by default), finding the shot once."""
        si, hi, scene, _ = self.find_shot(shot.id)
        layers: list[tuple[Generation | None, Path_]] = [
            (shot.generation, ("scenes", si, "shots", hi, "generation")),
            (scene.generation, ("scenes", si, "generation")),
            (self.generation, ("generation",)),
        ]
        found: dict[str, tuple[Any, Path_ | None]] = {}
        for key in keys:
            found[key] = (GENERATION_DEFAULTS[key], None)
            for layer, path in layers:
                value = getattr(layer, key) if layer is not None else None
                if value is not None:
                    found[key] = (value, (*path, key))
                    break
        return found

    def color_match_of(self, shot: Shot) -> str:
        """The shot's ``color_match`` setting: its own, else its scene's, else the film's, else off."""
        _, _, scene, _ = self.find_shot(shot.id)
        for layer in (shot.generation, scene.generation, self.generation):
            if layer is not None and layer.color_match is not None:
                return layer.color_match
        return COLOR_MATCH_DEFAULT

    def is_continuing(self, scene_index: int, shot_index: int) -> bool:
        """Whether a shot is conditioned on earlier footage (``continues:`` or a ``continue`` transition)."""
        shot = self.scenes[scene_index].shots[shot_index]
        return shot.continues is not None or self.transition(scene_index, shot_index) == "continue"

    def transition(self, scene_index: int, shot_index: int) -> str:
        """The shot's transition, with the default filled in (cut for a scene's first shot, else continue)."""
        shot = self.scenes[scene_index].shots[shot_index]
        if shot.transition is not None:
            return shot.transition
        return "cut" if shot_index == 0 else "continue"

    # --- prompts ----------------------------------------------------------------------------------------------

    def expand(self, text: str) -> str:
        """Replace each ``{{ name }}`` with the character's description, and collapse runs of whitespace.

        Prompts and settings hold only such references: anything else in ``{{ }}``, ``{% %}`` or ``{# #}`` is
        a StoryboardError (``check()`` reports it with its position).
        """
        try:
            references = prompt_references(text)
        except PromptSyntaxError as exc:
            raise StoryboardError.single(self.display_name, None, None, "", *exc.problem()) from None
        unknown = sorted({name for _, _, name in references} - set(self.characters))
        if unknown:
            raise StoryboardError.single(
                self.display_name, None, None, "", f"unknown character '{unknown[0]}' in {text!r}"
            )
        descriptions = {name: character.description for name, character in self.characters.items()}
        size = expanded_size(text, references, descriptions)
        if size > MAX_PROMPT_CHARS:
            raise StoryboardError.single(self.display_name, None, None, "", *too_long(size))
        return fill_in(text, references, descriptions)

    def expanded_prompt(self, shot: Shot) -> str:
        return self.expand(shot.prompt)

    def shot_characters(self, shot: Shot) -> list[str]:
        """Characters in a shot: those listed in ``characters:`` and those its prompt names."""
        names = list(shot.characters)
        try:
            referenced = {name for _, _, name in prompt_references(shot.prompt)}
        except PromptSyntaxError:
            referenced = set()
        for name in sorted(referenced):
            if name in self.characters and name not in names:
                names.append(name)
        return names

    def resolve_asset(self, value: str) -> Path:
        """An asset path as written in the storyboard, resolved against :attr:`base_dir`."""
        path = Path(os.path.expanduser(value))  # ~user of no user here stays as written (checks say so)
        return (path if path.is_absolute() else self.base_dir / path).resolve()

    # --- checks that need the whole film ----------------------------------------------------------------------

    def check(self, *, allow_outside: bool = False) -> None:
        """Raise StoryboardError listing every cross-reference, asset and prompt problem in the film."""
        StoryboardError.raise_if_any(self.problems(allow_outside=allow_outside))

    def problems(self, *, allow_outside: bool = False) -> list[Problem]:
        """Every cross-reference, identity, asset and prompt problem in the film (see :mod:`storyreel.checks`)."""
        return storyboard_problems(self, allow_outside=allow_outside)


def model_at(path: Path_) -> type[BaseModel] | None:
    """The model that the mapping at ``path`` is validated as (None: not a mapping of the format's keys), found by
    walking down from :class:`Storyboard` through each field's type, so that a character named ``camera`` is a
    Character.

    >>> model_at(("scenes", 0, "shots", 2)).__name__, model_at(("characters", "camera")).__name__
    ('Shot', 'Character')
    >>> model_at(("characters",)) is None
    True
    """
    node: Any = Storyboard
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part) if isinstance(part, str) else None
            node = _unwrap(field.annotation) if field is not None else None
        elif typing.get_origin(node) is list and isinstance(part, int):
            node = _unwrap(typing.get_args(node)[0])
        elif typing.get_origin(node) is dict:
            node = _unwrap(typing.get_args(node)[1])
        else:
            return None
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` as ``X``: the type a present value has."""
    kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(kinds) == 1:
        return kinds[0]
    return annotation


def storyboard_schema() -> dict[str, Any]:
    """JSON Schema of the storyboard format, for editors (YAML language servers read it)."""
    schema = Storyboard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storyreel storyboard"
    return schema
