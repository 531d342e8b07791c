"""``render()``: a storyboard in, a film out. It composes the stages, each owned by its own modules.

    1. storyboard   load and check the file (or take a Storyboard built in code)     storyboard
    2. plan         shot graph, timeline, frames and diffusion-forcing windows, then    graph, plan, frames,
                    the generator chosen and every shot checked against it (the model   generate
                    is here, its pipeline can make the shot): every error is found
                    before any prompt is enhanced or GPU minute spent
    3. enhance      every shot's prompt rewritten into a detailed caption, all at once  enhance
    3b. keyframes   a start frame drawn for each chosen fresh shot from its characters'  keyframes
                    references; the keyframe model closed before the video model loads
    4. generate     shots in render order, each reused from the shot cache or made      shot_job, degrade,
                    (a continuing shot gets its parent's exact last frames), here      cache, tails,
                    or on Ray workers, longest remaining chain first (workers=)        farm, schedule
    5. assemble     shots cut into film.mp4 (+ film.srt, film.otio), then manifest.json assemble, editorial,
                                                                                        manifest
    6. check        each continuation's seam and each chain's drift measured, warnings, qa, review
                    then review.html

From right after the storyboard loads to the end, the render folder is held (one render per folder;
what killed renders left there is removed): :mod:`storyreel.render_folder`. The machine refusing a
read or a write (permissions, a full disk, a file where a folder should be) is raised as a
MachineError that names the path and the operating system's reason, and costs no finished shot.

>>> manifest = render("examples/swan_lake.yaml", out="renders/swan")  # doctest: +SKIP
>>> manifest.film.frames, [shot.id for shot in manifest.shots][:2]  # doctest: +SKIP
(..., ['dawn-glide', ...])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .atomic import make_folder, temporary_beside
from .backends import GENERATORS, load_backend
from .cache import ShotCache
from .enhance import Enhancer, ShotPrompt, enhance_film, enhancer_settings
from .errors import OutOfMemory, UserError
from .fingerprint import ShotKeys, file_sha256
from .generate import Generator, GeneratorOptions, LazyGenerator, ProgressEvent
from .keyframes import check_keyframe_model, record_keyframe_shots, with_keyframes
from .manifest import FilmEntry, Manifest, ShotEntry, utc_now
from .models import resolve_model
from .plan import FilmPlan, ShotPlan, plan_film
from .prompt_lock import lock_path_for
from .render_folder import RenderFolder, default_out_dir, machine_errors
from .review import write_review
from .shot_job import ShotJob, ShotWork, make_shot, uncached_prompts
from .storyboard import EnhancerSettings, Storyboard, load_storyboard
from .tails import TailKeeper
from .version import __version__

ANIMATIC = "animatic"
SKYREELS = "skyreels"

__all__ = [
    "RenderProgress",
    "choose_generator",
    "default_out_dir",
    "enhance_storyboard",
    "render",
    "render_keyframes",
]


class RenderProgress:
    """What a render reports as it goes. Subclass and override what you want to show; every method is optional."""

    def note(self, message: str) -> None:
        """Something the user should know (an animatic instead of a model, a snapped duration...)."""

    def stage(self, name: str, detail: str = "") -> None:
        """A stage began: "plan", "enhance", "generate", "assemble"."""

    def shot_started(self, shot: ShotPlan, index: int, total: int) -> None:
        """Generation of ``shot`` began; it is number ``index`` (from 1) of ``total``."""

    def shot_on_worker(self, shot: ShotPlan, worker: str, pid: int) -> None:
        """A cluster render (``workers=``) handed ``shot`` to ``worker``, whose process is ``pid``."""

    def shot_progress(self, event: ProgressEvent) -> None:
        """A generator's step within the current shot."""

    def shot_finished(self, shot: ShotPlan, entry: ShotEntry) -> None:
        """The shot is written to disk."""

    def film_progress(self, done: int, total: int) -> None:
        """Frames of the film written so far."""


