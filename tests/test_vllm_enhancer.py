"""The LLM enhancers: `vllm` against a scripted OpenAI-compatible server and a real vLLM server, `vllm-offline`.

Protocol, concurrency, caps and faults are asserted against `ScriptedOpenAI` (tests/scripted_openai.py),
a loopback server whose every answer the test decides. The tests marked `vllm` run vLLM's CPU build
on a tiny random-weight Qwen2 model from the venv that tests/vllm_env.sh builds, as its OpenAI server
and, for `vllm-offline`, in process; they skip, saying so, when that venv is absent (and fail instead
when STORYREEL_REQUIRE_VLLM is set, as in CI). A random model writes gibberish, so those tests assert on
what the protocol guarantees, never on prose.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from scripted_openai import MODEL, Reply, ScriptedOpenAI

from storyreel import Storyboard, plan_film
from storyreel.enhance import EnhancedPrompt, ShotContext, film_context, shot_contexts
from storyreel.enhancer.chat import (
    EnhancerAnswerUnusable,
    EnhancerError,
    EnhancerRejected,
    EnhancerUnavailable,
)
from storyreel.enhancer.clean import UnusableAnswer, clean_caption
from storyreel.enhancer.serve import VLLMServer, serve, serve_command, start_server
from storyreel.enhancer.vllm import VLLMEnhancer
from storyreel.enhancer.vllm_offline import OfflineVLLMEnhancer
from storyreel.errors import MissingExtra, UserError
from storyreel.storyboard import EnhancerSettings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SWAN = "a graceful white swan with a curved neck and delicate feathers"


def swan_lake(*extra_shots: dict[str, Any]) -> Storyboard:
    """A film with a logline, a style, a character and camera fields: two shots, plus any given."""
    return Storyboard.model_validate(
        {
            "storyreel": 1,
            "title": "Swan Lake at Dawn",
            "logline": "A swan's day on a mountain lake, dawn to dusk.",
            "style": "cinematic, 35mm film grain, soft natural light",
            "characters": {"swan": {"description": SWAN}},
            "scenes": [
                {
                    "id": "dawn",
                    "title": "Dawn on the lake",
                    "setting": "a serene mountain lake, mist rising from the still water",
                    "shots": [
                        {
                            "id": "glide",
                            "prompt": "{{ swan }} swims slowly across the lake",
                            "duration": "2s",
                            "camera": {"shot": "wide", "angle": "eye-level", "move": "slow push-in"},
                            "characters": ["swan"],
                        },
                        {"id": "dip", "prompt": "{{ swan }} dips its head into the water", "duration": "2s"},
                        *extra_shots,
                    ],
                }
            ],
        }
    )


def many_shots(count: int) -> Storyboard:
    return swan_lake(
        *(
            {"id": f"extra-{i}", "prompt": f"ripple number {i} spreads", "duration": 1}
            for i in range(count - 2)
        )
    )


def contexts(board: Storyboard) -> tuple[Any, list[ShotContext]]:
    return film_context(board), shot_contexts(board, plan_film(board))


def enhancer_for(url: str, max_words: int = 120, model: str | None = None, **options: Any) -> VLLMEnhancer:
    options.setdefault("timeout", 5.0)
    options.setdefault("first_backoff", 0.01)
    return VLLMEnhancer(
        EnhancerSettings(backend="vllm", url=url, model=model, max_words=max_words), **options
    )


def enhance(
    server: ScriptedOpenAI, board: Storyboard | None = None, **options: Any
) -> dict[str, EnhancedPrompt]:
    film, shots = contexts(board or swan_lake())
    return {prompt.shot_id: prompt for prompt in enhancer_for(server.url, **options).enhance(film, shots)}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server():
    with ScriptedOpenAI() as scripted:
        yield scripted


# --- requests ------------------------------------------------------------------------------------------------


def test_each_request_carries_the_story_and_only_its_own_shot(server: ScriptedOpenAI) -> None:
    prompts = enhance(server)

    assert set(prompts) == {"glide", "dip"}
    glide, dip = server.requests_for(SWAN + " swims")[0], server.requests_for(SWAN + " dips")[0]
    assert glide.body["model"] == MODEL
    assert (glide.body["temperature"], glide.body["seed"], glide.body["max_tokens"]) == (0.0, 42, 304)
    assert [m["role"] for m in glide.body["messages"]] == ["system", "user"]
    for text in (
        "Swan Lake at Dawn",
        "A swan's day on a mountain lake",
        "35mm film grain",
        "at most 120 words",
    ):
        assert text in glide.system
    assert glide.system == dip.system  # one shared prefix for the server's cache
    assert "Setting: a serene mountain lake, mist rising" in glide.user
    assert f"- swan: {SWAN}" in glide.user
    assert "Shot type: Wide shot" in glide.user
    assert "Camera angle: at eye level" in glide.user
    assert "Camera motion: the camera slowly pushes in" in glide.user
    assert "dips its head" not in glide.user and "swims slowly" not in dip.user
    assert "without a cut" in dip.user and "without a cut" not in glide.user  # dip continues glide


def test_prompts_come_back_in_shot_order_as_each_answer_arrives(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(
        f"Medium shot: {request.prompt}.", delay=0.6 if "swims" in request.prompt else 0.0
    )
    film, shots = contexts(swan_lake())
    arrived: list[tuple[str, float]] = []
    started = time.monotonic()

    prompts = enhancer_for(server.url).enhance(
        film, shots, on_result=lambda p: arrived.append((p.shot_id, time.monotonic()))
    )

    assert [p.shot_id for p in prompts] == ["glide", "dip"]
    assert [shot_id for shot_id, _ in arrived] == ["dip", "glide"]  # dip was answered first
    assert arrived[0][1] - started < 0.5  # delivered before the slow answer came in
    assert prompts[0] == EnhancedPrompt(
        "glide", f"Medium shot: {SWAN} swims slowly across the lake.", "vllm", MODEL
    )


def test_at_most_concurrency_requests_are_in_flight(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(f"Medium shot: {request.prompt}.", delay=0.2)
    started = time.monotonic()

    prompts = enhance(server, many_shots(12), concurrency=3)

    elapsed = time.monotonic() - started
    assert len(prompts) == 12 and len(server.requests) == 12
    assert server.max_in_flight == 3
    assert 0.8 <= elapsed < 12 * 0.2  # four rounds of three, not twelve one at a time


def test_no_shots_send_no_request(server: ScriptedOpenAI) -> None:
    assert enhancer_for(server.url).enhance(film_context(swan_lake()), []) == []
    assert server.requests == [] and server.model_listings == 0


# --- answers -------------------------------------------------------------------------------------------------


def test_preamble_quotes_and_markdown_are_stripped(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(
        'Sure! Here is the enhanced prompt:\n\n**"Wide shot at eye level: a *white* swan glides across the lake."**'
        "\n\nLet me know if you would like any changes!"
    )
    assert {p.prompt for p in enhance(server).values()} == {
        "Wide shot at eye level: a white swan glides across the lake."
    }


@pytest.mark.parametrize(
    ("answer", "caption"),
    [
        ("Certainly, here is the caption: a swan glides across the lake.", "A swan glides across the lake."),
        (
            "## Enhanced prompt\n\n- Wide shot: a swan glides.\n- Mist rises.",
            "Wide shot: a swan glides. Mist rises.",
        ),
        ("Enhanced prompt: “A swan glides over the lake”.", "A swan glides over the lake."),
        (
            "1. Wide shot: a swan glides\n2. Mist rises over the lake",
            "Wide shot: a swan glides. Mist rises over the lake.",
        ),
        (
            "**Shot:** Wide shot\n**Subject:** A white swan glides",
            "Shot: Wide shot. Subject: A white swan glides.",
        ),
        (
            "<think>The user wants a caption.</think>\nClose-up: a heron (苍鹭) strikes the water.",
            "Close-up: a heron strikes the water.",
        ),
        ("Great white egrets wade through the shallows.", "Great white egrets wade through the shallows."),
        (
            "Caption\n\nWide shot: a swan glides on.\n\nThis caption captures the calm.",
            "Wide shot: a swan glides on.",
        ),
    ],
)
def test_clean_caption_keeps_only_the_caption(answer: str, caption: str) -> None:
    assert clean_caption(answer, 120) == caption


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("   \n\n  ", "empty"),
        ("一只优雅的白天鹅在薄雾笼罩的湖面上缓缓游过。", "not in English"),
        ("I'm sorry, but I can't help with that request.", "declined"),
        ("Okay.", "empty"),
        ("A swan.", "too short"),
    ],
)
def test_clean_caption_rejects_unusable_answers(answer: str, reason: str) -> None:
    with pytest.raises(UnusableAnswer, match=reason):
        clean_caption(answer, 120)


def test_an_over_long_answer_ends_after_its_last_whole_sentence_within_max_words(
    server: ScriptedOpenAI,
) -> None:
    sentence = "A white swan glides slowly across the misty mountain lake at dawn."  # 12 words
    server.respond = lambda request: Reply(" ".join([sentence] * 10))

    prompts = enhance(server, max_words=40)

    assert {p.prompt for p in prompts.values()} == {" ".join([sentence] * 3)}


def test_an_answer_cut_by_the_token_limit_loses_its_unfinished_sentence(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(
        "Wide shot: a swan glides. Mist rises from the water as the", finish_reason="length"
    )
    assert {p.prompt for p in enhance(server).values()} == {"Wide shot: a swan glides."}


def test_an_answer_in_another_script_is_asked_for_again(server: ScriptedOpenAI) -> None:
    server.replies = [Reply("一只优雅的白天鹅在薄雾笼罩的湖面上缓缓游过。")]

    prompts = enhance(server, concurrency=1)

    retried = [request for request in server.requests if request.prompt == server.requests[0].prompt]
    assert len(retried) == 2 and len(server.requests) == 3
    assert (retried[1].body["temperature"], retried[1].body["seed"]) == (
        0.7,
        43,
    )  # a new draw, still reproducible
    assert retried[1].body["messages"] == retried[0].body["messages"]
    assert all(p.prompt.isascii() for p in prompts.values())


def test_a_shot_without_a_usable_answer_fails_clearly_and_the_others_are_kept(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(
        "" if "dips" in request.prompt else f"Medium shot: {request.prompt}."
    )
    film, shots = contexts(swan_lake())
    delivered: list[str] = []

    with pytest.raises(EnhancerAnswerUnusable) as failure:
        enhancer_for(server.url).enhance(film, shots, on_result=lambda p: delivered.append(p.shot_id))

    message = str(failure.value)
    assert "shot 'dip': the answer is empty" in message and "3 tries" in message
    assert server.url in message and "--enhancer template" in message
    assert failure.value.failures == {"dip": "the answer is empty"}
    assert [p.shot_id for p in failure.value.results] == delivered == ["glide"]
    assert len(server.requests_for("dips")) == 3
    assert isinstance(failure.value, UserError) and failure.value.exit_code == 1


def test_an_answer_without_choices_counts_as_unusable(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(body={"object": "chat.completion", "choices": []})
    with pytest.raises(EnhancerAnswerUnusable, match="has no message"):
        enhance(server)


# --- faults --------------------------------------------------------------------------------------------------


def test_server_errors_are_retried_with_backoff(server: ScriptedOpenAI) -> None:
    server.replies = [Reply(status=500), Reply(status=503), Reply(status=502)]

    prompts = enhance(server, concurrency=1, first_backoff=0.05)

    assert len(prompts) == 2 and len(server.requests) == 5
    gaps = [b.at - a.at for a, b in zip(server.requests, server.requests[1:4], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.08 and gaps[2] >= 0.16  # exponential backoff


def test_429_waits_as_long_as_retry_after_says(server: ScriptedOpenAI) -> None:
    server.replies = [Reply(status=429, headers={"Retry-After": "1"})]

    prompts = enhance(server, concurrency=1)

    assert len(prompts) == 2
    first, second = server.requests[:2]
    assert first.prompt == second.prompt
    assert second.at - first.at >= 0.95


def test_a_retry_after_beyond_the_time_allowed_fails_at_once(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(status=429, headers={"Retry-After": "120"})
    started = time.monotonic()

    with pytest.raises(EnhancerUnavailable, match="asked to retry after 120 s"):
        enhance(server, timeout=2.0)

    assert time.monotonic() - started < 2


def test_a_refused_connection_fails_in_bounded_time_naming_the_url_and_how_to_start_a_server() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()

    with pytest.raises(EnhancerUnavailable) as failure:
        enhancer_for(url, timeout=1.0, first_backoff=0.1).enhance(*contexts(many_shots(20)))

    assert time.monotonic() - started < 3
    message = str(failure.value)
    assert f"cannot get an answer from the enhancer server at {url} (connection refused;" in message
    assert "storyreel enhancer serve --model Qwen/Qwen2.5-32B-Instruct --port" in message
    assert "STORYREEL_ENHANCER_URL" in message
    assert isinstance(failure.value, UserError)


def test_a_slow_answer_is_retried_and_a_server_that_stays_slow_gives_up(server: ScriptedOpenAI) -> None:
    server.replies = [Reply("Medium shot: a swan glides across the lake.", delay=1.0)]
    prompts = enhance(server, concurrency=1, request_timeout=0.3)
    assert len(prompts) == 2 and len(server.requests) == 3

    server.respond = lambda request: Reply("Medium shot: a swan glides across the lake.", delay=1.0)
    started = time.monotonic()
    with pytest.raises(EnhancerUnavailable, match="no answer within the timeout"):
        enhance(server, request_timeout=0.3, timeout=1.0)
    assert time.monotonic() - started < 3


def test_a_request_the_server_refuses_is_not_retried(server: ScriptedOpenAI) -> None:
    message = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."
    server.respond = lambda request: Reply(status=400, body={"error": {"message": message, "code": 400}})

    with pytest.raises(EnhancerRejected) as failure:
        enhance(server, concurrency=1)

    assert f"the enhancer server at {server.url} refused the request (HTTP 400: {message})" in str(
        failure.value
    )
    assert len(server.requests) == 1  # the first refusal stops the other shot too


def test_an_api_key_from_the_environment_is_sent(
    server: ScriptedOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYREEL_ENHANCER_API_KEY", "secret-key")
    enhance(server)
    assert {r.headers.get("Authorization") for r in server.requests} == {"Bearer secret-key"}


def test_a_wrong_api_key_is_a_rejection_that_says_which_variable_to_set(server: ScriptedOpenAI) -> None:
    server.respond = lambda request: Reply(status=401)
    with pytest.raises(EnhancerRejected, match=r"HTTP 401: .*set \$STORYREEL_ENHANCER_API_KEY"):
        enhance(server)


# --- model, url, templates, fingerprint ----------------------------------------------------------------------


def test_without_a_model_the_served_one_is_used_and_a_wrong_one_is_named() -> None:
    with ScriptedOpenAI(models=["Qwen/Qwen2.5-7B-Instruct"]) as server:
        prompts = enhance(server)
        assert {p.model for p in prompts.values()} == {"Qwen/Qwen2.5-7B-Instruct"}
        assert {r.body["model"] for r in server.requests} == {"Qwen/Qwen2.5-7B-Instruct"}

        with pytest.raises(EnhancerRejected) as failure:
            enhance(server, model="Qwen/Qwen2.5-32B-Instruct")
        assert str(failure.value) == (
            f"enhancer.model: 'Qwen/Qwen2.5-32B-Instruct' is not served at {server.url}, which serves: "
            "Qwen/Qwen2.5-7B-Instruct; set enhancer.model to one of those, or start a server for it with: "
            "storyreel enhancer serve --model Qwen/Qwen2.5-32B-Instruct"
        )
        assert len(server.requests) == 2  # only the first film's


def test_the_url_comes_from_the_settings_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STORYREEL_ENHANCER_URL", raising=False)
    assert VLLMEnhancer(EnhancerSettings(backend="vllm")).url == "http://127.0.0.1:8000/v1"
    monkeypatch.setenv("STORYREEL_ENHANCER_URL", "gpu-box:9000")
    assert VLLMEnhancer(EnhancerSettings(backend="vllm")).url == "http://gpu-box:9000/v1"
    settings = EnhancerSettings(backend="vllm", url="http://127.0.0.1:8001/v1/chat/completions")
    assert VLLMEnhancer(settings).url == "http://127.0.0.1:8001/v1"


def test_concurrency_and_the_retry_window_come_from_the_settings() -> None:
    enhancer = VLLMEnhancer(EnhancerSettings(backend="vllm", concurrency=3, timeout=30))
    assert (enhancer.concurrency, enhancer.timeout, enhancer.request_timeout) == (3, 30.0, 120.0)


def test_a_system_template_can_be_replaced_by_a_file(server: ScriptedOpenAI, tmp_path: Path) -> None:
    template = tmp_path / "system.j2"
    template.write_text("Caption shots of {{ film.title }} in at most {{ max_words }} words.\n")
    settings = EnhancerSettings(backend="vllm", url=server.url, max_words=60, system_template=str(template))

    prompts = VLLMEnhancer(settings).enhance(*contexts(swan_lake()))

    assert len(prompts) == 2
    assert {r.system for r in server.requests} == {"Caption shots of Swan Lake at Dawn in at most 60 words."}


def test_a_broken_template_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="enhancer.system_template: cannot read '.*missing.j2'"):
        enhancer_for("http://127.0.0.1:1/v1", system_template=tmp_path / "missing.j2")
    broken = tmp_path / "broken.j2"
    broken.write_text("Title: {{ film.title }}\n{% if film.style %}no end\n")
    with pytest.raises(UserError, match=r"broken.j2:\d+: Unexpected end of template"):
        enhancer_for("http://127.0.0.1:1/v1", system_template=broken)
    unknown = tmp_path / "unknown.j2"
    unknown.write_text("{{ director }}")
    with ScriptedOpenAI() as server, pytest.raises(UserError, match="unknown.j2: 'director' is undefined"):
        enhance(server, system_template=unknown)


def test_the_fingerprint_follows_what_decides_the_prompts_and_not_the_url(tmp_path: Path) -> None:
    def fingerprint(
        url: str = "http://a:1/v1", model: str | None = "m", max_words: int = 120, **options: Any
    ) -> str:
        return enhancer_for(url, model=model, max_words=max_words, **options).fingerprint()

    template = tmp_path / "user.j2"
    template.write_text("Prompt: {{ shot.prompt }}")
    base = fingerprint()
    assert (
        base == fingerprint() == fingerprint(url="http://b:2/v1", concurrency=1, timeout=5, request_timeout=9)
    )
    assert len(base) == 64
    variants = {
        fingerprint(model="other"),
        fingerprint(max_words=80),
        fingerprint(user_template=template),
        base,
    }
    assert len(variants) == 4
    settings = EnhancerSettings(backend="vllm-offline", model="m")
    assert OfflineVLLMEnhancer(settings).fingerprint() != base


# --- light core, serving, offline ----------------------------------------------------------------------------


def test_the_backends_import_no_model_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        import storyreel.enhancer.vllm, storyreel.enhancer.vllm_offline, storyreel.enhancer.serve
        heavy = {"vllm", "torch", "transformers", "openai", "httpx"} & set(sys.modules)
        print(sorted(heavy))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_offline_backend_names_the_extra_it_needs() -> None:
    if _has_module("vllm"):
        pytest.skip("vllm is installed here")
    enhancer = OfflineVLLMEnhancer(
        EnhancerSettings(backend="vllm-offline", model="Qwen/Qwen2.5-32B-Instruct")
    )
    with pytest.raises(
        MissingExtra, match=r"the vllm-offline enhancer needs vllm.*pip install 'storyreel\[vllm\]'"
    ):
        enhancer.enhance(*contexts(swan_lake()))
    with pytest.raises(UserError, match="enhancer.model: the vllm-offline enhancer needs a model"):
        OfflineVLLMEnhancer(EnhancerSettings(backend="vllm-offline"))


def test_serve_without_vllm_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    if _has_module("vllm"):
        pytest.skip("vllm is installed here")
    monkeypatch.delenv("STORYREEL_VLLM_PYTHON", raising=False)
    with pytest.raises(MissingExtra) as failure:
        serve("Qwen/Qwen2.5-32B-Instruct")
    assert str(failure.value) == (
        "storyreel enhancer serve needs vllm, which is not installed; install it with: pip install "
        "'storyreel[vllm]', or set $STORYREEL_VLLM_PYTHON to the python of a venv that has vLLM"
    )


def test_the_serve_command_has_settings_for_this_job() -> None:
    command = serve_command(
        "Qwen/Qwen2.5-32B-Instruct",
        port=8100,
        tensor_parallel_size=2,
        python="py",
        extra_args=["--max-model-len", "8192"],
    )
    assert command[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(command)
    for option in (
        "--model Qwen/Qwen2.5-32B-Instruct",
        "--host 127.0.0.1",
        "--port 8100",
        "--tensor-parallel-size 2",
        "--generation-config vllm",
        "--seed 42",
    ):
        assert option in text
    assert command[-2:] == ["--max-model-len", "8192"]  # extra arguments come last, so they win


def test_start_server_waits_until_the_server_answers_then_stops_it(tmp_path: Path) -> None:
    port = closed_port()
    command = [sys.executable, str(TESTS / "scripted_openai.py"), "--port", str(port), "--start-after", "1"]
    started = time.monotonic()

    server = start_server(command, f"http://127.0.0.1:{port}/v1", log=tmp_path / "server.log", wait=30)

    try:
        assert isinstance(server, VLLMServer)
        assert time.monotonic() - started >= 1
        assert (server.url, server.models) == (f"http://127.0.0.1:{port}/v1", [MODEL])
        assert len(enhancer_for(server.url).enhance(*contexts(swan_lake()))) == 2
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert "serving" in (tmp_path / "server.log").read_text()


def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('RuntimeError: no accelerator found'); sys.exit(3)"]
    with pytest.raises(EnhancerError) as failure:
        start_server(command, "http://127.0.0.1:1/v1", log=tmp_path / "server.log", wait=30)
    assert "the vLLM server exited with code 3 before it was ready" in str(failure.value)
    assert "RuntimeError: no accelerator found" in str(failure.value)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --- a real vLLM server (CPU build, tiny random Qwen2) -------------------------------------------------------

VLLM_VENV = Path(
    os.environ.get("STORYREEL_VLLM_VENV")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "storyreel-vllm" / "venv"
)
TINY_MODEL = "tiny-qwen2"


def _vllm_venv() -> Path:
    if (VLLM_VENV / ".storyreel-ready").is_file() and (VLLM_VENV / TINY_MODEL / "config.json").is_file():
        return VLLM_VENV
    reason = f"no vLLM test venv at {VLLM_VENV}; create it with: bash tests/vllm_env.sh (~5 min, 3 GB)"
    if os.environ.get("STORYREEL_REQUIRE_VLLM"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def vllm_server():
    """vLLM's OpenAI server on loopback serving the tiny model, started once (~50 s) through `serve`; it
    stops when this module's tests are done, so it does not sit on the CPU and memory while others run."""
    venv = _vllm_venv()
    server = serve(
        str(venv / TINY_MODEL),
        port=None,
        served_model_name=TINY_MODEL,
        python=str(venv / "bin" / "python"),
        extra_args=["--enforce-eager"],
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        wait=300,
    )
    yield server
    server.stop()


