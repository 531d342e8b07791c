#!/usr/bin/env bash
# Everything CI checks, cheapest first: lint, formatting, types (storyreel/, generators/, enhancer/), then
# the tests, whose doctest module runs every >>> example in the code. Arguments go to pytest.
#
#   bash tests/run.sh                  # after the README's setup; STORYREEL_REQUIRE_VLLM=1 fails instead of
#                                      # skipping when the vLLM test venv (tests/vllm_env.sh) is missing, and
#                                      # when no Chromium is found for the review page's browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
# The review page is tested in a real headless Chromium: install it where it is missing and apt can.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ -z "${STORYREEL_CHROMIUM:-}" ] \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium
fi
export STORYREEL_REQUIRE_CHROMIUM="${STORYREEL_REQUIRE_CHROMIUM:-${STORYREEL_REQUIRE_VLLM:-}}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
