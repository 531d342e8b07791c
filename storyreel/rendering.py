"""``render()``: a storyboard in, a film out. It composes the five stages.

    1. storyboard   load and check the file (or take a Storyboard built in code)
    2. plan         shot graph, timeline, frames and diffusion-forcing windows; every error is found here,
                    before any GPU minute is spent
    3. enhance      every shot's prompt rewritten into a detailed caption, all shots at once
    4. generate     shots in render order; a continuing shot gets its parent's exact last frames
    5. assemble     shots cut into film.mp4 (+ film.srt), then manifest.json

Right after the storyboard loads, the render folder is locked (one render per folder; what killed
renders left there is removed) and stays locked until the end. The machine refusing a read or a
write (permissions, a full disk, a file where a folder should be) is raised as a MachineError that
names the path and the operating system's reason, and costs no finished shot.

>>> manifest = render("examples/swan_lake.yaml", out="renders/swan")  # doctest: +SKIP
>>> manifest.film.frames, [shot.id for shot in manifest.shots][:2]  # doctest: +SKIP
(..., ['dawn-glide', ...])
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .atomic import copy_atomic, make_folder, remove_partials, temporary_beside, writing
from .backends import GENERATORS, load_backend
from .cache import EntryInfo, ShotCache, default_cache_dir
from .enhance import Enhancer, ShotPrompt, enhance_film, enhancer_settings
from .errors import GenerationError, MachineError, OutOfMemory, UserError
from .fingerprint import file_sha256, model_identity, shot_key
from .generate import (
    Clip,
    Generator,
    GeneratorOptions,
    ProgressEvent,
    ShotRequest,
    load_start_image,
    open_generator,
)
from .generate import run_generator as _run_generator
from .manifest import FilmEntry, Manifest, ShotEntry
from .plan import FilmPlan, ShotPlan, plan_film, with_base_frames
from .prompt_lock import lock_path_for
from .storyboard import Storyboard, load_storyboard

ANIMATIC = "animatic"
SKYREELS = "skyreels"


class RenderProgress:
    """What a render reports as it goes. Subclass and override what you want to show; every method is optional."""

    def note(self, message: str) -> None:
        """Something the user should know (an animatic instead of a model, a snapped duration...)."""

    def stage(self, name: str, detail: str = "") -> None:
        """A stage began: "plan", "enhance", "generate", "assemble"."""

    def shot_started(self, shot: ShotPlan, index: int, total: int) -> None:
        """Generation of ``shot`` began; it is number ``index`` (from 1) of ``total``."""

    def shot_progress(self, event: ProgressEvent) -> None:
        """A generator's step within the current shot."""

    def shot_finished(self, shot: ShotPlan, entry: ShotEntry) -> None:
        """The shot is written to disk."""

    def film_progress(self, done: int, total: int) -> None:
        """Frames of the film written so far."""


def default_out_dir(source: str | Path | None, title: str = "film") -> Path:
    """``./renders/<storyboard stem>/``, or the slugged title for a storyboard built in code.

    >>> default_out_dir("stories/swan_lake.yaml.j2"), default_out_dir(None, "Swan Lake!")
    (PosixPath('renders/swan_lake'), PosixPath('renders/swan-lake'))
    """
    if source is not None:
        name = Path(source).name
        for suffix in (".j2", ".yaml", ".yml"):
            name = name.removesuffix(suffix)
    else:
        name = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "film"
    return Path("renders") / name


