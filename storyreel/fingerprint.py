"""Fingerprints of shots: a digest of everything that decides a shot's frames.

Two renders that would produce the same frames for a shot give it the same key; changing anything
that could change them (prompt, seed, settings, size, start image, the generator or model, or the
parent shot a continuation is conditioned on) changes the key. A continuing shot's key includes its
parent's key, so an edit upstream invalidates its continuations and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .plan import ShotPlan


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(model: str | None, base_dir: Path | None = None) -> str | None:
    """What a model setting points at, so that swapping the weights behind a name changes every key.

    A local folder is identified by its files: each file's path and size, the full hash of small
    ones (configs, tokenizers) and the first and last MiB of large ones (weights; hashing tens of GB
    on every render would cost minutes). A hub id is identified by the revision in the local Hugging
    Face cache when there is one.
    """
    if model is None:
        return None
    folder = Path(model).expanduser()
    if not folder.is_absolute() and base_dir is not None and (base_dir / folder).is_dir():
        folder = base_dir / folder
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
            size = path.stat().st_size
            digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
            with open(path, "rb") as stream:
                if size <= _SMALL:
                    digest.update(stream.read())
                else:
                    digest.update(stream.read(_SAMPLE))
                    stream.seek(size - _SAMPLE)
                    digest.update(stream.read(_SAMPLE))
        return f"folder:{digest.hexdigest()}"
    revision = _hub_revision(model)
    return f"hub:{model}@{revision}" if revision else f"hub:{model}"


_SMALL = 1 << 20
_SAMPLE = 1 << 20


def _hub_revision(repo_id: str) -> str | None:
    import os

    hub = (
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    )
    ref = Path(hub) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def shot_key(
    shot: ShotPlan,
    *,
    prompt: str,
    generator: str,
    generator_version: str,
    model: str | None,
    parent_key: str | None,
    image_sha256: str | None,
) -> str:
    """The shot's cache key (hex sha256)."""
    settings = shot.settings.model_dump(mode="json")
    settings.pop("model")  # identified by `model` below, which may be resolved further than the setting
    facts: dict[str, Any] = {
        "generator": generator,
        "generator_version": generator_version,
        "model": model,
        "prompt": prompt,
        "settings": settings,
        "seed": shot.seed,
        "frames": shot.frames,
        "mode": shot.mode,
        "size": [shot.width, shot.height],
        "fps": shot.fps,
        "windows": [w.model_dump() for w in shot.windows],
        "image": image_sha256,
        "parent": parent_key,
    }
    if generator == "animatic":
        # The animatic draws the shot's framing, text and timecode into the frames.
        facts["animatic"] = {
            "camera": shot.camera.model_dump() if shot.camera else None,
            "characters": shot.characters,
            "setting": shot.setting,
            "scene": shot.scene,
            "id": shot.id,
            "film_start_frame": shot.film_start_frame,
        }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
