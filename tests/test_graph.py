"""The shot graph: timeline order, conditioning edges, render order and independent chains."""

from __future__ import annotations

from storyreel import Storyboard, build_graph


def board(scenes: list[dict]) -> Storyboard:
    return Storyboard.model_validate({"storyreel": 1, "scenes": scenes})


def shot(shot_id: str, **extra) -> dict:
    return {"id": shot_id, "prompt": shot_id, "duration": 2, **extra}


def test_spec_example_edges_and_chains():
    graph = build_graph(
        board(
            [
                {
                    "id": "dawn",
                    "shots": [
                        shot("glide"),
                        shot("dip", transition="continue"),
                        shot("heron", transition="cut"),
                        shot("back-to-swan", continues="dip"),
                    ],
                }
            ]
        )
    )
    assert graph.timeline == ["glide", "dip", "heron", "back-to-swan"]
    assert {s: graph.parent(s) for s in graph.timeline} == {
        "glide": None,
        "dip": "glide",
        "heron": None,
        "back-to-swan": "dip",
    }
    assert graph.render_order == ["glide", "dip", "heron", "back-to-swan"]
    assert graph.chains == [["glide", "dip", "back-to-swan"], ["heron"]]
    assert graph.nodes["glide"].transition == "cut"
    assert graph.nodes["back-to-swan"].transition == "continue"


def test_scene_order_follows_after_and_keeps_file_order_for_ties():
    graph = build_graph(
        board(
            [
                {"id": "ending", "after": ["middle"], "shots": [shot("e")]},
                {"id": "opening", "shots": [shot("o")]},
                {"id": "middle", "after": ["opening"], "shots": [shot("m")]},
                {"id": "aside", "shots": [shot("a")]},
            ]
        )
    )
    # opening and aside have no constraints: file order decides between them
    assert graph.timeline == ["o", "m", "e", "a"]


def test_default_transitions_cut_between_scenes_and_continue_within():
    graph = build_graph(
        board([{"id": "s1", "shots": [shot("a"), shot("b")]}, {"id": "s2", "shots": [shot("c")]}])
    )
    assert [graph.nodes[s].transition for s in graph.timeline] == ["cut", "continue", "cut"]
    assert graph.parent("b") == "a" and graph.parent("c") is None


def test_first_shot_of_a_scene_may_continue_the_previous_scene():
    graph = build_graph(
        board([{"id": "s1", "shots": [shot("a")]}, {"id": "s2", "shots": [shot("b", transition="continue")]}])
    )
    assert graph.parent("b") == "a"


def test_a_shot_may_continue_a_later_shot_and_renders_after_it():
    graph = build_graph(
        board(
            [
                {"id": "flashforward", "shots": [shot("future", continues="present")]},
                {"id": "now", "shots": [shot("present")]},
            ]
        )
    )
    assert graph.timeline == ["future", "present"]
    assert graph.render_order == ["present", "future"]
    assert graph.ancestors("future") == ["present"]


def test_cross_cutting_makes_two_chains_and_a_branching_parent():
    graph = build_graph(
        board(
            [
                {
                    "id": "intercut",
                    "shots": [
                        shot("a1"),
                        shot("b1", transition="cut"),
                        shot("a2", continues="a1"),
                        shot("b2", continues="b1"),
                        shot("a3", continues="a1", transition="cut"),  # an alternative continuation of a1
                    ],
                }
            ]
        )
    )
    assert graph.chains == [["a1", "a2", "a3"], ["b1", "b2"]]
    assert graph.children("a1") == ["a2", "a3"]
    assert graph.descendants("a1") == ["a2", "a3"]
    assert graph.render_order == ["a1", "b1", "a2", "b2", "a3"]