def choose_generator(plan: FilmPlan, generator: str | Generator | None) -> tuple[str, str | None]:
    """(generator name, model): the one asked for, else SkyReels-V2 when a model is set, else the animatic."""
    models = sorted({shot.settings.model for shot in plan.shots if shot.settings.model})
    wanted = generator if isinstance(generator, str) else getattr(generator, "name", None)
    if len(models) > 1 and wanted != ANIMATIC:
        raise UserError(
            f"shots name several models ({', '.join(models)}), but a render loads one; "
            "set generation.model once at the top of the storyboard, or pass --model"
        )
    model = models[0] if models else None
    if isinstance(generator, str):
        return generator, model
    if generator is not None:
        return generator.name, model
    return (SKYREELS if models else ANIMATIC), model


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
    progress: RenderProgress | None = None,
) -> Manifest:
    """Render a storyboard into ``out`` (default ``renders/<stem>/``) and return its manifest.

    - ``generator``: a backend name (default: ``skyreels`` when a model is set, else the ``animatic``),
      or a generator object you constructed (used as is, not closed). ``model`` replaces every shot's.
    - ``enhancer`` (a name or an enhancer object), ``enhancer_url`` and ``enhancer_model`` replace the
      storyboard's enhancer settings; ``enhancer_fallback`` names an enhancer for the shots the first
      one cannot do. Prompts are locked in ``<stem>.lock.yaml`` beside the storyboard and reused until
      their shot changes, unless ``refresh_prompts``.
    - ``only``: just those shots and the shots they continue, without assembling the film.
      ``seed`` replaces the film seed.
    - Generated shots are kept in the shot cache (``cache_dir``, default ``$STORYREEL_CACHE`` or the
      user cache folder) and reused by any later render that needs the same frames; ``reuse=False``
      generates every shot again (refreshing the cache), ``use_cache=False`` neither reads nor writes it.
    """
    report = progress or RenderProgress()

    # 1. Storyboard
    board = _board(storyboard, allow_outside, template_vars)

    # One render per folder, from here on: a second render into a busy folder stops before planning or
    # enhancing anything, and what killed renders left in the folder is removed under the lock.
    out_dir = Path(out) if out is not None else default_out_dir(board.path, board.title)
    places = [
        (out_dir, "--out chooses the render folder"),
        (
            Path(cache_dir) if cache_dir is not None else default_cache_dir(),
            "--cache-dir chooses the shot cache",
        ),
        (board.path.parent if board.path else None, "the prompt lock is kept beside the storyboard"),
    ]
    with _os_errors(*places), _RenderFolderLock(out_dir, report):
        # 2. Plan: every check happens here, before anything expensive
        report.stage("plan")
        plan = plan_film(board, seed=seed, allow_outside=allow_outside, model=model)
        selected = _select(board, plan, only)
        generator_name, model_id = choose_generator(plan, generator)
        if generator_name == ANIMATIC:
            report.note(
                "no model is set (generation.model or --model), so this renders an animatic: a previs of "
                "framing, camera moves, timing and captions, not generated video"
            )
        for note in plan.notes:
            report.note(note)
        # An unknown generator, a missing extra, a missing model or shots the model cannot make fail now,
        # before any prompt is enhanced or weights loaded.
        backend_class = (
            generator if isinstance(generator, Generator) else load_backend(GENERATORS, generator_name)
        )
        options = GeneratorOptions(
            model=model_id, device=device, dtype=dtype, offload=offload, base_dir=board.base_dir
        )
        check_plan = getattr(backend_class, "check_plan", None)
        if callable(check_plan):
            check_plan([plan.shot(s) for s in plan.render_order if s in selected], options)
        shots = _open_cache(cache_dir, report) if use_cache else None

        # 3. Enhance: all shots at once, so a server-backed enhancer runs them concurrently; prompts the
        #    lock already holds for an unchanged shot are reused, and new ones are locked as they arrive
        settings = enhancer_settings(
            board,
            backend=_enhancer_name(enhancer),
            url=enhancer_url,
            model=enhancer_model,
            fallback=enhancer_fallback,
        )
        report.stage("enhance", settings.backend)
        prompts = enhance_film(
            board,
            plan,
            settings,
            only=selected,
            lock_path=lock_path_for(board.path) if board.path else out_dir / "prompts.lock.yaml",
            refresh=refresh_prompts,
            note=report.note,
            backend=None if isinstance(enhancer, str) else enhancer,
        )

        manifest = Manifest(
            storyreel=__version__,
            storyboard=str(board.path) if board.path else None,
            storyboard_sha256=file_sha256(board.path) if board.path else None,
            title=board.title,
            generator=generator_name,
            model=model_id,
            enhancer=settings.backend,
            film=None,
            shots=[],
            notes=list(plan.notes),
        )

        # 4. Generate, in render order. A shot the cache holds is reused, not generated; each new shot's
        #    file, cache entry and the manifest are written as soon as it is done, so a render killed at
        #    any point resumes from there. The generator (and its model) loads only if a shot needs it.
        report.stage("generate", generator_name)
        version = str(getattr(backend_class, "version", __version__))
        identity = getattr(backend_class, "identity", None)  # e.g. the precision the options resolve to
        if callable(identity):
            version += f"/{identity(options)}"
        with _LazyGenerator(generator, generator_name, options) as engine:
            failed = _generate(
                board,
                plan,
                [s for s in plan.render_order if s in selected],
                prompts,
                manifest,
                out_dir,
                engine,
                shots,
                reuse=reuse,
                generator_name=generator_name,
                generator_version=version,
                model_key=model_identity(model_id, board.base_dir),
                report=report,
            )
        if failed:
            raise OutOfMemory(
                f"{len(failed)} shot(s) could not be generated; every other shot is saved and will be reused:\n"
                + "\n".join(failed.values())
            )

        # 5. Assemble the film (only when every shot of the timeline was rendered)
        reserve = getattr(backend_class, "reserved_bottom", None)  # optional: rows a generator draws on
        reserved_bottom = int(reserve(plan.width, plan.height)) if callable(reserve) else 0
        if set(plan.timeline) <= {entry.id for entry in manifest.shots}:
            report.stage("assemble")
            manifest.film = _assemble(board, plan, out_dir, report, reserved_bottom)
        else:
            report.note("rendered only some shots (--only), so film.mp4 was not assembled")
        manifest.write(out_dir / "manifest.json")
        return manifest


