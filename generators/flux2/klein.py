"""FLUX.2 [klein] as a keyframe model: ``Flux2KleinPipeline`` of diffusers 0.42.1.

What the pipeline does with its arguments, and what this backend does about it:

* ``image=[...]``: reference images, each VAE-encoded and appended to the latent sequence as extra
  tokens (so attention grows with every reference). Black Forest Labs documents up to 4 for klein;
  :attr:`Flux2KleinKeyframes.max_references` says so to the storyboard checks. A reference under 64 pixels
  a side is refused by the pipeline, so a smaller one is enlarged first; one over a megapixel is shrunk by
  the pipeline itself.
* ``height``/``width`` must be multiples of twice the VAE's scale factor (16 for the released model): the
  picture is drawn at the film's size rounded up to that, then fitted to the film exactly.
* The text encoder is a Qwen3 causal LM whose hidden states at a few layers are stacked into the prompt
  embedding (``text_encoder_out_layers``, 9/18/27 of Qwen3-4B's 36 layers): the transformer's
  ``joint_attention_dim`` is that many times the encoder's width. The layers are chosen here from the two
  configs, evenly spaced, which gives 9/18/27 for the released model and works for any smaller one.
* The distilled klein models ignore guidance (``is_distilled``): guidance 1.0 and 4 steps are their use.
"""

from __future__ import annotations

import gc
import math
from typing import Any, ClassVar

import numpy as np

from storyreel.errors import MissingExtra, ModelNotFound, UserError
from storyreel.generators.skyreels.stack import pick_device, quiet_loading
from storyreel.keyframes import KeyframeModel, KeyframeOptions, KeyframeRequest, fitted
from storyreel.models import resolve_model

PIPELINE = "Flux2KleinPipeline"
MIN_REFERENCE_SIDE = 64  # the pipeline's check_image_input refuses smaller sides
EXTRA = "skyreels"  # the same model stack (torch, diffusers, transformers) as the video generator


