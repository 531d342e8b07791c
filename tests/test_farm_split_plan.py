"""How a shot's attention is split over ``--gpus-per-shot`` ranks, and which kernels may run the split.

Ulysses gives each rank whole heads; the ranks left over form rings, which need a kernel that returns the
log-sum-exp. These are decided before any model loads, so they are checked here without one (a GPU device
is only named: nothing runs on it).
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from storyreel.errors import UserError  # noqa: E402
from storyreel.generators.skyreels.parallel import attention_split, split_kernel  # noqa: E402

CUDA = torch.device("cuda")  # a device name: no kernel is probed by the cases below


@pytest.mark.parametrize("heads", [1, 2, 3, 5, 12, 16, 40])
@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
def test_ulysses_takes_the_largest_part_of_the_ranks_that_divides_the_heads(heads: int, ranks: int) -> None:
    split = attention_split(heads, ranks)
    assert split.ulysses * split.ring == ranks == split.ranks
    assert heads % split.ulysses == 0
    assert split.ulysses == max(d for d in range(1, ranks + 1) if ranks % d == 0 and heads % d == 0)
    assert split.ulysses == math.gcd(heads, ranks)


def test_ring_forced_puts_every_rank_in_the_ring() -> None:
    assert attention_split(12, 4, ring=True).identity == "ring4"
    assert str(attention_split(12, 8)) == "ulysses 4 x ring 2"


def test_a_ring_part_refuses_sdpa_and_names_the_kernels_that_can() -> None:
    with pytest.raises(UserError) as error:
        split_kernel(torch, "sdpa", CUDA, 12, 8, 128, "DF-1.3B")
    assert str(error.value) == (
        "attention 'sdpa' cannot run ring attention, which --gpus-per-shot 8 needs for the 12 attention heads of "
        "model 'DF-1.3B' (split as ulysses 4 x ring 2): it does not return the log-sum-exp; use --attention "
        "cudnn or --attention flash (or auto), or --gpus-per-shot 1, 2 or 4"
    )
    assert split_kernel(torch, "cudnn", CUDA, 12, 8, 128, "DF-1.3B") == "cudnn"
    assert split_kernel(torch, "sdpa", CUDA, 12, 4, 128, "DF-1.3B") == "sdpa"  # Ulysses alone: any kernel


def test_flash3_cannot_run_any_split() -> None:
    with pytest.raises(UserError, match="attention 'flash3' cannot run on a sequence split over processes"):
        split_kernel(torch, "flash3", CUDA, 40, 2, 128, "DF-14B")


def test_a_ring_part_on_the_cpu_is_refused_whatever_the_kernel() -> None:
    for attention in ("auto", "sdpa", "cudnn"):
        with pytest.raises(UserError, match="none runs on the cpu; use --gpus-per-shot 1, 2 or 4$"):
            split_kernel(torch, attention, torch.device("cpu"), 12, 8, 128, "DF-1.3B")
    assert split_kernel(torch, "auto", torch.device("cpu"), 12, 4, 128, "DF-1.3B") == "sdpa"
