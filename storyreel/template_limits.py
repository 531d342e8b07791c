"""Every limit a storyboard template is held to, and the measuring that keeps a template within them.

The limits (time, loop iterations, ``range()``, the size of values and numbers, the output, the template
itself, and the memory and time of the child process it renders in) are all here, so that one table says
what a template may do. The rest of the module measures what an operation, a call, a filter or printing
would build before it is built: a value is measured as it would be written out, a list held in several
places counted once for each, and anything past a bound is a :class:`TemplateLimitError`. The sandbox
(:mod:`storyreel.template_sandbox`) calls these checks where the template stands, so that its line can be
named.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, ItemsView, Iterable, KeysView, ValuesView
from typing import Any

import jinja2

from .yaml_source import MAX_DOCUMENT_CHARS

MAX_TEMPLATE_SECONDS = 2.0
MAX_RANGE = 100_000  # numbers one range() may give
MAX_ITERATIONS = 1_000_000  # loop iterations in all, nested loops included
MAX_VALUE_ITEMS = 1_000_000  # characters of a string, items of a list, that an operation may build
MAX_INT_BITS = 4096
MAX_OUTPUT_CHARS = MAX_DOCUMENT_CHARS
# What a template may be before it is compiled. Compiling costs up to about 150 microseconds and 10 KB a node, and a
# storyboard template needs a few hundred (examples/festival.yaml.j2 has 53): a plain storyboard made a
# template, a few expressions in a long text, stays far below both.
MAX_TEMPLATE_CHARS = 128 * 1024
MAX_TEMPLATE_NODES = 5_000
# The hard limits of the child a template renders in: memory on top of what the process holds when it forks,
# and CPU time past the deadline the sandbox keeps itself, in case the template is stuck where it cannot see.
# Time is the child's CPU time, so that a busy machine does not cut a template short; the wall clock only
# backs it up, for a child that stops without using any.
MAX_TEMPLATE_MEMORY = 512 << 20
CHILD_GRACE_SECONDS = 1.0
CHILD_WALL_SECONDS = 30.0


class TemplateLimitError(jinja2.TemplateRuntimeError):
    """A template went past one of the sandbox's limits."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


def _too_big(what: str, size: int) -> TemplateLimitError:
    return TemplateLimitError(
        f"{what} would build a value of {size:,} items, more than the {MAX_VALUE_ITEMS:,} a template may",
        "build smaller strings and lists",
    )


def check_items(size: int, what: str) -> None:
    """A :class:`TemplateLimitError` when ``what`` would build a value of more than ``MAX_VALUE_ITEMS`` items."""
    if size > MAX_VALUE_ITEMS:
        raise _too_big(what, size)


def check_written(size: int, what: str) -> None:
    """Like :func:`check_items` for a size measured by :func:`text_size`, which stops counting at the bound."""
    if size > MAX_VALUE_ITEMS:
        raise TemplateLimitError(
            f"{what} comes to more than {MAX_VALUE_ITEMS:,} characters written out, the most a template may build",
            "build smaller strings and lists (a list that holds another several times writes it out each time)",
        )


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(
            f"{what} would be a number of more than {MAX_INT_BITS} bits", "use smaller numbers"
        )


_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


def checked(value: Any, what: str) -> Any:
    """``value`` (what ``what`` built), once its length and, for a number, its bits are within bounds."""
    if isinstance(value, _SIZED):
        check_items(len(value), what)
    _check_int(value, what)
    return value


def text_size(value: Any, budget: int) -> int:
    """About how many characters ``str(value)`` writes, counted without writing it, and not past ``budget``.

    A list held in several places is counted once for each place it is written: ``[a, a]`` nested forty
    times writes a trillion items although it holds eighty lists. Counting stops as soon as it passes
    ``budget``, so measuring costs at most ``budget`` steps, whatever the value.

    >>> a = ["xxxxxxxx"]
    >>> for _ in range(40):
    ...     a = [a, a]
    >>> text_size("abc", 100), text_size(a, 1_000_000) > 1_000_000
    (3, True)
    """
    if type(value) is str:
        return len(value)
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item) + 2  # written with its quotes
        elif isinstance(item, (bytes, bytearray)):
            total += len(item) + 3
        elif isinstance(item, (list, tuple, set, frozenset, KeysView, ValuesView)):
            total += 2 + 2 * len(item)
            if total <= budget:
                pending.extend(item)
        elif isinstance(item, (dict, ItemsView)):
            total += 2 + 4 * len(item)
            if total <= budget:
                pending.extend(item.items() if isinstance(item, dict) else item)
        elif isinstance(item, jinja2.utils.Namespace):
            pending.append(item._Namespace__attrs)  # type: ignore[attr-defined]  # what its repr writes
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() * 3 // 10 + 2
        else:
            total += 24  # a float, None, a bool, an undefined name, a macro: short
        if total > budget:
            break
    return total


