"""Stage 4 on many GPUs: a film's shots made by Ray workers (``render --workers N``).

A film is mostly independent chains of shots (every cut starts one; a continuing shot needs its
parent's tail frames). Here the render's driver (the ``storyreel render`` process) starts Ray workers. A
worker is one Ray actor holding one GPU (on a machine without GPUs, one CPU thread) or, with
``--gpus-per-shot G``, a *gang* of G actors of one GPU each, packed on one node (a placement group,
STRICT_PACK, so that they talk over the node's links) and joined in one ``torch.distributed`` process
group (NCCL; gloo on CPUs), that make each shot together: the transformer's sequence is split over them
(``generators/skyreels/parallel.py``). Each worker loads the generator once and makes whole shots through
:func:`storyreel.shot_job.make_shot`, the same code a one-process render runs, writing into the same render
folder and shot cache (a path every node must see). What runs in those processes (the Ray actor
:class:`~storyreel.farm_worker.ShotWorker`, and how a gang's ranks follow rank 0) is
:mod:`storyreel.farm_worker`; this module is the driver.

The driver schedules with :mod:`storyreel.schedule`: whenever a worker is free it takes, among the
shots whose parent is made, the one with the longest remaining chain of the plan's cost estimate, so
each chain runs in order and the longest chains start first. A continuing shot's tail frames travel
with its job: the worker that made the parent returns them to the driver (Ray's object store), which
hands them to whichever worker makes the continuation; the shot cache keeps them too, losslessly, so a
render started again finds them there.

What can go wrong, and what happens:

- a worker's process dies mid-shot (killed, out of host memory), or any rank of a gang: the worker (the
  whole gang) is stopped and a new one takes its shot, made from the same job, so the film does not change;
- one rank of a gang fails a shot alone: the others are left waiting for it in a collective, so the gang
  is replaced, and the failure is the shot's, as in one process;
- Ctrl-C: every worker's processes are stopped; every finished shot is in the shot cache and the same
  command resumes from there (as does a driver that was killed);
- a shot that fits in no GPU memory is skipped with the shots that continue it, as in one process.

Ray is imported only when a render asks for workers (here, and in the workers); torch only in the workers.

>>> ClusterSettings.checked(2, None, 1, None).workers
2
"""

from __future__ import annotations

import heapq
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import GenerationError, OutOfMemory, StoryreelError, UserError
from .farm_worker import ShotWorker, WorkerReply, WorkerSetup
from .generate import Generator, GeneratorOptions
from .manifest import Manifest, ShotEntry, WorkerEntry, utc_now
from .schedule import remaining_paths
from .shot_job import ShotJob, uncached_prompts
from .tails import TailKeeper

if TYPE_CHECKING:
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
# Ray's client server (ray://) forks a server process for each connection. With grpcio 1.80 and later, gRPC's
# fork handlers restart a polling thread in that child, which aborts once the child closes its inherited
# descriptors before exec: now and then (a few in a hundred on a busy head) the connection's server dies
# before it starts, and Ray answers SERVER_NOT_STARTED. Each connection forks afresh, so the render tries a
# few; a head started with GRPC_ENABLE_FORK_SUPPORT=0 (docs/cluster.md) does not lose them.
SERVER_NOT_STARTED = "Starting Ray client server failed"
CLIENT_TRIES = 3
# Once one rank of a gang has failed a shot, how long the others may take to answer: the same failure on
# every rank answers at once, and a rank that died is known to Ray within a second or two. Ranks still
# busy after this are waiting for the failed one in a collective, and the gang is replaced.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class ClusterSettings:
    """Where a render's workers run: ``workers`` of them (None: one per GPU of a cluster joined at
    ``address``), each splitting every shot over ``gpus_per_shot`` GPUs (over as many CPU processes on a
    cluster without GPUs, or with ``--device cpu``)."""

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
        """The settings, once the checks that need neither the storyboard nor Ray have passed. Whether the
        model can be split over ``gpus_per_shot`` (its attention heads, the kernel) is the generator's
        check, with the plan's."""
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


