"""`import storyreel`, `--help`, `validate` and `plan` never import a model or video library."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

HEAVY = ["torch", "diffusers", "transformers", "vllm", "xfuser", "ray", "moviepy", "accelerate", "av"]

PROBE = """
import json, sys
from typer.testing import CliRunner
import storyreel
from storyreel.cli import app
runner = CliRunner()
codes = [runner.invoke(app, args).exit_code for args in ({args})]
print(json.dumps({{"codes": codes, "heavy": sorted(m for m in {heavy} if m in sys.modules)}}))
"""


def probe(*commands: list[str]) -> dict:
    code = PROBE.format(args=", ".join(repr(c) for c in commands), heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_and_help_stay_light():
    found = probe(["--help"], ["render", "--help"])
    assert found == {"codes": [0, 0], "heavy": []}


def test_validate_and_plan_stay_light():
    found = probe(
        ["validate", "examples/swan_lake.yaml"],
        ["plan", "examples/swan_lake.yaml", "--json"],
        ["templates"],
        ["schema"],
        # keyframes: the checks ask the keyframe backends (by entry point) which pipelines they load
        ["validate", "examples/lighthouse.yaml"],
        ["plan", "examples/lighthouse.yaml", "--json"],
    )
    assert found == {"codes": [0, 0, 0, 0, 0, 0], "heavy": []}
