"""What runs inside the Ray workers of a cluster render (:mod:`storyreel.farm` is the driver's side).

A worker is one :class:`ShotWorker` actor or, with ``--gpus-per-shot G``, a gang of G of them joined in one
``torch.distributed`` process group (:meth:`ShotWorker.join`). Each is built from a :class:`WorkerSetup` of
plain values the driver sends, loads the generator once and makes whole shots through
:func:`storyreel.shot_job.make_shot`, the same code a one-process render runs, answering each with a
:class:`WorkerReply`.

In a gang, rank 0 runs ``make_shot`` as a one-process worker does: it alone reads and writes the shot cache
and the render folder, and returns the shot. Each call it makes to the generator is first sent to the other
ranks over the process group (:meth:`ShotWorker.follow`), which make the same call (the same request, seed
and inputs) and keep nothing. So whether a shot comes from the cache, and what the out-of-memory ladder
tries, is decided once, by rank 0, and the ranks never disagree about what runs.

Ray sends the actor class to each worker's process by reference (this module's name and the class's), and
the process imports this module to build it; torch and Ray are imported only in the methods that need them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import OutOfMemory
from .generate import (
    Generator,
    GeneratorOptions,
    LazyGenerator,
    ProgressCallback,
    PromptRequest,
    ShotRequest,
    ignore_progress,
)
from .manifest import ShotEntry, utc_now
from .shot_job import ShotJob

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ShotWorker", "WorkerReply", "WorkerSetup"]

# How long a rank waits in one collective before its process group counts as broken (NCCL's default).
GROUP_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker is built from: plain values, sent to each worker's process."""

    generator: str
    options: GeneratorOptions
    folder: str  # the render folder, absolute
    cache: str | None  # the shot cache's folder, absolute; None: no cache
    reuse: bool
    storyboard: str | None
    transformer: dict[str, str] | None
    threads: int | None  # CPU threads a worker on CPU uses
    cwd: str = field(default_factory=os.getcwd)  # the folder the render started in, where relative names lead
    # The prompts of every shot the render may hand a worker (those the shot cache does not hold): each worker
    # encodes them all when it loads, as a one-process render does, so the text encoder then leaves its GPU
    # for good instead of coming back for every shot.
    upcoming: tuple[PromptRequest, ...] = ()


@dataclass(frozen=True)
class WorkerReply:
    """What a worker sends back for one shot."""

    entry: ShotEntry
    tail: np.ndarray
    started: str
    finished: str
    seconds: float
    notes: list[str] = field(default_factory=list)


