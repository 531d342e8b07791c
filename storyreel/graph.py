"""Stage 2a of a render: the shot graph.

Two orders matter. The *timeline* is the order shots appear in the film: scenes in topological
order of their ``after:`` lists (ties keep file order), shots in file order within a scene. The
*conditioning* edges say which shot's tail frames a continuing shot is generated from: the shot
named by ``continues:``, else its timeline predecessor when its transition is ``continue``. The
conditioning edges form a forest; each tree is a *chain* that must render parent before child,
while different chains are independent and can render in any order, or in parallel.

>>> from storyreel.storyboard import Storyboard
>>> board = Storyboard.model_validate({"storyreel": 1, "scenes": [
...     {"id": "a", "shots": [{"id": "one", "prompt": "x", "duration": 2}, {"id": "two", "prompt": "y", "duration": 2}]},
...     {"id": "b", "shots": [{"id": "three", "prompt": "z", "duration": 2}]}]})
>>> graph = build_graph(board)
>>> graph.timeline, graph.chains
(['one', 'two', 'three'], [['one', 'two'], ['three']])
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .errors import StoryboardError
from .storyboard import Storyboard


@dataclass(frozen=True)
class ShotNode:
    id: str
    scene: str
    scene_index: int  # position in the file
    shot_index: int  # position within its scene
    timeline_index: int
    transition: str  # effective: continue | cut | dissolve | fade
    conditioned_on: str | None


@dataclass(frozen=True)
class ShotGraph:
    """The film's shots, their timeline, and the conditioning forest over them."""

    nodes: dict[str, ShotNode]
    timeline: list[str]
    render_order: list[str]
    chains: list[list[str]]
    conditioning: nx.DiGraph

    def parent(self, shot_id: str) -> str | None:
        return self.nodes[shot_id].conditioned_on

    def children(self, shot_id: str) -> list[str]:
        return sorted(self.conditioning.successors(shot_id), key=lambda s: self.nodes[s].timeline_index)

    def ancestors(self, shot_id: str) -> list[str]:
        """The shots ``shot_id`` needs rendered first, nearest last."""
        chain: list[str] = []
        parent = self.parent(shot_id)
        while parent is not None:
            chain.append(parent)
            parent = self.parent(parent)
        return chain[::-1]

    def descendants(self, shot_id: str) -> list[str]:
        """Every shot conditioned, directly or through others, on ``shot_id``, in render order."""
        below = nx.descendants(self.conditioning, shot_id)
        return [s for s in self.render_order if s in below]


def scene_order(board: Storyboard) -> list[int]:
    """Scene indices in timeline order: topological in ``after:``, ties in file order."""
    index = {scene.id: i for i, scene in enumerate(board.scenes)}
    order = nx.DiGraph()
    order.add_nodes_from(index)
    for scene in board.scenes:
        for other in scene.after:
            if other in index and other != scene.id:
                order.add_edge(other, scene.id)
    try:
        return [index[s] for s in nx.lexicographical_topological_sort(order, key=lambda s: index[s])]
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(order)
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        first = index[cycle[0][1]]
        position = board.scenes[first].after.index(cycle[0][0])
        raise StoryboardError(
            [
                board.problem(
                    ("scenes", first, "after", position),
                    "scenes form a cycle: " + " -> ".join(names),
                    "remove one of these `after:` entries so that the scenes can be put in order",
                )
            ]
        ) from None


def build_graph(board: Storyboard) -> ShotGraph:
    """Order the film's shots and connect each continuing shot to the shot it is conditioned on."""
    timeline: list[tuple[int, int]] = []
    for si in scene_order(board):
        timeline.extend((si, hi) for hi in range(len(board.scenes[si].shots)))

    nodes: dict[str, ShotNode] = {}
    problems = []
    previous: str | None = None
    ids = {shot.id for scene in board.scenes for shot in scene.shots}
    for position, (si, hi) in enumerate(timeline):
        shot = board.scenes[si].shots[hi]
        transition = board.transition(si, hi)
        parent = shot.continues
        if parent is not None and (parent not in ids or parent == shot.id):
            parent = None  # the storyboard's checks report it; the rest of the film can still be ordered
        elif parent is None and transition == "continue":
            parent = previous
            if parent is None:
                problems.append(
                    board.problem(
                        ("scenes", si, "shots", hi, "transition")
                        if shot.transition
                        else ("scenes", si, "shots", hi),
                        f"shot '{shot.id}' opens the film, so there is nothing before it to continue",
                        "set `transition: cut` (or fade), or `continues: <shot id>`",
                    )
                )
        if position == 0 and transition == "continue":
            transition = "cut"
        nodes[shot.id] = ShotNode(shot.id, board.scenes[si].id, si, hi, position, transition, parent)
        previous = shot.id
    StoryboardError.raise_if_any(problems)

    conditioning = nx.DiGraph()
    conditioning.add_nodes_from(nodes)
    for node in nodes.values():
        if node.conditioned_on is not None:
            conditioning.add_edge(node.conditioned_on, node.id)
    try:
        render_order = list(
            nx.lexicographical_topological_sort(conditioning, key=lambda s: nodes[s].timeline_index)
        )
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(conditioning)
        shots = [edge[1] for edge in cycle]
        culprit = nodes[shots[-1]]
        raise StoryboardError(
            [
                board.problem(
                    ("scenes", culprit.scene_index, "shots", culprit.shot_index, "continues"),
                    "shots continue each other in a cycle: " + " -> ".join([cycle[0][0], *shots]),
                    "a shot can only continue footage that exists before it; break the cycle with `transition: cut`",
                )
            ]
        ) from None

    rank = {shot: i for i, shot in enumerate(render_order)}
    chains = [
        sorted(component, key=rank.__getitem__) for component in nx.weakly_connected_components(conditioning)
    ]
    chains.sort(key=lambda chain: rank[chain[0]])
    return ShotGraph(
        nodes=nodes,
        timeline=[board.scenes[si].shots[hi].id for si, hi in timeline],
        render_order=render_order,
        chains=chains,
        conditioning=conditioning,
    )
