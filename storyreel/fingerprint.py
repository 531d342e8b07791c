"""Fingerprints of shots: a digest of everything that decides a shot's frames.

Two renders that would produce the same frames for a shot give it the same key; changing anything
that could change them (prompt, seed, settings, size, start and end image, the generator or model, colour
matching, the parent shot a continuation is conditioned on, or the bytes of the clip a shot extends) changes
the key. A continuing shot's key includes its
parent's key, so an edit upstream invalidates its continuations and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plan import ShotPlan


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ShotKeys:
    """The cache keys of one render's shots: what every key shares (the generator, its version and the
    precision its options resolve to, and the model's identity), applied shot by shot with the facts of each
    shot the generator's frames depend on (:meth:`storyreel.generate.Generator.frame_facts`)."""

    generator: str
    generator_version: str
    model: str | None  # :meth:`storyreel.models.ModelRef.identity`, or None without a model
    frame_facts: Callable[[ShotPlan], dict[str, Any]]

    def key(self, shot: ShotPlan, prompt: str, parent_key: str | None) -> str:
        """``shot``'s key when made from ``prompt``, continuing the shot whose key is ``parent_key``."""
        facts = self.frame_facts(shot)
        if shot.color_match:  # named only when on, so the keys of shots made without it stay as they were
            facts = {**facts, "color_match": "on"}
        # Named only when set, likewise: a clip's bytes decide the frames a shot extending it starts from.
        if shot.end_image:
            facts = {**facts, "end_image": file_sha256(shot.end_image)}
        if shot.video:
            facts = {**facts, "video": file_sha256(shot.video)}
        return shot_key(
            facts=facts,
            prompt=prompt,
            generator=self.generator,
            generator_version=self.generator_version,
            model=self.model,
            parent_key=parent_key,
            image_sha256=file_sha256(shot.image) if shot.image else None,
        )


def shot_key(
    *,
    facts: dict[str, Any],
    prompt: str,
    generator: str,
    generator_version: str,
    model: str | None,
    parent_key: str | None,
    image_sha256: str | None,
) -> str:
    """A shot's cache key (hex sha256): the shot's ``facts`` with what every key names."""
    document = {
        **facts,
        "generator": generator,
        "generator_version": generator_version,
        "model": model,
        "prompt": prompt,
        "image": image_sha256,
        "parent": parent_key,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