@pytest.mark.vllm
def test_a_real_vllm_server_enhances_every_shot_concurrently_and_reproducibly(
    vllm_server: VLLMServer,
) -> None:
    assert vllm_server.models == [TINY_MODEL]
    film, shots = contexts(many_shots(6))
    delivered: list[EnhancedPrompt] = []

    prompts = enhancer_for(vllm_server.url, max_words=30, concurrency=4).enhance(
        film, shots, on_result=delivered.append
    )

    assert [p.shot_id for p in prompts] == [shot.id for shot in shots]
    assert sorted(delivered, key=lambda p: p.shot_id) == sorted(prompts, key=lambda p: p.shot_id)
    for prompt in prompts:
        assert (prompt.source, prompt.model) == ("vllm", TINY_MODEL)
        assert 4 <= len(prompt.prompt.split()) <= 30
        assert prompt.prompt.isascii() and "\n" not in prompt.prompt
    again = enhancer_for(vllm_server.url, max_words=30, concurrency=1).enhance(film, shots)
    assert again == prompts  # temperature 0 and a fixed seed: the same answers


@pytest.mark.vllm
def test_a_real_vllm_server_names_what_it_serves_and_refuses_a_prompt_beyond_its_context(
    vllm_server: VLLMServer,
) -> None:
    with pytest.raises(EnhancerRejected, match=f"which serves: {TINY_MODEL}"):
        enhancer_for(vllm_server.url, model="Qwen/Qwen2.5-32B-Instruct").enhance(*contexts(swan_lake()))

    board = swan_lake({"id": "epic", "prompt": "a swan glides " * 3000, "duration": 1})
    with pytest.raises(EnhancerRejected, match=r"refused the request \(HTTP 400: .*context length"):
        enhancer_for(vllm_server.url).enhance(*contexts(board))


