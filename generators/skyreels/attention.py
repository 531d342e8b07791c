"""The attention kernel: which one a render asks for, which ones this machine has, and whether they run here.

Attention is most of SkyReels-V2's work (63-89% of a pass's FLOPs at 540P and 720P), so the kernel decides
most of a step's time. storyreel names five, each one of diffusers' attention backends
(``set_attention_backend``):

=========  ============================  =======================================================  =====
name       diffusers backend             what it is, and what to install                          exact
=========  ============================  =======================================================  =====
``flash3`` ``_flash_3``                  FlashAttention-3 (Hopper GPUs), the ``flash_attn_3``     yes
                                         package built from flash-attention's ``hopper/`` folder
``cudnn``  ``_native_cudnn``             cuDNN's fused attention, through torch's SDPA             yes
``flash``  ``flash``                     FlashAttention-2, ``flash-attn>=2.6.3``                   yes
``sdpa``   ``native``                    torch's scaled_dot_product_attention, as it picks         yes
``sage``   ``sage``                      SageAttention 2, ``sageattention>=2.1.1``: 8-bit (lossy)  no
=========  ============================  =======================================================  =====

``auto`` takes the first exact kernel of :data:`AUTO_ORDER` that is installed and runs correctly on this
GPU (a short probe, compared with float32 attention), and ``sdpa`` on the CPU. The order is a prior (the
kernels' published speeds on H100-class GPUs); ``benchmarks/skyreels_dit.py`` measures it. SageAttention
quantises queries and keys to 8 bits, so it is used only when asked for by name.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storyreel.errors import UserError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Kernel:
    """One attention kernel storyreel can run the transformer with."""

    name: str  # storyreel's name, as the storyboard and the command line write it
    backend: str  # diffusers' AttentionBackendName value
    exact: bool  # False: the kernel approximates attention (quantised inputs)
    package: str | None  # the module that must be importable; None: part of torch
    install: str  # what to install, for messages
    needs_cuda: bool


KERNELS = {
    kernel.name: kernel
    for kernel in (
        Kernel(
            "flash3",
            "_flash_3",
            True,
            "flash_attn_3",
            "FlashAttention-3 (the flash_attn_3 package, built from the hopper/ folder of "
            "github.com/Dao-AILab/flash-attention)",
            True,
        ),
        Kernel("cudnn", "_native_cudnn", True, None, "a CUDA build of torch with cuDNN 9", True),
        Kernel("flash", "flash", True, "flash_attn", "flash-attn>=2.6.3 (pip install flash-attn)", True),
        Kernel("sdpa", "native", True, None, "torch", False),
        Kernel(
            "sage",
            "sage",
            False,
            "sageattention",
            "SageAttention 2 (sageattention>=2.1.1, built from github.com/thu-ml/SageAttention; PyPI's 1.x is "
            "too old)",
            True,
        ),
    )
}
AUTO = "auto"
#: The exact kernels ``auto`` tries on a GPU, fastest first.
AUTO_ORDER = ("flash3", "cudnn", "flash", "sdpa")
PROBE_TOKENS = 256
#: An exact kernel whose bf16 output differs from float32 attention by more than this (relative) is refused.
PROBE_TOLERANCE = 0.02

_probed: dict[tuple[str, str, int], str | None] = {}  # (backend, device, head dim) -> why it fails, or None


def choose_kernel(torch: Any, requested: str, device: torch.device, head_dim: int) -> Kernel:
    """The kernel ``requested`` (a name or ``auto``) resolves to on ``device``, or a UserError saying why
    not and what to install. Runs no model: a kernel is probed on a few hundred random tokens."""
    name = requested.strip().lower()
    if name == AUTO:
        if device.type != "cuda":
            return KERNELS["sdpa"]
        for candidate in AUTO_ORDER:
            if (
                _installed(KERNELS[candidate])
                and _failure(torch, KERNELS[candidate], device, head_dim) is None
            ):
                return KERNELS[candidate]
        return KERNELS["sdpa"]  # probed last: only a broken torch gets here, and sdpa then fails loudly
    if name not in KERNELS:
        raise UserError(
            f"unknown attention kernel '{requested}'; use auto (the fastest exact kernel installed) or one of "
            f"{', '.join(KERNELS)}"
        )
    kernel = KERNELS[name]
    if not _installed(kernel):
        if device.type != "cuda":
            raise UserError(
                f"attention '{name}' needs {kernel.install} on a CUDA GPU; it is not installed here, and this "
                f"render runs on {device.type}, where only sdpa runs; use attention: auto or sdpa"
            )
        raise UserError(
            f"attention '{name}' needs {kernel.install}, which is not installed here; install it, or use "
            "attention: auto"
        )
    if kernel.needs_cuda and device.type != "cuda":
        raise UserError(
            f"attention '{name}' runs on CUDA GPUs only, and this render runs on {device.type}; use attention: "
            "auto or sdpa"
        )
    failure = _failure(torch, kernel, device, head_dim)
    if failure is not None:
        raise UserError(
            f"attention '{name}' does not run on {_gpu_name(torch, device)} ({failure}); use attention: auto, "
            "which picks the fastest kernel that does"
        )
    return kernel


def set_kernel(transformer: Any, kernel: Kernel) -> None:
    """Run every attention layer of ``transformer`` with ``kernel`` (diffusers' attention dispatcher)."""
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # set_attention_backend warns that the feature is experimental
    try:
        transformer.set_attention_backend(kernel.backend)
    finally:
        diffusers_logging.set_verbosity(verbosity)


def kernel_in_use(transformer: Any) -> str:
    """The storyreel name of the kernel the transformer's attention layers are set to run (``sdpa`` when
    none was set: diffusers' default), read back from the layers themselves."""
    by_backend = {kernel.backend: kernel.name for kernel in KERNELS.values()}
    backends = {
        str(getattr(processor._attention_backend, "value", processor._attention_backend) or "native")
        for processor in transformer.attn_processors.values()
    }
    if len(backends) != 1:
        return "mixed: " + ", ".join(sorted(backends))
    (backend,) = backends
    return by_backend.get(backend, backend)


def _installed(kernel: Kernel) -> bool:
    """Whether the kernel's package is importable and diffusers accepts it (its version checks included)."""
    if kernel.package is not None and importlib.util.find_spec(kernel.package) is None:
        return False
    from diffusers.models.attention_dispatch import attention_backend

    try:
        with attention_backend(kernel.backend):  # diffusers' own requirement checks, nothing downloaded
            pass
    except (RuntimeError, ValueError):
        return False
    return True


def _failure(torch: Any, kernel: Kernel, device: torch.device, head_dim: int) -> str | None:
    """Why ``kernel`` does not run correctly on ``device`` at ``head_dim``, or None when it does (cached)."""
    key = (kernel.backend, str(device), head_dim)
    if key not in _probed:
        _probed[key] = _probe(torch, kernel, device, head_dim)
    return _probed[key]


def _probe(torch: Any, kernel: Kernel, device: torch.device, head_dim: int) -> str | None:
    """Run the kernel once on random bf16 queries, keys and values; an exact one must match float32 attention."""
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator("cpu").manual_seed(0)
    # (batch, tokens, heads, head dim), the layout diffusers' dispatcher takes
    query, key, value = (
        torch.randn(1, PROBE_TOKENS, 2, head_dim, generator=generator).to(device, dtype) for _ in range(3)
    )
    try:
        out = dispatch_attention_fn(query, key, value, backend=AttentionBackendName(kernel.backend))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as exc:  # any failure of a foreign kernel means "not on this device"
        return _first_line(exc)
    if not kernel.exact:
        return None
    reference = torch.nn.functional.scaled_dot_product_attention(
        *(x.float().transpose(1, 2) for x in (query, key, value))
    ).transpose(1, 2)
    error = float((out.float() - reference).norm() / reference.norm())
    if not error <= PROBE_TOLERANCE:  # also catches NaN
        return f"its output differs from float32 attention by {error:.1%}"
    return None


def _gpu_name(torch: Any, device: torch.device) -> str:
    if device.type != "cuda":
        return str(device)
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
