"""Stage 2b of a render: the frame plan.

Checks every shot's generation settings and length, snaps each duration to a frame count SkyReels-V2
diffusion forcing can produce exactly, and works out the windows the generator will run, each shot's
place on the film's timeline and an estimate of the cost. The arithmetic (frame grid, windows,
prefixes, timestep rows, FLOPs) is :mod:`storyreel.frames`; this module applies it to a film: what
to report, what to note, and the :class:`FilmPlan` the later stages get. Shots are drafted in render
order, a continuing shot after its parent, and become :class:`ShotPlan`s once the film is known good.

How the transformer runs (attention kernel, compilation, precision) is decided once for the film
(:class:`TransformerSettings`): it reaches the generator through its options, never a shot's settings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_core import PydanticCustomError

from .assets import AssetTrouble, clip_facts, unreachable
from .checks import unique_problems
from .errors import Problem, StoryboardError, UserError
from .fields import parse_attention, parse_compile, parse_precision
from .frames import (
    Mode,
    Window,
    dit_passes,
    four_k_plus_one_at_most,
    frames_for_duration,
    generated_frames,
    last_window_sliver,
    latent_count,
    passes_per_step,
    schedule_flops,
    shortest_duration,
    shot_windows,
    snap_frames,
    window_setting_faults,
    window_settings_fix,
)
from .graph import ShotGraph, ShotNode, build_graph
from .keyframes import keyframe_shots
from .models import ModelRef, resolve_model
from .schedule import Schedule, critical_path, list_schedule
from .storyboard import (
    DEFAULT_NEGATIVE_PROMPT,
    GENERATION_DEFAULTS,
    MAX_BASE_NUM_FRAMES,
    MAX_CAUSAL_BLOCK_SIZE,
    MAX_SHOT_FRAMES,
    MAX_SHOT_SECONDS,
    TRANSFORMER_DEFAULTS,
    Camera,
    Shot,
    Storyboard,
    resolution_size,
)
from .yaml_source import Path_, collector_paused

MAX_SEED = 2**32 - 1
DEFAULT_TRANSITION_SECONDS = 0.5
H100_BF16_PEAK_TFLOPS = 989.0
ASSUMED_MFU = 0.4

# Defaults that follow the SkyReels-V2 reference where it differs by film size or model (docs/skyreels.md):
# its 720P models see windows of 121 frames, which a film of 720P's pixel count or more gets by default...
WINDOW_720P = 121
PIXELS_720P = 1280 * 720
# ...and its plain image-to-video models are run with less guidance and a lower shift than diffusion forcing.
PLAIN_IMAGE_TO_VIDEO = "SkyReelsV2ImageToVideoPipeline"
PLAIN_IMAGE_TO_VIDEO_DEFAULTS: dict[str, float] = {"guidance_scale": 5.0, "shift": 3.0}
# The frame rates SkyReels-V2 makes: its fps conditioning tells only 16 from every other rate, which it was
# trained on as 24 fps, so any other rate would play its motion too fast or too slow.
MODEL_FRAME_RATES = (24, 16)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GenerationSettings(_Frozen):
    """A shot's effective generation settings, every inherited value filled in."""

    model: str | None
    resolution: str
    width: int
    height: int
    fps: int
    steps: int
    guidance_scale: float
    shift: float
    base_num_frames: int
    overlap_history: int
    addnoise_condition: int
    ar_step: int
    causal_block_size: int
    seed: int
    negative_prompt: str

    @property
    def passes_per_step(self) -> int:
        """Transformer calls per timestep-matrix row: classifier-free guidance runs a second, unconditional pass."""
        return passes_per_step(self.guidance_scale)


class ShotPlan(_Frozen):
    id: str
    scene: str
    timeline_index: int
    mode: Mode
    frames: int = Field(description="the shot's own new frames (never the parent's conditioning frames)")
    requested_frames: int
    fps: int
    width: int
    height: int
    seconds: float
    conditioned_on: str | None
    transition: str
    transition_frames: int = Field(description="frames a dissolve overlaps, or a fade lasts")
    film_start_frame: int = Field(description="the film frame this shot starts on")
    prompt: str = Field(description="the prompt with character descriptions filled in")
    setting: str | None
    caption: str | None
    camera: Camera | None
    characters: list[str]
    image: str | None = Field(description="absolute path of the start image, for image-to-video shots")
    keyframe: bool = Field(
        False,
        description="whether the keyframe stage draws this shot's start image (it is then an image shot)",
    )
    end_image: str | None = Field(
        None,
        description="absolute path of the image the shot ends on (its latent frame held in the last window)",
    )
    video: str | None = Field(
        None,
        description="absolute path of the clip this shot extends (a continuing shot conditioned on the clip's "
        "last overlap_history frames instead of a parent's)",
    )
    seed: int
    settings: GenerationSettings
    windows: list[Window]
    dit_passes: int
    color_match: bool = Field(
        False,
        description="a continuation whose colour is matched to its parent's tail (generation.color_match)",
    )

    @property
    def latent_frames(self) -> int:
        """Latent frames generated, the conditioning prefix of a continuing shot included."""
        return latent_count(generated_frames(self.mode, self.frames, self.settings.overlap_history))