def choose_generator(plan: FilmPlan, generator: str | Generator | None) -> tuple[str, str | None]:
    """(generator name, model): the one asked for, else SkyReels-V2 when a model is set, else the animatic
    (which loads no model, whatever the storyboard names)."""
    models = sorted({shot.settings.model for shot in plan.shots if shot.settings.model})
    wanted = generator.name if isinstance(generator, Generator) else generator
    if len(models) > 1 and wanted != ANIMATIC:
        raise UserError(
            f"shots name several models ({', '.join(models)}), but a render loads one; "
            "set generation.model once at the top of the storyboard, or pass --model"
        )
    name = wanted or (SKYREELS if models else ANIMATIC)
    return name, models[0] if models and name != ANIMATIC else None


def render(
    storyboard: Storyboard | str | Path,
    out: str | Path | None = None,
    *,
    generator: str | Generator | None = None,
    model: str | None = None,
    enhancer: str | Enhancer | None = None,
    enhancer_url: str | None = None,
    enhancer_model: str | None = None,
    enhancer_fallback: str | None = None,
    enhancer_wait: float | None = None,
    refresh_prompts: bool = False,
    only: Sequence[str] | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    reuse: bool = True,
    cache_dir: str | Path | None = None,
    allow_outside: bool = False,
    template_vars: dict[str, Any] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    offload: bool = False,
    attention: str | None = None,
    compile: bool | str | None = None,
    precision: str | None = None,
    color_match: bool | str | None = None,
    progress: RenderProgress | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    gpus_per_shot: int = 1,
) -> Manifest:
    """Render a storyboard into ``out`` (default ``renders/<stem>/``) and return its manifest.

    - ``generator``: a backend name (default: ``skyreels`` when a model is set, else the ``animatic``),
      or a generator object you constructed (used as is, not closed). ``model`` replaces every shot's.
    - ``enhancer`` (a name or an enhancer object), ``enhancer_url`` and ``enhancer_model`` replace the
      storyboard's enhancer settings; ``enhancer_fallback`` names an enhancer for the shots the first
      one cannot do; ``enhancer_wait`` is how long to wait for a server that is not listening yet. Prompts
      are locked in ``<stem>.lock.yaml`` beside the storyboard and reused until
      their shot changes, unless ``refresh_prompts``.
    - ``only``: just those shots and the shots they continue, without assembling the film.
      ``seed`` replaces the film seed.
    - ``attention`` (auto, flash3, sage, flash, cudnn, sdpa), ``compile`` (True, False or "auto") and
      ``precision`` (bf16, fp8) replace the storyboard's settings of how the transformer runs.
    - ``color_match`` (True/"on", False/"off") replaces the film's ``generation.color_match`` (a scene or shot
      that sets its own keeps it): each continuation's colour matched to its parent's last frames.
    - Generated shots are kept in the shot cache (``cache_dir``, default ``$STORYREEL_CACHE`` or the
      user cache folder) and reused by any later render that needs the same frames; ``reuse=False``
      generates every shot again (refreshing the cache), ``use_cache=False`` neither reads nor writes it.
    - ``workers``: make the shots on that many Ray workers (one per GPU, or per ``gpus_per_shot`` GPUs),
      started on this machine, or on the cluster at ``ray_address`` ("auto", "ray://host:port"); see
      :mod:`storyreel.farm` and docs/cluster.md. Without either, shots are made here, one after another.
    """
    report = progress or RenderProgress()
    cluster = None
    if workers is not None or ray_address is not None:
        from .farm import ClusterSettings  # Ray itself is imported only once the plan is known good

        cluster = ClusterSettings.checked(workers, ray_address, gpus_per_shot, generator)

    # 1. Storyboard, then the render folder: held from here on, so a second render into it stops before
    #    planning or enhancing anything
    board = _board(storyboard, allow_outside, template_vars)
    if color_match is not None:
        board = _with_color_match(board, color_match)
    folder = RenderFolder(out if out is not None else default_out_dir(board.path, board.title))
    with machine_errors(*_places(board, folder, cache_dir)), folder.locked(report.note):
        # 2. Plan: every check happens here, the storyboard's first, then the generator's (an unknown name, a
        #    missing extra or model, shots it cannot make), before anything is spent
        report.stage("plan")
        plan = plan_film(
            board,
            seed=seed,
            model=model,
            attention=attention,
            compile=compile,
            precision=precision,
            allow_outside=allow_outside,
        )
        selected = _select(plan, only)
        order = [plan.shot(s) for s in plan.render_order if s in selected]
        name, model_id = choose_generator(plan, generator)
        if isinstance(generator, Generator):  # a generator made by the caller runs with its own options
            backend: type[Generator] | Generator = generator
            options = replace(generator.options, base_dir=generator.options.base_dir or board.base_dir)
        else:
            backend = load_backend(GENERATORS, name)
            options = GeneratorOptions(
                model=model_id,
                device=device,
                dtype=dtype,
                offload=offload,
                base_dir=board.base_dir,
                attention=plan.transformer.attention,
                compile=plan.transformer.compile,
                precision=plan.transformer.precision,
                sequence_parallel=cluster.gpus_per_shot if cluster is not None else 1,
            )
        backend.check_plan(order, options)
        if any(shot.color_match for shot in order):
            from .color_match import require_colour_matching

            require_colour_matching()
        check_keyframe_model(board, order, name == ANIMATIC)
        keys = _shot_keys(name, backend, options)  # resolves the device and precision: a bad one fails here
        _tell_plan(plan, name, options.model, report)
        cache = _open_cache(cache_dir, report) if use_cache else None

        # 3. Enhance: all shots at once, so a server-backed enhancer runs them concurrently; prompts the
        #    lock already holds for an unchanged shot are reused, and new ones are locked as they arrive
        settings = _enhancer_settings(
            board, enhancer, enhancer_url, enhancer_model, enhancer_fallback, wait=enhancer_wait
        )
        report.stage("enhance", settings.backend)
        prompts = enhance_film(
            board,
            plan,
            settings,
            only=selected,
            lock_path=_render_lock_path(board, folder),
            refresh=refresh_prompts,
            note=report.note,
            backend=None if isinstance(enhancer, str) else enhancer,
        )

        # 3b. Keyframes: a start frame drawn for each chosen fresh shot, which then starts from it; the
        #     keyframe model is loaded once, only for keyframes the cache lacks, and closed before step 4
        order, keyframes = with_keyframes(
            board, order, prompts, name == ANIMATIC, options, folder, cache, reuse, report
        )
        if cache is not None and keyframes:
            record_keyframe_shots(cache, keyframes, order, _cache_keys(order, prompts, keys))

        # 4. Generate, in render order: each shot's file, cache entry and the manifest are written as soon as
        #    it is done, so a render killed at any point resumes from there
        report.stage("generate", name)
        manifest = _new_manifest(board, name, options.model, settings.backend, plan)
        if cluster is not None:  # on Ray workers, each making whole shots the way the loop below does
            from .farm import generate_on_cluster

            generate_on_cluster(
                cluster,
                order,
                prompts,
                _cache_keys(order, prompts, keys),
                plan.shot_costs(),
                manifest,
                report,
                generator=name,
                options=options,
                folder=folder,
                cache=cache,
                reuse=reuse,
                storyboard=str(board.path.resolve()) if board.path else None,
                transformer=None if name == ANIMATIC else plan.transformer.model_dump(),
            )
        else:
            with LazyGenerator(backend, options) as engine:
                work = ShotWork(
                    folder=folder,
                    generator=engine,
                    cache=cache,
                    reuse=reuse,
                    storyboard=str(board.path.resolve()) if board.path else None,
                    transformer=None if name == ANIMATIC else plan.transformer.model_dump(),
                    note=report.note,
                    progress=report.shot_progress,
                )
                _generate(order, prompts, keys, work, manifest, report)

        # 5. Assemble the film (only when every shot of the timeline was rendered)
        if set(plan.timeline) <= {entry.id for entry in manifest.shots}:
            report.stage("assemble")
            manifest.film = _assemble(
                board, plan, folder, backend.reserved_bottom(plan.width, plan.height), report
            )
        else:
            report.note("rendered only some shots (--only), so film.mp4 was not assembled")

        # 6. Check: each continuation's seam and each chain's drift measured on the shot files; what is past
        #    a threshold is warned about and kept in the manifest, and the review page shows it all
        _check(plan, folder, manifest, report)
        manifest.write(folder.manifest)
        write_review(folder.path, manifest)
        return manifest


