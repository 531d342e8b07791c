"""Starting a film from a bundled storyboard template (``storyreel new``, ``storyreel templates``).

>>> [t.name for t in list_templates()]  # doctest: +SKIP
['music-video', 'product-spot', 'short']
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .atomic import make_folder, write_text_atomic
from .errors import MachineError, UserError

DEFAULT_TEMPLATE = "short"
_SUFFIXES = (".yaml.j2", ".yaml")


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    filename: str

    def text(self) -> str:
        return files("storyreel.templates").joinpath(self.filename).read_text(encoding="utf-8")


def _describe(text: str) -> str:
    """The template's first comment line is its one-line description."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            break
    return ""


def list_templates() -> list[Template]:
    """The bundled storyboard templates, by name."""
    found = []
    for entry in files("storyreel.templates").iterdir():
        for suffix in _SUFFIXES:
            if entry.name.endswith(suffix):
                name = entry.name[: -len(suffix)]
                found.append(Template(name, _describe(entry.read_text(encoding="utf-8")), entry.name))
                break
    return sorted(found, key=lambda t: t.name)


def get_template(name: str) -> Template:
    for template in list_templates():
        if template.name == name:
            return template
    names = ", ".join(t.name for t in list_templates())
    raise UserError(f"unknown template '{name}'; bundled templates: {names} (see `storyreel templates`)")


def new_storyboard(path: str | Path, template: str = DEFAULT_TEMPLATE, *, force: bool = False) -> Path:
    """Write a new storyboard at ``path`` from a bundled template; never overwrites unless ``force``.

    A templated (``.yaml.j2``) template keeps its suffix, whatever ``path`` ends with.
    """
    chosen = get_template(template)
    target = Path(path)
    if chosen.filename.endswith(".yaml.j2") and not target.name.endswith(".j2"):
        target = target.with_name(target.name.removesuffix(".yaml").removesuffix(".yml") + ".yaml.j2")
    if target.exists() and not force:
        raise UserError(f"{target} already exists; choose another name or pass --force to overwrite it")
    try:
        make_folder(target.parent)
        write_text_atomic(target, chosen.text())
    except OSError as error:  # a folder where the file should go, a read-only folder, a full disk
        fix = f"give the storyboard a file name, e.g. {target / 'story.yaml'}" if target.is_dir() else ""
        raise MachineError.from_os_error(error, fix=fix) from error
    return target
