"""Workarounds for diffusers 0.42.1 quirks that would silently ruin a shot (the package docstring lists all
nine and where each is guarded); each has a test in ``tests/test_skyreels.py`` that fails without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from storyreel.errors import GenerationError
from storyreel.frames import generated_frames
from storyreel.generate import ShotRequest

if TYPE_CHECKING:
    import torch


def keep_attention_bidirectional(transformer: Any) -> list[str]:
    """Quirks 1 and 2: keep ``num_frame_per_block`` at 1, so no block-causal mask is ever built.

    The pipelines still receive ``causal_block_size`` and shape their timestep schedule with it; only
    their write into the transformer's config is dropped, by shadowing ``_set_ar_attention`` on this
    instance. A folder saved after the quirk struck (``num_frame_per_block > 1``) is reset.
    """
    notes = []
    stored = transformer.config.num_frame_per_block
    if stored != 1:
        notes.append(
            f"the transformer config had num_frame_per_block {stored} (causal attention, which the released "
            "models do not support); reset to 1"
        )
        transformer.register_to_config(num_frame_per_block=1)
    transformer._set_ar_attention = _leave_attention_bidirectional
    return notes


def _leave_attention_bidirectional(causal_block_size: int) -> None:
    """Stands in for the transformer's ``_set_ar_attention``: the block size shapes the schedule, never the mask."""


def schedule_windows_by_their_length(pipeline: Any) -> None:
    """Quirk 9: DF image-to-video passes ``base_num_frames``' latent length as every window's schedule length.

    A last window shorter than that then indexes past its own frames. Wrapping this instance's
    ``generate_timestep_matrix`` to cap the length at the window's own makes it schedule exactly like
    DF text-to-video and video-to-video; rows and frames are unchanged for full windows.
    """
    schedule = pipeline.generate_timestep_matrix

    def generate_timestep_matrix(
        num_latent_frames: int, step_template: Any, base_num_latent_frames: int, *rest: Any
    ):
        return schedule(
            num_latent_frames, step_template, min(base_num_latent_frames, num_latent_frames), *rest
        )

    pipeline.generate_timestep_matrix = generate_timestep_matrix


@contextmanager
def seeded_global_rng(torch: Any, seed: int, device: torch.device) -> Iterator[None]:
    """Quirk 6: ``addnoise_condition`` noise comes from the global RNG; seed it, and restore it afterwards.

    ``torch.manual_seed`` seeds every device; only the one in use is forked and restored, which leaves other
    accelerators' global RNG reseeded: harmless, since nothing of storyreel's draws from them.
    """
    accelerated = device.type != "cpu"
    with torch.random.fork_rng(
        devices=[device] if accelerated else [], device_type=device.type if accelerated else "cuda"
    ):
        torch.manual_seed(seed)
        yield


def new_frames(output: np.ndarray, request: ShotRequest) -> np.ndarray:
    """The shot's own frames as uint8, from the pipeline's (frames, height, width, 3) floats in [0, 1].

    Quirk 5: video-to-video returns the input video, a re-decode of the overlap, then the new frames.
    """
    shot = request.shot
    if shot.mode == "continue":
        tail = len(request.tail_frames) if request.tail_frames is not None else 0
        expected = tail + generated_frames(shot.mode, shot.frames, shot.settings.overlap_history)
        if output.shape[0] != expected:
            raise GenerationError(
                f"shot '{shot.id}': video-to-video returned {output.shape[0]} frames, expected the {tail} input "
                f"frames, {shot.settings.overlap_history} re-decoded and {shot.frames} new ({expected})"
            )
        output = output[-shot.frames :]
    return np.rint(np.clip(output, 0.0, 1.0) * 255.0).astype(np.uint8)