class Estimate(_Frozen):
    dit_passes: int
    transformer_tflop: float | None = Field(description="transformer FLOPs for the whole film, in 10^12")
    h100_minutes: float | None = Field(description="rough time on one H100 at 40% of its bf16 peak")
    architecture: str | None
    shot_seconds: dict[str, float] | None = Field(
        None, description="each shot's rough H100 seconds, when the transformer's size is known"
    )


class KeyframePlan(_Frozen):
    """The keyframe stage of a render: which model draws which shots' start frames, and what it costs."""

    model: str
    shots: list[str] = Field(description="the shots that get a keyframe, in timeline order")
    steps: int
    transformer_passes: int = Field(
        description="the image model's transformer calls: one per step per keyframe"
    )


class TransformerSettings(_Frozen):
    """How the transformer runs, for the whole film: the storyboard's ``generation:`` keys of these names, or
    the command line's flags. They are not in any shot's settings: a render decides them once, when it loads
    the model, and hands them to the generator in its options (whose identity puts them in every cache key)."""

    attention: str = Field(
        TRANSFORMER_DEFAULTS["attention"], description="auto | flash3 | sage | flash | cudnn | sdpa"
    )
    compile: str = Field(TRANSFORMER_DEFAULTS["compile"], description="auto (on for CUDA) | true | false")
    precision: str = Field(TRANSFORMER_DEFAULTS["precision"], description="bf16 | fp8 (lossy)")


class FilmPlan(_Frozen):
    title: str
    width: int
    height: int
    fps: int
    film_frames: int
    film_seconds: float
    render_order: list[str]
    timeline: list[str]
    chains: list[list[str]]
    shots: list[ShotPlan]
    estimate: Estimate
    transformer: TransformerSettings = Field(
        default_factory=TransformerSettings, description="how the transformer runs (a model's renders only)"
    )
    keyframes: KeyframePlan | None = Field(None, description="the keyframe stage; null when no shot gets one")
    notes: list[str] = Field(description="things storyreel adjusted or warns about, e.g. snapped durations")
    critical_path: list[str] = Field(
        default_factory=list,
        description="the costliest chain of dependent shots, root first: no number of workers renders faster",
    )
    workers: int | None = Field(None, description="the workers estimated_seconds is for (plan --workers)")
    estimated_seconds: float | None = Field(
        None, description="rough wall time on `workers` H100s, list-scheduled (storyreel.schedule)"
    )

    _by_id: dict[str, ShotPlan] | None = PrivateAttr(None)

    def shot(self, shot_id: str) -> ShotPlan:
        """The plan of one shot (KeyError if there is none); a dictionary lookup, so callers may ask per shot."""
        if self._by_id is None:
            self._by_id = {shot.id: shot for shot in reversed(self.shots)}  # the first of equal ids wins
        return self._by_id[shot_id]

    def to_json(self) -> dict[str, Any]:
        """The ``storyreel plan --json`` document."""
        return self.model_dump(mode="json")

    def shot_costs(self) -> dict[str, float]:
        """Each shot's estimated cost, in render order: H100 seconds when the transformer's size is known,
        else its transformer passes (the unit the critical path and ``estimated_seconds`` are measured in)."""
        seconds = self.estimate.shot_seconds
        return {
            s: seconds[s] if seconds is not None else float(self.shot(s).dit_passes)
            for s in self.render_order
        }

    def schedule(self, workers: int) -> Schedule:
        """The list schedule of this film's shots on ``workers`` workers (:mod:`storyreel.schedule`)."""
        return list_schedule(
            self.shot_costs(), {s: self.shot(s).conditioned_on for s in self.render_order}, workers
        )


