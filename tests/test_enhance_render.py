"""The vllm enhancer inside a render and the CLI: found by name, prompts locked, faults handled, served."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from scripted_openai import MODEL, Reply, ScriptedOpenAI
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.enhance import open_enhancer
from storyreel.manifest import Manifest
from storyreel.prompt_lock import PromptLock, lock_path_for
from storyreel.storyboard import EnhancerSettings

from conftest import small_board

TESTS = Path(__file__).resolve().parent


def test_the_vllm_backends_are_found_by_name() -> None:
    from storyreel.enhancer.vllm import VLLMEnhancer

    assert isinstance(open_enhancer("vllm", EnhancerSettings(backend="vllm")), VLLMEnhancer)
    assert (
        open_enhancer("vllm-offline", EnhancerSettings(backend="vllm-offline", model="m")).name
        == "vllm-offline"
    )


def test_a_render_enhances_through_the_server_once_and_locks_the_answers(write_story, tmp_path: Path) -> None:
    story = write_story(small_board())
    with ScriptedOpenAI() as server:
        first = storyreel.render(story, out=tmp_path / "a", enhancer="vllm", enhancer_url=server.url)
        assert len(server.requests) == 4  # one request per shot, all in one go
        second = storyreel.render(story, out=tmp_path / "b", enhancer="vllm", enhancer_url=server.url)
        assert len(server.requests) == 4  # nothing asked again
    assert {(s.enhanced_by, s.enhancer_model, s.prompt_origin) for s in first.shots} == {
        ("vllm", MODEL, "enhancer")
    }
    assert {s.prompt_origin for s in second.shots} == {"lock"}
    assert first.shot("glide").enhanced_prompt.startswith("Medium shot: a white swan glides")
    assert [s.cached for s in second.shots] == [True] * 4  # same prompts, so the same shots
    assert sorted(PromptLock.load(lock_path_for(story), "story.yaml").entries) == [
        "dip",
        "glide",
        "heron",
        "rise",
    ]


def test_cli_render_with_an_unreachable_server_fails_clearly_and_renders_nothing(
    write_story, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    story = write_story({**small_board(), "enhancer": {"backend": "vllm", "timeout": 1}})
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["render", str(story), "--out", str(out), "--enhancer-url", f"http://127.0.0.1:{port}/v1"]
    )
    assert result.exit_code == 1, result.output
    assert f"127.0.0.1:{port}" in result.output and "storyreel enhancer serve" in result.output
    assert "Traceback" not in result.output and not list((out / "shots").glob("*.mp4"))


def test_cli_render_falls_back_to_the_template_enhancer_when_asked(write_story, tmp_path: Path) -> None:
    story = write_story(small_board())
    out = tmp_path / "out"
    with ScriptedOpenAI(
        replies=[Reply("Wide shot: a swan glides over the lake at dawn.")],
        respond=lambda r: Reply(status=400, body={"error": {"message": "bad request"}}),
    ) as server:
        result = CliRunner().invoke(
            app,
            [
                "render",
                str(story),
                "--out",
                str(out),
                "--enhancer",
                "vllm",
                "--enhancer-url",
                server.url,
                "--enhancer-fallback",
                "template",
            ],  # fmt: skip
        )
    assert result.exit_code == 0, result.output
    manifest = Manifest.read(out / "manifest.json")
    origins = sorted(s.prompt_origin for s in manifest.shots)
    assert "fallback" in origins and all(o in ("enhancer", "fallback") for o in origins)
    assert "the template enhancer writes the prompts" in result.output


def test_enhancer_serve_says_which_enhancers_have_a_server_to_start() -> None:
    result = CliRunner().invoke(app, ["enhancer", "serve", "--backend", "template"])

    assert result.exit_code == 1
    assert result.output == (
        "error: the template enhancer talks to no server of its own, so there is none to start; "
        "choose one that does with --backend: vllm\n"
    )


# Stands in for the python of a venv with vLLM: it is run as `python -m vllm.entrypoints.openai.api_server
# --model ... --port N ...`, records those arguments, and serves scripted answers on port N.
STAND_IN = """\
#!{python}
import json, runpy, sys
arguments = sys.argv[1:]
with open({record!r}, "w") as record:
    json.dump(arguments, record)
sys.argv = ["scripted_openai.py", "--port", arguments[arguments.index("--port") + 1]]
runpy.run_path({scripted!r}, run_name="__main__")
"""


def test_enhancer_serve_starts_the_vllm_server_prints_its_url_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    record = tmp_path / "arguments.json"
    python = tmp_path / "python"
    python.write_text(
        STAND_IN.format(python=sys.executable, record=str(record), scripted=str(TESTS / "scripted_openai.py"))
    )
    python.chmod(0o755)
    command = subprocess.Popen(
        [sys.executable, "-c", "from storyreel.cli import main; main()", "enhancer", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STORYREEL_VLLM_PYTHON": str(python)},
    )
    try:
        url = (
            command.stdout.readline().strip()
        )  # printed once the server answers; empty if the command failed
        if url:
            with urllib.request.urlopen(url + "/models", timeout=5) as response:
                assert [m["id"] for m in json.load(response)["data"]] == [MODEL]
    finally:
        command.send_signal(signal.SIGINT)  # Ctrl-C
        _, errors = command.communicate(timeout=30)

    assert url and command.returncode == 0, errors
    arguments = json.loads(record.read_text())
    assert arguments[:4] == [
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "Qwen/Qwen2.5-32B-Instruct",
    ]
    assert url == f"http://127.0.0.1:{arguments[arguments.index('--port') + 1]}/v1"
    assert "starting the vllm enhancer's server for its default model" in errors
    assert f"ready: serving {MODEL}; render with --enhancer vllm --enhancer-url {url}" in errors
    assert errors.rstrip().endswith("server stopped")
    with socket.socket() as probe:  # the server went with the command
        assert probe.connect_ex(("127.0.0.1", urllib.parse.urlsplit(url).port)) != 0
