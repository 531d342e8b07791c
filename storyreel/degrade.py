"""What a render gives up, in order, when a shot does not fit in the device's memory.

A generator reports a shot that did not fit by raising :class:`storyreel.errors.OutOfMemory` (the
generator contract); the core never needs to know the library's own error. The shot is then tried
again, after the generator has returned what memory it can, along a ladder:

1. the shot as planned;
2. ``offload``: the generator keeps its weights off the accelerator between uses, if it can and does
   not already (it stays that way for the rest of the render);
3. ``base_num_frames=N``: diffusion-forcing windows 20 frames shorter each time, as long as a window
   stays valid and longer than the overlap. The shot's frames are the same; only the windows that
   make them change, so each needs less memory.

The steps taken go into the manifest's ``degraded``; a shot that fits at no step is an OutOfMemory
with the fix, and the render saves every other shot before it reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .errors import OutOfMemory, UserError
from .frames import block_misfit, dit_passes, shot_windows, window_settings_fit
from .generate import Clip, Generator, ProgressCallback, ShotRequest, run_generator
from .plan import ShotPlan

WINDOW_STEP = 20  # frames: five latent frames, one causal block of the asynchronous settings


def smaller_windows(shot: ShotPlan) -> list[ShotPlan]:
    """``shot`` planned with ever shorter diffusion-forcing windows (:data:`WINDOW_STEP` frames less each
    time), as long as the window stays valid and longer than the overlap. A window length that leaves the
    shot's windows as they were (a shot shorter than the window) is not a step: it would need the same memory.
    """
    replanned: list[ShotPlan] = []
    base = shot.settings.base_num_frames - WINDOW_STEP
    while base > shot.settings.overlap_history:
        candidate = with_base_frames(shot, base)
        if candidate is not None and candidate.windows != (replanned[-1] if replanned else shot).windows:
            replanned.append(candidate)
        base -= WINDOW_STEP
    return replanned


def with_base_frames(shot: ShotPlan, base_num_frames: int) -> ShotPlan | None:
    """The same shot planned with another diffusion-forcing window length, or None if that window does not fit
    its overlap and causal blocks, or leaves a window or prefix of partial blocks. The frames are the same;
    only the windows change; an end image's held frame stays in the last window."""
    settings = shot.settings.model_copy(update={"base_num_frames": base_num_frames})
    if not window_settings_fit(base_num_frames, settings.overlap_history, settings.causal_block_size):
        return None
    if block_misfit(shot.mode, shot.frames, settings) is not None:
        return None
    windows = shot_windows(shot.mode, shot.frames, settings, end_image=shot.end_image is not None)
    return shot.model_copy(
        update={
            "settings": settings,
            "windows": windows,
            "dit_passes": dit_passes(windows, settings.guidance_scale),
        }
    )


def _window_steps(generator: Generator, shot: ShotPlan) -> list[ShotPlan]:
    """The smaller-window plans of ``shot`` that ``generator`` can run (a plain, one-window pipeline runs none)."""
    runnable = []
    for candidate in smaller_windows(shot):
        try:
            generator.check_plan([candidate], generator.options)
        except UserError:
            continue
        runnable.append(candidate)
    return runnable


def generate_fitting(
    generator: Generator, request: ShotRequest, note: Callable[[str], None], progress: ProgressCallback
) -> tuple[Clip, list[str]]:
    """Generate a shot, going down the ladder while it does not fit. Returns the clip and what it gave up to
    fit: ``offload`` if that was switched on for it, and the window length it was made with."""
    shot_id = request.shot.id
    steps: list[tuple[str, ShotRequest]] = [("", request)]
    if not generator.offloading:
        steps.append(("offload", request))
    steps += [
        (f"base_num_frames={s.settings.base_num_frames}", replace(request, shot=s))
        for s in _window_steps(generator, request.shot)
    ]
    tried: list[str] = []  # every step taken so far, for the notes
    for number, (step, attempt) in enumerate(steps):
        if step == "offload" and not generator.enable_offload():
            continue  # this generator cannot make room that way
        if step:
            tried.append(step)
        try:
            clip = run_generator(generator, attempt, progress)
        except OutOfMemory:
            generator.release_memory()
            more = number < len(steps) - 1
            note(
                f"shot '{shot_id}' ran out of GPU memory"
                + (f" with {', '.join(tried)}" if tried else "")
                + ("; trying again with less" if more else "")
            )
            continue
        # Offloading stays on once switched on; of the window lengths, only the one the shot was made with.
        kept = [s for s in tried if s == "offload"] + [
            s for s in tried[-1:] if s.startswith("base_num_frames")
        ]
        return clip, kept
    raise OutOfMemory(
        f"shot '{shot_id}' does not fit in GPU memory even with {', '.join(tried) or 'the settings given'}; "
        "fix: a smaller resolution, fewer frames per window (generation.base_num_frames), --offload, or a larger GPU"
    )
