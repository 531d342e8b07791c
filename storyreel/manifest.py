"""``manifest.json``: what a render made, from what, and what it cost.

Scripts rely on these names (SPEC); new keys may be added, existing ones keep their meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from .atomic import write_text_atomic

if TYPE_CHECKING:
    from .enhance import ShotPrompt
    from .plan import ShotPlan


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilmEntry(_Entry):
    path: str = Field(description="film file, relative to the render folder")
    frames: int
    fps: int
    seconds: float
    width: int
    height: int
    has_audio: bool = False
    captions: str | None = Field(None, description="the .srt file, relative to the render folder")
    qa: dict[str, Any] | None = Field(
        None, description="each chain's colour and contrast drift from its first shot (storyreel.qa)"
    )


class ShotEntry(_Entry):
    id: str
    scene: str
    timeline_index: int
    frames: int = Field(description="the shot's own frames, as written to its file")
    seconds: float
    conditioned_on: str | None
    transition: str
    mode: str = Field(description="fresh | image | continue")
    prompt: str = Field(description="the storyboard's prompt, characters filled in")
    enhanced_prompt: str = Field(description="the prompt the generator was given")
    enhanced_by: str = Field(description="the enhancer that wrote enhanced_prompt")
    enhancer_model: str | None = Field(None, description="the model that wrote it, for LLM enhancers")
    prompt_origin: str = Field(
        "enhancer",
        description="enhancer (this run), lock (reused), edited (hand-edited in the lock), fallback",
    )
    seed: int
    cache_key: str = Field(description="fingerprint of everything that decides the shot's frames")
    cached: bool = Field(description="whether this run reused the shot instead of generating it")
    dit_passes: int = Field(description="transformer forward passes this run spent on the shot")
    seconds_generating: float
    degraded: list[str] = Field(
        default_factory=list,
        description="what was given up to fit in GPU memory (offload, base_num_frames=77)",
    )
    attention: str | None = Field(
        None, description="the attention kernel the transformer ran with; null without a model (the animatic)"
    )
    compile: str | None = Field(None, description="whether the transformer was compiled: true, false or auto")
    precision: str | None = Field(None, description="the transformer's precision: bf16, or fp8 (lossy)")
    generator_info: dict[str, Any] = Field(
        default_factory=dict, description="the generator's own facts: pipeline, precision, windows run"
    )
    path: str = Field(description="the shot's file, relative to the render folder")
    qa: dict[str, float] | None = Field(
        None,
        description="a continuing shot's seam with its parent: seam_delta_e, seam_ssim, motion_jump (storyreel.qa)",
    )
    worker: str | None = Field(
        None, description="the cluster worker that made or reused it; null in one process"
    )
    started: str | None = Field(None, description="when its work began (ISO 8601, UTC)")
    finished: str | None = Field(None, description="when its work ended (ISO 8601, UTC)")
    keyframe: str | None = Field(
        None,
        description="the start frame the keyframe stage drew for the shot, relative to the render folder",
    )

    @classmethod
    def for_shot(
        cls,
        shot: ShotPlan,
        prompt: ShotPrompt,
        key: str,
        frames: int,
        *,
        cached: bool,
        dit_passes: int = 0,
        seconds: float = 0.0,
        info: dict[str, Any] | None = None,
        transformer: Mapping[str, str] | None = None,
    ) -> ShotEntry:
        """The line for ``shot``: made from ``prompt``, under cache ``key``, ``frames`` long; ``dit_passes``
        and ``seconds`` are what this render spent on it (none for a reused shot), ``info`` the generator's
        facts (kept in the cache for a reused shot), its ``degraded`` list included. ``transformer`` is how
        the generator was asked to run its transformer (None: it has none)."""
        info = json_friendly(info or {})
        ran = transformer_run(info, transformer)
        return cls(
            id=shot.id,
            scene=shot.scene,
            timeline_index=shot.timeline_index,
            frames=frames,
            seconds=round(frames / shot.fps, 2),
            conditioned_on=shot.conditioned_on,
            transition=shot.transition,
            mode=shot.mode,
            prompt=shot.prompt,
            enhanced_prompt=prompt.prompt.prompt,
            enhanced_by=prompt.prompt.source,
            enhancer_model=prompt.prompt.model,
            prompt_origin=prompt.origin,
            seed=shot.seed,
            cache_key=key,
            cached=cached,
            dit_passes=dit_passes,
            seconds_generating=round(seconds, 3),
            attention=ran["attention"],
            compile=ran["compile"],
            precision=ran["precision"],
            degraded=list(info.get("degraded", [])),
            generator_info={k: v for k, v in info.items() if k != "degraded"},
            path=f"shots/{shot.id}.mp4",
            keyframe=f"keyframes/{shot.id}.png" if shot.keyframe else None,
        )


def transformer_run(info: Mapping[str, Any], asked: Mapping[str, str] | None) -> dict[str, str | None]:
    """How a shot's transformer ran: what the generator reported in ``Clip.info`` (the kernel that actually
    ran, say), else what it was ``asked``; nothing when it has no transformer (``asked`` is None and it
    reported nothing). A true/false is written as the storyboard writes it.

    >>> transformer_run({"attention": "flash3"}, {"attention": "auto", "compile": "auto", "precision": "bf16"})
    {'attention': 'flash3', 'compile': 'auto', 'precision': 'bf16'}
    >>> transformer_run({"compile": True}, None)
    {'attention': None, 'compile': 'true', 'precision': None}
    """
    ran: dict[str, str | None] = {}
    for key in ("attention", "compile", "precision"):
        value = info.get(key, asked.get(key) if asked is not None else None)
        if isinstance(value, bool):
            value = "true" if value else "false"
        ran[key] = None if value is None else str(value)
    return ran


def utc_now() -> str:
    """The time now, as a manifest writes it: ISO 8601 in UTC, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def json_friendly(info: dict[str, Any]) -> dict[str, Any]:
    """The entries of a generator's ``Clip.info`` that JSON can hold (the manifest and the cache are JSON).

    >>> json_friendly({"steps": 30, "device": object()})
    {'steps': 30}
    """
    kept = {}
    for key, value in info.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[str(key)] = value
    return kept