_SEQUENCES = (str, bytes, bytearray, list, tuple)


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be huge, before Python builds it."""
    if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        bits = right * math.log2(abs(left))
        if bits > MAX_INT_BITS:
            raise TemplateLimitError(
                f"{left} ** {right} would be a number of about {bits:,.0f} bits, more than {MAX_INT_BITS}",
                "use a smaller exponent",
            )
    elif operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(count, int):
                check_items(len(seq) * count, f"repeating a {type(seq).__name__} {count:,} times")
        if isinstance(left, int) and isinstance(right, int):
            _check_int(1 << min(left.bit_length() + right.bit_length(), MAX_INT_BITS + 1), "a product")
    elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        check_items(len(left) + len(right), "joining with +")
    elif operator == "%" and isinstance(left, (str, bytes)):
        _check_printf(left if isinstance(left, str) else left.decode("latin-1"), right)


_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(pattern: str, arguments: Any = ()) -> None:
    """A ``%`` format: each field's width, and what all of them and the arguments write, are bounded."""
    size = len(pattern)
    for width, precision in _PRINTF_FIELD.findall(pattern):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_VALUE_ITEMS):
                raise TemplateLimitError(
                    f"the format {pattern[:40]!r} asks for a field {number} wide",
                    "use a width under 1,000,000",
                )
        size += max(int(width or 0), int(precision or 0))
    size += text_size(arguments, MAX_VALUE_ITEMS)
    check_written(size, f"the format {pattern[:40]!r}")


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _joined_size(items: Iterable[Any], separator: Any) -> int:
    """Characters that joining ``items`` with ``separator`` writes, counted before anything is joined."""
    items = list(items)
    size = len(separator) * max(len(items) - 1, 0)
    for item in items:
        if size > MAX_VALUE_ITEMS:
            break
        size += len(item) if isinstance(item, (str, bytes)) else text_size(item, MAX_VALUE_ITEMS)
    return size


def check_method(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Bound the str and bytes methods that build more than they are given."""
    if not isinstance(getattr(function, "__self__", None), (str, bytes, bytearray)):
        return
    owner: Any = function.__self__  # a str or bytes: which one, mypy cannot follow into count() and replace()
    name = getattr(function, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _int_arg(args, kwargs, 0, "width", 0)
        if isinstance(width, int):
            check_items(width, f"{type(owner).__name__}.{name}({width})")
    elif name == "expandtabs":
        size = _int_arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(size, int):
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
            check_items(len(owner) + tabs * size, f"{type(owner).__name__}.expandtabs({size})")
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple)):
            check_written(_joined_size(items, owner), f"{type(owner).__name__}.join")
    elif (
        name == "replace"
        and len(args) >= 2
        and isinstance(args[0], type(owner))
        and isinstance(args[1], type(owner))
    ):
        hits = owner.count(args[0]) if args[0] else len(owner) + 1
        check_items(len(owner) + hits * len(args[1]), f"{type(owner).__name__}.replace")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        check_items(len(owner) * longest, "str.translate")


def _check_join(arguments: dict[str, Any]) -> None:
    # The items are listed (and kept, for the filter) and measured, with the separator between them, before
    # anything is joined.
    if isinstance(arguments.get("value"), Iterable) and not isinstance(arguments["value"], str):
        arguments["value"] = items = list(arguments["value"])
        check_written(_joined_size(items, str(arguments.get("d") or "")), "the join filter")


def _check_size(name: str) -> Callable[[dict[str, Any]], None]:
    def check(arguments: dict[str, Any]) -> None:
        size = arguments.get(name)
        if isinstance(size, int):
            check_items(size, f"{name}={size}")

    return check


def _check_indent(arguments: dict[str, Any]) -> None:
    text, width = str(arguments.get("s", "")), arguments.get("width", 4)
    step = width if isinstance(width, int) else len(str(width))
    check_items(len(text) + (text.count("\n") + 1) * step, "the indent filter")


def _check_replace(arguments: dict[str, Any]) -> None:
    text, old, new = (str(arguments.get(key, "")) for key in ("s", "old", "new"))
    hits = text.count(old) if old else len(text) + 1
    check_items(len(text) + hits * len(new), "the replace filter")


def _check_wordwrap(arguments: dict[str, Any]) -> None:
    text = str(arguments.get("s", ""))
    check_items(len(text) * (1 + len(str(arguments.get("wrapstring") or "\n"))), "the wordwrap filter")


def _check_sum(arguments: dict[str, Any]) -> None:
    # sum(start=[]) adds lists (or strings) one by one, copying the growing total each time: bounded by what
    # that copying costs, not only by the result.
    if isinstance(arguments.get("start"), (list, tuple, str)) and isinstance(
        arguments.get("iterable"), Iterable
    ):
        arguments["iterable"] = items = list(arguments["iterable"])
        total = sum(len(item) for item in items if isinstance(item, (list, tuple, str)))
        check_items(total, "the sum filter")
        check_items(total * len(items) // 100, "the sum filter's copying")


def _check_format_filter(arguments: dict[str, Any]) -> None:
    if isinstance(arguments.get("value"), str):
        _check_printf(arguments["value"], (arguments.get("args"), arguments.get("kwargs")))


def _check_tojson(arguments: dict[str, Any]) -> None:
    # An indent is written once for each level on each line: every item may start a line.
    indent = arguments.get("indent")
    step = indent if isinstance(indent, int) else len(indent) if isinstance(indent, str) else 0
    check_written(
        text_size(arguments.get("value"), MAX_VALUE_ITEMS) * (1 + max(step, 0)), "the tojson filter"
    )


# The filters whose arguments say how much they build, each checked by its arguments' names before it runs.
FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _check_size("width"),
    "batch": _check_size("linecount"),
    "slice": _check_size("slices"),
    "indent": _check_indent,
    "join": _check_join,
    "replace": _check_replace,
    "wordwrap": _check_wordwrap,
    "format": _check_format_filter,
    "sum": _check_sum,
    "tojson": _check_tojson,
}
# Filters that neither write out their value nor compare its items (and join, which measures its items itself):
# the rest (string, upper, sort, unique, max, tojson, pprint, ...) have their value measured first, since writing
# out or comparing a nested list is what costs.
UNMEASURED_FILTERS = frozenset(
    "abs attr batch count d default first float int items join last length list map random reject rejectattr "
    "reverse round select selectattr slice sum filesizeformat".split()
)
