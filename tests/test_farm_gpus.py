"""A cluster render checks its workers against the cluster's GPUs before any shot is made.

The cluster here is a local Ray instance that declares two GPUs (Ray schedules by declared resources), so
the checks run as they would on a two-GPU machine; every case stops before a worker starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storyreel.cli import app

from conftest import local_ray

ray = pytest.importorskip("ray")
runner = CliRunner()
TINY = {"resolution": "64x64", "fps": 16, "steps": 2, "base_num_frames": 17, "overlap_history": 5}


@pytest.fixture(scope="module", autouse=True)
def two_gpu_cluster() -> Iterator[None]:
    with local_ray(num_cpus=1, num_gpus=2):
        yield


@pytest.fixture(scope="module")
def four_heads(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny SkyReels-V2 model with a transformer of four attention heads, so that --gpus-per-shot 4 can
    split it (Ulysses) and the checks that follow are the cluster's."""
    pytest.importorskip("diffusers")
    from diffusers import SkyReelsV2Transformer3DModel
    from tiny_skyreels import build_tiny_skyreels

    folder = build_tiny_skyreels(tmp_path_factory.mktemp("model") / "df")
    config = dict(SkyReelsV2Transformer3DModel.load_config(folder / "transformer"))
    config.update(num_attention_heads=4, attention_head_dim=6)  # the same width, 24
    SkyReelsV2Transformer3DModel.from_config(config).save_pretrained(folder / "transformer")
    return str(folder)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--workers", "3"],
            "--workers 3 with 1 GPU(s) each needs 3 GPUs, but the cluster has 2; use --workers 2 or fewer",
        ),
        (
            ["--workers", "2", "--gpus-per-shot", "2", "--model", "{model}"],
            "--workers 2 with 2 GPU(s) each needs 4 GPUs, but the cluster has 2; use --workers 1 or fewer",
        ),
        (
            ["--workers", "1", "--gpus-per-shot", "4", "--model", "{model}"],
            "--gpus-per-shot 4 does not divide the cluster's 2 GPU(s)",
        ),
    ],
)
def test_workers_beyond_the_clusters_gpus_stop_the_render(
    args: list[str], message: str, write_story: Any, tmp_path: Path, four_heads: str
) -> None:
    story = write_story(
        {
            "storyreel": 1,
            "generation": TINY,
            "scenes": [{"id": "s", "shots": [{"id": "a", "prompt": "p", "duration": 1}]}],
        }
    )
    args = [arg.format(model=four_heads) for arg in args]
    result = runner.invoke(app, ["render", str(story), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out" / "shots").exists() or not any((tmp_path / "out" / "shots").iterdir())