class WorkerEntry(_Entry):
    """One worker of a cluster render (``render --workers``) and how busy it was."""

    id: str
    node: str = Field(description="the machine it ran on (its address)")
    pid: int = Field(description="its process; for a worker that splits each shot, rank 0's")
    gpus: int = Field(description="GPUs it held; 0 for a worker on CPU")
    gpu_ids: list[str] = Field(
        default_factory=list, description="the GPUs it held, as its node numbers them; empty on CPU"
    )
    ranks: list[int] = Field(
        default_factory=list,
        description="for a worker that splits each shot over processes (--gpus-per-shot): each rank's "
        "process, rank 0 first; empty for a worker of one process",
    )
    shots: list[str] = Field(description="the shots it made or reused, in the order it took them")
    busy_seconds: float
    started: str = Field(description="when it was ready for its first shot (ISO 8601, UTC)")
    ended: str | None = Field(
        None,
        description="when it was lost: a process died, or one rank of a split worker failed a shot alone",
    )


class Manifest(_Entry):
    storyreel: str = Field(description="storyreel version that rendered")
    storyboard: str | None = Field(description="path of the storyboard file")
    storyboard_sha256: str | None
    title: str
    generator: str
    model: str | None
    enhancer: str
    film: FilmEntry | None = Field(description="absent when only some shots were rendered (--only)")
    shots: list[ShotEntry]
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list, description="what the checks found past their thresholds"
    )
    workers: list[WorkerEntry] = Field(
        default_factory=list,
        description="a cluster render's workers (render --workers); empty in one process",
    )

    def shot(self, shot_id: str) -> ShotEntry:
        for shot in self.shots:
            if shot.id == shot_id:
                return shot
        raise KeyError(shot_id)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def timings_removed(self) -> dict[str, Any]:
        """The manifest without what differs between two renders of the same film: times and workers.

        >>> Manifest(storyreel="1", storyboard=None, storyboard_sha256=None, title="t", generator="animatic",
        ...          model=None, enhancer="none", film=None, shots=[]).timings_removed()["workers"]
        []
        """
        data = self.model_dump(mode="json")
        data["workers"] = []
        for shot in data["shots"]:
            shot.update(worker=None, started=None, finished=None, seconds_generating=0.0)
        return data

    def write(self, path: str | Path) -> None:
        """Write atomically: a reader sees the old manifest or the new one, never half of one."""
        write_text_atomic(
            Path(path), json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        )
