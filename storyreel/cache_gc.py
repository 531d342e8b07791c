"""``cache gc``: what to remove of the cached shots and keyframes, and removing it.

``cache gc`` removes only what it is plainly asked to: entries unused for longer than a positive
age, the least recently used beyond a positive size, or every entry with ``--all``; never those
of the storyboards it is told to keep; and only folders shaped like entries (a two-hex-digit
folder holding a folder named by a 64-hex-digit key), so a cache folder pointed at the wrong place
loses nothing that storyreel did not write. Keyframes (:mod:`storyreel.keyframe_cache`) follow the same
rules, and a keyframe stays while a shot entry made from it stays.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError
from .keyframe_cache import KeyframeCache, KeyframeRow

# storyreel.cache imports this module to offer its names, so the shot cache is named here for types only.
if TYPE_CHECKING:
    from .cache import EntryInfo, ShotCache

_NUMBER_AND_UNIT = r"([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)"  # sign, number, unit
_SIZE_UNITS = {
    **dict.fromkeys(("b", "byte", "bytes"), 1),
    **dict.fromkeys(("k", "kb", "kib"), 1 << 10),
    **dict.fromkeys(("m", "mb", "mib"), 1 << 20),
    **dict.fromkeys(("g", "gb", "gib"), 1 << 30),
    **dict.fromkeys(("t", "tb", "tib"), 1 << 40),
    **dict.fromkeys(("p", "pb", "pib"), 1 << 50),
}
_DAY = 86400
_AGE_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), _DAY),
    **dict.fromkeys(("w", "week", "weeks"), 7 * _DAY),
    **dict.fromkeys(("mo", "month", "months"), 30 * _DAY),
    **dict.fromkeys(("y", "yr", "year", "years"), 365 * _DAY),
}
_SIZE_EXAMPLES = "write a size such as 500M, 20G or 1.5T (units B, K, M, G, T, P: powers of 1024)"
_AGE_EXAMPLES = "write an age such as 12h, 30d, 6w or 1y (units s, min, h, d, w, mo, y)"
_EVERYTHING = "to remove every cached shot on purpose, run: storyreel cache gc --all"


def _number_and_unit(option: str, text: str, what: str, examples: str) -> tuple[float, str]:
    """(value, unit) of ``12h``, ``1.5 G``; UserError unless it is one positive, finite number and a unit.

    Zero or less is refused before the unit is looked at: it would remove every shot whatever the unit.
    """
    match = re.fullmatch(_NUMBER_AND_UNIT, text.strip())
    if match is None:
        if text.strip().lstrip("+-").lower() in ("inf", "infinity", "nan"):
            raise UserError(f"{option} {text!r} is not a finite number; {examples}")
        raise UserError(f"{option} {text!r} is not a number with a unit; {examples}")
    sign, number, unit = match.groups()
    value = float(number)
    if sign == "-" or value == 0:
        raise UserError(
            f"{option} {text!r}: {what} of zero or less would remove every cached shot, so nothing was "
            f"removed; {examples}, or, {_EVERYTHING}"
        )
    if not math.isfinite(value):
        raise UserError(f"{option} {text!r} is too large; {examples}")
    if not unit:
        raise UserError(f"{option} {text!r} has no unit; {examples}")
    return value, unit


def parse_size(text: str, option: str = "--max-size") -> int:
    """Bytes in '500M', '20G', '1.5T', '4096B': a positive number and a unit, powers of 1024.

    What ``cache gc --max-size`` reads, for :func:`plan_gc`'s ``max_bytes``; ``option`` names the setting
    in the ``UserError`` a bad value raises. A bare number is refused (was '50' meant as bytes, which would
    empty the cache, or as 50G?), and so is zero or less: each would remove every shot by accident, and
    ``--all`` says that on purpose.

    >>> parse_size("1.5G"), parse_size("4096B")
    (1610612736, 4096)
    """
    value, unit = _number_and_unit(option, text, "a size", _SIZE_EXAMPLES)
    if unit.lower() not in _SIZE_UNITS:
        raise UserError(f"{option} {text!r}: unknown unit {unit!r}; {_SIZE_EXAMPLES}")
    size = int(value * _SIZE_UNITS[unit.lower()])
    if size < 1:
        raise UserError(
            f"{option} {text!r} is less than one byte, which would remove every cached shot, so nothing was "
            f"removed; {_SIZE_EXAMPLES}, or, {_EVERYTHING}"
        )
    return size


def parse_age(text: str, option: str = "--older-than") -> float:
    """Seconds in '90min', '12h', '30d', '2w', '6mo', '1y': a positive number and a unit.

    What ``cache gc --older-than`` reads, for :func:`plan_gc`'s ``older_than``; ``option`` names the
    setting in the ``UserError`` a bad value raises. A bare number and 'm' are refused as ambiguous (days
    or seconds? minutes or months?), and so is zero or less: each could remove every shot by accident,
    and ``--all`` says that on purpose.

    >>> parse_age("90min"), parse_age("30d")
    (5400.0, 2592000.0)
    """
    value, unit = _number_and_unit(option, text, "an age", _AGE_EXAMPLES)
    if unit in ("m", "M"):
        number = text.strip()[:-1].strip()
        raise UserError(
            f"{option} {text!r}: 'm' could mean minutes or months; write {number}min or {number}mo"
        )
    if unit.lower() not in _AGE_UNITS:
        raise UserError(f"{option} {text!r}: unknown unit {unit!r}; {_AGE_EXAMPLES}")
    return value * _AGE_UNITS[unit.lower()]


_STORYBOARD_SUFFIXES = (".yaml", ".yml", ".yaml.j2", ".yml.j2")
_FORMAT_KEY = re.compile(rb"^storyreel[ \t]*:", re.MULTILINE)


def kept_storyboards(paths: list[str | Path]) -> set[str]:
    """The storyboards ``cache gc`` must keep the shots of, as entries record them (resolved paths).

    Each must be an existing storyboard file: a path that is mistyped, a folder or another file (a
    prompt lock, a film) would protect nothing, and the shots the user meant to keep would go. Raises
    :class:`~storyreel.errors.UserError` naming every path that is not one.
    """
    problems = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            problems.append(f"{path}: no such file; check the path of the storyboard to keep")
        elif not path.is_file():
            problems.append(f"{path}: not a file; name each storyboard to keep, e.g. films/story.yaml")
        elif path.name.endswith((".lock.yaml", ".lock.yml")):
            problems.append(f"{path}: a prompt lock, not a storyboard; name the storyboard beside it instead")
        elif not path.name.endswith(_STORYBOARD_SUFFIXES):
            problems.append(
                f"{path}: not a storyboard (they end in .yaml, .yml or .yaml.j2); name the storyboard to keep"
            )
        else:
            try:
                with open(path, "rb") as stream:
                    head = stream.read(1 << 20)
            except OSError as exc:
                problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
                continue
            if not _FORMAT_KEY.search(head):
                problems.append(
                    f"{path}: no `storyreel:` line, so it is not a storyboard; name the storyboard to keep"
                )
    if problems:
        raise UserError("nothing was removed: every storyboard to keep must exist\n" + "\n".join(problems))
    return {str(Path(path).resolve()) for path in paths}


@dataclass(frozen=True)
class GcPlan:
    """What ``cache gc`` removes, what it keeps, and why."""

    remove: list[tuple[Path, EntryInfo | None, int]]  # shot entries
    keep_bytes: int  # shots and keyframes
    kept_in_use: int  # shots and keyframes kept for the storyboards given
    damaged: int = 0  # shot entries and keyframes
    remove_keyframes: list[KeyframeRow] = field(default_factory=list)
    kept_for_shots: int = 0  # keyframes a rule would have taken, kept because a shot made from them stays

    @property
    def freed(self) -> int:
        return sum(size for _, _, size in self.remove) + sum(row.size for row in self.remove_keyframes)


def plan_gc(
    cache: ShotCache,
    *,
    older_than: float | None = None,
    max_bytes: int | None = None,
    protect: set[str] | None = None,
    everything: bool = False,
) -> GcPlan:
    """What ``cache gc`` removes, of the shot entries and the keyframes under ``cache``'s root alike: the
    damaged, those unused for ``older_than`` seconds, then the least recently used until the cache fits in
    ``max_bytes``, or with ``everything`` all; never those used by a storyboard in ``protect`` (resolved
    paths, see :func:`kept_storyboards`), and never a keyframe while a shot entry made from it stays (its
    bytes are in that shot's key: redrawn, it would not be the same picture, and the shot and its
    continuations would be generated again).

    ``older_than`` and ``max_bytes`` must be positive and finite: zero or less would remove every shot by
    accident, and removing every shot is asked for with ``everything``. Raises UserError otherwise.
    """
    if older_than is not None and not (math.isfinite(older_than) and older_than > 0):
        raise UserError(
            f"an age of {older_than} seconds would remove every cached shot; give a positive age, "
            "or remove every shot on purpose with everything=True (storyreel cache gc --all)"
        )
    if max_bytes is not None and not max_bytes >= 1:
        raise UserError(
            f"a size of {max_bytes} bytes would remove every cached shot; give a positive size, "
            "or remove every shot on purpose with everything=True (storyreel cache gc --all)"
        )
    protect = protect or set()
    now = time.time()

    def unwanted(used_by: list[str], used: float) -> bool:
        """Whether the age or --all rule takes it (those of the storyboards kept never)."""
        if protect.intersection(used_by):
            return False
        return everything or (older_than is not None and now - used > older_than)

    remove: list[tuple[Path, EntryInfo | None, int]] = []
    kept_shots: dict[str, tuple[Path, EntryInfo, int, float]] = {}
    damaged = 0
    for folder, info, size, used in cache.entries():
        if info is None:  # damaged: no render can use it, whoever made it
            remove.append((folder, info, size))
            damaged += 1
        elif unwanted(info.used_by, used):
            remove.append((folder, info, size))
        else:
            kept_shots[info.key] = (folder, info, size, used)
    remove_keyframes: list[KeyframeRow] = []
    kept_keyframes: list[KeyframeRow] = []
    kept_for_shots: set[str] = set()  # keyframes a rule would take but for the shots made from them
    for row in KeyframeCache(cache.root).entries():
        if row.damaged:
            remove_keyframes.append(row)
            damaged += 1
        elif unwanted(row.info.used_by if row.info else [], row.used):
            if _made_shots(row, kept_shots):
                kept_keyframes.append(row)
                kept_for_shots.add(row.key)
            else:
                remove_keyframes.append(row)
        else:
            kept_keyframes.append(row)
    total = sum(size for _, _, size, _ in kept_shots.values()) + sum(row.size for row in kept_keyframes)
    if max_bytes is not None and total > max_bytes:
        # Least recently used first. A keyframe counts as used as late as the shots made from it, and comes
        # after them on a tie, so that by its turn they are gone unless they stay for a storyboard.
        def last_use(row: KeyframeRow) -> float:
            made = [kept_shots[key][3] for key in (row.info.shots if row.info else []) if key in kept_shots]
            return max([row.used, *made])

        queue: list[tuple[float, int, str | KeyframeRow]] = [
            (used, 0, key) for key, (_, _, _, used) in kept_shots.items()
        ]
        queue += [(last_use(row), 1, row) for row in kept_keyframes]
        for _, _, item in sorted(queue, key=lambda entry: entry[:2]):
            if total <= max_bytes:
                break
            if isinstance(item, str):
                folder, info, size, _ = kept_shots[item]
                if protect.intersection(info.used_by):
                    continue
                del kept_shots[item]
                remove.append((folder, info, size))
                total -= size
            else:
                if item.info and protect.intersection(item.info.used_by):
                    continue
                if _made_shots(item, kept_shots):
                    kept_for_shots.add(item.key)
                    continue
                kept_keyframes.remove(item)
                remove_keyframes.append(item)
                total -= item.size
    in_use = sum(bool(protect.intersection(info.used_by)) for _, info, _, _ in kept_shots.values())
    in_use += sum(bool(row.info and protect.intersection(row.info.used_by)) for row in kept_keyframes)
    return GcPlan(remove, total, in_use, damaged, remove_keyframes, len(kept_for_shots))


def _made_shots(row: KeyframeRow, kept_shots: dict[str, tuple[Path, EntryInfo, int, float]]) -> bool:
    """Whether a shot entry that stays was made from this keyframe."""
    return row.info is not None and any(key in kept_shots for key in row.info.shots)


def apply_gc(cache: ShotCache, plan: GcPlan) -> None:
    """Remove what ``plan`` says to, then the staging folders of renders that were cut off long ago.

    >>> cache = ShotCache()  # doctest: +SKIP
    >>> apply_gc(cache, plan_gc(cache, older_than=parse_age("30d"), max_bytes=parse_size("50G")))  # doctest: +SKIP
    """
    for folder, _, _ in plan.remove:
        cache.remove(folder)
    keyframes = KeyframeCache(cache.root)
    for row in plan.remove_keyframes:
        keyframes.remove(row.png)
    for staging in cache.abandoned():
        cache.remove(staging)