def enhance_storyboard(
    storyboard: Storyboard | str | Path,
    *,
    enhancer: str | Enhancer | None = None,
    enhancer_url: str | None = None,
    enhancer_model: str | None = None,
    enhancer_fallback: str | None = None,
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
    board = _board(storyboard, allow_outside, template_vars)
    plan = plan_film(board, allow_outside=allow_outside)
    if lock is not None:
        lock_path = Path(lock)
    elif board.path is not None:
        lock_path = lock_path_for(board.path)
    else:
        raise UserError(
            "a storyboard built in code has no file to put its prompt lock beside; pass lock=PATH"
        )
    settings = enhancer_settings(
        board,
        backend=_enhancer_name(enhancer),
        url=enhancer_url,
        model=enhancer_model,
        fallback=enhancer_fallback,
        concurrency=concurrency,
    )
    with _os_errors((lock_path.parent, "the prompt lock is kept beside the storyboard")):
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
    storyboard: Storyboard | str | Path, allow_outside: bool, template_vars: dict[str, Any] | None
) -> Storyboard:
    if isinstance(storyboard, Storyboard):
        return storyboard
    return load_storyboard(storyboard, allow_outside=allow_outside, template_vars=template_vars)


def _enhancer_name(enhancer: str | Enhancer | None) -> str | None:
    return enhancer if isinstance(enhancer, str) or enhancer is None else enhancer.name


def _select(board: Storyboard, plan: FilmPlan, only: Sequence[str] | None) -> set[str]:
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
        while shot_id is not None and shot_id not in selected:
            selected.add(shot_id)
            shot_id = plan.shot(shot_id).conditioned_on  # type: ignore[assignment]
    return selected


