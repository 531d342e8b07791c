"""One shot's work, as a unit: reuse it from the shot cache, or generate it, write it and cache it.

A :class:`ShotJob` carries everything the work needs (the shot's plan, its prompt, its cache key and
the exact frames it is conditioned on), so it does not depend on the rest of the render and can run
wherever a generator is. A clip extension's frames may be left out: they are then decoded from the clip
only when the shot is generated, so a shot the cache holds never decodes its clip. :func:`make_shot` does
the work and returns the shot's manifest line and the tail of its footage that later shots continue from.

The order of writes keeps every paid-for shot: the shot's file goes into the render folder, then into
the shot cache; when the render folder refuses it (read-only, full), the shot still goes into the
cache before the error is raised, so the next render reuses it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import copy_atomic
from .cache import EntryInfo, ShotCache
from .degrade import generate_fitting
from .enhance import ShotPrompt
from .errors import UserError
from .generate import Clip, LazyGenerator, ProgressCallback, PromptRequest, ShotRequest, load_start_image
from .manifest import ShotEntry, json_friendly
from .plan import ShotPlan
from .render_folder import RenderFolder
from .tails import clip_tail, footage_tail


@dataclass(frozen=True)
class ShotJob:
    """A shot to make, with everything making it needs."""

    shot: ShotPlan
    prompt: ShotPrompt
    key: str  # the shot's cache key (storyreel.fingerprint)
    # (overlap_history, height, width, 3) uint8: what it continues, if anything; None for a clip extension
    # (``video:``) means the clip's last frames, decoded when the shot is generated
    tail_frames: np.ndarray | None
    tail_needed: int = 0  # frames of this shot's own footage that later shots are conditioned on


@dataclass(frozen=True)
class ShotResult:
    """A made shot: its manifest line, and the end of its footage (at least ``tail_needed`` frames)."""

    entry: ShotEntry
    tail: np.ndarray


@dataclass(frozen=True)
class ShotWork:
    """Where shots are made and kept during one render."""

    folder: RenderFolder
    generator: LazyGenerator
    cache: ShotCache | None  # None: the shot cache is neither read nor written
    reuse: bool  # False: generate every shot again (the cache is still written)
    storyboard: str | None  # the storyboard file, recorded in cache entries for `cache gc`
    # How the transformer was asked to run (attention, compile, precision); None: the generator has none
    transformer: dict[str, str] | None
    note: Callable[[str], None]
    progress: ProgressCallback


def make_shot(job: ShotJob, work: ShotWork) -> ShotResult:
    """Reuse ``job``'s shot from the cache, or generate it; either way its file is in the render folder."""
    shot = job.shot
    # The cache entry keeps at least overlap_history frames of tail, so a continuation added later can use it.
    keep = max(job.tail_needed, shot.settings.overlap_history)
    hit = None
    if work.cache is not None and work.reuse:
        hit = work.cache.get(job.key, need_tail=job.tail_needed, used_by=work.storyboard)
    if hit is not None:
        copy_atomic(hit.mp4, work.folder.shot(shot.id))
        entry = ShotEntry.for_shot(
            shot,
            job.prompt,
            job.key,
            hit.info.frames,
            cached=True,
            info=hit.info.info,
            transformer=work.transformer,
        )
        return ShotResult(entry, hit.tail())

    tail_frames = job.tail_frames
    if tail_frames is None and shot.video is not None:
        tail_frames = clip_tail(shot.video, shot.width, shot.height, shot.settings.overlap_history)
    request = ShotRequest(
        shot=shot,
        prompt=job.prompt.prompt.prompt,
        negative_prompt=shot.settings.negative_prompt,
        tail_frames=tail_frames,
        image=_start_image(shot, shot.image) if shot.image else None,
        end_image=_start_image(shot, shot.end_image) if shot.end_image else None,
    )
    clip, degraded = generate_fitting(work.generator.get(work.progress), request, work.note, work.progress)
    if degraded:
        clip.info["degraded"] = degraded
    if shot.color_match and tail_frames is not None:  # before the tail is taken: continuations see it
        from .color_match import match_colour

        clip.frames, clip.info["color_match"] = match_colour(clip.frames, tail_frames)
    tail = footage_tail(clip.frames, tail_frames, keep)
    _save(clip, shot, job.key, tail, work)
    entry = ShotEntry.for_shot(
        shot,
        job.prompt,
        job.key,
        len(clip.frames),
        cached=False,
        dit_passes=clip.dit_passes,
        seconds=clip.seconds,
        info=clip.info,
        transformer=work.transformer,
    )
    return ShotResult(entry, tail)


def _save(clip: Clip, shot: ShotPlan, key: str, tail: np.ndarray, work: ShotWork) -> None:
    """Write a generated shot into the render folder and the cache (see the module docstring for the order)."""
    from .video import write_shot

    info = EntryInfo(
        key=key,
        shot_id=shot.id,
        storyboard=work.storyboard,
        generator=work.generator.name,
        model=work.generator.options.model,
        frames=len(clip.frames),
        width=shot.width,
        height=shot.height,
        fps=shot.fps,
        tail_frames=0,
        dit_passes=clip.dit_passes,
        seconds_generating=round(clip.seconds, 3),
        created=time.time(),
        files={},
        used_by=[work.storyboard] if work.storyboard else [],
        info=json_friendly(clip.info),
    )
    path = work.folder.shot(shot.id)
    replace = not work.reuse  # generated again on purpose: the new shot replaces the cached one
    try:
        write_shot(clip.frames, path, shot.fps)
    except BaseException:  # Ctrl-C or a full render folder: the paid-for shot still goes into the cache
        if work.cache is not None:
            handle, name = tempfile.mkstemp(prefix=f"storyreel-{shot.id}-", suffix=".mp4")
            os.close(handle)
            scratch = Path(name)
            try:
                write_shot(clip.frames, scratch, shot.fps)
                work.cache.put(info, scratch, tail, replace=replace)
            except Exception:
                pass  # the first error is the one to report
            finally:
                scratch.unlink(missing_ok=True)
        raise
    if work.cache is not None:
        work.cache.put(info, path, tail, replace=replace)


def _start_image(shot: ShotPlan, path: str) -> np.ndarray:
    """The shot's start (or end) image, fitted to the film; a file that broke since the storyboard was checked is
    the user's to fix."""
    from .assets import check_asset

    try:
        return load_start_image(path, shot.width, shot.height)
    except Exception:
        trouble = check_asset("image", Path(path), str(path))
        if trouble is None:
            raise
        raise UserError(f"shot '{shot.id}': {trouble.message}; fix: {trouble.fix}") from None


def uncached_prompts(
    order: Sequence[ShotPlan],
    prompts: Mapping[str, ShotPrompt],
    cache_keys: Mapping[str, str],
    cache: ShotCache | None,
    reuse: bool,
) -> list[PromptRequest]:
    """The prompts of the shots of ``order`` the shot cache does not hold, for a generator to prepare before
    the first is generated (:attr:`LazyGenerator.upcoming`). A cache entry found here may still turn out
    unusable (damaged, too short a tail): that shot's prompt is then prepared when it is generated."""
    return [
        PromptRequest(shot.id, prompts[shot.id].prompt.prompt, shot.settings.negative_prompt)
        for shot in order
        if cache is None or not reuse or not cache.folder(cache_keys[shot.id]).is_dir()
    ]