def render_keyframes(
    storyboard: Storyboard | str | Path,
    out: str | Path | None = None,
    *,
    enhancer: str | Enhancer | None = None,
    refresh_prompts: bool = False,
    seed: int | None = None,
    use_cache: bool = True,
    reuse: bool = True,
    cache_dir: str | Path | None = None,
    allow_outside: bool = False,
    template_vars: dict[str, Any] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    progress: RenderProgress | None = None,
) -> dict[str, Path]:
    """Only the keyframes: ``out/keyframes/<shot id>.png`` for every shot that gets one, drawn by the
    storyboard's keyframe model (stages 1, 2, 3 and 3b of :func:`render`, nothing generated), for approval
    before a render. Returns shot id -> file. They are cached as a render's are, so the render that follows
    reuses every one; a keyframe kept by copying it beside the storyboard and naming it in the shot's
    ``image:`` is that shot's start image from then on.
    """
    report = progress or RenderProgress()
    board = _board(storyboard, allow_outside, template_vars)
    folder = RenderFolder(out if out is not None else default_out_dir(board.path, board.title))
    with machine_errors(*_places(board, folder, cache_dir)), folder.locked(report.note):
        report.stage("plan")
        plan = plan_film(board, seed=seed, allow_outside=allow_outside)
        order = [plan.shot(s) for s in plan.render_order]
        if plan.keyframes is None:
            raise UserError(
                "no shot gets a keyframe: add a keyframes: section with a model (shots: auto picks the fresh "
                "shots showing a character with a reference:), or set keyframes.shots: all"
            )
        check_keyframe_model(board, order, animatic=False)
        cache = _open_cache(cache_dir, report) if use_cache else None
        settings = _enhancer_settings(board, enhancer, None, None, None)
        report.stage("enhance", settings.backend)
        keyframed = set(plan.keyframes.shots)
        prompts = enhance_film(
            board,
            plan,
            settings,
            only=keyframed,
            lock_path=_render_lock_path(board, folder),
            refresh=refresh_prompts,
            note=report.note,
            backend=None if isinstance(enhancer, str) else enhancer,
        )
        chosen = [shot for shot in order if shot.id in keyframed]
        options = GeneratorOptions(device=device, dtype=dtype)
        drawn, _ = with_keyframes(board, chosen, prompts, False, options, folder, cache, reuse, report)
        return {shot.id: Path(shot.image) for shot in drawn if shot.image is not None}


