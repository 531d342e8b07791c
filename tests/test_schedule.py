"""The critical path and the list schedule of a film on several workers, through plan_film and `plan`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from storyreel import Storyboard, load_storyboard, plan_film
from storyreel.cli import app
from storyreel.schedule import list_schedule

MODEL = "Skywork/SkyReels-V2-DF-1.3B-540P"
runner = CliRunner()


def test_the_crosscut_films_critical_path_is_its_longest_storyline():
    plan = plan_film(load_storyboard("examples/crosscut.yaml"))
    # three chains: the market run (three shots), the conductor (two), the doors (two)
    assert plan.critical_path == ["run-1", "run-2", "run-3"]
    assert plan.workers is None and plan.estimated_seconds is None


def test_estimated_seconds_fall_with_workers_down_to_the_critical_path():
    board = load_storyboard("examples/crosscut.yaml")
    one, two, many = (plan_film(board, model=MODEL, workers=n) for n in (1, 2, 16))
    assert one.estimate.shot_seconds is not None
    costs = one.shot_costs()
    work, longest = sum(costs.values()), sum(costs[s] for s in one.critical_path)
    assert one.estimated_seconds == round(work, 1)
    assert longest < two.estimated_seconds < work  # type: ignore[operator]
    assert many.estimated_seconds == round(longest, 1)  # one worker per chain: the longest chain decides


def test_a_free_worker_takes_the_longest_remaining_chain_and_keeps_each_chain_in_order():
    costs = {"a1": 1.0, "b1": 1.0, "a2": 1.0, "b2": 5.0, "c1": 3.0}
    parents = {"a1": None, "b1": None, "a2": "a1", "b2": "b1", "c1": None}
    schedule = list_schedule(costs, parents, workers=2)
    start = {p.shot: p for p in schedule.shots}
    assert [p.shot for p in schedule.shots][:2] == ["b1", "c1"]  # b (6) and c (3) before a (2)
    assert start["b2"].start >= start["b1"].end and start["a2"].start >= start["a1"].end
    assert schedule.makespan == 6.0 == schedule.critical
    assert sorted(schedule.busy()) == [5.0, 6.0]


def test_a_chain_that_branches_can_run_its_branches_side_by_side():
    costs = {"root": 1.0, "left": 3.0, "right": 3.0}
    parents = {"root": None, "left": "root", "right": "root"}
    assert list_schedule(costs, parents, workers=2).makespan == 4.0
    assert list_schedule(costs, parents, workers=1).makespan == 7.0


def test_plan_prints_the_critical_path_and_the_wall_time_on_n_workers():
    result = runner.invoke(app, ["plan", "examples/crosscut.yaml", "--workers", "2", "--model", MODEL])
    assert result.exit_code == 0, result.output
    assert "critical path: run-1 → run-2 → run-3" in result.output
    assert "best possible speedup on many workers: 2.41x" in result.output
    assert "on 2 worker(s): 245s, 1.79x one worker" in result.output
    data = json.loads(
        runner.invoke(
            app, ["plan", "examples/crosscut.yaml", "--workers", "2", "--model", MODEL, "--json"]
        ).output
    )
    assert data["critical_path"] == ["run-1", "run-2", "run-3"]
    assert data["estimated_seconds"] == 245.1 and data["workers"] == 2


def test_plan_without_a_models_size_counts_transformer_passes():
    result = runner.invoke(app, ["plan", "examples/crosscut.yaml", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "(180 passes of 420 passes); best possible speedup on many workers: 2.33x" in result.output
    assert "on 2 worker(s): 240 passes" in result.output


def test_plan_refuses_zero_workers():
    result = runner.invoke(app, ["plan", "examples/crosscut.yaml", "--workers", "0"])
    assert result.exit_code == 1
    assert "--workers 0: a render needs at least one worker; use --workers 1 or more" in result.output


def test_a_film_of_one_shot_has_that_shot_as_its_critical_path():
    board = Storyboard.model_validate(
        {"storyreel": 1, "scenes": [{"id": "s", "shots": [{"id": "a", "prompt": "p", "duration": 2}]}]}
    )
    assert plan_film(board, workers=3).critical_path == ["a"]
