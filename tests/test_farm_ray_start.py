"""A render joins a Ray cluster started with the ``ray`` command (``render --ray-address``), by the head's
address and through Ray's client server (``ray://``), and makes the film one process makes.

The head is started the way docs/cluster.md starts one, on this machine's loopback with a temporary folder of
its own and no dashboard. It runs with ``--block``, so that the test stops this head, through the process it
started, at the end, whatever happened: ``ray stop`` would stop every Ray instance on the machine, other test
runs' included.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import storyreel
from storyreel.manifest import Manifest

pytest.importorskip("ray")
pytest.importorskip("grpc")  # the client server (ray://) comes with ray[client]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import film_files, write_tiny_crosscut  # noqa: E402

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # no token file under ~/.ray
# The head as docs/cluster.md starts it: without gRPC's fork handlers, which now and then kill the server
# process Ray's client server forks for a ray:// connection before it starts
HEAD_ENV = {**ENV, "GRPC_ENABLE_FORK_SUPPORT": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def head_command(port: int, client_port: int, temp: str) -> list[str]:
    """``ray start`` for a head of two CPUs on the loopback, as docs/cluster.md runs it (the venv's ``ray``)."""
    return [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--ray-client-server-port",
        str(client_port),
        "--num-cpus",
        "2",
        "--include-dashboard",
        "false",
        "--temp-dir",
        temp,
        "--disable-usage-stats",
        "--block",
    ]


@pytest.fixture(scope="module")
def head() -> Iterator[tuple[str, str, Path]]:
    """A Ray head started with the ``ray`` command: its address, its client server's, and its log folder."""
    port, client_port = free_port(), free_port()
    # Ray's socket paths must stay short: a folder of its own right under the system's temporary folder
    temp = tempfile.mkdtemp(prefix="storyreel-ray-")
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 - read after the head stopped
    process = subprocess.Popen(
        head_command(port, client_port, temp),
        env=HEAD_ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (answers(port) and answers(client_port)):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start did not bring the head up:\n" + Path(log.name).read_text()[-3000:])
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", Path(temp) / "session_latest" / "logs"
    finally:
        process.send_signal(signal.SIGTERM)  # `ray start --block` stops every process it started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def crosscut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_crosscut(tmp_path_factory.mktemp("story"))


@pytest.fixture(scope="module")
def one_process(crosscut: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("here")
    storyreel.render(crosscut, out, use_cache=False)
    return out


@pytest.mark.parametrize("kind", ["address", "client"])
def test_a_render_on_a_cluster_started_with_ray_start_makes_the_one_process_film(
    kind: str, head: tuple[str, str, Path], crosscut: Path, one_process: Path, tmp_path: Path
) -> None:
    address = head[0] if kind == "address" else head[1]
    drivers = set(head[2].glob("python-core-driver-*.log"))  # one per job the head has run
    result = subprocess.run(
        [sys.executable, "-m", "storyreel.cli", "render", str(crosscut), "--out", str(tmp_path)]
        + ["--ray-address", address, "--workers", "2", "--no-cache"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    server_logs = "".join(  # Ray's client server, and the server it started for each connection
        f"\n{path.name}:\n{path.read_text()[-2000:]}"
        for path in sorted(head[2].glob("ray_client_server*.err"))
    )
    assert result.returncode == 0, result.stdout + result.stderr + server_logs
    assert "connecting again" not in result.stdout + result.stderr  # the head lost no connection's server
    assert (
        len(set(head[2].glob("python-core-driver-*.log")) - drivers) == 1
    )  # the render was a job of this head
    assert film_files(tmp_path) == film_files(one_process)
    here, there = Manifest.read(one_process / "manifest.json"), Manifest.read(tmp_path / "manifest.json")
    assert here.timings_removed() == there.timings_removed()
    assert sorted(worker.id for worker in there.workers) == ["w0", "w1"]
    assert {entry.worker for entry in there.shots} <= {"w0", "w1"}