def _places(
    board: Storyboard, folder: RenderFolder, cache_dir: str | Path | None
) -> list[tuple[Path | None, str]]:
    """Where a render writes, each with how to move it, for the machine's errors to name."""
    return [
        (folder.path, "--out chooses the render folder"),
        (ShotCache(cache_dir).root, "--cache-dir chooses the shot cache"),
        (board.path.parent if board.path else None, "the prompt lock is kept beside the storyboard"),
    ]


def _render_lock_path(board: Storyboard, folder: RenderFolder) -> Path:
    """The prompt lock a render keeps: beside the storyboard, or in the render folder for one built in code."""
    return lock_path_for(board.path) if board.path else folder.path / "prompts.lock.yaml"


def enhance_storyboard(
    storyboard: Storyboard | str | Path,
    *,
    enhancer: str | Enhancer | None = None,
    enhancer_url: str | None = None,
    enhancer_model: str | None = None,
    enhancer_fallback: str | None = None,
    enhancer_wait: float | None = None,
    concurrency: int | None = None,
    refresh_prompts: bool = False,
    lock: str | Path | None = None,
    allow_outside: bool = False,
    template_vars: dict[str, Any] | None = None,
    progress: RenderProgress | None = None,
    on_prompt: Callable[[ShotPrompt], None] | None = None,
) -> tuple[Path, dict[str, ShotPrompt]]:
    """Enhance every shot's prompt and write the lock (``<stem>.lock.yaml`` unless ``lock`` is given).

    Returns the lock's path and each shot's prompt with its origin, in timeline order. Shots whose
    locked prompt is still current are not sent again unless ``refresh_prompts``.
    """
    report = progress or RenderProgress()
    board = _board(storyboard, allow_outside, template_vars, film_checks=False)
    plan = plan_film(board, allow_outside=allow_outside)
    if lock is not None:
        lock_path = Path(lock)
    elif board.path is not None:
        lock_path = lock_path_for(board.path)
    else:
        raise UserError(
            "a storyboard built in code has no file to put its prompt lock beside; pass lock=PATH"
        )
    settings = _enhancer_settings(
        board, enhancer, enhancer_url, enhancer_model, enhancer_fallback, concurrency, enhancer_wait
    )
    with machine_errors((lock_path.parent, "the prompt lock is kept beside the storyboard")):
        # The lock is written as prompts arrive: find out now, not after paying for the first answer,
        # whether its folder takes files.
        temporary_beside(lock_path).unlink()
        report.stage("enhance", settings.backend)
        prompts = enhance_film(
            board,
            plan,
            settings,
            lock_path=lock_path,
            write_lock=True,
            refresh=refresh_prompts,
            note=report.note,
            on_prompt=on_prompt or (lambda prompt: None),
            backend=None if isinstance(enhancer, str) else enhancer,
        )
    return lock_path, prompts


