"""An enhancer URL where nothing listens fails within seconds; --enhancer-wait waits for a server still starting."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.manifest import Manifest

from conftest import small_board

TESTS = Path(__file__).resolve().parent


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed, so the OS refuses connections to it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_is_down_fails_within_seconds_with_the_fix(write_story, tmp_path):
    story = write_story(small_board())
    port = closed_port()
    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        ["render", str(story), "--out", str(tmp_path / "out"), "--enhancer", "vllm",
         "--enhancer-url", f"http://127.0.0.1:{port}/v1"],
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert (
        f"cannot get an answer from the enhancer server at http://127.0.0.1:{port}/v1 (connection refused;"
        in message
    )
    assert "--enhancer-wait SECONDS" in message and "storyreel enhancer serve" in message
    assert elapsed < 10  # it used to retry for two minutes
    assert not (tmp_path / "out" / "shots").exists()  # nothing was generated


def test_enhancer_wait_waits_for_a_server_that_starts_listening_late(write_story, tmp_path):
    story = write_story(small_board())
    port = closed_port()
    server = subprocess.Popen(
        [sys.executable, str(TESTS / "scripted_openai.py"), "--port", str(port), "--start-after", "4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = CliRunner().invoke(
            app,
            ["render", str(story), "--out", str(tmp_path / "out"), "--enhancer", "vllm",
             "--enhancer-url", f"http://127.0.0.1:{port}/v1", "--enhancer-wait", "60"],
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait()
    assert result.exit_code == 0, result.output
    manifest = Manifest.read(tmp_path / "out" / "manifest.json")
    assert {shot.enhanced_by for shot in manifest.shots} == {"vllm"}


def test_the_wait_is_a_storyboard_setting_too(write_story, tmp_path):
    board = small_board()
    board["enhancer"] = {"backend": "vllm", "url": f"http://127.0.0.1:{closed_port()}/v1", "wait": 1}
    result = CliRunner().invoke(app, ["render", str(write_story(board)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "(connection refused;" in result.output and "over 1 s" in " ".join(result.output.split())


@pytest.mark.parametrize("value", ["-1", "4000"])
def test_a_wait_out_of_range_is_a_usage_error(write_story, value):
    result = CliRunner().invoke(app, ["render", str(write_story(small_board())), "--enhancer-wait", value])
    assert result.exit_code != 0 and "--enhancer-wait" in result.output