def derive_seed(film_seed: int, shot_id: str) -> int:
    """A shot's own seed, stable across runs and independent of the other shots.

    >>> derive_seed(42, "glide") == derive_seed(42, "glide") != derive_seed(42, "dip")
    True
    """
    digest = hashlib.sha256(f"{film_seed}:{shot_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# --- planning a film ------------------------------------------------------------------------------------------


@collector_paused()
def plan_film(
    board: Storyboard,
    *,
    seed: int | None = None,
    model: str | None = None,
    attention: str | None = None,
    compile: bool | str | None = None,
    precision: str | None = None,
    allow_outside: bool = False,
    workers: int | None = None,
) -> FilmPlan:
    """Validate the whole film and plan every shot's frames and windows, before any GPU minute is spent.

    ``seed`` replaces the film seed and every scene's seed (``--seed``); a seed written on a shot itself is
    kept. ``model`` replaces every shot's model (``--model``). ``attention``, ``compile`` and ``precision``
    replace the storyboard's (``--attention``, ``--compile/--no-compile``, ``--precision``); None keeps it.
    ``workers`` (``--workers``) fills ``estimated_seconds``: the film list-scheduled on that many H100s.
    Raises StoryboardError listing every problem.

    >>> plan = plan_film(load_storyboard("examples/swan_lake.yaml"))  # doctest: +SKIP
    >>> plan.shot("glide").windows  # doctest: +SKIP
    [Window(latent_frames=25, prefix_latent_frames=0, denoise_steps=30)]
    """
    given = {"attention": attention, "compile": compile, "precision": precision}
    plan, problems = _plan(board, seed=seed, model=model, transformer=given, allow_outside=allow_outside)
    StoryboardError.raise_if_any(problems)
    assert plan is not None
    if workers is not None:
        if workers < 1:
            raise UserError(
                f"--workers {workers}: a render needs at least one worker; use --workers 1 or more"
            )
        estimated = None
        if plan.estimate.shot_seconds is not None:
            estimated = round(plan.schedule(workers).makespan, 1)
        plan = plan.model_copy(update={"workers": workers, "estimated_seconds": estimated})
    return plan


def film_problems(
    board: Storyboard,
    *,
    seed: int | None = None,
    model: str | None = None,
    attention: str | None = None,
    compile: bool | str | None = None,
    precision: str | None = None,
    allow_outside: bool = False,
) -> list[Problem]:
    """Every problem :func:`plan_film` would raise, as a list (empty when the film can be planned)."""
    given = {"attention": attention, "compile": compile, "precision": precision}
    return _plan(
        board, seed=seed, model=model, transformer=given, allow_outside=allow_outside, check_only=True
    )[1]


def _plan(
    board: Storyboard,
    *,
    seed: int | None,
    model: str | None,
    transformer: dict[str, Any],
    allow_outside: bool,
    check_only: bool = False,
) -> tuple[FilmPlan | None, list[Problem]]:
    """1. the storyboard's own checks, 2. the shot graph, 3. a draft of every shot, 4. the film's plan."""
    problems = board.problems(allow_outside=allow_outside)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        problems.append(
            Problem("--seed", None, None, "", f"{seed} is not a seed", f"use a number from 0 to {MAX_SEED}")
        )
    if model is not None and (trouble := unreachable(model, board.base_dir)):
        problems.append(Problem("--model", None, None, "", trouble.message, trouble.fix))
    running = _transformer_settings(board, transformer, problems)
    ids = [shot.id for _, _, _, shot in board.iter_shots()]
    if len(set(ids)) != len(ids):
        return None, unique_problems(problems)  # the shot graph needs unique ids; the duplicates are reported
    try:
        graph = build_graph(board)
    except StoryboardError as exc:
        return None, unique_problems(problems + exc.problems)
    planning = _Planning(board, seed, model, problems=problems)
    for shot_id in graph.render_order:  # a parent before the shots continuing it
        planning.draft(graph.nodes[shot_id])
    planning.check_frame_rate()
    if planning.problems or check_only:
        return None, unique_problems(planning.problems)
    return _film_plan(planning, graph, running), []


# What reads each transformer setting given in code or on the command line, and the flag that gives it.
_TRANSFORMER_READERS = {"attention": parse_attention, "compile": parse_compile, "precision": parse_precision}
_TRANSFORMER_FLAGS = {"attention": "--attention", "compile": "--compile", "precision": "--precision"}


def _transformer_settings(
    board: Storyboard, given: dict[str, Any], problems: list[Problem]
) -> TransformerSettings:
    """The film's transformer settings: what was given (the command line, or render()'s arguments), else the
    storyboard's, else the defaults. A given value that is not one of the choices is a problem."""
    values = dict(TRANSFORMER_DEFAULTS)
    for key, read in _TRANSFORMER_READERS.items():
        written = getattr(board.generation, key)
        if written is not None:
            values[key] = written
        if given.get(key) is None:
            continue
        try:
            values[key] = read(given[key])
        except PydanticCustomError as exc:
            context = exc.context or {}
            flag = _TRANSFORMER_FLAGS[key]
            problems.append(Problem(flag, None, None, "", context.get("message", ""), context.get("fix", "")))
    return TransformerSettings(**values)


class _Notes:
    """Notes about shots, grouped: the same note for many shots is one line naming them."""

    SHOWN = 3  # shot ids named in a grouped note before "and N more"

    def __init__(self) -> None:
        self.by_text: dict[str, list[str]] = {}

    def add(self, shot_id: str, text: str) -> None:
        self.by_text.setdefault(text, []).append(shot_id)

    def lines(self) -> list[str]:
        lines = []
        for text, shots in self.by_text.items():
            names = [f"'{s}'" for s in dict.fromkeys(shots)]
            if len(names) == 1:
                lines.append(f"shot {names[0]}: {text}")
            elif len(names) <= self.SHOWN + 1:
                lines.append(f"shots {', '.join(names[:-1])} and {names[-1]}: {text}")
            else:
                lines.append(
                    f"shots {', '.join(names[: self.SHOWN])} and {len(names) - self.SHOWN} more: {text}"
                )
        return lines


@dataclass
class _Draft:
    """What the checks of one shot worked out, kept to build its ShotPlan once the whole film is known good."""

    shot: Shot
    node: ShotNode
    mode: Mode
    settings: GenerationSettings
    frames: int
    requested: int
    windows: list[Window]


@dataclass
class _Planning:
    """One pass over a film's shots: the film-wide values, and the drafts, notes and problems found so far."""

    board: Storyboard
    seed: int | None  # --seed
    model: str | None  # --model
    problems: list[Problem]
    notes: _Notes = field(default_factory=_Notes)
    film_notes: list[str] = field(default_factory=list)  # about the whole film, shown before the shots'
    drafts: dict[str, _Draft] = field(default_factory=dict)
    pipelines: dict[str, str | None] = field(default_factory=dict)  # model setting -> its pipeline class
    width: int = field(init=False)
    height: int = field(init=False)
    fps: int = field(init=False)
    keyframed: set[str] = field(init=False)  # shots the keyframe stage draws a start frame for

    def __post_init__(self) -> None:
        generation = self.board.generation
        self.width, self.height = resolution_size(generation.resolution or GENERATION_DEFAULTS["resolution"])
        self.fps = generation.fps or GENERATION_DEFAULTS["fps"]
        self.keyframed = set(keyframe_shots(self.board))

    def draft(self, node: ShotNode) -> None:
        """Check one shot and work out its frames and windows (none when a check failed)."""
        shot = self.board.scenes[node.scene_index].shots[node.shot_index]
        # A keyframed shot starts from the picture the keyframe stage draws: it is planned as an image shot.
        starts_on_image = shot.image is not None or shot.id in self.keyframed
        mode: Mode = (
            "continue" if node.conditioned_on or shot.video else "image" if starts_on_image else "fresh"
        )
        settings, where = self._settings(shot, mode)
        windows_fit = self._check_window_settings(shot, settings, where)
        requested, length_fits = self._requested_frames(node, shot, mode, settings)
        frames = snap_frames(requested, mode, settings.causal_block_size, at_most=MAX_SHOT_FRAMES)
        if windows_fit and length_fits:
            self._note_snapped(shot, mode, requested, frames)
        parent_fits = self._check_parent(node, shot, settings, where)
        clip_fits = self._check_clip(node, shot, settings)
        windows, own_windows = [], []
        if windows_fit and length_fits and parent_fits and clip_fits:
            # An end image's latent frame rides the last window (held, not made): in the windows the generator
            # runs, not in the hint about the shot's own frames.
            own_windows = shot_windows(mode, frames, settings)
            windows = shot_windows(mode, frames, settings, end_image=shot.end_image is not None)
        hint = _last_window_hint(mode, frames, self.fps, own_windows, settings)
        if hint is not None:
            self.notes.add(shot.id, hint)
        self.drafts[shot.id] = _Draft(shot, node, mode, settings, frames, requested, windows)

    def check_frame_rate(self) -> None:
        """A film made by a model is at a rate the model makes (the animatic draws any rate)."""
        models = sorted({d.settings.model for d in self.drafts.values() if d.settings.model is not None})
        if not models or self.fps in MODEL_FRAME_RATES:
            return
        self.problems.append(
            self.board.problem(
                ("generation", "fps"),  # the default, 24, is a rate the model makes: so this was written
                f"{self.fps} fps cannot be made with a SkyReels-V2 model ('{models[0]}'): its frame-rate "
                "conditioning tells only 16 fps from every other rate, which it was trained on as 24 fps, so at "
                f"{self.fps} fps the film's motion would play at the wrong speed",
                "set fps: 24 (or 16); for a previs at this rate, render without a model (an animatic)",
            )
        )

    def _settings(self, shot: Shot, mode: Mode) -> tuple[GenerationSettings, dict[str, Path_ | None]]:
        """The shot's effective settings, and where each was written (None: storyreel's default)."""
        written = self.board.settings_of(shot)
        values: dict[str, Any] = {key: value for key, (value, _) in written.items()}
        where: dict[str, Path_ | None] = {key: path for key, (_, path) in written.items()}
        seed_path = where["seed"]
        # A seed written on the shot itself is used as written; any other is the film's (or --seed), made the shot's own.
        if seed_path is None or seed_path[2:3] != ("shots",):
            values["seed"] = derive_seed(self.seed if self.seed is not None else values["seed"], shot.id)
        if self.model is not None:
            values["model"] = self.model
        for key, value in self._reference_defaults(shot, values["model"], where).items():
            values[key] = value
        if mode == "image" and (values["ar_step"] or values["causal_block_size"] != 1):
            self.notes.add(
                shot.id,
                "starts from an image, so it renders synchronously (ar_step 0, causal_block_size 1)"
                " to keep the image as its first frame",
            )
            values["ar_step"], values["causal_block_size"] = 0, 1
        negative_prompt = self.board.negative_prompt or DEFAULT_NEGATIVE_PROMPT
        settings = GenerationSettings(
            width=self.width, height=self.height, negative_prompt=negative_prompt, **values
        )
        return settings, where

    def _reference_defaults(
        self, shot: Shot, model: str | None, where: dict[str, Path_ | None]
    ) -> dict[str, Any]:
        """The settings the storyboard leaves to storyreel where SkyReels-V2's reference uses another value
        for this film's size or this model (a value the storyboard writes always wins), each said in a note.

        A 720P-sized film (or larger) sees 121-frame windows; a plain image-to-video model folder is run with
        guidance 5.0 and shift 3.0. A model not on this machine is not known to be plain image-to-video, so
        it keeps the diffusion-forcing values.
        """
        chosen: dict[str, Any] = {}
        if where["base_num_frames"] is None and self.width * self.height >= PIXELS_720P:
            chosen["base_num_frames"] = WINDOW_720P
            self._film_note(
                f"base_num_frames is {WINDOW_720P} by default at {self.width}x{self.height}, the window SkyReels-V2's "
                f"720P models see (films of fewer pixels than 1280x720 get {GENERATION_DEFAULTS['base_num_frames']}); "
                "set base_num_frames to choose another"
            )
        if model is not None and self._pipeline_class(model) == PLAIN_IMAGE_TO_VIDEO:
            plain = {key: value for key, value in PLAIN_IMAGE_TO_VIDEO_DEFAULTS.items() if where[key] is None}
            chosen.update(plain)
            guidance, shift = (
                PLAIN_IMAGE_TO_VIDEO_DEFAULTS["guidance_scale"],
                PLAIN_IMAGE_TO_VIDEO_DEFAULTS["shift"],
            )
            if plain:
                self._film_note(
                    f"model '{model}' is a plain image-to-video model: guidance_scale and shift default to "
                    f"{guidance} and {shift}, SkyReels-V2's values for such a model (6.0 and 8.0 are for "
                    "diffusion forcing); a value the storyboard sets is used instead"
                )
        return chosen

    def _pipeline_class(self, model: str) -> str | None:
        """The pipeline class a model setting's folder records (None when it is not on this machine), read once."""
        if model not in self.pipelines:
            self.pipelines[model] = resolve_model(model, self.board.base_dir).pipeline_class()
        return self.pipelines[model]

    def _film_note(self, text: str) -> None:
        if text not in self.film_notes:
            self.film_notes.append(text)

    def _check_window_settings(
        self, shot: Shot, settings: GenerationSettings, where: dict[str, Path_ | None]
    ) -> bool:
        """Whether base_num_frames, overlap_history and causal_block_size work together; a problem for each
        way they do not, with a fix naming values that do."""
        base, overlap, block = settings.base_num_frames, settings.overlap_history, settings.causal_block_size
        faults = window_setting_faults(base, overlap, block)
        for fault in faults:
            fix = window_settings_fix(
                fault.change,
                base,
                overlap,
                block,
                max_base=MAX_BASE_NUM_FRAMES,
                max_block=MAX_CAUSAL_BLOCK_SIZE,
            )
            self.problems.append(
                _setting_problem(self.board, where, fault.setting, shot, settings, fault.message, fix)
            )
        if settings.addnoise_condition > 60:
            self.notes.add(
                shot.id,
                f"addnoise_condition {settings.addnoise_condition} is high and can break consistency"
                " between windows; 20 is recommended",
            )
        return not faults

    def _requested_frames(
        self, node: ShotNode, shot: Shot, mode: Mode, settings: GenerationSettings
    ) -> tuple[int, bool]:
        """The frames the shot asks for, and whether a shot may be that long (a problem when not)."""
        fps = self.fps
        if shot.frames is not None:
            requested = shot.frames
        elif shot.duration is not None:
            requested = frames_for_duration(shot.duration, fps)
        else:  # no length: reported by the storyboard's checks; plan the rest as if it had a usual one
            requested = snap_frames(4 * fps, mode, settings.causal_block_size)
        if requested <= MAX_SHOT_FRAMES:
            return requested, True
        length = "duration" if shot.duration is not None else "frames"
        asked = f"{shot.duration:g}s at {fps} fps is " if shot.duration is not None else ""
        self.problems.append(
            self.board.problem(
                ("scenes", node.scene_index, "shots", node.shot_index, length),
                f"shot '{shot.id}': {asked}{requested} frames, more than the {MAX_SHOT_FRAMES} a shot may have",
                f"split it into shots of up to {MAX_SHOT_FRAMES / fps:.2f}s at {fps} fps that continue each "
                "other (`transition: continue`)",
            )
        )
        return MAX_SHOT_FRAMES, False

    def _note_snapped(self, shot: Shot, mode: Mode, requested: int, frames: int) -> None:
        if abs(frames - requested) <= 1:  # one frame is only the 4k+1 rule (4s -> 97 frames): no note
            return
        asked = f"{requested} frames" if shot.duration is None else f"{shot.duration:g}s ({requested} frames)"
        kind = "new frames" if mode == "continue" else "frames"
        self.notes.add(shot.id, f"{asked} snapped to {frames} {kind} ({frames / self.fps:.2f}s)")

    def _check_parent(
        self, node: ShotNode, shot: Shot, settings: GenerationSettings, where: dict[str, Path_ | None]
    ) -> bool:
        """Whether the shot this one continues has the overlap_history frames it is conditioned on."""
        parent = self.drafts.get(node.conditioned_on) if node.conditioned_on is not None else None
        if parent is None:
            return True
        available = generated_frames(parent.mode, parent.frames, parent.settings.overlap_history)
        needed = settings.overlap_history
        if available >= needed:
            return True
        message = f"needs the last {needed} frames of '{parent.shot.id}', which has only {available}"
        fix = _parent_fix(parent, needed, self.fps)
        self.problems.append(
            _setting_problem(self.board, where, "overlap_history", shot, settings, message, fix)
        )
        return False

    def _check_clip(self, node: ShotNode, shot: Shot, settings: GenerationSettings) -> bool:
        """Whether the clip a shot extends (``video:``) is the film's size and has the overlap_history frames
        the shot is conditioned on. A clip that cannot be read at all is the asset checks' to report."""
        if shot.video is None or unreachable(shot.video, self.board.base_dir) is not None:
            return True
        path = self.board.resolve_asset(shot.video)
        if not path.is_file():
            return True
        facts = clip_facts(path, shot.video)
        if isinstance(facts, AssetTrouble):
            return True
        at = ("scenes", node.scene_index, "shots", node.shot_index, "video")
        fits = True
        if (facts.width, facts.height) != (self.width, self.height):
            fits = False
            self.problems.append(
                self.board.problem(
                    at,
                    f"shot '{shot.id}': the clip '{shot.video}' is {facts.width}x{facts.height}, but the film is "
                    f"{self.width}x{self.height}; a clip is extended at the film's size, never rescaled, so that "
                    "its last frames are the ones the shot continues",
                    f"scale it first (ffmpeg -i {shot.video} -vf scale={self.width}:{self.height} "
                    f"<new file>), or set the film's resolution to {facts.width}x{facts.height} if that is a "
                    "size the model makes",
                )
            )
        needed = settings.overlap_history
        if facts.frames < needed:
            fits = False
            lower = four_k_plus_one_at_most(facts.frames)
            fix = f"use a clip of at least {needed} frames"
            if lower is not None:
                fix += f", or set overlap_history to {lower} or less"
            self.problems.append(
                self.board.problem(
                    at,
                    f"shot '{shot.id}' extends the clip '{shot.video}' from its last {needed} frames "
                    f"(overlap_history), but it has only {facts.frames}",
                    fix,
                )
            )
        return fits


def _film_plan(planning: _Planning, graph: ShotGraph, transformer: TransformerSettings) -> FilmPlan:
    """The plan of a film whose every shot drafted without a problem."""
    board, fps = planning.board, planning.fps
    plans = [_shot_plan(board, planning.drafts[s], fps) for s in graph.timeline]
    for plan in plans:
        asked = planning.drafts[plan.id].shot.transition_duration
        if asked and plan.transition not in ("dissolve", "fade"):
            planning.notes.add(
                plan.id,
                f"its transition_duration {asked:g}s is not used: a {plan.transition} has no length "
                "(write transition: dissolve or fade for one that has)",
            )
    timeline_plans = _place_on_timeline(plans, planning.notes)
    film_frames = (timeline_plans[-1].film_start_frame + timeline_plans[-1].frames) if timeline_plans else 0
    estimate, model_notes = _estimate(board, timeline_plans)
    by_id = {plan.id: plan for plan in timeline_plans}
    seconds = estimate.shot_seconds
    costs = {s: seconds[s] if seconds is not None else float(by_id[s].dit_passes) for s in graph.render_order}
    longest = critical_path(costs, {s: by_id[s].conditioned_on for s in graph.render_order})
    if any(plan.settings.model for plan in timeline_plans):  # an animatic has no transformer to run
        model_notes += _transformer_notes(transformer)
    return FilmPlan(
        title=board.title,
        width=planning.width,
        height=planning.height,
        fps=fps,
        film_frames=film_frames,
        film_seconds=round(film_frames / fps, 2),
        render_order=graph.render_order,
        timeline=graph.timeline,
        chains=graph.chains,
        shots=timeline_plans,
        estimate=estimate,
        transformer=transformer,
        keyframes=_keyframe_plan(board, timeline_plans),
        notes=planning.film_notes + planning.notes.lines() + model_notes,
        critical_path=longest,
    )


def _keyframe_plan(board: Storyboard, plans: list[ShotPlan]) -> KeyframePlan | None:
    shots = [plan.id for plan in plans if plan.keyframe]
    if not shots or board.keyframes is None or board.keyframes.model is None:
        return None
    steps = board.keyframes.steps
    return KeyframePlan(
        model=board.keyframes.model, shots=shots, steps=steps, transformer_passes=len(shots) * steps
    )


def _transformer_notes(transformer: TransformerSettings) -> list[str]:
    """What a user should know about a lossy choice: its frames are not the ones bf16 and exact attention give."""
    notes = []
    if transformer.precision == "fp8":
        notes.append(
            "precision fp8: the transformer's weights and matrix products are 8-bit floats, faster and "
            "smaller than bf16 but lossy: the frames differ from a bf16 render's (set precision: bf16 for "
            "the reference quality)"
        )
    if transformer.attention == "sage":
        notes.append(
            "attention sage: SageAttention computes attention in 8 bits, which is lossy: the frames differ "
            "from an exact kernel's (auto picks only exact kernels)"
        )
    return notes


def _shot_plan(board: Storyboard, draft: _Draft, fps: int) -> ShotPlan:
    shot, node, settings = draft.shot, draft.node, draft.settings
    transition_seconds = shot.transition_duration or DEFAULT_TRANSITION_SECONDS
    blends = node.transition in ("dissolve", "fade")
    return ShotPlan(
        id=shot.id,
        scene=node.scene,
        timeline_index=node.timeline_index,
        mode=draft.mode,
        frames=draft.frames,
        requested_frames=draft.requested,
        fps=fps,
        width=settings.width,
        height=settings.height,
        seconds=round(draft.frames / fps, 2),
        conditioned_on=node.conditioned_on,
        transition=node.transition,
        transition_frames=frames_for_duration(transition_seconds, fps) if blends else 0,
        film_start_frame=0,
        prompt=board.expanded_prompt(shot),
        setting=board.expand(board.scenes[node.scene_index].setting or "") or None,
        caption=shot.caption,
        camera=shot.camera,
        characters=board.shot_characters(shot),
        image=str(board.resolve_asset(shot.image)) if shot.image else None,
        keyframe=draft.mode == "image" and shot.image is None,
        end_image=str(board.resolve_asset(shot.end_image)) if shot.end_image else None,
        video=str(board.resolve_asset(shot.video)) if shot.video else None,
        seed=settings.seed,
        settings=settings,
        windows=draft.windows,
        dit_passes=dit_passes(draft.windows, settings.guidance_scale),
        color_match=draft.mode == "continue" and board.color_match_of(shot) == "on",
    )


def _last_window_hint(
    mode: Mode, frames: int, fps: int, windows: list[Window], settings: GenerationSettings
) -> str | None:
    """Say so when a shot's last window adds only a sliver of new frames at the cost of a whole window."""
    sliver = last_window_sliver(mode, windows, settings)
    if sliver is None:
        return None
    added, fewer = sliver
    return (
        f"its {frames} {'new ' if mode == 'continue' else ''}frames need {len(windows)} windows, the last adding only "
        f"{added} frames; {fewer} frames ({fewer / fps:.2f}s) would take one window fewer and save "
        f"{windows[-1].denoise_steps} denoising steps"
    )


def _place_on_timeline(plans: list[ShotPlan], notes: _Notes) -> list[ShotPlan]:
    """Fix each shot's transition length and its first film frame; a dissolve overlaps the shot before it.

    A dissolve or fade takes at most half of each shot it joins; one asked to be longer is cut, with a note.
    """
    placed: list[ShotPlan] = []
    cursor = 0
    for index, plan in enumerate(plans):
        frames = plan.transition_frames
        if plan.transition in ("dissolve", "fade"):
            limit = plan.frames // 2
            if index > 0:
                limit = min(limit, placed[-1].frames // 2)
            cut = max(1, min(frames, limit))
            if cut < frames:
                joins = (
                    f"'{placed[-1].id}' ({placed[-1].frames} frames) and this shot ({plan.frames})"
                    if index > 0
                    else f"this shot ({plan.frames} frames)"
                )
                notes.add(
                    plan.id,
                    f"its {frames / plan.fps:.2f}s {plan.transition} is cut to {cut / plan.fps:.2f}s ({cut} frames): "
                    f"a {plan.transition} takes at most half of each shot it joins, here {joins}",
                )
            frames = cut
        if index == 0 and plan.transition == "dissolve":  # nothing to dissolve from: fade in from black
            plan = plan.model_copy(update={"transition": "fade"})
        start = cursor - (frames if plan.transition == "dissolve" and index > 0 else 0)
        plan = plan.model_copy(update={"transition_frames": frames, "film_start_frame": start})
        placed.append(plan)
        cursor = start + plan.frames
    return placed


# --- the estimate ----------------------------------------------------------------------------------------------


def _estimate(board: Storyboard, plans: list[ShotPlan]) -> tuple[Estimate, list[str]]:
    """Transformer passes, and FLOPs and H100 minutes when every model's size is known; with a note for each
    model that is not on this machine or whose size is unknown."""
    passes = sum(plan.dit_passes for plan in plans)
    refs = {
        model: resolve_model(model, board.base_dir)
        for model in dict.fromkeys(plan.settings.model for plan in plans)
        if model is not None
    }
    sizes = {model: ref.architecture() for model, ref in refs.items()}  # read each model once
    notes = [note for model, ref in refs.items() if (note := _model_note(ref, sizes[model] is not None))]
    known = {model: size for model, size in sizes.items() if size is not None}
    if not known or len(known) < len(sizes):  # no transformer, or one of unknown size: passes only
        return Estimate(
            dit_passes=passes, transformer_tflop=None, h100_minutes=None, architecture=None
        ), notes
    flops = {  # the animatic's shots have no transformer
        plan.id: schedule_flops(
            known[model][1], plan.windows, plan.width, plan.height, plan.settings.guidance_scale
        )
        if (model := plan.settings.model) is not None
        else 0.0
        for plan in plans
    }
    total = sum(flops.values())
    rate = H100_BF16_PEAK_TFLOPS * 1e12 * ASSUMED_MFU
    seconds = total / rate
    estimate = Estimate(
        dit_passes=passes,
        transformer_tflop=round(total / 1e12, 1),
        h100_minutes=round(seconds / 60, 1),
        architecture=", ".join(sorted({label for label, _ in known.values()})),
        shot_seconds={shot: round(f / rate, 2) for shot, f in flops.items()},
    )
    return estimate, notes


def _model_note(ref: ModelRef, sized: bool) -> str | None:
    """What the estimate could not learn about a model: that it is not on this machine, or its size."""
    passes_only = "the estimate counts transformer passes only"
    size = "the estimate takes its size from its name" if sized else f"its size is unknown, so {passes_only}"
    if ref.folder is None:
        missing = "is not in the local Hugging Face cache"
        fix = f"download it before rendering: hf download {ref.hub_id}"
        if ref.hub_id is None:
            where = " or ".join(str(path) for path in ref.looked_in)
            missing, fix = f"was not found on this machine (no folder {where})", "a render needs it here"
        return f"model '{ref.name}' {missing}: {size}; {fix}"
    if not sized:
        config = ref.folder / "transformer" / "config.json"
        return f"model '{ref.name}': neither {config} nor its name gives the transformer's size, so {passes_only}"
    return None


# --- problems and their fixes -------------------------------------------------------------------------


def _setting_problem(
    board: Storyboard,
    where: dict[str, Path_ | None],
    key: str,
    shot: Shot,
    settings: GenerationSettings,
    message: str,
    fix: str,
) -> Problem:
    """A problem with a generation setting, pinned to where the setting was written (the shot, when it is
    storyreel's default, whose value ``settings`` holds).

    A setting written once for the film (or a scene) is reported once, not once per shot inheriting it.
    """
    path = where.get(key)
    if path is None:
        si, hi, _, _ = board.find_shot(shot.id)
        return board.problem(
            ("scenes", si, "shots", hi),
            f"shot '{shot.id}': {message} (with the default {key}: {getattr(settings, key)})",
            fix,
        )
    if path[2:3] == ("shots",):
        message = f"shot '{shot.id}': {message}"
    return board.problem(path, message, fix)


def _parent_fix(parent: _Draft, needed: int, fps: int) -> str:
    """Lengthen the parent to a duration that does give ``needed`` frames once snapped, or lower the overlap."""
    seconds = shortest_duration(needed, parent.mode, fps, parent.settings)
    lower = four_k_plus_one_at_most(
        generated_frames(parent.mode, parent.frames, parent.settings.overlap_history)
    )
    if seconds <= MAX_SHOT_SECONDS:
        fix = f"lengthen '{parent.shot.id}' to at least {seconds:.2f}s"
    else:  # at a low frame rate, past the longest duration a shot may be written with: its length in frames
        fix = f"give '{parent.shot.id}' frames: {frames_for_duration(seconds, fps)}"
    return fix + (f", or lower overlap_history to {lower} or less" if lower else "")
