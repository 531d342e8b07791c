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

How the ranks share attention (:func:`attention_split`): Ulysses gives each rank whole heads, so it takes
the largest part of the ranks that divides the heads; the ranks left over pass key/value blocks round a
ring. Ring attention merges partial results by their log-sum-exp, which only some kernels return
(:data:`RING_KERNELS`: not torch's SDPA, so not on the CPU); :func:`split_kernel` picks or checks the
kernel before any model loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storyreel.errors import GenerationError, UserError

from .attention import AUTO, KERNELS, choose_kernel

if TYPE_CHECKING:
    import torch

    from .model_folder import ModelFolder

__all__ = [
    "AttentionSplit",
    "attention_split",
    "context_parallel_plan",
    "enable_sequence_parallel",
    "per_token_modulation",
    "sequence_split",
    "split_kernel",
]

#: The splits a render offers (``--gpus-per-shot``).
RANKS = (1, 2, 4, 8)
#: storyreel's kernels that diffusers 0.42.1 runs on a split sequence, in the order ``auto`` tries them (sage is
#: lossy: only by name). FlashAttention-3's backend (``_flash_3``) has no context-parallel form.
SPLIT_KERNELS = ("cudnn", "flash", "sdpa", "sage")
#: Of those, the ones that return the log-sum-exp ring attention needs: diffusers' SDPA raises on
#: ``return_lse``, and it is the only kernel that runs on the CPU.
RING_KERNELS = ("cudnn", "flash", "sage")


@dataclass(frozen=True)
class AttentionSplit:
    """How the ranks of one shot share its attention: a ``ulysses`` x ``ring`` grid of ranks."""

    ulysses: int
    ring: int

    @property
    def ranks(self) -> int:
        return self.ulysses * self.ring

    @property
    def identity(self) -> str:
        """Part of a split shot's cache key: ``ulysses2``, ``ring2``, ``ulysses4xring2``."""
        return "x".join(f"{kind}{degree}" for kind, degree in self._parts())

    def __str__(self) -> str:
        return " x ".join(f"{kind} {degree}" for kind, degree in self._parts())

    def _parts(self) -> list[tuple[str, int]]:
        return [
            (kind, degree) for kind, degree in (("ulysses", self.ulysses), ("ring", self.ring)) if degree > 1
        ]


def attention_split(heads: int, ranks: int, *, ring: bool = False) -> AttentionSplit:
    """Split a transformer of ``heads`` attention heads over ``ranks`` processes: Ulysses over the largest part
    of the ranks that divides the heads, ring attention over the rest (all of them with ``ring``).

    >>> print(attention_split(12, 2))  # DF-1.3B on 2 GPUs: 6 heads each
    ulysses 2
    >>> print(attention_split(12, 8))  # DF-1.3B on 8 GPUs: 4 Ulysses groups of 3 heads, 2 rings
    ulysses 4 x ring 2
    >>> print(attention_split(40, 8))  # DF-14B on 8 GPUs: 5 heads each
    ulysses 8
    >>> attention_split(3, 2), attention_split(12, 2, ring=True).identity
    (AttentionSplit(ulysses=1, ring=2), 'ring2')
    """
    if heads < 1 or ranks < 1:
        raise ValueError(f"heads and ranks must be at least 1, not {heads} and {ranks}")
    ulysses = 1 if ring else math.gcd(heads, ranks)
    return AttentionSplit(ulysses=ulysses, ring=ranks // ulysses)


def attention_heads(model: ModelFolder) -> int | None:
    """The attention heads of ``model``'s transformer, or None when its config cannot be read."""
    try:
        config = json.loads((model.path / "transformer" / "config.json").read_text(encoding="utf-8"))
        return int(config["num_attention_heads"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def split_kernel(
    torch: Any, requested: str, device: torch.device, heads: int | None, ranks: int, head_dim: int, model: str
) -> str:
    """The attention kernel (storyreel's name) a shot of ``model`` (``heads`` attention heads; None: unknown
    until it loads) split over ``ranks`` processes runs with: ``requested`` when it can run the split,
    ``auto``'s pick among those that can, or a UserError naming what to choose. Runs no model: on a GPU,
    candidates are probed as :func:`~.attention.choose_kernel` probes them.

    >>> import torch
    >>> split_kernel(torch, "auto", torch.device("cpu"), 12, 2, 128, "DF-1.3B")
    'sdpa'
    """
    name = requested.strip().lower()
    if heads is None:  # checked when the transformer is split (enable_sequence_parallel)
        return name
    split = attention_split(heads, ranks)
    *others, last = [str(n) for n in RANKS if heads % n == 0]
    fits = f"{', '.join(others)} or {last}" if others else last
    if split.ring > 1 and device.type != "cuda":
        raise UserError(
            f"--gpus-per-shot {ranks} does not divide the {heads} attention heads of model '{model}' (each "
            f"rank of Ulysses attention holds whole heads), so each shot would be split as {split}; ring attention "
            f"needs a kernel that returns the log-sum-exp ({', '.join(RING_KERNELS[:2])}), and none runs on the "
            f"{device.type}; use --gpus-per-shot {fits}"
        )
    usable = RING_KERNELS if split.ring > 1 else SPLIT_KERNELS
    if name == AUTO:
        candidates: tuple[str, ...] = ("cudnn", "flash") if split.ring > 1 else ("cudnn", "flash", "sdpa")
        if device.type != "cuda":
            candidates = ("sdpa",)
        for candidate in candidates:
            try:
                choose_kernel(torch, candidate, device, head_dim)
            except UserError:
                continue
            return candidate
        raise UserError(
            f"--gpus-per-shot {ranks} splits each shot of model '{model}' as {split}, which needs the cudnn "
            "or flash attention kernel, and neither runs on this GPU; install flash-attn (pip install flash-attn), "
            f"or use --gpus-per-shot {fits}"
        )
    if name in KERNELS and name not in usable:
        if split.ring > 1:
            raise UserError(
                f"attention '{name}' cannot run ring attention, which --gpus-per-shot {ranks} needs for the "
                f"{heads} attention heads of model '{model}' (split as {split}): it does not return the "
                "log-sum-exp; use --attention cudnn or --attention flash (or auto), or --gpus-per-shot "
                f"{fits}"
            )
        raise UserError(
            f"attention '{name}' cannot run on a sequence split over processes (--gpus-per-shot {ranks}): "
            "diffusers' backend for it has no context-parallel form; use --attention cudnn or --attention flash "
            "(or auto)"
        )
    return name


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


def enable_sequence_parallel(transformer: Any, degree: int, *, ring: bool = False) -> AttentionSplit:
    """Split ``transformer``'s sequence over the ``degree`` ranks of the initialised process group.

    Ulysses over the part of the ranks that divides the attention heads, ring attention over the rest (or
    all ring, with ``ring``): :func:`attention_split`. Ring attention needs a kernel that returns the
    log-sum-exp (:data:`RING_KERNELS`: not the CPU's). Returns the split. Call after
    ``quirks.modulate_per_frame`` and after the attention kernel is set: diffusers' hooks wrap the forward
    the transformer has then, and it refuses a kernel without a context-parallel form.
    """
    import torch
    from diffusers import ContextParallelConfig
    from torch.distributed.device_mesh import init_device_mesh

    if transformer.config.num_frame_per_block > 1:
        raise ValueError("sequence parallelism does not split a block-causal mask (num_frame_per_block > 1)")
    group = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if group != degree:
        raise GenerationError(
            f"splitting a shot over {degree} processes needs a torch.distributed group of {degree} (this process "
            f"is in {'one of ' + str(group) if group > 1 else 'none'}); render --gpus-per-shot starts one"
        )
    split = attention_split(transformer.config.num_attention_heads, degree, ring=ring)
    # The grid of ranks on the transformer's own device kind: a CPU transformer's collectives go over gloo
    # even on a machine with GPUs.
    mesh = init_device_mesh(
        transformer.device.type, (split.ring, split.ulysses), mesh_dim_names=("ring", "ulysses")
    )
    config = ContextParallelConfig(ulysses_degree=split.ulysses, ring_degree=split.ring, mesh=mesh)
    with _an_accelerator_counted(torch):
        transformer.enable_parallelism(config=config, cp_plan=context_parallel_plan(len(transformer.blocks)))
    return split


@contextmanager
def _an_accelerator_counted(torch: Any) -> Iterator[None]:
    """diffusers maps a rank to ``rank % torch.accelerator.device_count()``, which divides by zero on a machine
    without accelerators: count one there while the split is set up (the mesh given decides the devices)."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    counted = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = counted


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
