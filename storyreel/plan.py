"""Stage 2b of a render: the frame plan.

Checks every shot's generation settings and length, snaps each duration to a frame count SkyReels-V2
diffusion forcing can produce exactly, and works out the windows the generator will run, each shot's
place on the film's timeline and an estimate of the cost. The arithmetic (frame grid, windows,
prefixes, timestep rows, FLOPs) is :mod:`storyreel.frames`; this module applies it to a film: what
to report, what to note, and the :class:`FilmPlan` the later stages get. Shots are drafted in render
order, a continuing shot after its parent (:mod:`storyreel.shot_drafts`, where every check of one shot is),
and become :class:`ShotPlan`s once the film is known good; what the film costs is :mod:`storyreel.estimate`.

How the transformer runs (attention kernel, compilation, precision) is decided once for the film
(:class:`TransformerSettings`): it reaches the generator through its options, never a shot's settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_core import PydanticCustomError

from .assets import unreachable
from .checks import unique_problems
from .errors import Problem, StoryboardError, UserError
from .estimate import H100_BF16_PEAK_TFLOPS, Estimate, estimate_film
from .fields import parse_attention, parse_compile, parse_precision
from .frames import Mode, Window, dit_passes, frames_for_duration, generated_frames, latent_count
from .graph import ShotGraph, build_graph
from .schedule import Schedule, critical_path, list_schedule
from .shot_drafts import Draft, GenerationSettings, Notes, Planning, derive_seed
from .storyboard import TRANSFORMER_DEFAULTS, Camera, Storyboard
from .yaml_source import collector_paused

__all__ = [
    "DEFAULT_TRANSITION_SECONDS",
    "H100_BF16_PEAK_TFLOPS",
    "MAX_SEED",
    "Estimate",
    "FilmPlan",
    "GenerationSettings",
    "KeyframePlan",
    "ShotPlan",
    "TransformerSettings",
    "derive_seed",
    "film_problems",
    "plan_film",
]

MAX_SEED = 2**32 - 1
DEFAULT_TRANSITION_SECONDS = 0.5


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
        return self.estimate.costs({s: self.shot(s).dit_passes for s in self.render_order})

    def schedule(self, workers: int) -> Schedule:
        """The list schedule of this film's shots on ``workers`` workers (:mod:`storyreel.schedule`)."""
        return list_schedule(
            self.shot_costs(), {s: self.shot(s).conditioned_on for s in self.render_order}, workers
        )


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
    planning = Planning(board, seed, model, problems=problems)
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


def _film_plan(planning: Planning, graph: ShotGraph, transformer: TransformerSettings) -> FilmPlan:
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
    estimate, model_notes = estimate_film(board, timeline_plans)
    by_id = {plan.id: plan for plan in timeline_plans}
    costs = estimate.costs({s: by_id[s].dit_passes for s in graph.render_order})
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


def _shot_plan(board: Storyboard, draft: Draft, fps: int) -> ShotPlan:
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


def _place_on_timeline(plans: list[ShotPlan], notes: Notes) -> list[ShotPlan]:
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
