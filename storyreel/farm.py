"""Stage 4 on many GPUs: a film's shots made by Ray workers (``render --workers N``).

A film is mostly independent chains of shots (every cut starts one; a continuing shot needs its
parent's tail frames). Here the render's driver (the ``storyreel render`` process) starts one Ray
actor per worker, each holding one GPU (or ``gpus_per_shot`` GPUs; on a machine without GPUs, one
CPU thread). Each worker loads the generator once and makes whole shots through
:func:`storyreel.shot_job.make_shot`, the same code a one-process render runs, writing into the same
render folder and shot cache (a path every node must see).

The driver schedules with :mod:`storyreel.schedule`: whenever a worker is free it takes, among the
shots whose parent is made, the one with the longest remaining chain of the plan's cost estimate, so
each chain runs in order and the longest chains start first. A continuing shot's tail frames travel
with its job: the worker that made the parent returns them to the driver (Ray's object store), which
hands them to whichever worker makes the continuation; the shot cache keeps them too, losslessly, so a
render started again finds them there.

What can go wrong, and what happens:

- a worker's process dies mid-shot (killed, out of host memory): its shot goes to a new worker,
  made from the same job, so the film does not change;
- Ctrl-C: the workers are stopped; every finished shot is in the shot cache and the same command
  resumes from there (as does a driver that was killed);
- a shot that fits in no GPU memory is skipped with the shots that continue it, as in one process.

Ray is imported only here, and only when a render asks for workers.

>>> ClusterSettings.checked(2, None, 1, None).workers
2
"""

from __future__ import annotations

import heapq
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import GenerationError, OutOfMemory, StoryreelError, UserError
from .generate import Generator, GeneratorOptions
from .manifest import Manifest, ShotEntry, WorkerEntry, utc_now
from .schedule import remaining_paths
from .shot_job import ShotJob
from .tails import TailKeeper

if TYPE_CHECKING:
    import numpy as np

    from .cache import ShotCache
    from .enhance import ShotPrompt
    from .plan import ShotPlan
    from .render_folder import RenderFolder
    from .rendering import RenderProgress

__all__ = ["ClusterSettings", "ShotWorker", "generate_on_cluster"]

GPUS_PER_SHOT = (1, 2, 4, 8)
# A shot whose worker died this many times is not tried again: something in the shot itself kills workers.
MAX_TRIES = 3
# How long a ray://host:port or host:port address may take to answer before the render stops.
CONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class ClusterSettings:
    """Where a render's workers run: ``workers`` of them (None: one per GPU of a cluster joined at
    ``address``), each holding ``gpus_per_shot`` GPUs when the cluster has GPUs."""

    workers: int | None
    address: str | None
    gpus_per_shot: int = 1

    @classmethod
    def checked(
        cls,
        workers: int | None,
        address: str | None,
        gpus_per_shot: int,
        generator: str | Generator | None,
    ) -> ClusterSettings:
        """The settings, once the checks that need neither the storyboard nor Ray have passed."""
        if workers is not None and workers < 1:
            raise UserError(
                f"--workers {workers}: a render needs at least one worker; use --workers 1 or more"
            )
        if gpus_per_shot not in GPUS_PER_SHOT:
            raise UserError(
                f"--gpus-per-shot {gpus_per_shot}: a shot can be split over "
                + ", ".join(map(str, GPUS_PER_SHOT))
                + " GPUs; use one of these"
            )
        if isinstance(generator, Generator):
            raise UserError(
                "a generator object made in this process cannot be sent to cluster workers; pass the "
                f"generator's name (generator={generator.name!r}) with workers="
            )
        if address is not None and address != "auto":
            _check_reachable(address)
        return cls(workers, address, gpus_per_shot)

    def check_model(self, options: GeneratorOptions) -> None:
        """``gpus_per_shot`` must divide the model's attention heads: each GPU holds whole heads."""
        if self.gpus_per_shot == 1 or options.model is None:
            return
        from .models import resolve_model

        ref = resolve_model(options.model, options.base_dir)
        heads = None
        if ref.folder is not None:
            try:
                config = json.loads((ref.folder / "transformer" / "config.json").read_text(encoding="utf-8"))
                heads = int(config["num_attention_heads"])
            except (OSError, ValueError, KeyError, TypeError):
                heads = None
        if heads is not None and heads % self.gpus_per_shot:
            fits = [n for n in GPUS_PER_SHOT if heads % n == 0]
            raise UserError(
                f"--gpus-per-shot {self.gpus_per_shot} does not divide the {heads} attention heads of "
                f"model '{options.model}' (each GPU holds whole heads); use --gpus-per-shot "
                + " or ".join(map(str, fits))
            )


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's long retries, when nothing answers at ``address``."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"--ray-address {address!r} is not an address; use auto (the cluster `ray start` began on this "
            "machine), ray://HOST:PORT (a Ray client server, port 10001 by default) or HOST:PORT"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as exc:
        raise UserError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster with "
            "`ray start --head` on that machine, or check the host and port"
        ) from None