def _board(
    storyboard: Storyboard | str | Path,
    allow_outside: bool,
    template_vars: dict[str, Any] | None,
    film_checks: bool = True,
) -> Storyboard:
    """The storyboard, loaded when given as a path. ``film_checks=False`` when plan_film comes next, nothing
    happening in between (it runs them)."""
    if isinstance(storyboard, Storyboard):
        return storyboard
    return load_storyboard(
        storyboard, allow_outside=allow_outside, template_vars=template_vars, film_checks=film_checks
    )


def _with_color_match(board: Storyboard, value: bool | str) -> Storyboard:
    """``board`` with its film-wide ``generation.color_match`` replaced (``--color-match/--no-color-match``)."""
    from .fields import parse_color_match

    try:
        chosen = parse_color_match(value)
    except ValueError as exc:
        raise UserError(f"color_match: {exc}") from None
    generation = board.generation.model_copy(update={"color_match": chosen})
    return board.model_copy(update={"generation": generation})


def _enhancer_settings(
    board: Storyboard,
    enhancer: str | Enhancer | None,
    url: str | None,
    model: str | None,
    fallback: str | None,
    concurrency: int | None = None,
    wait: float | None = None,
) -> EnhancerSettings:
    """The storyboard's enhancer settings, with what the caller chose instead (None leaves a setting alone)."""
    name = enhancer if isinstance(enhancer, str) or enhancer is None else enhancer.name
    return enhancer_settings(
        board, backend=name, url=url, model=model, fallback=fallback, concurrency=concurrency, wait=wait
    )