class Flux2KleinKeyframes(KeyframeModel):
    """Keyframes drawn by FLUX.2 [klein] (4B or 9B) from the shot's prompt and its characters' references."""

    name = "flux2"
    version = "1"
    pipeline_classes: ClassVar[tuple[str, ...]] = (PIPELINE,)
    max_references: ClassVar[int] = 4

    def __init__(self, options: KeyframeOptions):
        super().__init__(options)
        torch, diffusers = _import_stack()
        if options.model is None:
            raise UserError("the flux2 keyframe model needs a model; set keyframes.model")
        folder = resolve_model(options.model, options.base_dir).require()
        found = resolve_model(options.model, options.base_dir).pipeline_class()
        if found != PIPELINE:
            raise ModelNotFound(
                f"keyframe model '{options.model}' ({folder}) holds a {found or 'folder without model_index.json'}, "
                f"not a {PIPELINE}; name a FLUX.2 [klein] diffusers folder or hub id"
            )
        self.torch = torch
        self.device = pick_device(torch, options.device)
        self.dtype = _pick_dtype(torch, options.dtype, self.device)
        pipe = self._load(diffusers, folder, options)
        self._use(pipe)

    @classmethod
    def from_pipeline(cls, pipe: Any, options: KeyframeOptions) -> Flux2KleinKeyframes:
        """A keyframe model around a ``Flux2KleinPipeline`` built elsewhere (benchmarks build one with random
        weights of the released size), moved to the options' device."""
        torch, _ = _import_stack()
        self = cls.__new__(cls)
        KeyframeModel.__init__(self, options)
        self.torch = torch
        self.device = pick_device(torch, options.device)
        self.dtype = pipe.transformer.dtype
        self._use(pipe)
        return self

    def _load(self, diffusers: Any, folder: Any, options: KeyframeOptions) -> Any:
        try:
            with quiet_loading():
                return diffusers.Flux2KleinPipeline.from_pretrained(
                    folder, dtype=self.dtype, local_files_only=True
                )
        except OSError as exc:
            raise ModelNotFound(
                f"keyframe model '{options.model}': {folder} is incomplete or unreadable ({exc}); download it "
                "again (hf download <id>) or point to a complete folder"
            ) from exc

    def _use(self, pipe: Any) -> None:
        self.pipe: Any = pipe
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.layers = text_layers(
            self.pipe.text_encoder.config.num_hidden_layers,
            self.pipe.text_encoder.config.hidden_size,
            self.pipe.transformer.config.joint_attention_dim,
        )

    @classmethod
    def identity(cls, options: KeyframeOptions) -> str:
        """The device kind and precision: a bf16 picture on a GPU is not the float32 one a CPU draws."""
        device = options.device or ("cuda" if _cuda_available() else "cpu")
        kind = device.split(":")[0]
        return f"{kind}/{options.dtype or ('float32' if kind == 'cpu' else 'bfloat16')}"

    def make(self, request: KeyframeRequest) -> np.ndarray:
        from PIL import Image

        torch = self.torch
        references = []
        for path in request.references:
            with Image.open(path) as opened:
                picture = opened.convert("RGB")
            references.append(_at_least(picture, MIN_REFERENCE_SIDE))
        multiple = self.pipe.vae_scale_factor * 2
        width = math.ceil(request.width / multiple) * multiple
        height = math.ceil(request.height / multiple) * multiple
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        result = self.pipe(
            image=references or None,
            prompt=request.prompt,
            height=height,
            width=width,
            num_inference_steps=request.steps,
            guidance_scale=1.0,
            generator=generator,
            output_type="pil",
            text_encoder_out_layers=self.layers,
        )
        return fitted(result.images[0], request.width, request.height)

    def close(self) -> None:
        """Drop the pipeline and give its memory back to the device, before the video model loads."""
        pipe = getattr(self, "pipe", None)
        if pipe is None:
            return
        self.pipe = None
        del pipe
        gc.collect()
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def text_layers(encoder_layers: int, encoder_width: int, joint_width: int) -> tuple[int, ...]:
    """The text encoder's hidden-state layers whose stack is the prompt embedding: as many as the
    transformer's text width holds, evenly spaced through the encoder.

    >>> text_layers(36, 2560, 7680)
    (9, 18, 27)
    >>> text_layers(3, 16, 48)
    (1, 2, 3)
    """
    count = joint_width // encoder_width
    if count < 1 or count * encoder_width != joint_width:
        raise UserError(
            f"the keyframe model's transformer reads text {joint_width} wide, not a multiple of its text "
            f"encoder's width {encoder_width}; the folder's parts do not belong together"
        )
    if count >= encoder_layers:  # too few layers to space out: the last ones
        return tuple(range(max(1, encoder_layers - count + 1), encoder_layers + 1))
    return tuple(round(encoder_layers * (i + 1) / (count + 1)) for i in range(count))


def _at_least(picture: Any, side: int) -> Any:
    from PIL import Image

    short = min(picture.size)
    if short >= side:
        return picture
    scale = side / short
    size = (max(side, round(picture.size[0] * scale)), max(side, round(picture.size[1] * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS)


def _import_stack() -> tuple[Any, Any]:
    try:
        import diffusers
        import torch
        import transformers  # noqa: F401  (the text encoder's library: fail here, not mid-load)
        from diffusers import Flux2KleinPipeline  # noqa: F401
    except ImportError as exc:
        package = (exc.name or "diffusers").split(".")[0]
        raise MissingExtra(EXTRA, package, "the flux2 keyframe model") from exc
    return torch, diffusers


def _cuda_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _pick_dtype(torch: Any, requested: str | None, device: Any) -> Any:
    if requested is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    names = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}
    names |= {"float32": "float32", "fp32": "float32"}
    name = names.get(requested.lower())
    if name is None:
        raise UserError(f"unknown dtype '{requested}'; use bfloat16, float16 or float32")
    return getattr(torch, name)
