"""One shot's transformer over several GPUs: sequence (context) parallelism through diffusers' engine.

diffusers 0.42.1 splits a transformer's token sequence over the ranks of a ``torch.distributed`` group
when the model has a *context-parallel plan*: which module inputs are split along which dimension, and
which output is gathered back. Attention then exchanges heads for tokens (Ulysses: an all-to-all, each
rank attending over the whole sequence for ``heads / degree`` heads) or passes key/value blocks round
the ranks (ring). ``WanTransformer3DModel`` has such a plan; ``SkyReelsV2Transformer3DModel`` has none,
so :func:`context_parallel_plan` writes one for it, and :func:`enable_sequence_parallel` applies it.

The plan for the SkyReels-V2 transformer, as the generator runs it (``quirks.modulate_per_frame``):

- ``rope``: the rotary tables, (1, tokens, 1, head dim) each, are split along the tokens, so every rank
  rotates the queries and keys of its own tokens;
- ``blocks.0``: the tokens, (batch, tokens, width), are split before the first block; later blocks get
  the split tokens from the one before;
- ``blocks.i`` (every block): the diffusion-forcing timestep modulation must be split with the tokens.
  It is held per latent frame, (batch, frames, 1, 6, width), but a window's latent frame count is often
  not a multiple of the degree (97 frames are 25 latent frames), so an even split of the tokens does not
  fall on frame boundaries. When the sequence is split, the transformer hands its blocks the modulation
  per token instead, (batch, 6, tokens, width) (:func:`per_token_modulation`), which is split along the
  tokens exactly as they are: every block then sees the rows of its own tokens only;
- ``norm_out``: the tokens are gathered after the output norm, before the per-frame shift and scale,
  so the rest of the forward runs on the whole sequence.

Every rank must call the transformer with the same inputs (the same seed); every rank gets the whole
output. A block-causal mask (asynchronous diffusion forcing with causal attention, which the generator
never builds: quirk 1) is not split, so the plan refuses a transformer with ``num_frame_per_block > 1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["context_parallel_plan", "enable_sequence_parallel", "per_token_modulation", "sequence_split"]


def context_parallel_plan(num_layers: int) -> dict[str, Any]:
    """The context-parallel plan of a SkyReels-V2 transformer of ``num_layers`` blocks (see the module docstring)."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    def tokens(expected_dims: int, split_dim: int = 1, split_output: bool = False) -> Any:
        return ContextParallelInput(
            split_dim=split_dim, expected_dims=expected_dims, split_output=split_output
        )

    plan: dict[str, Any] = {
        "rope": {0: tokens(4, split_output=True), 1: tokens(4, split_output=True)},
        "norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }
    for index in range(num_layers):
        # (batch, 6, tokens, width): the modulation per token, split along its tokens (dimension 2)
        plan[f"blocks.{index}"] = {"temb": tokens(4, split_dim=2)}
    plan["blocks.0"]["hidden_states"] = tokens(3)
    return plan


def enable_sequence_parallel(transformer: Any, degree: int, *, ring: bool = False) -> str:
    """Split ``transformer``'s sequence over ``degree`` ranks of the initialised process group.

    Ulysses when the attention heads divide by ``degree``, else (or when ``ring``) ring attention, which
    needs a kernel that returns the log-sum-exp (flash, cuDNN: not the CPU's). Returns which was chosen.
    Call after ``quirks.modulate_per_frame``: diffusers' hooks wrap the forward the transformer has then.
    """
    from diffusers import ContextParallelConfig

    if transformer.config.num_frame_per_block > 1:
        raise ValueError("sequence parallelism does not split a block-causal mask (num_frame_per_block > 1)")
    heads = transformer.config.num_attention_heads
    kind = "ring" if ring or heads % degree else "ulysses"
    config = (
        ContextParallelConfig(ring_degree=degree)
        if kind == "ring"
        else ContextParallelConfig(ulysses_degree=degree)
    )
    transformer.enable_parallelism(config=config, cp_plan=context_parallel_plan(len(transformer.blocks)))
    return kind


def sequence_split(transformer: Any) -> bool:
    """Whether ``transformer``'s sequence is split over ranks (:func:`enable_sequence_parallel` was called)."""
    config = getattr(transformer, "_parallel_config", None)
    return config is not None and getattr(config, "context_parallel_config", None) is not None


def per_token_modulation(modulation: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """(batch, frames, 1, 6, width) per latent frame -> (batch, 6, frames * tokens_per_frame, width) per token.

    The layout diffusers' own blocks take, and the one the plan splits along its tokens.
    """
    batch, frames, _, six, width = modulation.shape
    per_token = modulation.expand(batch, frames, tokens_per_frame, six, width).flatten(1, 2)  # (b, n, 6, w)
    return per_token.transpose(1, 2).contiguous()
