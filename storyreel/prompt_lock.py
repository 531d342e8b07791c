"""``<stem>.lock.yaml``: the enhanced prompts of a storyboard, kept so that no LLM call is repeated.

The lock sits next to the storyboard and is meant to be read (and edited) by people::

    # Enhanced prompts for swan_lake.yaml ...
    storyreel_lock: 1
    storyboard: swan_lake.yaml
    shots:
      glide:
        prompt: Wide shot at eye level, a graceful white swan ...
        backend: vllm
        model: Qwen/Qwen2.5-32B-Instruct
        fingerprint: 6f1c...          # of everything the request was made from
        enhanced_sha256: 90ab...      # of the prompt as the enhancer wrote it

An entry is used as long as its ``fingerprint`` matches the shot's request (the shot, its scene,
the characters, the film's style and the enhancer settings and template). A prompt whose text no
longer matches ``enhanced_sha256`` was edited by hand: it is used as written, and reported when a
change to its shot replaces it.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_text_atomic
from .errors import Problem, StoryboardError

LOCK_VERSION = 1
HEADER = """\
# Enhanced prompts for {storyboard}, written by `storyreel enhance` and `storyreel render`.
# Edit a prompt by hand and storyreel uses your words. A shot is enhanced again only when it, its
# scene, its characters, the film's style or the enhancer settings change, or with --refresh-prompts.
"""


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lock_path_for(storyboard: Path) -> Path:
    """``stories/swan_lake.yaml`` (or ``.yaml.j2``) -> ``stories/swan_lake.lock.yaml``."""
    name = storyboard.name
    for suffix in (".j2", ".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return storyboard.with_name(f"{name}.lock.yaml")


@dataclass(frozen=True)
class LockEntry:
    prompt: str
    backend: str
    model: str | None
    fingerprint: str
    enhanced_sha256: str

    @property
    def edited(self) -> bool:
        """Whether someone changed the prompt after the enhancer wrote it."""
        return text_sha256(self.prompt) != self.enhanced_sha256


class PromptLock:
    """The lock file's entries, updated from several threads as enhanced prompts arrive, saved atomically."""

    def __init__(self, path: Path, storyboard: str, entries: dict[str, LockEntry] | None = None):
        self.path = path
        self.storyboard = storyboard
        self.entries: dict[str, LockEntry] = dict(entries or {})
        self._guard = threading.Lock()

    @classmethod
    def load(cls, path: Path, storyboard: str) -> PromptLock:
        """Read the lock at ``path``; an absent file is an empty lock, a malformed one a clear error."""
        if not path.is_file():
            return cls(path, storyboard)
        text = path.read_text(encoding="utf-8")
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise StoryboardError(
                [
                    Problem(
                        file=str(path),
                        line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None,
                        field="",
                        message=f"the prompt lock is not valid YAML: {getattr(exc, 'problem', exc)}",
                        fix="correct the line (a prompt with a colon needs quotes), or delete the file to enhance again",
                    )
                ]
            ) from exc
        return cls(path, storyboard, _entries(path, document))

    def get(self, shot_id: str) -> LockEntry | None:
        with self._guard:
            return self.entries.get(shot_id)

    def put(self, shot_id: str, entry: LockEntry, save: bool = True) -> None:
        """Record one shot's prompt (and write the file at once, so that nothing is lost to a crash)."""
        with self._guard:
            self.entries[shot_id] = entry
            if save:
                self._save_locked()

    def keep_only(self, timeline: list[str]) -> None:
        """Drop entries of shots the storyboard no longer has; list the rest in timeline order."""
        with self._guard:
            self.entries = {k: self.entries[k] for k in timeline if k in self.entries}

    def save(self) -> None:
        with self._guard:
            self._save_locked()

    def _save_locked(self) -> None:
        document = {
            "storyreel_lock": LOCK_VERSION,
            "storyboard": self.storyboard,
            "shots": {shot_id: asdict(entry) for shot_id, entry in self.entries.items()},
        }
        body = yaml.dump(document, Dumper=_LockDumper, sort_keys=False, allow_unicode=True, width=100)
        write_text_atomic(self.path, HEADER.format(storyboard=self.storyboard) + body)


class _LockDumper(yaml.SafeDumper):
    """Writes long prompts as folded blocks (``>-``), so that they read and edit like prose, without quotes."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    prose = len(text) > 60 and " " in text and "\n" not in text and text == text.strip() and "  " not in text
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=">" if prose else None)


_LockDumper.add_representer(str, _represent_text)


def _entries(path: Path, document: Any) -> dict[str, LockEntry]:
    def broken(message: str) -> StoryboardError:
        return StoryboardError(
            [Problem(str(path), None, None, "", message, "correct it, or delete the file to enhance again")]
        )

    if document is None:
        return {}
    if not isinstance(document, dict) or document.get("storyreel_lock") != LOCK_VERSION:
        raise broken(f"not a storyreel prompt lock (version {LOCK_VERSION})")
    shots = document.get("shots") or {}
    if not isinstance(shots, dict):
        raise broken("`shots` must map shot ids to entries")
    entries = {}
    for shot_id, raw in shots.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str) or not raw["prompt"].strip():
            raise broken(f"shots.{shot_id}: needs a non-empty `prompt`")
        entries[str(shot_id)] = LockEntry(
            prompt=raw["prompt"].strip(),
            backend=str(raw.get("backend", "")),
            model=raw.get("model"),
            fingerprint=str(raw.get("fingerprint", "")),
            enhanced_sha256=str(raw.get("enhanced_sha256", "")),
        )
    return entries