def _generate(
    board: Storyboard,
    plan: FilmPlan,
    order: list[str],
    prompts: dict[str, ShotPrompt],
    manifest: Manifest,
    out_dir: Path,
    engine: _LazyGenerator,
    shots: ShotCache | None,
    *,
    reuse: bool,
    generator_name: str,
    generator_version: str,
    model_key: str | None,
    report: RenderProgress,
) -> dict[str, str]:
    """Stage 4: every shot of ``order`` reused from the cache or generated, written to ``out_dir/shots`` and
    entered in the manifest (written after each shot). Returns the shots that did not fit in memory (and
    those continuing them), each with the reason."""
    used_by = str(board.path.resolve()) if board.path else None
    entries: dict[str, ShotEntry] = {}
    failed: dict[str, str] = {}
    tails = _TailKeeper(plan, order)
    keys: dict[str, str] = {}
    for index, shot_id in enumerate(order, start=1):
        shot = plan.shot(shot_id)
        report.shot_started(shot, index, len(order))
        prompt = prompts[shot_id].prompt
        keys[shot_id] = shot_key(
            shot,
            prompt=prompt.prompt,
            generator=generator_name,
            generator_version=generator_version,
            model=model_key,
            parent_key=keys.get(shot.conditioned_on) if shot.conditioned_on else None,
            image_sha256=file_sha256(shot.image) if shot.image else None,
        )
        if shot.conditioned_on in failed:
            failed[shot_id] = (
                f"shot '{shot_id}' was not generated: it continues '{shot.conditioned_on}', which failed"
            )
            tails.skip(shot)
            continue
        conditioning = tails.tail_for(shot)
        path = out_dir / "shots" / f"{shot_id}.mp4"
        need = tails.need.get(shot_id, 0)
        hit = shots.get(keys[shot_id], need_tail=need, used_by=used_by) if shots and reuse else None
        if hit is not None:
            copy_atomic(hit.mp4, path)
            tails.keep(shot, hit.tail(), None)
            entries[shot_id] = _entry(
                shot, prompts[shot_id], keys[shot_id], hit.info.frames, cached=True, info=hit.info.info
            )
        else:
            request = ShotRequest(
                shot=shot,
                prompt=prompt.prompt,
                negative_prompt=shot.settings.negative_prompt,
                tail_frames=conditioning,
                image=_start_image(shot) if shot.image else None,
            )
            try:
                clip, degraded = _generate_fitting(engine.get(), request, report)
            except OutOfMemory as exc:
                failed[shot_id] = str(exc)
                report.note(str(exc))
                continue
            if degraded:
                clip.info["degraded"] = degraded
            tails.keep(shot, clip.frames, conditioning)
            info = _cache_info(shot, keys[shot_id], clip, generator_name, manifest.model, used_by)
            tail = footage_tail(clip.frames, conditioning, max(need, shot.settings.overlap_history))
            _save_shot(clip, path, shot.fps, shots, info, tail)
            entries[shot_id] = _entry(
                shot,
                prompts[shot_id],
                keys[shot_id],
                len(clip.frames),
                cached=False,
                clip=clip,
                info=clip.info,
            )
        manifest.shots = [entries[s] for s in plan.timeline if s in entries]
        manifest.write(out_dir / "manifest.json")
        report.shot_finished(shot, entries[shot_id])
    return failed


def _save_shot(
    clip: Clip, path: Path, fps: int, shots: ShotCache | None, info: EntryInfo, tail: np.ndarray
) -> None:
    """Write a generated shot into the render folder and the cache. When the render folder cannot take it
    (read-only, full), the shot still goes into the cache before the error is raised: a generated shot
    costs GPU minutes, and the next render reuses it."""
    try:
        _write_shot(clip, path, fps)
    except Exception:
        if shots is not None:
            handle, name = tempfile.mkstemp(prefix=f"storyreel-{info.shot_id}-", suffix=".mp4")
            os.close(handle)
            scratch = Path(name)
            try:
                _write_shot(clip, scratch, fps)
                shots.put(info, scratch, tail)
            except Exception:
                pass  # the first error is the one to report
            finally:
                scratch.unlink(missing_ok=True)
        raise
    if shots is not None:
        shots.put(info, path, tail)


def _start_image(shot: ShotPlan) -> np.ndarray:
    """The shot's start image, fitted to the film; a file that broke since the storyboard was checked is the
    user's to fix."""
    from .assets import check_asset

    assert shot.image is not None
    try:
        return load_start_image(shot.image, shot.width, shot.height)
    except Exception:
        trouble = check_asset("image", Path(shot.image), str(shot.image))
        if trouble is None:
            raise
        raise UserError(f"shot '{shot.id}': {trouble.message}; fix: {trouble.fix}") from None