# --- the worker ---------------------------------------------------------------------------------------------


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
    """One worker: the generator loaded once, then whole shots made one at a time (a Ray actor's class)."""

    def __init__(self, worker_id: str, setup: WorkerSetup):
        from .backends import GENERATORS, load_backend
        from .cache import ShotCache
        from .generate import LazyGenerator
        from .render_folder import RenderFolder
        from .shot_job import ShotWork

        if setup.threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(setup.threads)
        self.id = worker_id
        self.setup = setup
        self.notes: list[str] = []
        self.engine = LazyGenerator(load_backend(GENERATORS, setup.generator), setup.options)
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
        """Where this worker runs: its node's address and its process id."""
        import ray

        return {"node": ray.util.get_node_ip_address(), "pid": os.getpid(), "started": utc_now()}

    def load(self) -> None:
        """Load the generator now (it would load on the first shot): workers load in parallel, before any
        shot is handed out, so no chain waits behind a load."""
        if self.setup.threads is not None:
            self._limit_threads()
        self.engine.get()

    def make(self, job: ShotJob) -> WorkerReply:
        """Make (or reuse from the cache) one shot, exactly as a render in one process does."""
        from .shot_job import make_shot

        if self.setup.threads is not None and self.engine.owned is None:
            self._limit_threads()
        self.notes = []
        self.work = replace(self.work, note=self.notes.append)
        started, clock = utc_now(), time.perf_counter()
        result = make_shot(job, self.work)
        return WorkerReply(
            result.entry, result.tail, started, utc_now(), time.perf_counter() - clock, list(self.notes)
        )

    def _limit_threads(self) -> None:
        try:
            import torch
        except ImportError:
            return
        assert self.setup.threads is not None
        torch.set_num_threads(self.setup.threads)


# --- the driver ---------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    id: str
    actor: Any
    gpus: int
    node: str = ""
    pid: int = 0
    started: str = ""
    ended: str | None = None
    shots: list[str] = field(default_factory=list)
    busy: float = 0.0

    def entry(self) -> WorkerEntry:
        return WorkerEntry(
            id=self.id,
            node=self.node,
            pid=self.pid,
            gpus=self.gpus,
            shots=self.shots,
            busy_seconds=round(self.busy, 3),
            started=self.started,
            ended=self.ended,
        )


def generate_on_cluster(
    cluster: ClusterSettings,
    order: list[ShotPlan],
    prompts: Mapping[str, ShotPrompt],
    cache_keys: Mapping[str, str],
    costs: Mapping[str, float],
    manifest: Manifest,
    report: RenderProgress,
    *,
    generator: str,
    options: GeneratorOptions,
    folder: RenderFolder,
    cache: ShotCache | None,
    reuse: bool,
    storyboard: str | None,
    transformer: dict[str, str] | None,
) -> None:
    """Stage 4 on Ray workers: make every shot of ``order`` (render order), entering each in ``manifest``
    (written after each shot) and the workers' busy times in ``manifest.workers``."""
    ray = _import_ray()
    started_here = _connect(ray, cluster)
    pool: list[_Worker] = []
    try:
        gpus, threads = _place(ray, cluster, options)
        setup = WorkerSetup(
            generator=generator,
            options=_portable(options),
            folder=str(folder.path.resolve()),
            cache=str(cache.root.resolve()) if cache is not None else None,
            reuse=reuse,
            storyboard=storyboard,
            transformer=transformer,
            threads=threads,
        )
        count = cluster.workers or max(1, int(ray.cluster_resources().get("GPU", 0)) // cluster.gpus_per_shot)
        report.note(
            f"rendering on {count} Ray worker(s)"
            + (f", {gpus} GPU(s) each" if gpus else ", on CPU, one thread each")
        )
        for _ in range(count):
            pool.append(_start_worker(ray, setup, gpus, len(pool)))
        _describe(ray, pool)
        if any(not _cached(cache, reuse, cache_keys[shot.id]) for shot in order):
            ray.get([worker.actor.load.remote() for worker in pool])
        _run(ray, pool, setup, gpus, order, prompts, cache_keys, costs, manifest, folder, report)
    finally:
        manifest.workers = [worker.entry() for worker in pool]
        for worker in pool:
            if worker.ended is None:
                ray.kill(worker.actor)
        if started_here:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            "rendering on workers needs Ray; install it with: pip install 'storyreel[cluster]'"
        ) from None
    return ray


