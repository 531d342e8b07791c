"""What a ``generation.model`` value points at: a local diffusers folder, or a hub id in the local cache.

Every place that reads a model setting resolves it here, by the same rules: the plan (the transformer's
size, for the estimate), the shot cache (the model's identity, part of every key) and the generators
(the folder they load). storyreel never downloads, and resolving never imports a model library.

The rules, in order:

1. ``~`` is expanded. An absolute path is used as it is; a relative one is looked for in the
   storyboard's folder, then in the working folder.
2. A value that is no existing folder but is shaped like ``owner/name`` is a Hugging Face hub id,
   found in the local hub cache as ``hf download`` leaves it: ``models--owner--name/refs/main`` names
   the revision whose files are in ``snapshots/<revision>/``.

>>> resolve_model("Skywork/SkyReels-V2-DF-14B-540P-Diffusers").hub_id
'Skywork/SkyReels-V2-DF-14B-540P-Diffusers'
>>> ModelRef("Skywork/SkyReels-V2-DF-14B-540P-Diffusers", folder=None).architecture()
('14B', (5120, 40, 13824))
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFound

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
EXAMPLE_MODEL = "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"
# Wan2.1-style DiT sizes of the SkyReels-V2 releases, as (width, layers, feed-forward width), by the size
# their names carry; a folder's own transformer/config.json is read in preference.
ARCHITECTURES: dict[str, tuple[int, int, int]] = {"1.3B": (1536, 30, 8960), "14B": (5120, 40, 13824)}
# A folder's identity hashes small files whole and only the ends of large ones: hashing tens of GB of
# weights on every render would cost minutes, and a changed weight file changes its size or its ends.
_SMALL_FILE = 1 << 20
_SAMPLE = 1 << 20


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, where ``hf download`` puts models (same variables as huggingface_hub)."""
    configured = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if configured:
        return Path(os.path.expanduser(configured))
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(os.path.expanduser(home)) / "hub"


@dataclass(frozen=True)
class ModelRef:
    """A model setting, resolved: the folder holding it on this machine (None when it is not here)."""

    name: str  # as the storyboard or the command line wrote it
    folder: Path | None
    hub_id: str | None = None  # set when ``name`` is a hub id
    revision: str | None = None  # the hub revision the local cache holds
    looked_in: tuple[Path, ...] = ()

    def require(self) -> Path:
        """The model's folder, or ModelNotFound saying where it was looked for and how to get it."""
        if self.folder is not None:
            return self.folder
        if self.hub_id is not None:
            raise ModelNotFound(
                f"model '{self.name}' is not in the local Hugging Face cache ({hub_cache_dir()}) and storyreel "
                f"never downloads; download it first with: hf download {self.hub_id}  "
                f"(huggingface-cli download {self.hub_id} with huggingface_hub < 1.0), or pass a local folder "
                f"(there is none at {' or '.join(str(p) for p in self.looked_in)})"
            )
        raise ModelNotFound(
            f"model '{self.name}': no such folder ({' or '.join(str(p) for p in self.looked_in)}); "
            f"give a diffusers folder or a hub id such as {EXAMPLE_MODEL}"
        )

    def pipeline_class(self) -> str | None:
        """The ``_class_name`` its ``model_index.json`` records (None when absent or unreadable)."""
        document = _read_json(self.folder / "model_index.json") if self.folder else None
        name = document.get("_class_name") if isinstance(document, dict) else None
        return name if isinstance(name, str) else None

    def architecture(self) -> tuple[str, tuple[int, int, int]] | None:
        """The transformer's (label, (width, layers, feed-forward width)): from its config.json when the
        folder is here, else from the size a SkyReels-V2 release's name carries; None when unknown."""
        config = _read_json(self.folder / "transformer" / "config.json") if self.folder else None
        if isinstance(config, dict):
            try:
                width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
                layers, ffn = int(config["num_layers"]), int(config["ffn_dim"])
            except (KeyError, TypeError, ValueError):
                return None
            return f"{width}d/{layers}L", (width, layers, ffn)
        for label, sizes in ARCHITECTURES.items():
            if f"-{label}-" in self.name or self.name.endswith(f"-{label}"):
                return label, sizes
        return None

    def identity(self) -> str:
        """What the setting points at, so that swapping the weights behind a name changes every shot's key.

        A hub id is its cached revision (a revision's files never change); a local folder is a digest of
        its files: each path and size, small files whole and the first and last MiB of large ones.
        """
        if self.hub_id is not None:
            return f"hub:{self.hub_id}@{self.revision}" if self.revision else f"hub:{self.hub_id}"
        if self.folder is None:
            return f"missing:{self.name}"
        digest = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
            size = path.stat().st_size
            digest.update(f"{path.relative_to(self.folder).as_posix()}\0{size}\0".encode())
            with open(path, "rb") as stream:
                if size <= _SMALL_FILE:
                    digest.update(stream.read())
                else:
                    digest.update(stream.read(_SAMPLE))
                    stream.seek(size - _SAMPLE)
                    digest.update(stream.read(_SAMPLE))
        return f"folder:{digest.hexdigest()}"


def resolve_model(name: str, base_dir: Path | None = None) -> ModelRef:
    """Find ``name`` (a folder or a hub id) on this machine, by the rules in this module's docstring."""
    given = Path(os.path.expanduser(name))  # ~user of no user here stays as written
    candidates = (given,) if given.is_absolute() or base_dir is None else (base_dir / given, given)
    for candidate in candidates:
        if _is_folder(candidate):
            return ModelRef(name, candidate, looked_in=candidates)
    if not HUB_ID.fullmatch(name):
        return ModelRef(name, None, looked_in=candidates)
    repo = hub_cache_dir() / f"models--{name.replace('/', '--')}"
    try:
        revision = (repo / "refs" / "main").read_text(encoding="utf-8").strip() or None
    except OSError:
        revision = None
    snapshot = repo / "snapshots" / revision if revision else None
    folder = snapshot if snapshot is not None and snapshot.is_dir() else None
    return ModelRef(name, folder, hub_id=name, revision=revision, looked_in=candidates)


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        # a name longer than the file system takes, say: no folder (the storyboard's checks say why)
        return False


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
