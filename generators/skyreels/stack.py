"""What the generator runs on: the model libraries it needs, and the device and precision it runs them at."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from storyreel.errors import MissingExtra, UserError

if TYPE_CHECKING:
    import torch

EXTRA = "skyreels"
DIFFUSERS_VERSION = "0.42.1"  # the quirks were measured in this version; pyproject pins it
STACK = ("torch", "diffusers", "transformers", "ftfy")  # ftfy: the pipelines clean prompts with it
DTYPES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


def first_missing_package() -> str | None:
    """The first package of the model stack that is not installed, found without importing any of them."""
    for package in STACK:
        if importlib.util.find_spec(package) is None:
            return package
    return None


def import_stack() -> tuple[Any, Any]:
    """torch and diffusers, or MissingExtra naming what to install (a too-old diffusers counts as missing)."""
    try:
        import diffusers
        import torch
        import transformers  # noqa: F401  (the text encoder's library: fail here, not mid-load)
        from diffusers import SkyReelsV2DiffusionForcingVideoToVideoPipeline  # noqa: F401
    except ImportError as exc:
        package = (exc.name or "diffusers").split(".")[0]
        wanted = f"diffusers=={DIFFUSERS_VERSION}" if package == "diffusers" else package
        raise MissingExtra(EXTRA, wanted, "the skyreels generator") from exc
    return torch, diffusers


def pick_device(torch: Any, requested: str | None) -> torch.device:
    """The device asked for (``--device``), or CUDA when torch sees a GPU and the CPU otherwise."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device '{requested}'; use cuda, cuda:N or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{requested}' asked for, but torch sees no CUDA GPU; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UserError(
            f"device '{requested}' asked for, but torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1}); "
            "use one of those"
        )
    other = getattr(torch.backends, device.type, None) if device.type not in ("cpu", "cuda") else None
    if other is not None and hasattr(other, "is_available") and not other.is_available():
        raise UserError(f"device '{requested}' asked for, but torch cannot use it here; use --device cpu")
    return device


def pick_dtype(torch: Any, requested: str | None, device: torch.device) -> torch.dtype:
    """The precision asked for (``--dtype``), or bf16 on an accelerator and float32 on the CPU."""
    if requested is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    name = DTYPES.get(requested.lower())
    if name is None:
        raise UserError(f"unknown dtype '{requested}'; use bfloat16, float16 or float32")
    return getattr(torch, name)


def dtype_name(dtype: torch.dtype) -> str:
    """``bfloat16`` for ``torch.bfloat16``: how manifests and cache keys name a precision."""
    return str(dtype).removeprefix("torch.")


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' loading bars (the caller's progress reports loading instead); every
    backend on this stack loads under it."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    shown = [lib.is_progress_bar_enabled() for lib in (diffusers_logging, transformers_logging)]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for lib, was_shown in zip((diffusers_logging, transformers_logging), shown, strict=True):
            if was_shown:
                lib.enable_progress_bar()