def _open_cache(cache_dir: str | Path | None, report: RenderProgress) -> ShotCache:
    """The shot cache, its folder made now: a cache path that cannot be a folder stops the render before any
    work (later write failures, such as a full disk, only warn)."""
    cache = ShotCache(cache_dir, warn=report.note)
    make_folder(cache.shots)
    return cache


@contextmanager
def _os_errors(*places: tuple[Path | None, str]) -> Iterator[None]:
    """An OSError while rendering is the machine's state (a folder that cannot be written, a full disk, a
    file where a folder should be), never a bug: say which path, the OS's reason, and (from ``places``,
    pairs of a folder and a hint) which option moves the place it happened in."""
    try:
        yield
    except OSError as error:
        raise _machine_error(error, places) from error


def _machine_error(error: OSError, places: Sequence[tuple[Path | None, str]]) -> MachineError:
    path = Path(error.filename).absolute() if isinstance(error.filename, str) else None
    # The deepest place that holds the path, or that the path is a parent of (a folder it could not create).
    near = [
        (len(folder.absolute().parts), hint)
        for folder, hint in places
        if folder is not None
        and path is not None
        and (path.is_relative_to(folder.absolute()) or folder.absolute().is_relative_to(path))
    ]
    if not near:
        return MachineError.from_os_error(error, doing="use")
    return MachineError.from_os_error(error, hint=max(near)[1])


class _LazyGenerator:
    """The render's generator, opened on first use (a render whose shots are all cached loads no model) and
    always closed; a generator object passed in is used as is and left open."""

    def __init__(self, generator: str | Generator | None, name: str, options: GeneratorOptions):
        self.given = generator if isinstance(generator, Generator) else None
        self.name, self.options = name, options
        self.owned: Generator | None = None

    def get(self) -> Generator:
        if self.given is not None:
            return self.given
        if self.owned is None:
            self.owned = open_generator(self.name, self.options)
        return self.owned

    def __enter__(self) -> _LazyGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.close()


class _RenderFolderLock:
    """One render at a time per render folder: a second one stops with a message instead of interleaving files.

    The lock is ``flock`` on ``<folder>/.storyreel.lock``, which holds the owner's pid for that message.
    The file is removed when the render ends, while the lock is still held; a render that opened the
    file before it was removed finds, once it has the lock, that the path no longer names the file it
    locked, and starts over with a new file. So removing it never lets two renders in.

    Under the lock, temporary files that killed renders left in the folder are removed; folders this
    render created are removed again if it leaves them empty (a render refused before writing
    anything leaves nothing behind).
    """

    def __init__(self, folder: Path, report: RenderProgress | None = None):
        self.folder = folder
        self.path = folder / ".storyreel.lock"
        self.report = report or RenderProgress()
        self.handle: Any = None
        # Folders that do not exist yet, deepest first: removed on the way out if left empty.
        self.created = [p for p in (folder / "shots", folder, *folder.parents) if not p.exists()]

    def __enter__(self) -> _RenderFolderLock:
        try:
            make_folder(self.folder)
            self._lock()
            self._remove_leftovers()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; renders there are not guarded
            return
        for _ in range(100):  # each retry means another render finished meanwhile: this ends quickly
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise UserError(
                    f"another storyreel render ({holder}) is writing to {self.folder}; "
                    "wait for it to finish, or render into another folder with --out"
                ) from None
            except BaseException:
                handle.close()
                raise
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(handle.fileno()), current):
                break
            handle.close()  # the render that held it removed the file meanwhile: lock the one there now
        else:
            raise UserError(
                f"could not lock {self.path}: it was replaced 100 times while storyreel tried; the file system "
                "may not support locks (fix: render into a folder on a local disk with --out)"
            )
        self.handle = handle
        with writing(self.path):
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()

    def _remove_leftovers(self) -> None:
        removed = remove_partials(self.folder) + remove_partials(self.folder / "shots")
        if removed:
            size = sum(bytes_ for _, bytes_ in removed)
            self.report.note(
                f"removed {len(removed)} unfinished file(s) ({size / 2**20:.1f} MiB) that an interrupted render "
                f"left in {self.folder}"
            )

    def _release(self) -> None:
        if self.handle is not None:
            with suppress(OSError):
                self.path.unlink()  # while still locked: see the class docstring
            self.handle.close()
            self.handle = None
        for folder in self.created:
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue  # never made (a render refused early makes no shots/)
            except OSError:
                break  # not empty: neither are the folders above it


