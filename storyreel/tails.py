"""Tail frames: the exact last frames of each shot that a later shot continues.

A continuing shot is conditioned on the last ``overlap_history`` frames of the footage before it:
its parent's own frames, preceded by whatever the parent itself was conditioned on when the parent
is shorter than that. These are the parent's frames exactly as generated (or as the shot cache kept
them, losslessly), never re-read from its lossy mp4. They are held only while a continuation still
waits for them.

A shot that extends a clip (``video:``) has no parent shot: its tail is the clip's last
``overlap_history`` frames, decoded from the file when the shot is about to be made (:func:`clip_tail`).
The clip is the user's footage, so its decoded frames are the truth there is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .plan import ShotPlan


def footage_tail(frames: np.ndarray, conditioning: np.ndarray | None, count: int) -> np.ndarray:
    """The last ``count`` frames of the footage a shot ends: its own ``frames``, preceded (when it has
    fewer than ``count``) by the ``conditioning`` frames it was itself made from.

    >>> own, before = np.zeros((3, 1, 1, 3), np.uint8), np.ones((4, 1, 1, 3), np.uint8)
    >>> footage_tail(own, before, 5)[:, 0, 0, 0].tolist()
    [1, 1, 0, 0, 0]
    """
    footage = (
        frames if conditioning is None or len(frames) >= count else np.concatenate([conditioning, frames])
    )
    return footage[-count:].copy()


def clip_tail(path: str | Path, width: int, height: int, count: int) -> np.ndarray:
    """The last ``count`` frames of the clip at ``path``, (count, height, width, 3) uint8, decoded in order and
    only the last ``count`` kept. The plan has checked its size and length; a clip changed since then is the
    user's error, said here."""
    from collections import deque

    from .errors import UserError
    from .video import read_frames

    kept: deque[np.ndarray] = deque(maxlen=count)
    for frame in read_frames(Path(path), width, height):
        kept.append(frame.copy())
    if len(kept) < count:
        raise UserError(
            f"the clip {path} now decodes to {len(kept)} frames, fewer than the {count} the shot extends it "
            "from (it changed since the plan was made); check the file and render again"
        )
    return np.stack(kept)  # (count, height, width, 3)


class TailKeeper:
    """Holds each parent's tail from the moment the parent is made until its last continuation takes it."""

    def __init__(self, shots: Iterable[ShotPlan]):
        #: Frames of tail each parent must give: the most any of its continuations is conditioned on.
        self.need: dict[str, int] = {}
        self.waiting: dict[str, int] = {}
        for shot in shots:
            if shot.conditioned_on is not None:
                parent = shot.conditioned_on
                self.need[parent] = max(self.need.get(parent, 0), shot.settings.overlap_history)
                self.waiting[parent] = self.waiting.get(parent, 0) + 1
        self.tails: dict[str, np.ndarray] = {}

    def keep(self, shot: ShotPlan, tail: np.ndarray) -> None:
        """``shot`` is made, and its footage ends in ``tail`` (at least as many frames as its continuations
        need: see :func:`footage_tail`)."""
        need = self.need.get(shot.id, 0)
        if need:
            self.tails[shot.id] = tail[-need:]

    def tail_for(self, shot: ShotPlan) -> np.ndarray | None:
        """The frames ``shot`` is conditioned on, handed over once: None for a fresh shot, and for a clip
        extension, whose clip :func:`storyreel.shot_job.make_shot` decodes only if it generates the shot."""
        parent = shot.conditioned_on
        if parent is None or shot.video is not None:
            return None
        tail = self.tails[parent][-shot.settings.overlap_history :]
        self._taken(parent)
        return tail

    def skip(self, shot: ShotPlan) -> None:
        """``shot`` will not be made (its parent failed): it no longer waits for the parent's tail."""
        if shot.conditioned_on is not None:
            self._taken(shot.conditioned_on)

    def _taken(self, parent: str) -> None:
        self.waiting[parent] -= 1
        if not self.waiting[parent]:
            self.tails.pop(parent, None)  # every continuation of this parent has its frames now
