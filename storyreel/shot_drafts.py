"""A film's shots drafted for its plan, one at a time in render order (a continuing shot after its parent).

A shot's draft is its effective generation settings (:class:`GenerationSettings`: every inherited value
filled in, its own seed, SkyReels-V2's reference values where the storyboard leaves a setting to storyreel),
its mode, the frames it asks for and the frames it gets once snapped, and the windows the generator will
run. Every check of one shot happens while it is drafted: its window settings, its length, the frames its
parent or the clip it extends has for it, and the film's frame rate against its model. Each problem is
pinned to where the setting was written, with a fix; the same note for many shots is one line
(:class:`Notes`). :mod:`storyreel.plan` turns the drafts into :class:`~storyreel.plan.ShotPlan`s once the
whole film is known good.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from .assets import AssetTrouble, clip_facts, unreachable
from .errors import Problem
from .frames import (
    Mode,
    Window,
    four_k_plus_one_at_most,
    frames_for_duration,
    generated_frames,
    last_window_sliver,
    passes_per_step,
    shortest_duration,
    shot_windows,
    snap_frames,
    window_setting_faults,
    window_settings_fix,
)
from .graph import ShotNode
from .keyframes import keyframe_shots
from .models import resolve_model
from .storyboard import (
    DEFAULT_NEGATIVE_PROMPT,
    GENERATION_DEFAULTS,
    MAX_BASE_NUM_FRAMES,
    MAX_CAUSAL_BLOCK_SIZE,
    MAX_SHOT_FRAMES,
    MAX_SHOT_SECONDS,
    Shot,
    Storyboard,
    resolution_size,
)
from .yaml_source import Path_

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


class GenerationSettings(BaseModel):
    """A shot's effective generation settings, every inherited value filled in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


def derive_seed(film_seed: int, shot_id: str) -> int:
    """A shot's own seed, stable across runs and independent of the other shots.

    >>> derive_seed(42, "glide") == derive_seed(42, "glide") != derive_seed(42, "dip")
    True
    """
    digest = hashlib.sha256(f"{film_seed}:{shot_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Notes:
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
class Draft:
    """What the checks of one shot worked out, kept to build its ShotPlan once the whole film is known good."""

    shot: Shot
    node: ShotNode
    mode: Mode
    settings: GenerationSettings
    frames: int
    requested: int
    windows: list[Window]


@dataclass
class Planning:
    """One pass over a film's shots: the film-wide values, and the drafts, notes and problems found so far."""

    board: Storyboard
    seed: int | None  # --seed
    model: str | None  # --model
    problems: list[Problem]
    notes: Notes = field(default_factory=Notes)
    film_notes: list[str] = field(default_factory=list)  # about the whole film, shown before the shots'
    drafts: dict[str, Draft] = field(default_factory=dict)
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
        self.drafts[shot.id] = Draft(shot, node, mode, settings, frames, requested, windows)

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


def _parent_fix(parent: Draft, needed: int, fps: int) -> str:
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
