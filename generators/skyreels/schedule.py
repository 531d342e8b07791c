"""Every shot runs exactly the windows its plan shows: checked before a step is spent, and watched while it runs.

:func:`check_runnable` refuses a plan the pipelines would not run as written (the guard for quirks 3
and 4: windows or prefixes of partial causal blocks); :class:`ScheduleWatch` counts the transformer
passes and records each window as it runs, and any difference from the plan is a GenerationError.
The windows a shot should have come from :mod:`storyreel.frames`, the same function the plan used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storyreel.errors import GenerationError, UserError
from storyreel.frames import (
    BlockMisfit,
    Window,
    block_misfit,
    generated_frames,
    is_four_k_plus_one,
    shot_windows,
)
from storyreel.generate import ProgressCallback, ProgressEvent
from storyreel.models import EXAMPLE_MODEL
from storyreel.plan import ShotPlan

from .model_folder import DIFFUSION_FORCING, PLAIN_MODE

if TYPE_CHECKING:
    import torch


# --- before: can this shot run exactly as planned? ----------------------------------------------------------------


def check_runnable(shot: ShotPlan, family: str) -> None:
    """Refuse, before any step is spent, a shot the pipelines would not run exactly as its plan says.

    A plain pipeline makes one window, synchronously, of one kind of shot: asking more is the user's
    error. A diffusion-forcing plan whose windows differ from what its frames and settings give, or
    whose windows or prefixes are not whole causal blocks (quirks 3 and 4), can only come from a
    ShotPlan built by hand, since ``plan_film`` snaps shots: a bug.
    """
    settings = shot.settings
    if family != DIFFUSION_FORCING:
        _check_plain(shot, family)
    for name, value in (
        ("base_num_frames", settings.base_num_frames),
        ("overlap_history", settings.overlap_history),
    ):
        if not is_four_k_plus_one(value):
            raise GenerationError(f"shot '{shot.id}': {name} {value} is not 4k+1; the VAE would drop frames")
    generated = generated_frames(shot.mode, shot.frames, settings.overlap_history)
    if not is_four_k_plus_one(generated):
        raise GenerationError(
            f"shot '{shot.id}': {generated} frames to generate is not 4k+1; the pipeline would round it"
        )
    if shot.mode == "image" and (settings.ar_step or settings.causal_block_size != 1):
        raise GenerationError(
            f"shot '{shot.id}' starts from an image but is planned asynchronous (ar_step {settings.ar_step}, "
            f"causal_block_size {settings.causal_block_size}): the image latent would be re-denoised; image "
            "shots must be synchronous"
        )
    if shot.end_image is not None and family != DIFFUSION_FORCING:
        # A held end frame needs a timestep per latent frame, which only diffusion forcing has.
        raise UserError(
            f"shot '{shot.id}' ends on an end image, which storyreel runs only with a diffusion-forcing "
            f"SkyReels-V2 model; use one such as {EXAMPLE_MODEL}, or remove end_image"
        )
    expected = shot_windows(shot.mode, shot.frames, settings, end_image=shot.end_image is not None)
    if expected != shot.windows:
        raise GenerationError(
            f"shot '{shot.id}': the plan's windows {windows_text(shot.windows)} are not those its frames and "
            f"settings give, {windows_text(expected)}; plan the film again"
        )
    misfit = block_misfit(shot.mode, shot.frames, settings)
    if misfit is not None:
        raise GenerationError(f"shot '{shot.id}': {_misfit_text(misfit)}")


def _check_plain(shot: ShotPlan, family: str) -> None:
    """A plain (not diffusion-forcing) pipeline makes one kind of shot, in one window, synchronously."""
    settings = shot.settings
    kind = PLAIN_MODE[family]
    what = {"fresh": "fresh (text-to-video) shots", "image": "shots that start from an image"}[kind]
    fix = f"use a diffusion-forcing model such as {EXAMPLE_MODEL}"
    if shot.mode != kind:
        doing = {
            "fresh": "starts fresh",
            "image": "starts from an image",
            "continue": f"extends the clip {shot.video}"
            if shot.video
            else f"continues '{shot.conditioned_on}'",
        }
        raise UserError(
            f"shot '{shot.id}' {doing[shot.mode]}, but a plain SkyReels-V2 {family} model only makes {what}; {fix}"
        )
    if len(shot.windows) > 1:
        raise UserError(
            f"shot '{shot.id}' needs {len(shot.windows)} diffusion-forcing windows ({shot.frames} frames, "
            f"base_num_frames {settings.base_num_frames}), but a plain SkyReels-V2 {family} model makes one; "
            f"shorten the shot to {settings.base_num_frames} frames or fewer, or {fix}"
        )
    if settings.ar_step:
        raise UserError(
            f"shot '{shot.id}' asks for asynchronous diffusion forcing (ar_step {settings.ar_step}), which a "
            f"plain SkyReels-V2 {family} model cannot do; set ar_step: 0, or {fix}"
        )


def _misfit_text(misfit: BlockMisfit) -> str:
    """What the pipeline would do to a window or prefix of partial causal blocks."""
    number, frames, block = misfit.window, misfit.latent_frames, misfit.causal_block_size
    if misfit.part == "window":
        return (
            f"window {number} has {frames} latent frames, not a multiple of causal_block_size {block}; "
            f"the pipeline would leave the last {frames - misfit.whole_blocks} as noise"
        )
    return (
        f"window {number} is conditioned on {frames} latent frames, not a multiple of causal_block_size {block}; "
        f"the pipeline would cut the prefix to {misfit.whole_blocks}"
    )


def windows_text(windows: Any) -> str:
    """Windows as ``[latent frames/prefix/rows, ...]``, for messages."""
    return (
        "["
        + ", ".join(f"{w.latent_frames}/{w.prefix_latent_frames}/{w.denoise_steps}" for w in windows)
        + "]"
    )


# --- during: watching a run's passes, windows and progress ------------------------------------------------------


@dataclass
class WindowRun:
    """One window as it ran: latent frames, the frames the timestep schedule covered, clean prefix, rows."""

    latent_frames: int
    scheduled_frames: int
    prefix_latent_frames: int | None  # None for plain pipelines: they condition on channels, not a prefix
    denoise_steps: int = 0

    def matches(self, window: Window) -> bool:
        """Whether this run is the planned window (a plain pipeline's prefix is not a prefix of frames)."""
        prefix_ok = (
            self.prefix_latent_frames is None or self.prefix_latent_frames == window.prefix_latent_frames
        )
        return (self.latent_frames, self.denoise_steps) == (
            window.latent_frames,
            window.denoise_steps,
        ) and prefix_ok

    def as_dict(self) -> dict[str, int | None]:
        return {
            "latent_frames": self.latent_frames,
            "prefix_latent_frames": self.prefix_latent_frames,
            "denoise_steps": self.denoise_steps,
        }


@dataclass
class ScheduleWatch:
    """Counts transformer passes (a forward hook) and records each window through the step callback.

    A diffusion-forcing step callback receives the row of per-frame timesteps: its length is the
    number of frames the schedule covers (quirk 3 shows as fewer than the window's latent frames),
    and in the window's first row the clean prefix frames are its leading zeros. The step index
    restarts at 0 with every window; a plain pipeline's timestep is one number for all frames.
    """

    shot: ShotPlan
    progress: ProgressCallback
    passes: int = 0
    rows: int = 0
    windows: list[WindowRun] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(w.denoise_steps for w in self.shot.windows)

    def count_pass(self, module: Any, args: Any, output: Any) -> None:
        self.passes += 1

    def step(
        self, pipeline: Any, index: int, timestep: torch.Tensor, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if index == 0:
            latent_frames = int(tensors["latents"].shape[2])  # (batch, channels, latent frames, h, w)
            if timestep.ndim:  # diffusion forcing: (scheduled frames,) timesteps of this row
                clean = (timestep == 0).int()
                prefix = int(clean.cumprod(0).sum())  # leading clean frames
                self.windows.append(WindowRun(latent_frames, int(timestep.shape[0]), prefix))
            else:
                self.windows.append(WindowRun(latent_frames, latent_frames, None))
        self.windows[-1].denoise_steps += 1
        self.rows += 1
        self.progress(ProgressEvent(self.shot.id, "denoise", self.rows, self.total_rows))
        return {}

    def check(self) -> None:
        """Raise if what ran is not the plan: the frames would not be what ``storyreel plan`` promised."""
        shot = self.shot
        for number, run in enumerate(self.windows, start=1):
            if run.scheduled_frames != run.latent_frames:
                raise GenerationError(
                    f"shot '{shot.id}': window {number} scheduled {run.scheduled_frames} of its {run.latent_frames} "
                    "latent frames; the rest were left as noise"
                )
        if len(self.windows) != len(shot.windows) or not all(
            run.matches(window) for run, window in zip(self.windows, shot.windows, strict=True)
        ):
            raise GenerationError(
                f"shot '{shot.id}': the pipeline ran windows {windows_text(self.windows)} "
                f"(latent frames/prefix/rows), the plan has {windows_text(shot.windows)}"
            )
        if self.passes != shot.dit_passes:
            raise GenerationError(
                f"shot '{shot.id}': the transformer ran {self.passes} passes, the plan has {shot.dit_passes}"
            )