def _select(plan: FilmPlan, only: Sequence[str] | None) -> set[str]:
    """The shots to render: all, or those asked for plus the shots they continue (their tails are needed)."""
    if not only:
        return set(plan.timeline)
    unknown = [s for s in only if s not in plan.timeline]
    if unknown:
        raise UserError(
            f"--only names unknown shot(s): {', '.join(unknown)}; the storyboard's shots are: {', '.join(plan.timeline)}"
        )
    selected: set[str] = set()
    for shot_id in only:
        wanted: str | None = shot_id
        while wanted is not None and wanted not in selected:
            selected.add(wanted)
            wanted = plan.shot(wanted).conditioned_on
    return selected


def _tell_plan(plan: FilmPlan, generator: str, model: str | None, report: RenderProgress) -> None:
    if generator == ANIMATIC:
        why = "no model is set (generation.model or --model), so this" if model is None else "this"
        report.note(
            f"{why} renders an animatic: a previs of framing, camera moves, timing and captions, not "
            "generated video"
        )
    for note in plan.notes:
        report.note(note)


def _open_cache(cache_dir: str | Path | None, report: RenderProgress) -> ShotCache:
    """The shot cache, its folder made now: a cache path that cannot be a folder stops the render before any
    work (later write failures, such as a full disk, only warn)."""
    cache = ShotCache(cache_dir, warn=report.note)
    make_folder(cache.shots)
    return cache


def _shot_keys(name: str, backend: type[Generator] | Generator, options: GeneratorOptions) -> ShotKeys:
    """What every shot's cache key shares: the generator, its version and the precision its options resolve
    to, and the identity of the model it loads."""
    return ShotKeys(
        generator=name,
        generator_version="/".join(filter(None, (backend.version, backend.identity(options)))),
        model=resolve_model(options.model, options.base_dir).identity() if options.model else None,
        frame_facts=backend.frame_facts,
    )


def _new_manifest(
    board: Storyboard, generator: str, model: str | None, enhancer: str, plan: FilmPlan
) -> Manifest:
    return Manifest(
        storyreel=__version__,
        storyboard=str(board.path) if board.path else None,
        storyboard_sha256=file_sha256(board.path) if board.path else None,
        title=board.title,
        generator=generator,
        model=model,
        enhancer=enhancer,
        film=None,
        shots=[],
        notes=list(plan.notes),
    )


def _generate(
    order: list[ShotPlan],
    prompts: dict[str, ShotPrompt],
    keys: ShotKeys,
    work: ShotWork,
    manifest: Manifest,
    report: RenderProgress,
) -> None:
    """Stage 4: make every shot of ``order``, entering each in the manifest (written after each shot). A shot
    that fits in no memory (and the shots continuing it) is skipped; the rest are made, then OutOfMemory
    lists what is missing."""
    cache_keys = _cache_keys(order, prompts, keys)
    work.generator.upcoming = uncached_prompts(order, prompts, cache_keys, work.cache, work.reuse)
    tails = TailKeeper(order)
    entries: dict[str, ShotEntry] = {}
    failed: dict[str, str] = {}  # shot id -> why it was not made
    timeline = sorted(order, key=lambda shot: shot.timeline_index)
    for index, shot in enumerate(order, start=1):
        report.shot_started(shot, index, len(order))
        if shot.conditioned_on in failed:
            failed[shot.id] = (
                f"shot '{shot.id}' was not generated: it continues '{shot.conditioned_on}', which failed"
            )
            tails.skip(shot)
            continue
        job = ShotJob(
            shot, prompts[shot.id], cache_keys[shot.id], tails.tail_for(shot), tails.need.get(shot.id, 0)
        )
        started = utc_now()
        try:
            result = make_shot(job, work)
        except OutOfMemory as exc:
            failed[shot.id] = str(exc)
            report.note(str(exc))
            continue
        tails.keep(shot, result.tail)
        entries[shot.id] = result.entry.model_copy(update={"started": started, "finished": utc_now()})
        manifest.shots = [entries[s.id] for s in timeline if s.id in entries]
        manifest.write(work.folder.manifest)
        report.shot_finished(shot, result.entry)
    if failed:
        raise OutOfMemory(
            f"{len(failed)} shot(s) could not be generated; every other shot is saved and will be reused:\n"
            + "\n".join(failed.values())
        )