class _TailKeeper:
    """Keeps the last frames of each shot that a later shot continues, and only for as long as needed.

    A continuing shot is conditioned on the last ``overlap_history`` frames of the footage before it:
    its parent's own frames, preceded by whatever the parent itself was conditioned on. These are the
    parent's exact generated frames, never re-read from the lossy mp4.
    """

    def __init__(self, plan: FilmPlan, order: list[str]):
        self.need: dict[str, int] = {}
        self.waiting: dict[str, int] = {}
        for shot_id in order:
            shot = plan.shot(shot_id)
            if shot.conditioned_on is not None:
                parent = shot.conditioned_on
                self.need[parent] = max(self.need.get(parent, 0), shot.settings.overlap_history)
                self.waiting[parent] = self.waiting.get(parent, 0) + 1
        self.tails: dict[str, np.ndarray] = {}

    def keep(self, shot: ShotPlan, frames: np.ndarray, conditioning: np.ndarray | None) -> None:
        need = self.need.get(shot.id, 0)
        if need:
            self.tails[shot.id] = footage_tail(frames, conditioning, need)

    def skip(self, shot: ShotPlan) -> None:
        """``shot`` will not be generated (its parent failed): it no longer waits for the parent's tail."""
        parent = shot.conditioned_on
        if parent is not None:
            self.waiting[parent] -= 1
            if not self.waiting[parent]:
                self.tails.pop(parent, None)

    def tail_for(self, shot: ShotPlan) -> np.ndarray | None:
        parent = shot.conditioned_on
        if parent is None:
            return None
        tail = self.tails[parent][-shot.settings.overlap_history :]
        self.waiting[parent] -= 1
        if not self.waiting[parent]:
            del self.tails[parent]  # every continuation of this parent has its frames now
        return tail