OFFLINE = """
import json, sys
from storyreel.enhance import FilmContext, ShotContext
from storyreel.storyboard import EnhancerSettings
from storyreel.enhancer.vllm_offline import OfflineVLLMEnhancer

shots = [
    ShotContext(id=f"shot-{i}", scene="lake", scene_title=None, setting="a misty lake", prompt=f"a swan glides, take {i}",
                camera=None, characters={}, mode="fresh", seconds=2.0)
    for i in range(3)
]
settings = EnhancerSettings(backend="vllm-offline", model=sys.argv[1], max_words=30)
enhancer = OfflineVLLMEnhancer(settings, engine_args={"enforce_eager": True, "served_model_name": "tiny-qwen2"})
delivered = []
prompts = enhancer.enhance(FilmContext(title="Swan"), shots, on_result=lambda p: delivered.append(p.shot_id))
import psutil
engines = [
    " ".join(child.cmdline())[:120]
    for child in psutil.Process().children(recursive=True)
    if child.status() != "zombie" and "resource_tracker" not in " ".join(child.cmdline())
]
print(json.dumps({"prompts": [[p.shot_id, p.prompt, p.source] for p in prompts], "delivered": delivered, "engines": engines}))
"""


def storyreel_source_tree(root: Path) -> Path:
    """storyreel laid out under ``root`` as it is installed (the core, and the enhancers as storyreel.enhancer).

    The vLLM venv cannot install storyreel (their dependencies clash), so it imports it from here.
    """
    package = root / "storyreel"
    package.mkdir(parents=True)
    for entry in (REPO / "storyreel").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "enhancer").symlink_to(REPO / "enhancer")
    return root


@pytest.mark.vllm
def test_the_offline_backend_answers_in_process_then_lets_the_engine_go(tmp_path: Path) -> None:
    venv = _vllm_venv()
    env = {
        **os.environ,
        "PYTHONPATH": str(storyreel_source_tree(tmp_path / "src")),
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", OFFLINE, str(venv / TINY_MODEL)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # `-c` puts the working folder first on sys.path: not the checkout, whose storyreel/ is the core alone
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        [shot_id for shot_id, _, _ in answer["prompts"]]
        == answer["delivered"]
        == ["shot-0", "shot-1", "shot-2"]
    )
    for _, prompt, source in answer["prompts"]:
        assert source == "vllm-offline" and 4 <= len(prompt.split()) <= 30
    assert answer["engines"] == []  # vLLM's engine process is gone once enhance returns
