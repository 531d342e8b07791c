"""Finding backends by name through entry points, importing only the one chosen.

Generators register under the ``storyreel.generators`` entry-point group and enhancers under
``storyreel.enhancers``; a third-party package adds its own the same way. Listing names reads only
package metadata, so ``storyreel --help``, ``validate`` and ``plan`` never import a model library.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from .errors import BackendNotFound, GenerationError, MissingExtra, UserError

GENERATORS = "storyreel.generators"
ENHANCERS = "storyreel.enhancers"
KEYFRAMERS = "storyreel.keyframers"
_KIND = {GENERATORS: "generator", ENHANCERS: "enhancer", KEYFRAMERS: "keyframe model"}

Backend = TypeVar("Backend")


def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def available(group: str) -> list[str]:
    """Names registered in ``group``, sorted."""
    return sorted(_entry_points(group))


def load_backend(group: str, name: str) -> Any:
    """Import and return the class registered as ``name`` in ``group``."""
    found = _entry_points(group)
    kind = _KIND.get(group, "backend")
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise BackendNotFound(
            f"unknown {kind} '{name}'; {hint}installed {kind}s: {', '.join(sorted(found)) or 'none'}"
        )
    try:
        return found[name].load()
    except ModuleNotFoundError as exc:
        package = (exc.name or "a package").split(".")[0]
        raise MissingExtra(extra=name, package=package, needed_by=f"the {name} {kind}") from exc


def start_backend(group: str, backend: type[Backend], options: Any) -> Backend:
    """Construct ``backend`` (a class of ``group``) from ``options``. A failure that is not the user's is a
    GenerationError naming the backend."""
    try:
        return backend(options)  # type: ignore[call-arg]
    except UserError:
        raise
    except Exception as exc:
        name = getattr(backend, "name", backend.__name__)
        raise GenerationError(
            f"the {name} {_KIND.get(group, 'backend')} failed to start: {type(exc).__name__}: {exc}"
        ) from exc
