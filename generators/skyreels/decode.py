"""Latents to frames, one latent frame at a time, each piece turned into uint8 pixels as soon as it exists.

The pipelines decode a whole shot at once: the Wan VAE already runs its causal decoder one latent frame
at a time (carrying a cache of each causal convolution's last inputs), but it concatenates every decoded
piece onto the video so far (a copy of all earlier frames per piece) and returns the whole shot in
float32, which the pipeline then post-processes whole: a 30 s 720P shot is about 8 GB of float32 frames,
held twice during the concatenation. Here the generator asks the pipeline for latents
(``output_type="latent"``) and runs the same decoder calls itself, in the same order with the same
cache, turning each piece into uint8 frames on the CPU at once. Every operation is the pipeline's own,
element for element, so the frames are identical (``tests/test_skyreels.py`` compares them).

A VAE this does not cover (spatial tiling switched on, a patchified VAE) is decoded whole, as the
pipeline would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def decode_frames(
    pipeline: Any, latents: torch.Tensor, progress: Callable[[int, int], None] = lambda done, total: None
) -> np.ndarray:
    """``latents`` (1, channels, latent frames, h, w), as a pipeline returns them with ``output_type="latent"``,
    decoded to (frames, height, width, 3) uint8; ``progress(done, total)`` after each latent frame."""
    import torch
    from diffusers.utils.accelerate_utils import apply_forward_hook

    vae = pipeline.vae
    with torch.no_grad():
        latents = _unnormalised(vae, latents)
        if vae.use_tiling or vae.config.patch_size is not None:
            video = vae.decode(latents, return_dict=False)[0]
            progress(1, 1)
            return to_uint8(pipeline.video_processor.postprocess_video(video, output_type="np")[0])
        # apply_forward_hook: a model-offloaded VAE is moved onto the device first, as decode() would be
        return apply_forward_hook(_decode_by_latent_frame)(vae, latents, pipeline.video_processor, progress)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """(frames, height, width, 3) floats in [0, 1] as uint8, rounded to the nearest level."""
    return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _unnormalised(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The latents in the VAE's own scale: the pipelines' last step before decoding, operation for operation."""
    import torch

    latents = latents.to(vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
    return latents / inverse_std + mean


def _decode_by_latent_frame(
    vae: Any, latents: torch.Tensor, video_processor: Any, progress: Callable[[int, int], None]
) -> np.ndarray:
    """The Wan VAE's decode loop, each piece post-processed and stored as uint8 instead of concatenated."""
    latent_frames = latents.shape[2]
    pieces: list[np.ndarray] = []
    vae.clear_cache()
    try:
        x = vae.post_quant_conv(latents)
        for index in range(latent_frames):
            vae._conv_idx = [0]
            piece = vae.decoder(
                x[:, :, index : index + 1],
                feat_cache=vae._feat_map,
                feat_idx=vae._conv_idx,
                first_chunk=index == 0,
            )  # (1, 3, 1 or 4 frames, height, width) in [-1, 1]
            piece = piece.clamp(min=-1.0, max=1.0)  # the VAE's last step
            frames = video_processor.postprocess_video(piece, output_type="np")[
                0
            ]  # (frames, h, w, 3) in [0, 1]
            pieces.append(to_uint8(frames))
            progress(index + 1, latent_frames)
    finally:
        vae.clear_cache()
    return np.concatenate(pieces)