def _connect(ray: Any, cluster: ClusterSettings) -> bool:
    """Join the cluster at ``cluster.address``, or start a private one on this machine; True if started here."""
    if ray.is_initialized():
        return False
    if cluster.address is not None:
        try:
            ray.init(address=cluster.address, log_to_driver=False, logging_level="error")
        except ImportError as exc:  # a ray:// address needs Ray's client (grpcio), which the extra brings
            raise UserError(
                f"--ray-address {cluster.address}: {exc}; install it with: pip install 'storyreel[cluster]'"
            ) from None
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"--ray-address {cluster.address}: could not join the cluster ({exc}); start one with "
                "`ray start --head`, or leave --ray-address out to start workers on this machine"
            ) from None
        return True
    # A private cluster of this machine, reachable only from it: no dashboard, no token file under ~/.ray.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workers = cluster.workers or 1
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="error",
        configure_logging=False,
    )
    return True


def _place(ray: Any, cluster: ClusterSettings, options: GeneratorOptions) -> tuple[int, int | None]:
    """GPUs per worker (0: workers on CPU) and the CPU threads of a worker on CPU; the checks of the cluster's
    size against the workers asked for."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    on_cpu = options.device is not None and options.device.startswith("cpu")
    wants_gpu = options.device is not None and options.device.startswith("cuda")
    per = cluster.gpus_per_shot
    if gpus == 0 or on_cpu:
        if wants_gpu:
            raise UserError(
                f"--device {options.device}: the cluster has no GPU; leave --device out to use CPUs"
            )
        if per > 1:
            why = "--device cpu puts the workers on CPUs, with no GPU" if on_cpu else "the cluster has no GPU"
            raise UserError(f"--gpus-per-shot {per}: {why} to split a shot over; leave --gpus-per-shot out")
        return 0, 1
    if gpus % per:
        raise UserError(
            f"--gpus-per-shot {per} does not divide the cluster's {gpus} GPU(s); use a divisor of {gpus}"
        )
    if cluster.workers is not None and cluster.workers * per > gpus:
        most = gpus // per
        raise UserError(
            f"--workers {cluster.workers} with {per} GPU(s) each needs {cluster.workers * per} GPUs, but the "
            f"cluster has {gpus}; use --workers {most} or fewer"
        )
    if per > 1:
        # The transformer's plan for it is written and checked (generators/skyreels/parallel.py, measured by
        # benchmarks/sequence_parallel.py), but a worker does not yet run one shot as a group of processes.
        raise UserError(
            f"--gpus-per-shot {per}: a render cannot split one shot over GPUs yet; leave --gpus-per-shot out "
            "(each worker then makes whole shots on one GPU)"
        )
    return per, None


def _portable(options: GeneratorOptions) -> GeneratorOptions:
    """Options a worker in another process (or on another node) reads the same way: paths made absolute."""
    from .models import resolve_model

    model = options.model
    if model is not None:
        ref = resolve_model(model, options.base_dir)
        if ref.folder is not None and ref.hub_id is None:
            model = str(ref.folder.resolve())
    base = options.base_dir.resolve() if options.base_dir is not None else None
    return replace(options, model=model, base_dir=base)


def _start_worker(ray: Any, setup: WorkerSetup, gpus: int, number: int) -> _Worker:
    actor_class = ray.remote(ShotWorker)
    actor = actor_class.options(num_cpus=0 if gpus else 1, num_gpus=gpus, max_restarts=0).remote(
        f"w{number}", setup
    )
    return _Worker(id=f"w{number}", actor=actor, gpus=gpus)


def _describe(ray: Any, workers: list[_Worker]) -> None:
    """Wait for workers to be up, and learn where each runs."""
    described = ray.get([worker.actor.describe.remote() for worker in workers])
    for worker, facts in zip(workers, described, strict=True):
        worker.node, worker.pid, worker.started = facts["node"], facts["pid"], facts["started"]


def _run(
    ray: Any,
    pool: list[_Worker],
    setup: WorkerSetup,
    gpus: int,
    order: list[ShotPlan],
    prompts: Mapping[str, ShotPrompt],
    cache_keys: Mapping[str, str],
    costs: Mapping[str, float],
    manifest: Manifest,
    folder: RenderFolder,
    report: RenderProgress,
) -> None:
    """The scheduling loop: a free worker takes the ready shot with the longest remaining chain."""
    by_id = {shot.id: shot for shot in order}
    rank = {shot.id: index for index, shot in enumerate(order)}
    parents = {shot.id: shot.conditioned_on for shot in order}
    below = remaining_paths({s: costs.get(s, 1.0) for s in by_id}, parents)
    children: dict[str, list[str]] = {s: [] for s in by_id}
    ready: list[tuple[float, int, str]] = []
    for shot in order:
        if shot.conditioned_on in by_id:
            children[shot.conditioned_on].append(shot.id)
        else:
            heapq.heappush(ready, (-below[shot.id], rank[shot.id], shot.id))
    tails = TailKeeper(order)
    jobs: dict[str, ShotJob] = {}
    tries: dict[str, int] = {}
    idle = list(pool)
    running: dict[Any, tuple[_Worker, str]] = {}
    entries: dict[str, ShotEntry] = {}
    failed: dict[str, str] = {}
    timeline = sorted(order, key=lambda shot: shot.timeline_index)
    dispatched = 0

    def skip_below(shot_id: str) -> None:
        for child in children[shot_id]:
            failed[child] = f"shot '{child}' was not generated: it continues '{shot_id}', which failed"
            tails.skip(by_id[child])
            skip_below(child)

    while ready or running:
        while ready and idle:
            _, _, shot_id = heapq.heappop(ready)
            shot = by_id[shot_id]
            if shot_id not in jobs:  # a job is made once: a retry reuses it, tail frames included
                dispatched += 1
                report.shot_started(shot, dispatched, len(order))
                jobs[shot_id] = ShotJob(
                    shot,
                    prompts[shot_id],
                    cache_keys[shot_id],
                    tails.tail_for(shot),
                    tails.need.get(shot_id, 0),
                )
            worker = idle.pop(0)
            running[worker.actor.make.remote(jobs[shot_id])] = (worker, shot_id)
            report.shot_on_worker(shot, worker.id, worker.pid)
        done, _ = ray.wait(list(running), num_returns=1)
        worker, shot_id = running.pop(done[0])
        shot = by_id[shot_id]
        try:
            reply: WorkerReply = ray.get(done[0])
        except ray.exceptions.RayActorError as exc:
            worker.ended = utc_now()
            tries[shot_id] = tries.get(shot_id, 0) + 1
            if tries[shot_id] >= MAX_TRIES:
                raise GenerationError(
                    f"shot '{shot_id}': {tries[shot_id]} workers died making it (last: {_died(exc)}); every "
                    "other finished shot is saved in the shot cache"
                ) from None
            replacement = _start_worker(ray, setup, gpus, len(pool))
            pool.append(replacement)
            _describe(ray, [replacement])
            report.note(
                f"worker {worker.id} died while making shot '{shot_id}' ({_died(exc)}); shot '{shot_id}' goes "
                f"to a new worker, {replacement.id}"
            )
            idle.append(replacement)
            heapq.heappush(ready, (-below[shot_id], rank[shot_id], shot_id))
            continue
        except ray.exceptions.RayTaskError as exc:
            idle.append(worker)
            cause = exc.cause
            if isinstance(cause, OutOfMemory):
                failed[shot_id] = str(cause)
                report.note(str(cause))
                skip_below(shot_id)
                jobs.pop(shot_id)
                continue
            if isinstance(cause, StoryreelError):
                raise cause from None
            raise GenerationError(
                f"shot '{shot_id}' failed on worker {worker.id}: {type(cause).__name__}: {cause}"
            ) from None
        idle.append(worker)
        worker.shots.append(shot_id)
        worker.busy += reply.seconds
        for note in reply.notes:
            report.note(note)
        jobs.pop(shot_id)
        tails.keep(shot, reply.tail)
        entries[shot_id] = reply.entry.model_copy(
            update={"worker": worker.id, "started": reply.started, "finished": reply.finished}
        )
        manifest.shots = [entries[s.id] for s in timeline if s.id in entries]
        manifest.workers = [w.entry() for w in pool]
        manifest.write(folder.manifest)
        report.shot_finished(shot, entries[shot_id])
        for child in children[shot_id]:
            heapq.heappush(ready, (-below[child], rank[child], child))
    if failed:
        raise OutOfMemory(
            f"{len(failed)} shot(s) could not be generated; every other shot is saved and will be reused:\n"
            + "\n".join(failed.values())
        )


def _cached(cache: ShotCache | None, reuse: bool, key: str) -> bool:
    """Whether the shot cache holds this shot (a damaged entry found later is made then, as in one process)."""
    return cache is not None and reuse and cache.folder(key).is_dir()


def _died(exc: BaseException) -> str:
    """Ray's reason for a lost worker, in one line."""
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")
