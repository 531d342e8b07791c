"""The child process a storyboard template renders in, its memory and time limited by the operating system.

The bounded sandbox (:mod:`storyreel.template_sandbox`) is a template's first line of defence; this is the
second, a guarantee for whatever the first did not foresee (Python work a template starts that never comes
back to the sandbox, such as comparing two deep lists): where the platform can fork, the template is
compiled and rendered in a child process (:func:`render_in_child`) with a hard limit on its memory
(``RLIMIT_AS``, where the address space can be measured: Linux) and on its time. Only the rendered text,
or the problems found, come back. Where it cannot fork (Windows) the first line is all there is.
"""

from __future__ import annotations

import gc
import math
import os
import pickle
import select
import signal
import struct
import time
import traceback
import typing
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from .template_limits import (
    CHILD_GRACE_SECONDS,
    CHILD_WALL_SECONDS,
    MAX_TEMPLATE_MEMORY,
    MAX_TEMPLATE_SECONDS,
)

Asked = TypeVar("Asked")
Answer = TypeVar("Answer")
Result = TypeVar("Result")


class ChildStopped(Exception):
    """The child a template rendered in was stopped for its time, or died (for its memory), before it answered."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix


def render_in_child(
    work: Callable[[], Generator[Asked, Answer, Result]], answer: Callable[[Asked], Answer]
) -> Result:
    """Run ``work`` (a generator function) in a forked child process with bounded memory and time, and return what
    it returns. Each value it yields is a question the parent answers with ``answer``, in this process (the time
    that takes is not the child's); the answer is sent back into the generator.

    Only what the generator yields and returns crosses between the processes (pickled), so the child can
    compute with anything the process holds. An exception raised in the child is a bug and comes back as a
    RuntimeError with its traceback; ``work`` is expected to turn the template's own errors into values. A
    child past :data:`MAX_TEMPLATE_MEMORY` or past its time (the sandbox's :data:`MAX_TEMPLATE_SECONDS` and
    :data:`CHILD_GRACE_SECONDS` more) is killed: :class:`ChildStopped`. Without ``os.fork`` (Windows) the
    generator runs here, bounded only by the sandbox.

    >>> def work():
    ...     name = yield "who?"
    ...     return f"hello {name}"
    >>> render_in_child(work, lambda question: "swan")
    'hello swan'
    """
    if not hasattr(os, "fork"):
        return _drive(work(), answer)
    from_parent, to_child = os.pipe()
    from_child, to_parent = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its outcome is what the parent sees
        os.close(to_child)
        os.close(from_child)
        _child(work, from_parent, to_parent)
    os.close(from_parent)
    os.close(to_parent)
    ended = False
    try:
        deadline = time.monotonic() + CHILD_WALL_SECONDS
        while True:
            kind, value = _receive(from_child, deadline)
            if kind == "asks":
                started = time.monotonic()
                reply = answer(value)
                deadline += time.monotonic() - started  # the parent's time is not the child's
                _send(to_child, ("answers", reply))
            elif kind == "returns":
                return typing.cast(Result, value)
            else:
                raise RuntimeError(f"rendering the template failed in its child process:\n{value}")
    except _NoAnswer as stopped:
        status = _reap(pid, kill=stopped.timed_out)
        ended = True
        raise _stopped(stopped.timed_out, status) from None
    finally:
        os.close(to_child)
        os.close(from_child)
        if not ended:
            _reap(pid, kill=True)


def _drive(generator: Generator[Asked, Answer, Result], answer: Callable[[Asked], Answer]) -> Result:
    try:
        question = next(generator)
        while True:
            question = generator.send(answer(question))
    except StopIteration as done:
        return typing.cast(Result, done.value)


_OUT_OF_MEMORY = 71  # the child's exit status when it could not even send its answer


def _child(work: Callable[[], Generator[Any, Any, Any]], incoming: int, outgoing: int) -> typing.NoReturn:
    status = 0
    try:
        _limit_memory(MAX_TEMPLATE_MEMORY)
        _limit_cpu(MAX_TEMPLATE_SECONDS + CHILD_GRACE_SECONDS)
        gc.freeze()  # the parent's objects are never collected here: their pages stay shared
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C stops the child with its parent
        try:
            generator = work()
            question = next(generator)
            while True:
                _send(outgoing, ("asks", question))
                _, reply = _receive(incoming, None)
                question = generator.send(reply)
        except StopIteration as done:
            _send(outgoing, ("returns", done.value))
        except MemoryError:
            status = _OUT_OF_MEMORY
        except BaseException:  # noqa: BLE001 - a bug, reported to the parent with its traceback
            _send(outgoing, ("fails", traceback.format_exc()))
    except MemoryError:
        status = _OUT_OF_MEMORY
    except BaseException:  # noqa: BLE001 - the parent sees the child gone without an answer
        status = 70
    finally:
        os._exit(status)


def _limit_cpu(seconds: float) -> None:
    """Have the system stop this process (SIGXCPU) once it has used ``seconds`` of CPU time more."""
    try:
        import resource
    except ImportError:
        return
    used = time.process_time()  # the child's own, from zero
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(used + seconds), resource.RLIM_INFINITY))


def _limit_memory(extra: int) -> None:
    """Limit this process's address space to what it holds now and ``extra`` bytes more (where it can be measured)."""
    try:
        import resource

        with open("/proc/self/statm", "rb") as statm:
            held = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return  # not Linux: the sandbox's own bounds, and the time limit, are all there is
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = held + extra
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class _NoAnswer(Exception):
    def __init__(self, timed_out: bool):
        self.timed_out = timed_out


_LENGTH = struct.Struct("!Q")


def _send(descriptor: int, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(descriptor, view) :]


def _receive(descriptor: int, deadline: float | None) -> tuple[str, Any]:
    header = _read(descriptor, _LENGTH.size, deadline)
    return typing.cast(tuple[str, Any], pickle.loads(_read(descriptor, _LENGTH.unpack(header)[0], deadline)))


def _read(descriptor: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([descriptor], [], [], left)[0]:
                raise _NoAnswer(timed_out=True)
        chunk = os.read(descriptor, min(size, 1 << 20))
        if not chunk:
            raise _NoAnswer(timed_out=False)
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _reap(pid: int, *, kill: bool) -> int:
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return os.waitpid(pid, 0)[1]


def _stopped(timed_out: bool, status: int) -> ChildStopped:
    if timed_out or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU):
        seconds = CHILD_WALL_SECONDS if timed_out else MAX_TEMPLATE_SECONDS + CHILD_GRACE_SECONDS
        return ChildStopped(
            f"the template did not finish within {seconds:g}s{'' if timed_out else ' of CPU time'} and was "
            "stopped",
            "simplify the loops or expressions, or compare and print smaller values",
        )
    how = (
        f"was killed by signal {-os.waitstatus_to_exitcode(status)}"
        if os.WIFSIGNALED(status)
        else "ran out of memory"
        if os.WEXITSTATUS(status) == _OUT_OF_MEMORY
        else f"stopped with status {os.WEXITSTATUS(status)}"
    )
    return ChildStopped(
        f"rendering the template {how} before it finished (a template may use {MAX_TEMPLATE_MEMORY >> 20:,} MiB)",
        "build smaller strings and lists",
    )
