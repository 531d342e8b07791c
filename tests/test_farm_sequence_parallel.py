"""One shot's transformer split over two processes (``--gpus-per-shot 2``) gives what one process gives.

Two CPU processes joined by gloo run the tiny SkyReels-V2 transformer under diffusers' context-parallel
engine with storyreel's plan (``generators/skyreels/parallel.py``), Ulysses attention, on the inputs a
diffusion-forcing window gets (a timestep per latent frame, the fps conditioning), with the per-frame
modulation the generator installs. Ring attention needs a kernel that returns the log-sum-exp, which the
CPU's does not: it is checked on GPUs only (benchmarks/gpu_suite.sh).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _inputs(frames: int) -> dict:
    """A window's transformer inputs: latents of 64x64 pixels (4x4 tokens a frame), a timestep per frame."""
    generator = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 16, frames, 8, 8, generator=generator),
        "timestep": torch.tensor([[999, 999, 750, 500, 250, 0, 0][:frames]]).long(),
        "encoder_hidden_states": torch.randn(1, 7, 32, generator=generator),
        "enable_diffusion_forcing": True,
        "fps": [0],
        "return_dict": False,
    }


def _rank(rank: int, port: int, folder: str, frames: int, out: str, ring: bool = False) -> None:
    """One of the two processes: the whole transformer here, then its share of the split one (on GPU ``rank``
    when there are GPUs)."""
    import torch.distributed as dist
    from diffusers import SkyReelsV2Transformer3DModel

    from storyreel.generators.skyreels.parallel import enable_sequence_parallel
    from storyreel.generators.skyreels.quirks import keep_attention_bidirectional, modulate_per_frame

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    # Ring attention runs on a kernel that returns the log-sum-exp (cuDNN, flash), in bf16 as on a render's GPUs
    dtype = torch.bfloat16 if ring else torch.float32
    try:
        transformer = (
            SkyReelsV2Transformer3DModel.from_pretrained(Path(folder) / "transformer")
            .eval()
            .to(device, dtype)
        )
        keep_attention_bidirectional(transformer)
        modulate_per_frame(transformer)
        if ring:
            from storyreel.generators.skyreels.attention import KERNELS, set_kernel
            from storyreel.generators.skyreels.parallel import split_kernel

            head_dim = transformer.config.attention_head_dim  # one head below: a split that is all ring
            set_kernel(transformer, KERNELS[split_kernel(torch, "auto", device, 1, 2, head_dim, "tiny")])
        inputs = {
            k: v.to(device, dtype if v.is_floating_point() else v.dtype) if isinstance(v, torch.Tensor) else v
            for k, v in _inputs(frames).items()
        }
        with torch.no_grad():
            whole = transformer(**inputs)[0]
            split = enable_sequence_parallel(transformer, 2, ring=ring)
            parted = transformer(**inputs)[0]
        if rank == 0:
            torch.save({"whole": whole.cpu(), "split": parted.cpu(), "kind": str(split)}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("frames", [4, 5], ids=["frames-divide", "frames-do-not-divide"])
def test_ulysses_over_two_processes_matches_one(frames: int, tmp_path: Path) -> None:
    if torch.cuda.is_available() and torch.cuda.device_count() < 2:
        pytest.skip("one GPU: two processes would share it")
    import torch.multiprocessing as mp
    from tiny_skyreels import build_tiny_skyreels

    folder = build_tiny_skyreels(tmp_path / "df")
    out = tmp_path / "outputs.pt"
    mp.spawn(_rank, args=(_free_port(), str(folder), frames, str(out)), nprocs=2, join=True)
    result = torch.load(out)
    assert result["kind"] == "ulysses 2"
    assert result["whole"].shape == (1, 16, frames, 8, 8)
    # 5 latent frames of 16 tokens: 40 tokens a process, splitting frame 3 down the middle
    torch.testing.assert_close(result["split"], result["whole"], rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_ring_over_two_gpus_matches_one(tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("ring attention over two ranks needs two GPUs")
    import torch.multiprocessing as mp
    from tiny_skyreels import build_tiny_skyreels

    folder = build_tiny_skyreels(tmp_path / "df")
    out = tmp_path / "outputs.pt"
    mp.spawn(_rank, args=(_free_port(), str(folder), 5, str(out), True), nprocs=2, join=True)
    result = torch.load(out)
    assert result["kind"] == "ring 2"
    # bf16, and the ring merges partial attention in another order than one kernel call sums it
    torch.testing.assert_close(result["split"].float(), result["whole"].float(), rtol=3e-2, atol=3e-2)
