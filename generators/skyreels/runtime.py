"""How the transformer runs: the attention kernel, compilation and precision a render's options resolve to.

:func:`resolve_runtime` turns ``GeneratorOptions.attention | compile | precision`` into a
:class:`Runtime` for the device, refusing with a UserError what this machine cannot do (a kernel that is
not installed or does not run here, FP8 without an FP8 GPU), before any prompt is enhanced or step spent.
:func:`apply_runtime` then sets the loaded transformer up that way:

* **attention**: every attention layer runs the chosen kernel (:mod:`.attention`);
* **compile**: the repeated transformer blocks are compiled (diffusers' regional compilation), on by
  default on CUDA. Windows of different lengths share one compiled graph: the token and frame dimensions
  are marked dynamic before the blocks run (``quirks.modulate_per_frame``), so a render compiles once.
  :class:`CompiledGraphs` counts the graphs torch compiles, so recompilation shows;
* **precision**: ``bf16`` is the dtype the options resolve to (bf16 on a GPU, float32 on the CPU, or
  ``--dtype``); ``fp8`` quantises the blocks' linear layers to float8 weights and float8 matrix products
  with per-row scales (torchao's dynamic activation and weight quantisation), on GPUs with FP8 (compute
  capability 8.9 or newer). FP8 is lossy. The VAE stays float32.

Offloaded weights run uncompiled: weights that move around every layer call are left to diffusers' hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storyreel.errors import UserError

from .attention import Kernel, choose_kernel, set_kernel

if TYPE_CHECKING:
    import torch

COMPILE_CHOICES = {
    "auto": None,
    "true": True,
    "on": True,
    "yes": True,
    "false": False,
    "off": False,
    "no": False,
}
PRECISIONS = ("bf16", "fp8")
FP8_CAPABILITY = (8, 9)  # Ada and Hopper: the first GPUs with FP8 tensor cores
FP8_MULTIPLE = 16  # torch's float8 matrix product takes sizes that are multiples of 16


@dataclass(frozen=True)
class Runtime:
    """How the transformer runs on this device: part of every cache key (:attr:`identity`)."""

    device_type: str  # "cuda", "cpu", ...
    dtype: str  # the weights' and activations' dtype outside FP8 layers: "bfloat16", "float32"
    kernel: Kernel
    compile: bool
    fp8: bool

    @property
    def attention(self) -> str:
        return self.kernel.name

    @property
    def precision(self) -> str:
        """``fp8``, or the dtype everything runs in."""
        return "fp8" if self.fp8 else self.dtype

    @property
    def identity(self) -> str:
        """``cuda/bfloat16/flash3/compiled``, ``cuda/bfloat16+fp8/cudnn/compiled``, ``cpu/float32/sdpa/eager``."""
        precision = f"{self.dtype}+fp8" if self.fp8 else self.dtype
        compiled = "compiled" if self.compile else "eager"
        return f"{self.device_type}/{precision}/{self.attention}/{compiled}"


def resolve_runtime(
    torch: Any, options: Any, device: torch.device, dtype: torch.dtype, head_dim: int
) -> Runtime:
    """The :class:`Runtime` that ``options`` (a GeneratorOptions) give on ``device``, or a UserError."""
    dtype_name = str(dtype).removeprefix("torch.")
    fp8 = _wants_fp8(torch, options, device, dtype_name)
    kernel = choose_kernel(torch, options.attention, device, head_dim)
    return Runtime(
        device_type=device.type,
        dtype=dtype_name,
        kernel=kernel,
        compile=_wants_compile(options, device),
        fp8=fp8,
    )


def _wants_compile(options: Any, device: torch.device) -> bool:
    value = str(options.compile).strip().lower()
    if value not in COMPILE_CHOICES:
        raise UserError(f"unknown compile setting '{options.compile}'; use auto, true or false")
    wanted = COMPILE_CHOICES[value]
    import torch

    # set_stance (torch 2.6) runs compiled blocks eagerly once out of memory switches offloading on
    new_enough = hasattr(torch.compiler, "set_stance")
    if wanted is None:  # auto: on CUDA, where compiling pays for itself within a shot
        return device.type == "cuda" and not options.offload and new_enough
    if wanted and not new_enough:
        raise UserError(
            f"compile: true needs torch 2.6 or newer (this is {torch.__version__}); set compile: false"
        )
    if wanted and options.offload:
        raise UserError(
            "compile: true and offload do not go together: storyreel runs offloaded weights uncompiled; "
            "set compile: auto or false, or render without --offload"
        )
    return wanted


def _wants_fp8(torch: Any, options: Any, device: torch.device, dtype_name: str) -> bool:
    precision = str(options.precision).strip().lower()
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{options.precision}'; use bf16 or fp8")
    if precision == "bf16":
        return False
    if device.type != "cuda":
        raise UserError(
            f"precision fp8 needs a CUDA GPU with FP8 (compute capability 8.9 or newer: L4, L40S, H100, H200), "
            f"and this render runs on {device.type}; use precision: bf16"
        )
    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < FP8_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise UserError(
            f"precision fp8 needs a GPU with FP8 (compute capability 8.9 or newer), and {name} is "
            f"{capability[0]}.{capability[1]}; use precision: bf16"
        )
    if options.offload:
        raise UserError(
            "precision fp8 and offload do not go together: float8 weights stay on the GPU; render in bf16 with "
            "--offload, or in fp8 without it (float8 weights take half the memory)"
        )
    if dtype_name != "bfloat16":
        raise UserError(
            f"precision fp8 runs the transformer's other layers in bfloat16, not {dtype_name}; leave --dtype unset "
            "or set it to bfloat16"
        )
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        raise UserError(
            "precision fp8 needs torchao (float8 weights and matrix products), which is not installed; "
            "install it with: pip install torchao"
        ) from None
    return True


def apply_runtime(transformer: Any, runtime: Runtime, device: torch.device | None = None) -> list[str]:
    """Set ``transformer`` up to run as ``runtime`` says; returns notes for the manifest. It is on its device
    already, or, for FP8, may still be on the CPU with ``device`` given: then each block comes to the device and
    is quantised there, one at a time (:func:`quantise_fp8`).

    Quantisation comes before compilation, so that the compiled blocks trace the float8 layers.
    """
    set_kernel(transformer, runtime.kernel)
    notes = []
    if runtime.fp8:
        quantised, kept = quantise_fp8(transformer, device)
        notes.append(
            f"fp8: {quantised} linear layers of the blocks in float8" + (f", {kept} kept" if kept else "")
        )
    if runtime.compile:
        transformer.compile_repeated_blocks()
    return notes


def quantise_fp8(transformer: Any, device: torch.device | None = None) -> tuple[int, int]:
    """Quantise the transformer blocks' linear layers to float8 weights with dynamic float8 activations
    (per-row scales). Returns (layers quantised, layers kept in their dtype because a size is not a multiple
    of 16). Embeddings, the output projection and the norms keep their precision.

    With ``device``, the transformer is moved there on the way: everything outside the blocks at once, then
    each block in turn, quantised as soon as it arrives. The device then never holds more than one block in
    bf16, so DF-14B (28 GB of bf16 weights, 14 GB once quantised) loads on a 24 GB GPU."""
    import torch
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    def fits(module: torch.nn.Module, _name: str = "") -> bool:
        return (
            isinstance(module, torch.nn.Linear)
            and module.in_features % FP8_MULTIPLE == 0
            and module.out_features % FP8_MULTIPLE == 0
        )

    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    blocks = transformer.blocks
    if device is not None:
        for name, child in transformer.named_children():
            if name != "blocks":
                child.to(device)
        for tensor in (*transformer.parameters(recurse=False), *transformer.buffers(recurse=False)):
            tensor.data = tensor.data.to(device)
    chosen = kept = 0
    for block in blocks:
        if device is not None:
            block.to(device)
        layers = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
        chosen += sum(map(fits, layers))
        kept += sum(not fits(m) for m in layers)
        quantize_(block, config, filter_fn=fits)
    return chosen, kept


class CompiledGraphs:
    """How many graphs torch.compile has compiled in this process: read before and after a call, the
    difference is what that call compiled (0 once a render's blocks are compiled; more is recompilation)."""

    @staticmethod
    def total() -> int:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
