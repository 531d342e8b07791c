"""The plan's estimate of what a film costs: its transformer passes and, when every model's size is known,
its FLOPs, its time on one H100 and each shot's share of it.

Each shot's cost (:meth:`Estimate.costs`: H100 seconds, else transformer passes) is what the critical path,
``plan --workers``' estimated wall time (:mod:`storyreel.schedule`) and the cluster render's order of shots
are measured in. The time is a rough one: the transformer's FLOPs (:func:`storyreel.frames.schedule_flops`)
at ``ASSUMED_MFU`` of an H100's bf16 peak; a model not on this machine is sized from its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from .frames import schedule_flops
from .models import ModelRef, resolve_model

if TYPE_CHECKING:
    from .plan import ShotPlan
    from .storyboard import Storyboard

H100_BF16_PEAK_TFLOPS = 989.0
ASSUMED_MFU = 0.4


class Estimate(BaseModel):
    """What a film's transformer costs, summed over its shots, and each shot's share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dit_passes: int
    transformer_tflop: float | None = Field(description="transformer FLOPs for the whole film, in 10^12")
    h100_minutes: float | None = Field(description="rough time on one H100 at 40% of its bf16 peak")
    architecture: str | None
    shot_seconds: dict[str, float] | None = Field(
        None, description="each shot's rough H100 seconds, when the transformer's size is known"
    )

    def costs(self, passes: Mapping[str, int]) -> dict[str, float]:
        """Each shot's cost, given each shot's transformer ``passes`` (in the order given): H100 seconds when
        the transformer's size is known, else its passes (the unit the critical path and
        ``estimated_seconds`` are measured in).

        >>> Estimate(dit_passes=90, transformer_tflop=None, h100_minutes=None, architecture=None).costs(
        ...     {"glide": 60, "dip": 30}
        ... )
        {'glide': 60.0, 'dip': 30.0}
        """
        seconds = self.shot_seconds
        return {s: seconds[s] if seconds is not None else float(count) for s, count in passes.items()}


def estimate_film(board: Storyboard, plans: list[ShotPlan]) -> tuple[Estimate, list[str]]:
    """Transformer passes, and FLOPs and H100 minutes when every model's size is known; with a note for each
    model that is not on this machine or whose size is unknown."""
    passes = sum(plan.dit_passes for plan in plans)
    refs = {
        model: resolve_model(model, board.base_dir)
        for model in dict.fromkeys(plan.settings.model for plan in plans)
        if model is not None
    }
    sizes = {model: ref.architecture() for model, ref in refs.items()}  # read each model once
    notes = [note for model, ref in refs.items() if (note := _model_note(ref, sizes[model] is not None))]
    known = {model: size for model, size in sizes.items() if size is not None}
    if not known or len(known) < len(sizes):  # no transformer, or one of unknown size: passes only
        return Estimate(
            dit_passes=passes, transformer_tflop=None, h100_minutes=None, architecture=None
        ), notes
    flops = {  # the animatic's shots have no transformer
        plan.id: schedule_flops(
            known[model][1], plan.windows, plan.width, plan.height, plan.settings.guidance_scale
        )
        if (model := plan.settings.model) is not None
        else 0.0
        for plan in plans
    }
    total = sum(flops.values())
    rate = H100_BF16_PEAK_TFLOPS * 1e12 * ASSUMED_MFU
    seconds = total / rate
    estimate = Estimate(
        dit_passes=passes,
        transformer_tflop=round(total / 1e12, 1),
        h100_minutes=round(seconds / 60, 1),
        architecture=", ".join(sorted({label for label, _ in known.values()})),
        shot_seconds={shot: round(f / rate, 2) for shot, f in flops.items()},
    )
    return estimate, notes


def _model_note(ref: ModelRef, sized: bool) -> str | None:
    """What the estimate could not learn about a model: that it is not on this machine, or its size."""
    passes_only = "the estimate counts transformer passes only"
    size = "the estimate takes its size from its name" if sized else f"its size is unknown, so {passes_only}"
    if ref.folder is None:
        missing = "is not in the local Hugging Face cache"
        fix = f"download it before rendering: hf download {ref.hub_id}"
        if ref.hub_id is None:
            where = " or ".join(str(path) for path in ref.looked_in)
            missing, fix = f"was not found on this machine (no folder {where})", "a render needs it here"
        return f"model '{ref.name}' {missing}: {size}; {fix}"
    if not sized:
        config = ref.folder / "transformer" / "config.json"
        return f"model '{ref.name}': neither {config} nor its name gives the transformer's size, so {passes_only}"
    return None
