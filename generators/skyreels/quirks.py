"""Workarounds for diffusers 0.42.1 quirks that would silently ruin a shot, waste GPU memory or leave a frame
control out of reach (the package docstring lists all eleven and where each is guarded); each has a test that
fails without it, in ``tests/test_skyreels.py`` (the end frame's in ``tests/test_frame_controls.py``).
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from storyreel.errors import GenerationError, UserError
from storyreel.frames import END_IMAGE_LATENT_FRAMES, generated_frames
from storyreel.generate import ShotRequest

from .parallel import per_token_modulation, sequence_split
from .stack import DIFFUSERS_VERSION

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


def new_frames(decoded: np.ndarray, request: ShotRequest) -> np.ndarray:
    """The shot's own frames, from the (frames, height, width, 3) uint8 frames its latents decoded to.

    Quirk 5: video-to-video generates the overlap again before the new frames (and its own output would
    also start with the input video, which storyreel never asks it to decode). The count is checked.
    """
    shot = request.shot
    if shot.mode == "continue":
        expected = generated_frames(shot.mode, shot.frames, shot.settings.overlap_history)
        if decoded.shape[0] != expected:
            raise GenerationError(
                f"shot '{shot.id}': video-to-video decoded {decoded.shape[0]} frames, expected the "
                f"{shot.settings.overlap_history} re-generated overlap frames and {shot.frames} new ({expected})"
            )
        decoded = decoded[-shot.frames :]
    return decoded


# --- quirk 10: the timestep modulation repeated to every token -------------------------------------------------


def modulate_per_frame(transformer: Any) -> None:
    """Quirk 10: hold the diffusion-forcing timestep modulation per latent frame, not per token.

    In diffusion-forcing mode diffusers' SkyReels-V2 transformer repeats each latent frame's six modulation
    vectors to every token of the frame before the blocks run, a (batch, 6, tokens, width) tensor (about 3 GB
    in bf16 for DF-14B at 540P x 97 frames), and every block adds a float32 copy of it to its own table (twice
    that again, per block). The values only change from frame to frame. This instance's ``forward`` and its
    blocks' ``forward`` are replaced by versions that keep the modulation as (batch, frames, 1, 6, width) and
    broadcast it over each frame's tokens: the same float32 operations on the same values, so the output is
    identical (``tests/test_skyreels.py`` checks it bit for bit, and that the blocks receive the small tensor).

    Calls the replacement does not cover go to diffusers' own code unchanged: without diffusion forcing (the
    plain pipelines), with ``attention_kwargs`` (LoRA scales), with a block-causal mask (which
    ``keep_attention_bidirectional`` never lets happen) or while training with gradient checkpointing.
    """
    transformer.forward = types.MethodType(_forward_per_frame, transformer)
    for block in transformer.blocks:
        block.forward = types.MethodType(_block_forward_per_frame, block)


def _forward_per_frame(
    self: Any,
    hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    encoder_hidden_states_image: torch.Tensor | None = None,
    enable_diffusion_forcing: bool = False,
    fps: Any = None,
    return_dict: bool = True,
    attention_kwargs: dict[str, Any] | None = None,
) -> Any:
    """SkyReelsV2Transformer3DModel.forward with the diffusion-forcing modulation kept per latent frame."""
    import torch

    if (
        not enable_diffusion_forcing
        or attention_kwargs
        or self.config.num_frame_per_block > 1
        or (torch.is_grad_enabled() and self.gradient_checkpointing)
    ):
        return type(self).forward(
            self,
            hidden_states,
            timestep,
            encoder_hidden_states,
            encoder_hidden_states_image,
            enable_diffusion_forcing,
            fps,
            return_dict,
            attention_kwargs,
        )
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    batch, _, latent_frames, latent_height, latent_width = hidden_states.shape
    patch_t, patch_h, patch_w = self.config.patch_size
    frames, height, width = latent_frames // patch_t, latent_height // patch_h, latent_width // patch_w

    rotary = self.rope(hidden_states)  # cos and sin, each (1, tokens, 1, head dim)
    tokens = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)  # (batch, tokens, width)
    # temb: (batch, frames, width); modulation: (batch, frames, 6 * width); one row per latent frame
    temb, modulation, text, image = self.condition_embedder(
        timestep, encoder_hidden_states, encoder_hidden_states_image
    )
    modulation = modulation.unflatten(-1, (6, -1))  # (batch, frames, 6, width)
    if image is not None:
        text = torch.concat([image, text], dim=1)
    if self.config.inject_sample_info:
        fps_ids = torch.tensor(fps, dtype=torch.long, device=tokens.device)
        fps_modulation = self.fps_projection(self.fps_embedding(fps_ids)).unflatten(1, (6, -1))
        modulation = modulation + fps_modulation.unsqueeze(1)  # the same vector added to every frame
    modulation = modulation.unsqueeze(2)  # (batch, frames, 1, 6, width): broadcast over a frame's tokens
    if sequence_split(self):  # the blocks get a share of the tokens, not whole frames: modulation per token
        modulation = per_token_modulation(modulation, height * width)  # (batch, 6, tokens, width)
    _mark_window_length_dynamic(tokens, modulation, *rotary)

    for block in self.blocks:
        tokens = block(tokens, text, modulation, rotary, None)

    # The output norm's shift and scale, per frame: (batch, frames, 1, width) each
    table = self.scale_shift_table.unsqueeze(1)  # (1, 1, 2, width)
    shift, scale = (table + temb.unsqueeze(2)).chunk(2, dim=2)
    shift, scale = shift.to(tokens.device), scale.to(tokens.device)
    normed = self.norm_out(tokens.float()).unflatten(1, (frames, -1))  # (batch, frames, h * w, width)
    tokens = (normed * (1 + scale) + shift).flatten(1, 2).type_as(tokens)
    patches = self.proj_out(tokens)  # (batch, tokens, p_t * p_h * p_w * channels)

    patches = patches.reshape(batch, frames, height, width, patch_t, patch_h, patch_w, -1)
    patches = patches.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (batch, channels, f, p_t, h, p_h, w, p_w)
    output = patches.reshape(batch, -1, frames * patch_t, height * patch_h, width * patch_w)
    if not return_dict:
        return (output,)
    return Transformer2DModelOutput(sample=output)


def _block_forward_per_frame(
    self: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    temb: torch.Tensor,
    rotary_emb: Any,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """SkyReelsV2TransformerBlock.forward for a per-frame modulation ``temb`` of (batch, frames, 1, 6, width).

    Tokens are viewed as (batch, frames, tokens per frame, width) wherever the modulation meets them.
    """
    if temb.dim() != 5:  # diffusers' own layouts: one modulation per video, or per token
        return type(self).forward(
            self, hidden_states, encoder_hidden_states, temb, rotary_emb, attention_mask
        )
    frames, dtype = temb.shape[1], hidden_states.dtype
    table = self.scale_shift_table.view(1, 1, 1, 6, -1)
    modulation = (table + temb.float()).unbind(3)  # six of (batch, frames, 1, width), float32
    shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = modulation

    def by_frame(x: torch.Tensor) -> torch.Tensor:  # (batch, tokens, width) -> (batch, frames, h * w, width)
        return x.unflatten(1, (frames, -1))

    # 1. Self-attention
    normed = (by_frame(self.norm1(hidden_states.float())) * (1 + scale_msa) + shift_msa).flatten(1, 2)
    attention = self.attn1(normed.to(dtype), None, attention_mask, rotary_emb)
    hidden_states = (by_frame(hidden_states.float()) + by_frame(attention) * gate_msa).flatten(1, 2).to(dtype)

    # 2. Cross-attention
    normed = self.norm2(hidden_states.float()).to(dtype)
    hidden_states = hidden_states + self.attn2(normed, encoder_hidden_states, None, None)

    # 3. Feed-forward
    normed = (by_frame(self.norm3(hidden_states.float())) * (1 + c_scale_msa) + c_shift_msa).flatten(1, 2)
    feed_forward = self.ffn(normed.to(dtype))
    out = by_frame(hidden_states.float()) + by_frame(feed_forward.float()) * c_gate_msa
    return out.flatten(1, 2).to(dtype)


def _mark_window_length_dynamic(*tensors: torch.Tensor) -> None:
    """Tell torch.compile that dimension 1 (tokens, or latent frames) varies from window to window.

    Windows of a render have different lengths; compiled blocks traced with a symbolic length serve them all,
    where a static trace would recompile for the second length. Marking is free when nothing is compiled.
    """
    import torch

    for tensor in tensors:
        torch._dynamo.maybe_mark_dynamic(tensor, 1)


# --- quirk 11: the end image's frame, held in the last window -----------------------------------------------------

#: The diffusers code the end-frame hold was written against (diffusers 0.42.1): for each diffusion-forcing pipeline,
#: the sha256 of the source of its ``__call__``, ``prepare_latents`` and ``generate_timestep_matrix``, in that order.
END_FRAME_CODE = {
    "SkyReelsV2DiffusionForcingPipeline": "89f841f4ca6e6bf074d655e818aa3cab64e7ab6d6e5922c12ae5b3ac53b0e1dc",
    "SkyReelsV2DiffusionForcingImageToVideoPipeline": "0cba3ba624c73fd16e9df534766d5d9417aa9caae89a295da9ace32ed49ab874",
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": "7696e653c6d4644c86d2a6873ec9c064dbcc7786e4be3555c45d53a737b28be5",
}
_HELD_METHODS = ("__call__", "prepare_latents", "generate_timestep_matrix")


def check_end_frame_code(pipeline_class: type) -> None:
    """Refuse to hold an end frame in a pipeline whose code is not the code :func:`hold_end_frame` was written for.

    The hold relies on how the pipeline's call loop uses ``prepare_latents`` (once per window, the window's
    latents and their count first in what it returns) and ``generate_timestep_matrix`` (the count it is given,
    the rows, mask and intervals it returns). Another diffusers could use them otherwise and silently make
    other frames, so any change to that code is refused.
    """
    name = pipeline_class.__name__
    if END_FRAME_CODE.get(name) != _code_digest(pipeline_class):
        import diffusers

        raise UserError(
            f"an end image's frame is held by wrapping {name}.prepare_latents and .generate_timestep_matrix, "
            f"written for the code of diffusers {DIFFUSERS_VERSION}; the installed diffusers "
            f"{diffusers.__version__} has other code there, which could make other frames; fix: "
            f"pip install diffusers=={DIFFUSERS_VERSION} (what storyreel[skyreels] pins), or remove end_image"
        )


def _code_digest(pipeline_class: type) -> str | None:
    try:
        source = "".join(inspect.getsource(getattr(pipeline_class, name)) for name in _HELD_METHODS)
    except (AttributeError, OSError, TypeError):  # a method missing, or no source to read
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def encode_end_image(pipeline: Any, image: np.ndarray) -> torch.Tensor:
    """``image`` (height, width, 3) uint8, already fitted to the film, as one normalised latent frame,
    (1, channels, 1, height / 8, width / 8) in the transformer's dtype.

    Encoded alone, as the SkyReels-V2 reference encodes its end image, with the operations diffusers' DF
    image-to-video pipeline applies to a ``last_image``: its preprocessing, the VAE's mode, the latents' mean
    and scale, then the transformer's dtype.
    """
    import torch
    from diffusers.pipelines.skyreels_v2.pipeline_skyreels_v2_diffusion_forcing_i2v import retrieve_latents

    vae = pipeline.vae
    pixels = _end_pixels(pipeline, image).unsqueeze(2).to(vae.dtype)  # (1, 3, 1, height, width) in [-1, 1]
    with torch.no_grad():
        latent = retrieve_latents(vae.encode(pixels), sample_mode="argmax").to(torch.float32)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latent.device, latent.dtype)
    inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latent.device, latent.dtype)
    return ((latent - mean) * inverse_std).to(pipeline.transformer.dtype)


def _end_pixels(pipeline: Any, image: np.ndarray) -> torch.Tensor:
    """``image`` as DF image-to-video prepares a ``last_image``: (1, 3, height, width) float32 in [-1, 1]."""
    import torch
    from PIL import Image

    height, width = image.shape[:2]
    pixels = pipeline.video_processor.preprocess(Image.fromarray(image), height=height, width=width)
    return pixels.to(pipeline._execution_device, dtype=torch.float32)


@contextmanager
def hold_end_frame(pipeline: Any, end_image: np.ndarray, windows: int) -> Iterator[None]:
    """Quirk 11: while the pipeline runs, its last window carries the latent frame of ``end_image`` (height,
    width, 3) after its own, held clean: at timestep 0 on every row and never stepped, as the SkyReels-V2
    reference holds an end image. ``windows`` is the plan's count of windows (the schedule watch checks it).

    diffusers 0.42.1 holds an end frame only in DF image-to-video (``last_image``), which needs a start
    image, and with several windows it appends one latent frame to the last window but lengthens that
    window's schedule by the window's prefix, so the call fails (``tests/test_frame_controls.py`` keeps the
    proof). Here the pipeline's own ``prepare_latents`` and ``generate_timestep_matrix`` are wrapped on this
    instance, so the same hold works in every diffusion-forcing pipeline (text-, image- and video-to-video):

    * in the last window's ``prepare_latents`` call, the window's latents, drawn as before, get the end
      latent appended and their count one more;
    * that window's timestep matrix is the one of its own frames (the same rows as without an end image),
      with one more column: timestep 0, never updated, inside every row's interval, so the transformer sees
      the end frame clean on every pass.

    Earlier windows run as without an end image. The pipeline's latents end with the held frame, which the
    caller drops before decoding. The end latent is the one the pipeline's own code makes where it has one:
    image-to-video's ``prepare_latents`` is handed the end image as its ``last_image`` in the first window and
    encodes it beside the start image, in one batch, as diffusers' ``last_image`` does, so an image shot of one
    window is exactly what diffusers makes (sharing the batch moves the start image's latent by float rounding,
    against the same shot without an end image). The other pipelines have no such code: the end image is
    encoded alone (:func:`encode_end_image`), and their earlier windows are bit for bit those without it.
    """
    import torch

    check_end_frame_code(type(pipeline))
    prepare_latents, generate_timestep_matrix = pipeline.prepare_latents, pipeline.generate_timestep_matrix
    signature = inspect.signature(prepare_latents)
    beside_start = "last_image" in signature.parameters  # image-to-video encodes it with the start image
    end_latent = None if beside_start else encode_end_image(pipeline, end_image)
    state = {"window": 0, "holding": False}

    def prepare_with_end_frame(*args: Any, **kwargs: Any) -> Any:
        nonlocal end_latent
        if end_latent is None:  # image-to-video's first window: its own encoding of the start and end images
            bound = signature.bind(*args, **kwargs)
            bound.arguments["last_image"] = _end_pixels(pipeline, end_image)
            latents, count, condition, prefix = prepare_latents(*bound.args, **bound.kwargs)
            # condition: (start images then end images, channels, 1, h, w); the pipeline takes the first half
            end_latent = condition[condition.shape[0] // 2 :].to(pipeline.transformer.dtype)
            rest = [condition, prefix]
        else:
            # latents: (batch, channels, frames, h, w); count: their frames
            latents, count, *rest = prepare_latents(*args, **kwargs)
        state["window"] += 1
        state["holding"] = state["window"] == windows
        if state["holding"]:
            end = end_latent.to(latents.device).to(latents.dtype)  # (1, channels, 1, h, w)
            latents = torch.cat([latents, end.expand(latents.shape[0], -1, -1, -1, -1)], dim=2)
            count += END_IMAGE_LATENT_FRAMES
        return (latents, count, *rest)

    def schedule_with_end_frame(
        num_latent_frames: int, step_template: torch.Tensor, base_num_latent_frames: int, *rest: Any
    ) -> Any:
        if not state["holding"]:
            return generate_timestep_matrix(num_latent_frames, step_template, base_num_latent_frames, *rest)
        own = num_latent_frames - END_IMAGE_LATENT_FRAMES
        # The window's own frames scheduled as without an end image (rows, prefix, blocks): each pipeline hands
        # a base of at least the window's own length, which is what it schedules a window by (quirk 9's cap).
        steps, index, update, intervals = generate_timestep_matrix(
            own, step_template, min(base_num_latent_frames, own), *rest
        )
        rows = steps.shape[0]
        done = len(step_template) + 1  # a step index past the last: fully denoised
        steps = torch.cat([steps, steps.new_zeros(rows, END_IMAGE_LATENT_FRAMES)], dim=1)  # (rows, frames)
        index = torch.cat([index, index.new_full((rows, END_IMAGE_LATENT_FRAMES), done)], dim=1)
        update = torch.cat([update, update.new_zeros(rows, END_IMAGE_LATENT_FRAMES)], dim=1)
        intervals = [
            (start, end + END_IMAGE_LATENT_FRAMES if end == own else end) for start, end in intervals
        ]
        return steps, index, update, intervals

    saved = {name: pipeline.__dict__.get(name) for name in ("prepare_latents", "generate_timestep_matrix")}
    pipeline.prepare_latents = prepare_with_end_frame
    pipeline.generate_timestep_matrix = schedule_with_end_frame
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(pipeline, name)
            else:
                setattr(pipeline, name, value)