def _cache_keys(order: list[ShotPlan], prompts: dict[str, ShotPrompt], keys: ShotKeys) -> dict[str, str]:
    """Every shot's cache key, up front: a shot's key holds its parent's, which is the same whether the parent
    is reused or made, so no key waits for a shot to be made."""
    made: dict[str, str] = {}
    for shot in order:  # render order: a parent's key is there before its continuations need it
        parent = made[shot.conditioned_on] if shot.conditioned_on else None
        made[shot.id] = keys.key(shot, prompts[shot.id].prompt.prompt, parent)
    return made


def _assemble(
    board: Storyboard, plan: FilmPlan, folder: RenderFolder, reserved_bottom: int, report: RenderProgress
) -> FilmEntry:
    """Stage 5: the shots cut into the film, with captions (burned in and as film.srt) and the music bed, and
    the same cut as an editor's timeline (film.otio)."""
    from .assemble import AudioBed, Cut, assemble_film
    from .captions import write_srt
    from .editorial import write_film_otio

    cuts = [
        Cut(
            shot_id=shot.id,
            path=folder.shot(shot.id),
            frames=shot.frames,
            transition=shot.transition,
            transition_frames=shot.transition_frames,
            film_start_frame=shot.film_start_frame,
            caption=shot.caption,
        )
        for shot in plan.shots
    ]
    audio = None
    if board.audio is not None:
        audio = AudioBed(
            path=board.resolve_asset(board.audio.music),
            volume=board.audio.volume,
            fade_in=board.audio.fade_in or 0.0,
            fade_out=board.audio.fade_out if board.audio.fade_out is not None else 1.0,
        )
    film = assemble_film(
        cuts,
        folder.film,
        fps=plan.fps,
        width=plan.width,
        height=plan.height,
        audio=audio,
        reserved_bottom=reserved_bottom,
        progress=report.film_progress,
    )
    has_captions = write_srt(cuts, plan.fps, folder.captions)
    write_film_otio(folder.timeline, board.title, cuts, plan.fps, audio)
    if not has_captions:
        folder.captions.unlink(missing_ok=True)  # a stale file from an earlier render of this storyboard
    return FilmEntry(
        path=folder.film.name,
        frames=film.frames,
        fps=film.fps,
        seconds=round(film.frames / film.fps, 2),
        width=film.width,
        height=film.height,
        has_audio=film.has_audio,
        captions=folder.captions.name if has_captions else None,
    )


def _check(plan: FilmPlan, folder: RenderFolder, manifest: Manifest, report: RenderProgress) -> None:
    """Stage 6: the seam and drift checks (:mod:`storyreel.qa`) on the shots this render holds, into the
    manifest; without scikit-image they are skipped, and the note says which extra brings them."""
    from .qa import check_render, qa_available

    if not qa_available():
        report.note("seam and drift checks skipped: they need scikit-image (pip install 'storyreel[qa]')")
        return
    made = {entry.id: folder.path / entry.path for entry in manifest.shots}
    qa = check_render(
        made,
        {shot.id: shot.conditioned_on for shot in plan.shots},
        plan.chains,
        plan.width,
        plan.height,
    )
    for entry in manifest.shots:
        entry.qa = qa.seams.get(entry.id)
    if manifest.film is not None:
        manifest.film.qa = qa.film_entry()
    manifest.warnings.extend(qa.warnings)
    for warning in qa.warnings:
        report.note(f"warning: {warning}")
