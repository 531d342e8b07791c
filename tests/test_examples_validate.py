"""Every example storyboard and every bundled template loads and plans; new files are picked up by the glob."""

from __future__ import annotations

from pathlib import Path

import pytest

import storyreel

from conftest import REPO

PATTERNS = ("*.yaml", "*.yaml.j2")
EXAMPLES = sorted(path for pattern in PATTERNS for path in (REPO / "examples").glob(pattern))
TEMPLATES = sorted(path for pattern in PATTERNS for path in (REPO / "templates").glob(pattern))


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_globs_find_the_bundled_files():
    assert {"swan_lake.yaml", "crosscut.yaml", "festival.yaml.j2"} <= {path.name for path in EXAMPLES}
    assert {"short.yaml", "music-video.yaml", "product-spot.yaml"} <= {path.name for path in TEMPLATES}


@pytest.mark.parametrize("path", EXAMPLES + TEMPLATES, ids=_id)
def test_storyboard_loads_and_plans(path: Path):
    board = storyreel.load_storyboard(path)
    plan = storyreel.plan_film(board)
    assert plan.shots and plan.film_frames > 0
    # Short films: the tests render every example, and a template is a starting point, not a feature.
    assert 10 <= plan.film_seconds <= 30, f"{_id(path)} lasts {plan.film_seconds}s"


@pytest.mark.parametrize("path", TEMPLATES, ids=_id)
def test_template_opens_with_a_one_line_description(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 10
