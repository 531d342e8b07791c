"""How a film's shots spread over several workers: the critical path, and a list schedule.

A film's conditioning edges form a forest (:mod:`storyreel.graph`): a continuing shot needs its
parent's tail frames, so it starts only once the parent is made; shots of different trees are
independent. Given each shot's cost, two numbers bound any render on many workers:

- the *critical path*: the costliest root-to-leaf chain of dependent shots; no number of workers
  makes the film faster than that;
- the *work*: the sum of every shot's cost; ``work / workers`` is the other bound.

:func:`list_schedule` is the policy the cluster render uses (:mod:`storyreel.farm`) and ``plan
--workers`` predicts with: whenever a worker is free it takes, among the shots whose parent is made,
the one with the longest remaining chain below it (its own cost plus the costliest path of shots that
wait on it), ties in render order. For a film of simple chains that is "longest remaining chain
first, each chain in order".

>>> costs = {"a1": 3.0, "a2": 3.0, "b1": 2.0, "c1": 1.0}
>>> parents = {"a1": None, "a2": "a1", "b1": None, "c1": None}
>>> critical_path(costs, parents)
['a1', 'a2']
>>> plan = list_schedule(costs, parents, workers=2)
>>> plan.makespan, [(s.shot, s.worker) for s in plan.shots]
(6.0, [('a1', 0), ('b1', 1), ('c1', 1), ('a2', 0)])
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Placement", "Schedule", "critical_path", "list_schedule", "remaining_paths"]


@dataclass(frozen=True)
class Placement:
    """One shot on one worker, from ``start`` to ``end`` (in the costs' unit, from the render's start)."""

    shot: str
    worker: int
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    """A list schedule of a film on ``workers`` workers."""

    workers: int
    shots: list[Placement]  # in the order they start
    makespan: float  # when the last shot ends
    work: float  # every shot's cost, summed: the makespan on one worker
    critical: float  # the critical path's cost: no schedule ends before it

    @property
    def speedup(self) -> float:
        """How much faster than one worker."""
        return self.work / self.makespan if self.makespan else 1.0

    def busy(self) -> list[float]:
        """Each worker's busy time."""
        busy = [0.0] * self.workers
        for placed in self.shots:
            busy[placed.worker] += placed.end - placed.start
        return busy


def remaining_paths(costs: Mapping[str, float], parents: Mapping[str, str | None]) -> dict[str, float]:
    """Each shot's cost plus the costliest path of shots that wait on it (directly or through others)."""
    children: dict[str, list[str]] = {shot: [] for shot in costs}
    for shot, parent in parents.items():
        if parent is not None and parent in children:
            children[parent].append(shot)
    below: dict[str, float] = {}

    def visit(root: str) -> None:
        # iterative post-order: chains of hundreds of shots would pass Python's recursion limit
        stack = [(root, False)]
        while stack:
            shot, done = stack.pop()
            if done:
                below[shot] = costs[shot] + max((below[c] for c in children[shot]), default=0.0)
                continue
            stack.append((shot, True))
            stack.extend((child, False) for child in children[shot])

    for shot in costs:
        if parents.get(shot) not in costs:
            visit(shot)
    return below


def critical_path(costs: Mapping[str, float], parents: Mapping[str, str | None]) -> list[str]:
    """The costliest chain of dependent shots, root first (ties: the shot that comes first in ``costs``)."""
    if not costs:
        return []
    below = remaining_paths(costs, parents)
    order = {shot: i for i, shot in enumerate(costs)}
    children: dict[str, list[str]] = {shot: [] for shot in costs}
    for shot, parent in parents.items():
        if parent is not None and parent in children:
            children[parent].append(shot)
    roots = [shot for shot in costs if parents.get(shot) not in costs]
    path = [max(roots, key=lambda s: (below[s], -order[s]))]
    while children[path[-1]]:
        path.append(max(children[path[-1]], key=lambda s: (below[s], -order[s])))
    return path


def list_schedule(costs: Mapping[str, float], parents: Mapping[str, str | None], workers: int) -> Schedule:
    """Place every shot of ``costs`` (in render order) on ``workers`` workers: a free worker takes the ready
    shot with the longest remaining chain (see the module docstring); the lowest-numbered worker free first.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    below = remaining_paths(costs, parents)
    order = {shot: i for i, shot in enumerate(costs)}
    waiting: dict[str, list[str]] = {shot: [] for shot in costs}
    ready: list[tuple[float, int, str]] = []  # (-remaining chain, render order, shot)
    for shot in costs:
        parent = parents.get(shot)
        if parent is not None and parent in costs:
            waiting[parent].append(shot)
        else:
            heapq.heappush(ready, (-below[shot], order[shot], shot))
    free: list[tuple[float, int]] = [(0.0, w) for w in range(workers)]  # (free from, worker)
    running: list[tuple[float, int, str]] = []  # (ends, worker, shot)
    placed: list[Placement] = []
    now = 0.0
    while ready or running:
        if ready and free:
            free_at, worker = heapq.heappop(free)
            _, _, shot = heapq.heappop(ready)
            start = max(now, free_at)
            end = start + costs[shot]
            placed.append(Placement(shot, worker, start, end))
            heapq.heappush(running, (end, worker, shot))
            continue
        # nothing to start now: move time on to the next shot that ends; its worker and children are free
        now, worker, shot = heapq.heappop(running)
        heapq.heappush(free, (now, worker))
        for child in waiting[shot]:
            heapq.heappush(ready, (-below[child], order[child], child))
    makespan = max((p.end for p in placed), default=0.0)
    return Schedule(
        workers=workers,
        shots=placed,
        makespan=makespan,
        work=sum(costs.values()),
        critical=max(below.values(), default=0.0),
    )


def chain_costs(
    shots: Sequence[tuple[str, str | None, float]],
) -> tuple[dict[str, float], dict[str, str | None]]:
    """``(shot, parent, cost)`` rows as the two mappings the functions above take.

    >>> chain_costs([("a", None, 1.0), ("b", "a", 2.0)])
    ({'a': 1.0, 'b': 2.0}, {'a': None, 'b': 'a'})
    """
    return {s: c for s, _, c in shots}, {s: p for s, p, _ in shots}
