"""Stage 2b of a render: the frame plan.

Turns each shot's duration into a frame count SkyReels-V2 diffusion forcing can produce exactly,
and works out the window schedule the generator will run: how many latent frames each window
holds, how many of them are a clean conditioning prefix, and how many rows the per-frame
timestep matrix has (one transformer call per row, two with classifier-free guidance). The
numbers follow the SkyReels-V2 reference implementation for the same settings.

Frame arithmetic (the Wan VAE has temporal stride 4 and encodes the first frame alone):

* ``latent = (pixel - 1) // 4 + 1``; a fresh shot is ``4k + 1`` frames.
* A continuing shot is generated as ``overlap_history + new`` frames whose first
  ``overlap_history`` are its parent's tail, so its ``new`` frames are a multiple of 4.
* With ``L`` latent frames, ``B`` per window and ``O`` of overlap, there are
  ``1 + (L - B - 1) // (B - O) + 1`` windows (one when ``L <= B``); window ``i`` holds
  ``min(L - i * (B - O), B)`` latent frames and, after the first, starts from ``O`` clean ones.
* Every window and prefix must be a whole number of causal blocks, or the model leaves frames as
  noise (or drops the prefix): shots are snapped so that this always holds.

>>> [w.latent_frames for w in window_schedule(latent_frames=60, base_latent=25, overlap_latent=5,
...     first_prefix=0, steps=30, ar_step=0, causal_block_size=1)]
[25, 25, 20]
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .errors import Problem, StoryboardError
from .graph import ShotNode, build_graph
from .storyboard import (
    DEFAULT_NEGATIVE_PROMPT,
    GENERATION_DEFAULTS,
    MAX_BASE_NUM_FRAMES,
    MAX_CAUSAL_BLOCK_SIZE,
    MAX_SHOT_FRAMES,
    Camera,
    Shot,
    Storyboard,
    resolution_size,
)
from .yaml_source import Path_, collector_paused

Mode = Literal["fresh", "image", "continue"]
MAX_SEED = 2**32 - 1
DEFAULT_TRANSITION_SECONDS = 0.5
VAE_TEMPORAL_STRIDE = 4


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Frozen):
    """One diffusion-forcing window: the latent frames it denoises together."""

    latent_frames: int = Field(description="latent frames in the window, prefix included")
    prefix_latent_frames: int = Field(description="clean latent frames it is conditioned on")
    denoise_steps: int = Field(
        description="rows of the per-frame timestep matrix: transformer calls without CFG"
    )


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
        return 2 if self.guidance_scale > 1 else 1


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
    seed: int
    settings: GenerationSettings
    windows: list[Window]
    dit_passes: int

    @property
    def latent_frames(self) -> int:
        """Latent frames generated, the conditioning prefix of a continuing shot included."""
        total = self.frames + (self.settings.overlap_history if self.mode == "continue" else 0)
        return (total - 1) // VAE_TEMPORAL_STRIDE + 1


class Estimate(_Frozen):
    dit_passes: int
    transformer_tflop: float | None = Field(description="transformer FLOPs for the whole film, in 10^12")
    h100_minutes: float | None = Field(description="rough time on one H100 at 40% of its bf16 peak")
    architecture: str | None


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
    notes: list[str] = Field(description="things storyreel adjusted or warns about, e.g. snapped durations")

    _by_id: dict[str, ShotPlan] | None = PrivateAttr(None)

    def shot(self, shot_id: str) -> ShotPlan:
        """The plan of one shot (KeyError if there is none); a dictionary lookup, so callers may ask per shot."""
        if self._by_id is None:
            self._by_id = {shot.id: shot for shot in reversed(self.shots)}  # the first of equal ids wins
        return self._by_id[shot_id]

    def to_json(self) -> dict[str, Any]:
        """The ``storyreel plan --json`` document."""
        return self.model_dump(mode="json")


# --- the diffusion-forcing schedule ---------------------------------------------------------------------------


def latent_count(pixel_frames: int) -> int:
    return (pixel_frames - 1) // VAE_TEMPORAL_STRIDE + 1


def timestep_rows(num_blocks: int, prefix_blocks: int, steps: int, ar_step: int) -> int:
    """Rows of the diffusion-forcing timestep matrix for one window.

    Each causal block counts the denoising steps it has taken. A row advances the first block by
    one; a later block advances by one once the block before it is fully denoised, and otherwise
    trails it by ``ar_step`` (so ``ar_step = 0`` moves every block together: synchronous). Prefix
    blocks start fully denoised. Rows are produced until every block has taken ``steps`` steps.
    This follows the rule of the reference ``generate_timestep_matrix``.

    Counted in closed form: the first block to denoise takes ``steps`` rows and each later one finishes
    ``min(ar_step, steps)`` rows after the block before it (it trails by ``ar_step``, but never waits past
    the row its predecessor finishes on). Stepping the rule row by row gives the same counts (checked over
    every window up to 25 blocks and 30 steps), but takes seconds for long asynchronous windows.

    >>> timestep_rows(25, 0, 30, 0), timestep_rows(5, 0, 30, 5), timestep_rows(5, 1, 30, 5)
    (30, 50, 45)
    """
    if steps < 1 or num_blocks < 1 or not 0 <= prefix_blocks <= num_blocks:
        raise ValueError(f"bad window: {num_blocks} blocks, {prefix_blocks} prefix, {steps} steps")
    noisy = num_blocks - prefix_blocks
    return 0 if noisy == 0 else steps + (noisy - 1) * min(ar_step, steps)


def window_schedule(
    *,
    latent_frames: int,
    base_latent: int,
    overlap_latent: int,
    first_prefix: int,
    steps: int,
    ar_step: int,
    causal_block_size: int,
) -> list[Window]:
    """The windows diffusion forcing runs to produce ``latent_frames`` latent frames.

    ``first_prefix`` is the first window's clean prefix: 0 for text-to-video, 1 for an image, and
    the overlap for a continuing shot. Prefixes are cut to whole causal blocks, as the model does.
    """
    if latent_frames <= base_latent:
        lengths = [latent_frames]
    else:
        stride = base_latent - overlap_latent
        count = 1 + (latent_frames - base_latent - 1) // stride + 1
        lengths = [min(latent_frames - i * stride, base_latent) for i in range(count)]
    windows = []
    for i, length in enumerate(lengths):
        prefix = first_prefix if i == 0 else overlap_latent
        prefix -= prefix % causal_block_size
        rows = timestep_rows(length // causal_block_size, prefix // causal_block_size, steps, ar_step)
        windows.append(Window(latent_frames=length, prefix_latent_frames=prefix, denoise_steps=rows))
    return windows


def with_base_frames(shot: ShotPlan, base_num_frames: int) -> ShotPlan | None:
    """The same shot planned with a smaller diffusion-forcing window, or None if that window is not valid
    for it (not 4k+1, not a whole number of causal blocks, no longer than the overlap, or leaving a
    window that is not a whole number of blocks). The frames are the same; only the windows change.

    Used when a shot does not fit in GPU memory: smaller windows need less.
    """
    settings = shot.settings
    block = settings.causal_block_size
    base_latent = latent_count(base_num_frames)
    overlap_latent = latent_count(settings.overlap_history)
    if (base_num_frames - 1) % VAE_TEMPORAL_STRIDE or base_latent % block or overlap_latent >= base_latent:
        return None
    windows = window_schedule(
        latent_frames=shot.latent_frames,
        base_latent=base_latent,
        overlap_latent=overlap_latent,
        first_prefix={"fresh": 0, "image": 1, "continue": overlap_latent}[shot.mode],
        steps=settings.steps,
        ar_step=settings.ar_step,
        causal_block_size=block,
    )
    if any(w.latent_frames % block for w in windows):
        return None
    new_settings = settings.model_copy(update={"base_num_frames": base_num_frames})
    return shot.model_copy(
        update={
            "settings": new_settings,
            "windows": windows,
            "dit_passes": sum(w.denoise_steps for w in windows) * new_settings.passes_per_step,
        }
    )


# --- model size, for the estimate -----------------------------------------------------------------------------

# Wan2.1-style DiT sizes of the SkyReels-V2 releases: (dim, layers, ffn).
ARCHITECTURES: dict[str, tuple[int, int, int]] = {"1.3B": (1536, 30, 8960), "14B": (5120, 40, 13824)}
TEXT_TOKENS = 512
H100_BF16_PEAK_TFLOPS = 989.0
ASSUMED_MFU = 0.4


def architecture_of(
    model: str | None, base_dir: Path | None = None
) -> tuple[str, tuple[int, int, int]] | None:
    """The transformer size behind a model id or folder, read from its name or its transformer/config.json."""
    if model is None:
        return None
    folder = Path(model).expanduser()
    if base_dir is not None and not folder.is_absolute():
        folder = base_dir / folder
    config = folder / "transformer" / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            dim = int(data["num_attention_heads"]) * int(data["attention_head_dim"])
            return f"{dim}d/{data['num_layers']}L", (dim, int(data["num_layers"]), int(data["ffn_dim"]))
        except (ValueError, KeyError, OSError):
            return None
    for name, arch in ARCHITECTURES.items():
        if f"-{name}-" in model or model.endswith(f"-{name}"):
            return name, arch
    return None


def transformer_flops(arch: tuple[int, int, int], latent_frames: int, width: int, height: int) -> float:
    """FLOPs of one transformer forward over a window (patch 1x2x2 on the 8x VAE grid: 16 px per token side).

    Per layer: self-attention projections 8Nd^2 and scores 4N^2d, cross-attention 4Nd^2 + 4Td^2 + 4NTd,
    feed-forward 4Ndf, for N video tokens and T text tokens.
    """
    dim, layers, ffn = arch
    n = latent_frames * (height // 16) * (width // 16)
    t = TEXT_TOKENS
    per_layer = 12 * n * dim**2 + 4 * n * n * dim + 4 * t * dim**2 + 4 * n * t * dim + 4 * n * dim * ffn
    return float(layers * per_layer)


# --- planning a film ------------------------------------------------------------------------------------------


def derive_seed(film_seed: int, shot_id: str) -> int:
    """A shot's own seed, stable across runs and independent of the other shots.

    >>> derive_seed(42, "glide") == derive_seed(42, "glide") != derive_seed(42, "dip")
    True
    """
    digest = hashlib.sha256(f"{film_seed}:{shot_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _nearest_by(candidates: list[int], frames_of: Callable[[int], int], requested: int) -> int:
    # The candidate whose frame count is nearest; a tie goes to the longer one, so rounding never cuts a shot short.
    return min(candidates, key=lambda c: (abs(frames_of(c) - requested), -c))


def snap_frames(requested: int, mode: Mode, overlap_history: int, causal_block_size: int) -> int:
    """The valid frame count nearest to ``requested``.

    A fresh or image shot has ``4(L - 1) + 1`` frames with ``L`` a multiple of the causal block size
    (at least 2 latent frames); a continuing shot has ``4K`` new frames with ``K`` a multiple of it.

    >>> snap_frames(96, "fresh", 17, 1), snap_frames(84, "continue", 17, 1), snap_frames(84, "continue", 17, 5)
    (97, 84, 80)
    """
    block = causal_block_size
    if mode == "continue":
        low = max(block, requested // VAE_TEMPORAL_STRIDE // block * block)
        best = _nearest_by([low, low + block], lambda k: VAE_TEMPORAL_STRIDE * k, requested)
        return VAE_TEMPORAL_STRIDE * best
    minimum = block * math.ceil(2 / block)
    target_latent = (requested - 1) / VAE_TEMPORAL_STRIDE + 1
    low = max(minimum, math.floor(target_latent / block) * block)
    best = _nearest_by([low, low + block], lambda latent: VAE_TEMPORAL_STRIDE * (latent - 1) + 1, requested)
    return VAE_TEMPORAL_STRIDE * (best - 1) + 1


def _settings_for(
    board: Storyboard, shot: Shot, film_seed: int | None
) -> tuple[dict[str, Any], dict[str, Path_ | None]]:
    values: dict[str, Any] = {}
    where: dict[str, Path_ | None] = {}
    for key, (value, path) in board.settings_of(shot).items():
        values[key], where[key] = value, path
    seed_path = where["seed"]
    if seed_path is not None and seed_path[2:3] == ("shots",):
        return values, where  # a seed set on the shot itself is used as written
    values["seed"] = derive_seed(film_seed if film_seed is not None else values["seed"], shot.id)
    return values, where


def _setting_problem(
    board: Storyboard, where: dict[str, Path_ | None], key: str, shot: Shot, message: str, fix: str
) -> Problem:
    """A problem with a generation setting, pinned to where the setting was written.

    A setting written once for the film (or a scene) is reported once, not once per shot inheriting it.
    """
    path = where.get(key)
    if path is None:
        si, hi, _, _ = board.find_shot(shot.id)
        return board.problem(
            ("scenes", si, "shots", hi),
            f"shot '{shot.id}': {message} (with the default {key}: {GENERATION_DEFAULTS[key]})",
            fix,
        )
    if path[2:3] == ("shots",):
        message = f"shot '{shot.id}': {message}"
    return board.problem(path, message, fix)


# --- suggestions that validate ----------------------------------------------------------------------------------


def _windows_fit(base: int, overlap: int, block: int) -> bool:
    """Whether base_num_frames, overlap_history and causal_block_size work together (see plan_film's checks)."""
    base_latent, overlap_latent = latent_count(base), latent_count(overlap)
    return overlap < base and base_latent % block == 0 and overlap_latent % block == 0


def _preferred(candidates: list[int], recommended: tuple[int, ...], near: int, count: int = 2) -> list[int]:
    """Up to ``count`` candidates: the recommended ones first, then those nearest to ``near``."""
    chosen = [value for value in recommended if value in candidates]
    chosen += sorted((c for c in candidates if c not in chosen), key=lambda c: (abs(c - near), -c))
    return chosen[:count]


def _overlaps_for(base: int, block: int) -> list[int]:
    """Every overlap_history that fits ``base`` and ``block``."""
    return [o for o in range(1, base, VAE_TEMPORAL_STRIDE) if _windows_fit(base, o, block)]


def _bases_for(overlap: int, block: int) -> list[int]:
    """Every base_num_frames that fits ``overlap`` and ``block``."""
    return [
        b for b in range(5, MAX_BASE_NUM_FRAMES + 1, VAE_TEMPORAL_STRIDE) if _windows_fit(b, overlap, block)
    ]


def _window_fixes(change: tuple[str, ...], base: int, overlap: int, block: int) -> str:
    """A fix naming only values that make the three settings fit: for each setting in ``change`` the values
    that work with the other two as written, then a causal_block_size that works with both frame counts."""
    parts = []
    for what in change:
        if what == "overlap_history":
            options = _preferred(_overlaps_for(base, block), (17, 37), overlap)
        else:
            options = _preferred(_bases_for(overlap, block), (97, 121, 77, 57), base)
        if options:
            parts.append(f"{what} " + " or ".join(str(o) for o in options))
    blocks = [b for b in range(1, MAX_CAUSAL_BLOCK_SIZE + 1) if _windows_fit(base, overlap, b)]
    if blocks and block != 1:
        parts.append("another causal_block_size" if parts else f"causal_block_size {blocks[-1]}")
    if parts:
        return "use " + ", or ".join(parts)
    pairs = [(b, o) for b, o in ((97, 17), (121, 17), (97, 37)) if _windows_fit(b, o, block)]
    if pairs:  # no one setting alone fits: the usual pair
        return f"use base_num_frames {pairs[0][0]} with overlap_history {pairs[0][1]}"
    return "use base_num_frames 97, overlap_history 17 and causal_block_size 1"


def _parent_fix(parent: _Draft, needed: int, fps: int) -> str:
    """Lengthen the parent to a duration that does give ``needed`` frames once snapped, or lower the overlap."""
    values = parent.values
    own = values["overlap_history"] if parent.mode == "continue" else 0
    seconds = math.floor(max(1, needed - own) / fps * 100) / 100

    def snapped(seconds: float) -> int:
        requested = max(1, round(seconds * fps))
        return snap_frames(requested, parent.mode, values["overlap_history"], values["causal_block_size"])

    while snapped(seconds) + own < needed:
        seconds = round(seconds + 0.01, 2)
    available = parent.frames + own
    lower = next((o for o in range(available, 0, -1) if (o - 1) % VAE_TEMPORAL_STRIDE == 0), None)
    fix = f"lengthen '{parent.shot.id}' to at least {seconds:.2f}s"
    return fix + (f", or lower overlap_history to {lower} or less" if lower else "")


# --- planning a film -------------------------------------------------------------------------------------------


@collector_paused()
def plan_film(
    board: Storyboard, *, seed: int | None = None, model: str | None = None, allow_outside: bool = False
) -> FilmPlan:
    """Validate the whole film and plan every shot's frames and windows, before any GPU minute is spent.

    ``seed`` replaces the film seed and every scene's seed (``--seed``); a seed written on a shot itself is
    kept. ``model`` replaces every shot's model (``--model``). Raises StoryboardError listing every problem.

    >>> plan = plan_film(load_storyboard("examples/swan_lake.yaml"))  # doctest: +SKIP
    >>> plan.shot("glide").windows  # doctest: +SKIP
    [Window(latent_frames=25, prefix_latent_frames=0, denoise_steps=30)]
    """
    plan, problems = _plan(board, seed=seed, model=model, allow_outside=allow_outside)
    StoryboardError.raise_if_any(problems)
    assert plan is not None
    return plan


def film_problems(
    board: Storyboard, *, seed: int | None = None, model: str | None = None, allow_outside: bool = False
) -> list[Problem]:
    """Every problem :func:`plan_film` would raise, as a list (empty when the film can be planned)."""
    return _plan(board, seed=seed, model=model, allow_outside=allow_outside, check_only=True)[1]


@dataclass
class _Draft:
    """What the checks of one shot worked out, kept to build its ShotPlan once the whole film is known good."""

    shot: Shot
    node: ShotNode
    mode: Mode
    values: dict[str, Any]
    frames: int
    requested: int
    windows: list[Window]


def _plan(
    board: Storyboard, *, seed: int | None, model: str | None, allow_outside: bool, check_only: bool = False
) -> tuple[FilmPlan | None, list[Problem]]:
    problems = board.problems(allow_outside=allow_outside)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        problems.append(
            Problem("--seed", None, None, "", f"{seed} is not a seed", f"use a number from 0 to {MAX_SEED}")
        )
    ids = [shot.id for _, _, _, shot in board.iter_shots()]
    if len(set(ids)) != len(ids):
        return None, _unique(problems)  # the shot graph needs unique ids; the duplicates are reported
    try:
        graph = build_graph(board)
    except StoryboardError as exc:
        return None, _unique(problems + exc.problems)
    notes = _Notes()
    width, height = resolution_size(board.generation.resolution or GENERATION_DEFAULTS["resolution"])
    fps = board.generation.fps or GENERATION_DEFAULTS["fps"]

    drafts: dict[str, _Draft] = {}
    for shot_id in graph.render_order:
        node = graph.nodes[shot_id]
        shot = board.scenes[node.scene_index].shots[node.shot_index]
        values, where = _settings_for(board, shot, seed)
        if model is not None:
            values["model"] = model
        mode: Mode = "continue" if node.conditioned_on else "image" if shot.image else "fresh"

        if mode == "image" and (values["ar_step"] or values["causal_block_size"] != 1):
            notes.add(
                shot_id,
                "starts from an image, so it renders synchronously (ar_step 0, causal_block_size 1)"
                " to keep the image as its first frame",
            )
            values["ar_step"], values["causal_block_size"] = 0, 1
        block = values["causal_block_size"]
        base, overlap = values["base_num_frames"], values["overlap_history"]
        base_latent = latent_count(base)
        overlap_latent = latent_count(overlap)
        bad = False
        if overlap >= base:
            problems.append(
                _setting_problem(
                    board,
                    where,
                    "overlap_history",
                    shot,
                    f"overlap_history {overlap} must be smaller than base_num_frames {base}",
                    _window_fixes(("overlap_history", "base_num_frames"), base, overlap, block),
                )
            )
            bad = True
        if base_latent % block:
            problems.append(
                _setting_problem(
                    board,
                    where,
                    "base_num_frames",
                    shot,
                    f"base_num_frames {base} is {base_latent} latent frames, "
                    f"not a multiple of causal_block_size {block}",
                    _window_fixes(("base_num_frames",), base, overlap, block),
                )
            )
            bad = True
        if overlap_latent % block:
            problems.append(
                _setting_problem(
                    board,
                    where,
                    "overlap_history",
                    shot,
                    f"overlap_history {overlap} is {overlap_latent} latent frames, "
                    f"not a multiple of causal_block_size {block}",
                    _window_fixes(("overlap_history",), base, overlap, block),
                )
            )
            bad = True
        if values["addnoise_condition"] > 60:
            notes.add(
                shot_id,
                f"addnoise_condition {values['addnoise_condition']} is high and can break consistency"
                " between windows; 20 is recommended",
            )

        if shot.frames is not None:
            requested = shot.frames
        elif shot.duration is not None:
            requested = max(1, round(shot.duration * fps))
        else:  # no length: reported by the storyboard's checks; plan the rest as if it had a usual one
            requested = snap_frames(4 * fps, mode, overlap, block)
        if requested > MAX_SHOT_FRAMES:
            length = "duration" if shot.duration is not None else "frames"
            asked = f"{shot.duration:g}s at {fps} fps is " if shot.duration is not None else ""
            problems.append(
                board.problem(
                    ("scenes", node.scene_index, "shots", node.shot_index, length),
                    f"shot '{shot_id}': {asked}{requested} frames, more than the {MAX_SHOT_FRAMES} a shot may have",
                    f"split it into shots of up to {MAX_SHOT_FRAMES / fps:.2f}s at {fps} fps that continue each "
                    "other (`transition: continue`)",
                )
            )
            bad = True
            requested = MAX_SHOT_FRAMES
        frames = snap_frames(requested, mode, overlap, block)
        if abs(frames - requested) > 1 and not bad:  # one frame is only the 4k+1 rule (4s -> 97 frames)
            asked = (
                f"{shot.duration:g}s ({requested} frames)"
                if shot.duration is not None
                else f"{requested} frames"
            )
            kind = "new frames" if mode == "continue" else "frames"
            notes.add(shot_id, f"{asked} snapped to {frames} {kind} ({frames / fps:.2f}s)")

        parent = drafts.get(node.conditioned_on) if node.conditioned_on is not None else None
        if parent is not None:
            available = parent.frames + (parent.values["overlap_history"] if parent.mode == "continue" else 0)
            if available < overlap:
                problems.append(
                    _setting_problem(
                        board,
                        where,
                        "overlap_history",
                        shot,
                        f"needs the last {overlap} frames of '{parent.shot.id}', which has only {available}",
                        _parent_fix(parent, overlap, fps),
                    )
                )
                bad = True

        windows: list[Window] = []
        if not bad:
            total_latent = latent_count(frames + (overlap if mode == "continue" else 0))
            windows = window_schedule(
                latent_frames=total_latent,
                base_latent=base_latent,
                overlap_latent=overlap_latent,
                first_prefix={"fresh": 0, "image": 1, "continue": overlap_latent}[mode],
                steps=values["steps"],
                ar_step=values["ar_step"],
                causal_block_size=block,
            )
        if len(windows) > 1:
            notes.extend(
                shot_id, _last_window_hint(mode, frames, fps, windows, base_latent, overlap_latent, block)
            )
        drafts[shot_id] = _Draft(shot, node, mode, values, frames, requested, windows)
    if problems or check_only:
        return None, _unique(problems)

    plans = [_shot_plan(board, drafts[s], width, height, fps) for s in graph.timeline]
    timeline_plans = _place_on_timeline(plans, notes)
    film_frames = (timeline_plans[-1].film_start_frame + timeline_plans[-1].frames) if timeline_plans else 0
    return FilmPlan(
        title=board.title,
        width=width,
        height=height,
        fps=fps,
        film_frames=film_frames,
        film_seconds=round(film_frames / fps, 2),
        render_order=graph.render_order,
        timeline=graph.timeline,
        chains=graph.chains,
        shots=timeline_plans,
        estimate=_estimate(board, timeline_plans),
        notes=notes.lines(),
    ), []


def _shot_plan(board: Storyboard, draft: _Draft, width: int, height: int, fps: int) -> ShotPlan:
    shot, node, values = draft.shot, draft.node, draft.values
    settings = GenerationSettings(
        width=width,
        height=height,
        negative_prompt=board.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
        **values,
    )
    transition_seconds = shot.transition_duration or DEFAULT_TRANSITION_SECONDS
    return ShotPlan(
        id=shot.id,
        scene=node.scene,
        timeline_index=node.timeline_index,
        mode=draft.mode,
        frames=draft.frames,
        requested_frames=draft.requested,
        fps=fps,
        width=width,
        height=height,
        seconds=round(draft.frames / fps, 2),
        conditioned_on=node.conditioned_on,
        transition=node.transition,
        transition_frames=max(1, round(transition_seconds * fps))
        if node.transition in ("dissolve", "fade")
        else 0,
        film_start_frame=0,
        prompt=board.expanded_prompt(shot),
        setting=board.expand(board.scenes[node.scene_index].setting or "") or None,
        caption=shot.caption,
        camera=shot.camera,
        characters=board.shot_characters(shot),
        image=str(board.resolve_asset(shot.image)) if shot.image else None,
        seed=values["seed"],
        settings=settings,
        windows=draft.windows,
        dit_passes=sum(w.denoise_steps for w in draft.windows) * settings.passes_per_step,
    )


class _Notes:
    """Notes about shots, grouped: the same note for many shots is one line naming them."""

    SHOWN = 3  # shot ids named in a grouped note before "and N more"

    def __init__(self) -> None:
        self.by_text: dict[str, list[str]] = {}

    def add(self, shot_id: str, text: str) -> None:
        self.by_text.setdefault(text, []).append(shot_id)

    def extend(self, shot_id: str, texts: list[str]) -> None:
        for text in texts:
            self.add(shot_id, text)

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


def _last_window_hint(
    mode: Mode,
    frames: int,
    fps: int,
    windows: list[Window],
    base: int,
    overlap: int,
    block: int,
) -> list[str]:
    """Say so when a shot's last window adds only a sliver of new frames at the cost of a whole window."""
    last = windows[-1]
    new_latent = last.latent_frames - last.prefix_latent_frames
    if new_latent * 4 > base:
        return []
    fitting = base + (len(windows) - 2) * (base - overlap)  # latent frames that fit in one window fewer
    fewer = (
        VAE_TEMPORAL_STRIDE * (fitting - overlap)
        if mode == "continue"
        else VAE_TEMPORAL_STRIDE * (fitting - 1) + 1
    )
    saved = last.denoise_steps
    return [
        f"its {frames} {'new ' if mode == 'continue' else ''}frames need {len(windows)} windows, the last adding only "
        f"{VAE_TEMPORAL_STRIDE * new_latent} frames; {fewer} frames ({fewer / fps:.2f}s) would take one window "
        f"fewer and save {saved} denoising steps"
    ]


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
        if index == 0 and plan.transition == "dissolve":
            plan = plan.model_copy(
                update={"transition": "fade"}
            )  # nothing to dissolve from: fade in from black
        start = cursor - (frames if plan.transition == "dissolve" and index > 0 else 0)
        plan = plan.model_copy(update={"transition_frames": frames, "film_start_frame": start})
        placed.append(plan)
        cursor = start + plan.frames
    return placed


def _estimate(board: Storyboard, plans: list[ShotPlan]) -> Estimate:
    passes = sum(plan.dit_passes for plan in plans)
    total = 0.0
    names = set()
    architectures: dict[str | None, tuple[str, tuple[int, int, int]] | None] = {}  # read each model once
    for plan in plans:
        model = plan.settings.model
        if model not in architectures:
            architectures[model] = architecture_of(model, board.base_dir)
        found = architectures[model]
        if found is None:
            if plan.settings.model is not None:
                return Estimate(
                    dit_passes=passes, transformer_tflop=None, h100_minutes=None, architecture=None
                )
            continue
        name, arch = found
        names.add(name)
        per_row = sum(
            w.denoise_steps * transformer_flops(arch, w.latent_frames, plan.width, plan.height)
            for w in plan.windows
        )
        total += per_row * plan.settings.passes_per_step
    if not names:
        return Estimate(dit_passes=passes, transformer_tflop=None, h100_minutes=None, architecture=None)
    seconds = total / (H100_BF16_PEAK_TFLOPS * 1e12 * ASSUMED_MFU)
    return Estimate(
        dit_passes=passes,
        transformer_tflop=round(total / 1e12, 1),
        h100_minutes=round(seconds / 60, 1),
        architecture=", ".join(sorted(names)),
    )


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