# --- the driver ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What each worker is: ``ranks`` processes (a gang when more than one) of ``gpus`` GPUs each (0: on CPU,
    with ``threads`` threads each)."""

    ranks: int
    gpus: int
    threads: int | None


@dataclass
class _Worker:
    id: str
    actors: list[Any]  # one per process: rank 0 first
    gpus: int  # GPUs of each process
    group: Any = None  # a gang's placement group
    node: str = ""
    pid: int = 0
    pids: list[int] = field(default_factory=list)
    gpu_ids: list[str] = field(default_factory=list)
    started: str = ""
    ended: str | None = None
    shots: list[str] = field(default_factory=list)
    busy: float = 0.0

    def entry(self) -> WorkerEntry:
        return WorkerEntry(
            id=self.id,
            node=self.node,
            pid=self.pid,
            gpus=self.gpus * len(self.actors),
            gpu_ids=self.gpu_ids,
            ranks=self.pids if len(self.actors) > 1 else [],
            shots=self.shots,
            busy_seconds=round(self.busy, 3),
            started=self.started,
            ended=self.ended,
        )


@dataclass
class _Handed:
    """A shot handed to a worker: one call per process of the worker (rank 0's first), and their answers."""

    worker: _Worker
    shot_id: str
    calls: list[Any]  # Ray object refs
    reply: WorkerReply | None = None
    errors: dict[int, BaseException] = field(default_factory=dict)  # by rank
    settle_by: float | None = None  # once a rank failed: when the others stop being waited for


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
    started_here = _connect(ray, cluster, report)
    pool: list[_Worker] = []
    try:
        shape = _place(ray, cluster, options)
        setup = WorkerSetup(
            generator=generator,
            options=_portable(options),
            folder=str(folder.path.resolve()),
            cache=str(cache.root.resolve()) if cache is not None else None,
            reuse=reuse,
            storyboard=storyboard,
            transformer=transformer,
            threads=shape.threads,
            upcoming=tuple(uncached_prompts(order, prompts, cache_keys, cache, reuse)),
        )
        count = cluster.workers or max(1, int(ray.cluster_resources().get("GPU", 0)) // cluster.gpus_per_shot)
        report.note(f"rendering on {count} Ray worker(s), " + _describe_shape(shape))
        pool.extend(_start_workers(ray, setup, shape, 0, count))
        if any(not _cached(cache, reuse, cache_keys[shot.id]) for shot in order):
            _answers(ray, [actor.load.remote() for worker in pool for actor in worker.actors])
        _run(ray, pool, setup, shape, order, prompts, cache_keys, costs, manifest, folder, report)
    finally:
        manifest.workers = [worker.entry() for worker in pool]
        for worker in pool:
            if worker.ended is None:
                _stop(ray, worker)
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


def _connect(ray: Any, cluster: ClusterSettings, report: RenderProgress) -> bool:
    """Join the cluster at ``cluster.address``, or start a private one on this machine; True if started here."""
    if ray.is_initialized():
        return False
    if cluster.address is not None:
        _join(ray, cluster.address, report)
        return True
    # A private cluster of this machine, reachable only from it: no dashboard, no token file under ~/.ray.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workers = cluster.workers or 1
    ray.init(
        num_cpus=workers * cluster.gpus_per_shot,  # what workers on CPU take: one CPU a process
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="error",
        configure_logging=False,
    )
    return True


def _join(ray: Any, address: str, report: RenderProgress) -> None:
    """Join the cluster at ``address``, connecting again when Ray's client server lost the connection's server
    process as it started (SERVER_NOT_STARTED): a head that cannot start one at all fails every try."""
    reason = ""
    for attempt in range(1, CLIENT_TRIES + 1):
        if reason:
            report.note(f"--ray-address {address}: {reason}; connecting again ({attempt} of {CLIENT_TRIES})")
        try:
            ray.init(address=address, log_to_driver=False, logging_level="error")
            return
        except ImportError as exc:  # a ray:// address needs Ray's client (grpcio), which the extra brings
            raise UserError(
                f"--ray-address {address}: {exc}; install it with: pip install 'storyreel[cluster]'"
            ) from None
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if SERVER_NOT_STARTED not in str(exc):
                raise UserError(
                    f"--ray-address {address}: could not join the cluster ({exc}); start one with "
                    "`ray start --head`, or leave --ray-address out to start workers on this machine"
                ) from None
            # Ray's message is the head's traceback; its last line names the server's log on the head
            reason = str(exc).strip().splitlines()[-1].removeprefix("RuntimeError: ").rstrip(".")
    raise UserError(
        f"--ray-address {address}: {reason} ({CLIENT_TRIES} tries); that log is in the head's "
        "session_latest/logs folder (under /tmp/ray by default). When it is empty or ends in an epoll_wait "
        "error, start the head with GRPC_ENABLE_FORK_SUPPORT=0 in its environment (docs/cluster.md)"
    )


def _place(ray: Any, cluster: ClusterSettings, options: GeneratorOptions) -> _Shape:
    """What each worker is, once the cluster's size is checked against the workers asked for. Without GPUs (or
    with ``--device cpu``), ``--gpus-per-shot N`` splits each shot over N CPU processes: slower than one, but
    the same path as on GPUs."""
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
            _check_gangs_fit(ray, "CPU", per, cluster.workers or 1)
        return _Shape(ranks=per, gpus=0, threads=1)
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
        _check_gangs_fit(ray, "GPU", per, cluster.workers or gpus // per)
    return _Shape(ranks=per, gpus=1, threads=None)


def _check_gangs_fit(ray: Any, resource: str, per: int, workers: int) -> None:
    """A gang's processes share one node: refuse a split no node has room for (Ray would wait for it forever)."""
    nodes = [node["Resources"].get(resource, 0) for node in ray.nodes() if node.get("Alive")]
    largest = int(max(nodes, default=0))
    what = "GPUs" if resource == "GPU" else "CPUs"
    if largest < per:
        raise UserError(
            f"--gpus-per-shot {per}: the processes that split a shot run on one node, and the cluster's largest "
            f"has {largest} {what}; use --gpus-per-shot {largest if largest in GPUS_PER_SHOT else 1} or less"
        )
    room = sum(int(n) // per for n in nodes)
    if room < workers:
        raise UserError(
            f"--workers {workers} with --gpus-per-shot {per} needs {workers} nodes' worth of {per} {what}, and the "
            f"cluster has room for {room}; use --workers {max(room, 1)} or fewer"
        )


def _describe_shape(shape: _Shape) -> str:
    if shape.ranks > 1 and shape.gpus:
        return f"each splitting every shot over {shape.ranks} GPUs (one node's, NCCL)"
    if shape.ranks > 1:
        return (
            f"each splitting every shot over {shape.ranks} CPU processes (gloo): a check of the split, not a "
            "speed-up"
        )
    return f"{shape.gpus} GPU each" if shape.gpus else "on CPU, one thread each"


def _portable(options: GeneratorOptions) -> GeneratorOptions:
    """Options a worker in another process (or on another node) reads the same way: the storyboard's folder
    made absolute. The model keeps its name as written, as every shot's plan names it (and the generator holds
    the shots to it): each worker works in the render's starting folder (:class:`ShotWorker`), so a name
    relative to that folder or to the storyboard finds the same model there."""
    base = options.base_dir.resolve() if options.base_dir is not None else None
    return replace(options, base_dir=base)


def _start_workers(ray: Any, setup: WorkerSetup, shape: _Shape, first: int, count: int) -> list[_Worker]:
    """Start ``count`` workers, numbered from ``first``, and wait until each is ready for shots: its processes
    up and, for a gang, joined in their process group."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    actor_class = ray.remote(ShotWorker)
    resources = {"num_cpus": 0 if shape.gpus else 1, "num_gpus": shape.gpus, "max_restarts": 0}
    workers = []
    for number in range(first, first + count):
        name = f"w{number}"
        if shape.ranks == 1:
            workers.append(_Worker(name, [actor_class.options(**resources).remote(name, setup)], shape.gpus))
            continue
        bundle = {"GPU": shape.gpus} if shape.gpus else {"CPU": 1}
        group = placement_group([bundle] * shape.ranks, strategy="STRICT_PACK")  # one node
        actors = [
            actor_class.options(
                **resources,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, placement_group_bundle_index=index
                ),
            ).remote(name, setup)
            for index in range(shape.ranks)
        ]
        workers.append(_Worker(name, actors, shape.gpus, group=group))
    _describe(ray, workers)
    gangs = [worker for worker in workers if len(worker.actors) > 1]
    addresses = _answers(ray, [gang.actors[0].rendezvous.remote() for gang in gangs])
    _answers(
        ray,
        [
            actor.join.remote(address, rank, len(gang.actors), gang.gpu_ids)
            for gang, address in zip(gangs, addresses, strict=True)
            for rank, actor in enumerate(gang.actors)
        ],
    )
    return workers


def _describe(ray: Any, workers: list[_Worker]) -> None:
    """Wait for workers' processes to be up, and learn where each runs. A gang's ranks are numbered in the
    order of their GPUs, so that rank r drives the r-th GPU the gang sees (as diffusers maps ranks to GPUs)."""
    facts = _answers(ray, [[actor.describe.remote() for actor in worker.actors] for worker in workers])
    for worker, described in zip(workers, facts, strict=True):
        ranked = sorted(zip(described, worker.actors, strict=True), key=lambda pair: _gpu_order(pair[0]))
        worker.actors = [actor for _, actor in ranked]
        first = ranked[0][0]
        worker.node, worker.pid, worker.started = first["node"], first["pid"], first["started"]
        worker.pids = [fact["pid"] for fact, _ in ranked]
        worker.gpu_ids = [gpu for fact, _ in ranked for gpu in fact["gpu_ids"]]


def _gpu_order(fact: dict[str, Any]) -> tuple[int, str]:
    gpus = fact["gpu_ids"]
    if not gpus:
        return (0, "")
    return (int(gpus[0]), "") if gpus[0].isdigit() else (0, gpus[0])


def _answers(ray: Any, calls: list[Any]) -> list[Any]:
    """``ray.get``, with a storyreel error raised in a worker (a model that is not there, a kernel that does
    not run there) raised here as itself."""
    try:
        return [ray.get(call) for call in calls]
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, StoryreelError):
            raise exc.cause from None
        raise GenerationError(f"a worker failed to start: {type(exc.cause).__name__}: {exc.cause}") from None


def _stop(ray: Any, worker: _Worker) -> None:
    """Stop every process of ``worker`` and give back what it held."""
    from ray.util.placement_group import remove_placement_group

    for actor in worker.actors:
        ray.kill(actor)
    if worker.group is not None:
        remove_placement_group(worker.group)


def _run(
    ray: Any,
    pool: list[_Worker],
    setup: WorkerSetup,
    shape: _Shape,
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
    waiting: dict[Any, _Handed] = {}  # every call not answered yet, and the shot it is part of
    entries: dict[str, ShotEntry] = {}
    failed: dict[str, str] = {}
    timeline = sorted(order, key=lambda shot: shot.timeline_index)
    dispatched = 0

    def skip_below(shot_id: str) -> None:
        for child in children[shot_id]:
            failed[child] = f"shot '{child}' was not generated: it continues '{shot_id}', which failed"
            tails.skip(by_id[child])
            skip_below(child)

    def new_worker() -> _Worker:
        (replacement,) = _start_workers(ray, setup, shape, len(pool), 1)
        pool.append(replacement)
        return replacement

    def forget(handed: _Handed) -> None:
        for call in handed.calls:
            waiting.pop(call, None)

    def settle(handed: _Handed, stuck: bool = False, died: BaseException | None = None) -> None:
        """The shot's outcome, once every process of its worker answered, or one ``died``, or (``stuck``) the
        others will never answer one that failed."""
        worker, shot_id = handed.worker, handed.shot_id
        forget(handed)
        made = handed.reply is not None and not handed.errors
        # A lost process, or a rank that failed alone (the others are out of step with it): the worker goes.
        broken = died is not None or stuck or any(r > 0 for r in handed.errors)
        if broken:
            worker.ended = utc_now()
            _stop(ray, worker)
        if died is not None and not made:
            tries[shot_id] = tries.get(shot_id, 0) + 1
            if tries[shot_id] >= MAX_TRIES:
                raise GenerationError(
                    f"shot '{shot_id}': {tries[shot_id]} workers died making it (last: {_died(died)}); every "
                    "other finished shot is saved in the shot cache"
                ) from None
            replacement = new_worker()
            report.note(
                f"worker {worker.id} died while making shot '{shot_id}' ({_died(died)}); shot '{shot_id}' "
                f"goes to a new worker, {replacement.id}"
            )
            idle.append(replacement)
            heapq.heappush(ready, (-below[shot_id], rank[shot_id], shot_id))
            return
        if handed.errors:
            cause = handed.errors.get(0) or next(iter(handed.errors.values()))
            if not isinstance(cause, OutOfMemory):
                if isinstance(cause, StoryreelError):
                    raise cause from None
                raise GenerationError(
                    f"shot '{shot_id}' failed on worker {worker.id}: {type(cause).__name__}: {cause}"
                ) from None
            failed[shot_id] = str(cause)
            report.note(str(cause))
            skip_below(shot_id)
            jobs.pop(shot_id)
            idle.append(new_worker() if broken else worker)
            return
        if died is not None:
            replacement = new_worker()
            report.note(
                f"worker {worker.id} lost a process after making shot '{shot_id}'; {replacement.id} replaces it"
            )
            idle.append(replacement)
        else:
            idle.append(worker)
        reply = handed.reply
        assert reply is not None
        shot = by_id[shot_id]
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

    while ready or waiting:
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
            leader, *others = worker.actors
            calls = [leader.make.remote(jobs[shot_id]), *(actor.follow.remote() for actor in others)]
            handed = _Handed(worker, shot_id, calls)
            waiting.update(dict.fromkeys(calls, handed))
            report.shot_on_worker(shot, worker.id, worker.pid)
        deadlines = [h.settle_by for h in waiting.values() if h.settle_by is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        done, _ = ray.wait(list(waiting), num_returns=1, timeout=timeout)
        if not done:  # ranks still busy long after another failed: waiting for it, in vain
            for handed in {id(h): h for h in waiting.values()}.values():
                if handed.settle_by is not None and handed.settle_by <= time.monotonic():
                    settle(handed, stuck=True)
            continue
        handed = waiting.pop(done[0])
        index = handed.calls.index(done[0])
        try:
            answer = ray.get(done[0])
        except ray.exceptions.RayActorError as exc:
            settle(handed, died=exc)
            continue
        except ray.exceptions.RayTaskError as exc:
            handed.errors[index] = exc.cause
            handed.settle_by = handed.settle_by or time.monotonic() + SETTLE_SECONDS
        else:
            if index == 0:
                handed.reply = answer
        if not any(call in waiting for call in handed.calls):
            settle(handed)
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
