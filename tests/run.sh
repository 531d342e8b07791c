#!/usr/bin/env bash
# Everything CI checks, cheapest first: lint, formatting, types (storyreel/, generators/, enhancer/), then
# the tests, whose doctest module runs every >>> example in the code. Arguments go to pytest.
#
#   bash tests/run.sh                  # after the README's setup; STORYREEL_REQUIRE_VLLM=1 fails instead of
#                                      # skipping when the vLLM test venv (tests/vllm_env.sh) is missing
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