class ShotWorker:
    """One worker process: the generator loaded once, then whole shots made one at a time (a Ray actor's class).

    In a gang it is one rank of the process group (:meth:`join`): rank 0 makes the shots (:meth:`make`), the
    other ranks make every generator call rank 0 makes, alongside it (:meth:`follow`).
    """

    def __init__(self, worker_id: str, setup: WorkerSetup):
        from .backends import GENERATORS, load_backend
        from .cache import ShotCache
        from .render_folder import RenderFolder
        from .shot_job import ShotWork

        if setup.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(setup.threads)
        try:
            # Ray starts a worker in a folder of its own choosing (on a cluster: wherever `ray start` ran):
            # names relative to the render's starting folder, such as --model ./models/df, lead where they led.
            os.chdir(setup.cwd)
        except OSError:
            pass  # not on this node: paths every node sees (docs/cluster.md) are absolute or beside the storyboard
        self.id = worker_id
        self.setup = setup
        self.notes: list[str] = []
        self.rank, self.ranks = 0, 1
        self.calls: Any = None  # a gang's process group for generator calls (gloo: they are small)
        self.backend = load_backend(GENERATORS, setup.generator)
        self.engine = LazyGenerator(self.backend, setup.options)
        self.engine.upcoming = list(setup.upcoming)
        cache = ShotCache(setup.cache, warn=self.notes.append) if setup.cache is not None else None
        self.work = ShotWork(
            folder=RenderFolder(setup.folder),
            generator=self.engine,
            cache=cache,
            reuse=setup.reuse,
            storyboard=setup.storyboard,
            transformer=setup.transformer,
            note=self.notes.append,
            progress=lambda event: None,
        )

    def describe(self) -> dict[str, Any]:
        """Where this process runs: its node's address, its process id and the GPUs Ray gave it."""
        import ray

        return {
            "node": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "started": utc_now(),
            "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
        }

    def rendezvous(self) -> str:
        """``host:port`` where a gang's process group meets: this node's address and a port free on it (rank 0)."""
        import ray

        host = ray.util.get_node_ip_address()
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        return f"{host}:{port}"

    def join(self, address: str, rank: int, ranks: int, gpu_ids: list[str]) -> None:
        """Become ``rank`` of a gang of ``ranks`` processes whose group meets at ``address``, with NCCL over
        ``gpu_ids`` (the gang's GPUs, rank order) or, without GPUs, gloo."""
        import torch
        import torch.distributed as dist

        options = replace(self.setup.options, sequence_parallel=ranks)
        backend = "gloo"
        if gpu_ids:
            backend = "nccl"
            if not torch.cuda.is_initialized():
                # Ray shows each process its own GPU only; NCCL then passes data between the gang's GPUs
                # through host memory. Seeing every GPU of the gang, it takes the node's links (NVLink, PCIe).
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
                index = rank
            else:
                index = 0
            torch.cuda.set_device(index)
            options = replace(options, device=f"cuda:{index}")
        dist.init_process_group(
            backend, init_method=f"tcp://{address}", rank=rank, world_size=ranks, timeout=GROUP_TIMEOUT
        )
        self.calls = dist.new_group(backend="gloo")
        self.rank, self.ranks = rank, ranks
        self.engine = (
            _LeadingEngine(self.backend, options, self._send)
            if rank == 0
            else LazyGenerator(self.backend, options)
        )
        self.engine.upcoming = list(self.setup.upcoming)  # every rank encodes them: each needs the embeddings
        self.work = replace(self.work, generator=self.engine)

    def load(self) -> None:
        """Load the generator now (it would load on the first shot): workers load in parallel, before any
        shot is handed out, so no chain waits behind a load."""
        if self.setup.threads is not None:
            self._limit_threads()
        self.engine.get()

    def make(self, job: ShotJob) -> WorkerReply:
        """Make (or reuse from the cache) one shot, exactly as a render in one process does (rank 0 of a gang:
        the other ranks follow its generator calls until it tells them the shot is over)."""
        from .shot_job import make_shot

        if self.setup.threads is not None and self.engine.owned is None:
            self._limit_threads()
        self.notes = []
        self.work = replace(self.work, note=self.notes.append)
        started, clock = utc_now(), time.perf_counter()
        if isinstance(self.engine, _LeadingEngine):
            self.engine.sent = False
        try:
            result = make_shot(job, self.work)
        except BaseException:
            # Before any generator call the other ranks wait for one: they are told the shot is over. After one,
            # they may be inside the model waiting for this rank and would never hear it: the driver stops them.
            if isinstance(self.engine, _LeadingEngine) and not self.engine.sent:
                self._send(None)
            raise
        if self.ranks > 1:
            self._send(None)  # the shot is over
        return WorkerReply(
            result.entry, result.tail, started, utc_now(), time.perf_counter() - clock, list(self.notes)
        )

    def follow(self) -> None:
        """A rank other than 0, for one shot: make each generator call rank 0 sends, until it sends None. The
        frames are rank 0's to keep; this rank computes its part of them and writes nothing. Any failure but
        running out of memory (which rank 0 meets too, and answers with its next, smaller call) ends the shot
        here: the driver then has both ranks' answers, or stops a rank that waits in vain."""
        if self.setup.threads is not None and self.engine.owned is None:
            self._limit_threads()
        generator = self.engine.get()
        while (request := self._receive()) is not None:
            try:
                generator.generate(request)
            except OutOfMemory:
                generator.release_memory()

    def _send(self, request: ShotRequest | None) -> None:
        import torch.distributed as dist

        dist.broadcast_object_list([request], src=0, group=self.calls)

    def _receive(self) -> ShotRequest | None:
        import torch.distributed as dist

        box: list[ShotRequest | None] = [None]
        dist.broadcast_object_list(box, src=0, group=self.calls)
        return box[0]

    def _limit_threads(self) -> None:
        try:
            import torch
        except ImportError:
            return
        assert self.setup.threads is not None
        torch.set_num_threads(self.setup.threads)


class _LeadingEngine(LazyGenerator):
    """Rank 0's generator in a gang: every ``generate`` call is first sent to the other ranks, which make the
    same call alongside (:meth:`ShotWorker.follow`); each holds part of the split sequence."""

    def __init__(
        self, backend: type[Generator], options: GeneratorOptions, send: Callable[[ShotRequest], None]
    ):
        super().__init__(backend, options)
        self.send = send
        self.sent = False  # whether this shot has called the generator (and so the other ranks) yet

    def get(self, progress: ProgressCallback = ignore_progress) -> Generator:
        new = self.owned is None
        generator = super().get(progress)
        if new:
            own = generator.generate

            def generate(request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Any:
                self.sent = True
                self.send(request)
                return own(request, progress)

            generator.generate = generate  # type: ignore[method-assign]
        return generator
