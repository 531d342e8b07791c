"""Which model: a local folder or a cached hub id, and the SkyReels-V2 pipeline family its folder holds.

A diffusion-forcing folder runs every kind of shot through three pipelines sharing one set of weights
(:data:`DF_PIPELINE_FOR_MODE`); a plain text-to-video or image-to-video folder runs one kind of shot,
in one window (:data:`PLAIN_MODE`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from storyreel.errors import UserError
from storyreel.models import EXAMPLE_MODEL, resolve_model

DIFFUSION_FORCING, TEXT_TO_VIDEO, IMAGE_TO_VIDEO = "diffusion forcing", "text-to-video", "image-to-video"
FAMILIES = {
    "SkyReelsV2DiffusionForcingPipeline": DIFFUSION_FORCING,
    "SkyReelsV2DiffusionForcingImageToVideoPipeline": DIFFUSION_FORCING,
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": DIFFUSION_FORCING,
    "SkyReelsV2Pipeline": TEXT_TO_VIDEO,
    "SkyReelsV2ImageToVideoPipeline": IMAGE_TO_VIDEO,
}
DF_PIPELINE_FOR_MODE = {
    "fresh": "SkyReelsV2DiffusionForcingPipeline",
    "image": "SkyReelsV2DiffusionForcingImageToVideoPipeline",
    "continue": "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
}
PLAIN_MODE = {TEXT_TO_VIDEO: "fresh", IMAGE_TO_VIDEO: "image"}  # the one kind of shot a plain family makes


@dataclass(frozen=True)
class ModelFolder:
    """A local SkyReels-V2 diffusers folder, and the pipeline its model_index.json names."""

    name: str  # as the user wrote it: a hub id or a path
    path: Path
    class_name: str

    @property
    def family(self) -> str:
        return FAMILIES[self.class_name]


DEFAULT_HEAD_DIM = 128  # every SkyReels-V2 release


def head_dim(model: ModelFolder | None) -> int:
    """``model``'s attention head width, or 128 (every release's) when there is no model or no readable config."""
    if model is None:
        return DEFAULT_HEAD_DIM
    try:
        config = json.loads((model.path / "transformer" / "config.json").read_text(encoding="utf-8"))
        return int(config["attention_head_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_HEAD_DIM


def find_model(model: str | None, base_dir: Path | None = None) -> ModelFolder:
    """Resolve a model folder or hub id to a local SkyReels-V2 pipeline folder, never downloading.

    The value is resolved as every model setting is (:func:`storyreel.models.resolve_model`); the folder
    found must be a diffusers pipeline folder of one of the SkyReels-V2 pipelines this generator runs.
    """
    if not model:
        raise UserError(
            "the skyreels generator needs a model: set generation.model in the storyboard or pass --model "
            f"(a diffusers folder, or a hub id such as {EXAMPLE_MODEL})"
        )
    ref = resolve_model(model, base_dir)
    folder = ref.require()
    index = folder / "model_index.json"
    if not index.is_file():
        raise UserError(
            f"model '{model}': {folder} has no model_index.json, so it is not a diffusers pipeline folder; "
            "point to the folder that holds model_index.json (a SkyReels-V2 ...-Diffusers download)"
        )
    class_name = ref.pipeline_class()
    if class_name is None:
        raise UserError(
            f"model '{model}': cannot read the pipeline class from {index}; download the model again or "
            "point to a complete folder"
        )
    if class_name not in FAMILIES:
        raise UserError(
            f"model '{model}' is a {class_name} folder, not a SkyReels-V2 pipeline; the skyreels generator runs "
            f"{', '.join(FAMILIES)} folders, e.g. {EXAMPLE_MODEL}"
        )
    return ModelFolder(name=model, path=folder, class_name=class_name)