def _is_out_of_memory(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is the accelerator running out of memory."""
    seen = 0
    while error is not None and seen < 10:
        if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _release_accelerator_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def smaller_windows(shot: ShotPlan) -> list[ShotPlan]:
    """The shot replanned with ever smaller diffusion-forcing windows (20 frames, one 5-frame causal block of
    latents, less each time), as long as the window stays longer than the overlap and valid."""
    replanned = []
    base = shot.settings.base_num_frames - 20
    while base > shot.settings.overlap_history:
        candidate = with_base_frames(shot, base)
        if candidate is not None:
            replanned.append(candidate)
        base -= 20
    return replanned


def _generate_fitting(
    generator: Generator, request: ShotRequest, report: RenderProgress
) -> tuple[Clip, list[str]]:
    """Generate a shot; when it runs out of GPU memory, retry along the degrade ladder: model offloading
    (if the generator can and is not already), then smaller windows. Returns the clip and the steps taken."""
    degraded: list[str] = []
    attempts: list[tuple[str, ShotRequest]] = [("", request)]
    offload = getattr(generator, "enable_offload", None)
    if callable(offload) and not getattr(generator, "offloading", False):
        attempts.append(("offload", request))
    attempts += [
        (f"base_num_frames={shot.settings.base_num_frames}", replace(request, shot=shot))
        for shot in smaller_windows(request.shot)
    ]
    for step, attempt in attempts:
        if step == "offload" and callable(offload):
            offload()
        if step:
            degraded.append(step)
        try:
            return _run_generator(generator, attempt, report.shot_progress), degraded
        except GenerationError as exc:
            if not _is_out_of_memory(exc):
                raise
            _release_accelerator_memory()
            report.note(
                f"shot '{request.shot.id}' ran out of GPU memory"
                + (f" with {', '.join(degraded)}" if degraded else "")
                + ("; trying again with less" if (step, attempt) != attempts[-1] else "")
            )
    raise OutOfMemory(
        f"shot '{request.shot.id}' does not fit in GPU memory even with {', '.join(degraded) or 'the settings given'}; "
        "fix: a smaller resolution, fewer frames per window (generation.base_num_frames), --offload, or a larger GPU"
    )


def footage_tail(frames: np.ndarray, conditioning: np.ndarray | None, count: int) -> np.ndarray:
    """The last ``count`` frames of the footage a shot ends: its own frames, preceded (when it is shorter
    than ``count``) by the frames it was itself conditioned on."""
    footage = (
        frames if conditioning is None or len(frames) >= count else np.concatenate([conditioning, frames])
    )
    return footage[-count:].copy()


def _write_shot(clip: Clip, path: Path, fps: int) -> None:
    from .assemble import write_shot

    write_shot(clip.frames, path, fps)


def _entry(
    shot: ShotPlan,
    prompt: ShotPrompt,
    key: str,
    frames: int,
    *,
    cached: bool,
    clip: Clip | None = None,
    info: dict[str, Any] | None = None,
) -> ShotEntry:
    """The manifest's line for a shot; ``info`` is the generator's facts (kept in the cache for a reused shot)."""
    info = _json_friendly(info or {})
    return ShotEntry(
        id=shot.id,
        scene=shot.scene,
        timeline_index=shot.timeline_index,
        frames=frames,
        seconds=round(frames / shot.fps, 2),
        conditioned_on=shot.conditioned_on,
        transition=shot.transition,
        mode=shot.mode,
        prompt=shot.prompt,
        enhanced_prompt=prompt.prompt.prompt,
        enhanced_by=prompt.prompt.source,
        enhancer_model=prompt.prompt.model,
        prompt_origin=prompt.origin,
        seed=shot.seed,
        cache_key=key,
        cached=cached,
        dit_passes=clip.dit_passes if clip else 0,
        seconds_generating=round(clip.seconds, 3) if clip else 0.0,
        degraded=list(info.get("degraded", [])),
        generator_info={k: v for k, v in info.items() if k != "degraded"},
        path=f"shots/{shot.id}.mp4",
    )


def _json_friendly(info: dict[str, Any]) -> dict[str, Any]:
    """The entries of a generator's ``Clip.info`` that JSON can hold (the manifest and the cache are JSON)."""
    kept = {}
    for key, value in info.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[str(key)] = value
    return kept


def _cache_info(
    shot: ShotPlan, key: str, clip: Clip, generator: str, model: str | None, used_by: str | None
) -> EntryInfo:
    return EntryInfo(
        key=key,
        shot_id=shot.id,
        storyboard=used_by,
        generator=generator,
        model=model,
        frames=len(clip.frames),
        width=shot.width,
        height=shot.height,
        fps=shot.fps,
        tail_frames=0,
        dit_passes=clip.dit_passes,
        seconds_generating=round(clip.seconds, 3),
        created=time.time(),
        files={},
        used_by=[used_by] if used_by else [],
        info=_json_friendly(clip.info),
    )


def _assemble(
    board: Storyboard, plan: FilmPlan, out_dir: Path, report: RenderProgress, reserved_bottom: int = 0
) -> FilmEntry:
    from .assemble import AudioBed, Cut, assemble_film, write_srt

    cuts = [
        Cut(
            shot_id=shot.id,
            path=out_dir / "shots" / f"{shot.id}.mp4",
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
        out_dir / "film.mp4",
        fps=plan.fps,
        width=plan.width,
        height=plan.height,
        audio=audio,
        reserved_bottom=reserved_bottom,
        progress=report.film_progress,
    )
    srt = out_dir / "film.srt"
    has_captions = write_srt(cuts, plan.fps, srt)
    if not has_captions:
        srt.unlink(missing_ok=True)  # a stale file from an earlier render of this storyboard
    return FilmEntry(
        path="film.mp4",
        frames=film.frames,
        fps=film.fps,
        seconds=round(film.frames / film.fps, 2),
        width=film.width,
        height=film.height,
        has_audio=film.has_audio,
        captions="film.srt" if has_captions else None,
    )
