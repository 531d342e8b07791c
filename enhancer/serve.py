"""Starting a vLLM OpenAI-compatible server for the ``vllm`` enhancer, and waiting until it answers.

:func:`serve` builds the command line (:func:`serve_command`), starts the server in its own process
group, polls ``/health`` and then ``/v1/models`` until the model is loaded, and returns a
:class:`VLLMServer` whose ``url`` goes into ``enhancer.url`` or ``--enhancer-url``. The settings suit
this job: the server listens on loopback unless told otherwise, the context is 4096 tokens (a
request is a ~600-token system prompt, the shot and a caption of a few hundred tokens), the model's
own generation defaults are ignored so that the enhancer's request alone decides the sampling,
the seed is fixed, and the access log is off.

>>> serve_command("Qwen/Qwen2.5-32B-Instruct", port=8000, tensor_parallel_size=2, python="python")[:8]
['python', '-m', 'vllm.entrypoints.openai.api_server', '--model', 'Qwen/Qwen2.5-32B-Instruct', '--host', '127.0.0.1', '--port']

In code (the ``storyreel enhancer serve`` command does the same, then waits until Ctrl-C)::

    server = serve("Qwen/Qwen2.5-32B-Instruct", tensor_parallel_size=2)
    print(server.url)          # http://127.0.0.1:8000/v1
    ...
    server.stop()
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from storyreel.errors import MissingExtra

from .chat import DEFAULT_MODEL, SEED, EnhancerError

PYTHON_ENV = "STORYREEL_VLLM_PYTHON"
DEFAULT_PORT = 8000
MAX_MODEL_LEN = 4096
# Loading a 32B model from a local disk takes minutes; compiling CUDA graphs adds more.
DEFAULT_WAIT = 1200.0


def serve_command(
    model: str = DEFAULT_MODEL,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tensor_parallel_size: int = 1,
    max_model_len: int = MAX_MODEL_LEN,
    served_model_name: str | None = None,
    python: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that starts vLLM's OpenAI-compatible server for ``model``.

    ``python`` is the interpreter that has vLLM installed: ``$STORYREEL_VLLM_PYTHON`` or this one by
    default. ``extra_args`` go last, so they override anything set here (``--enforce-eager`` on a CPU).
    """
    command = [
        python or os.environ.get(PYTHON_ENV) or sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        host,
        "--port",
        str(port),
        "--tensor-parallel-size",
        str(tensor_parallel_size),
        "--max-model-len",
        str(max_model_len),
        "--generation-config",
        "vllm",
        "--seed",
        str(SEED),
        "--disable-uvicorn-access-log",
    ]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    return command + list(extra_args)


@dataclass
class VLLMServer:
    """A running server: its API base ``url``, the ``models`` it serves, its process and its log file."""

    url: str
    models: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str] = field(default_factory=list)

    def stop(self, grace: float = 30.0) -> None:
        """Stop the server and the engine processes it started (SIGTERM, then SIGKILL after ``grace`` s)."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        return self.process.wait()

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model: str = DEFAULT_MODEL,
    *,
    host: str = "127.0.0.1",
    port: int | None = DEFAULT_PORT,
    tensor_parallel_size: int = 1,
    max_model_len: int = MAX_MODEL_LEN,
    served_model_name: str | None = None,
    python: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log: str | Path | None = None,
    wait: float = DEFAULT_WAIT,
) -> VLLMServer:
    """Start vLLM's OpenAI-compatible server for ``model`` and return once it answers.

    ``port=None`` (or 0) picks a free port. The server's output goes to ``log`` (a temporary file
    by default; ``VLLMServer.log_path`` says where). ``env`` adds environment variables
    (``VLLM_CPU_KVCACHE_SPACE`` on a CPU, ``CUDA_VISIBLE_DEVICES``). Raises
    :class:`~storyreel.enhancer.chat.EnhancerError` with the end of the log when the server exits or
    is not ready within ``wait`` seconds.
    """
    interpreter = python or os.environ.get(PYTHON_ENV)
    if interpreter is None and importlib.util.find_spec("vllm") is None:
        missing = MissingExtra("vllm", "vllm", "storyreel enhancer serve")
        missing.args = (f"{missing}, or set ${PYTHON_ENV} to the python of a venv that has vLLM",)
        raise missing
    port = port or _free_port(host)
    command = serve_command(
        model,
        host=host,
        port=port,
        tensor_parallel_size=tensor_parallel_size,
        max_model_len=max_model_len,
        served_model_name=served_model_name,
        python=interpreter,
        extra_args=extra_args,
    )
    return start_server(command, f"http://{_client_host(host)}:{port}/v1", env=env, log=log, wait=wait)


def start_server(
    command: Sequence[str],
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    log: str | Path | None = None,
    wait: float = DEFAULT_WAIT,
    poll: float = 0.5,
) -> VLLMServer:
    """Run ``command`` (an OpenAI-compatible server) and wait until ``url`` answers ``/health`` and ``/models``."""
    if log is None:
        handle, name = tempfile.mkstemp(prefix="storyreel-vllm-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    else:
        log_path = Path(log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so stop() reaches the engine's workers too
        )
    server = VLLMServer(
        url=url.rstrip("/"), models=[], process=process, log_path=log_path, command=list(command)
    )
    root = server.url.removesuffix("/v1")
    deadline = time.monotonic() + wait
    try:
        while True:
            code = process.poll()
            if code is not None:
                raise EnhancerError(
                    f"the vLLM server exited with code {code} before it was ready; "
                    f"the end of its log ({log_path}):\n{_tail(log_path)}"
                )
            if _get(root + "/health") is not None:
                listing = _get(server.url + "/models")
                if listing is not None:
                    server.models = [str(entry.get("id")) for entry in listing.get("data", [])]
                    if server.models:
                        return server
            if time.monotonic() > deadline:
                raise EnhancerError(
                    f"the vLLM server at {server.url} was not ready after {wait:g} s; "
                    f"the end of its log ({log_path}):\n{_tail(log_path)}"
                )
            time.sleep(poll)
    except BaseException:
        server.stop(grace=10)
        raise


def _get(url: str) -> dict | None:
    """The JSON answer of a GET that succeeds (``{}`` when its body is not JSON), else None."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_client_host(host), 0))
        return int(probe.getsockname()[1])


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"
