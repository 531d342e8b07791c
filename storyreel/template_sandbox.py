"""A Jinja2 sandbox that is bounded as well as safe, for storyboard templates (``story.yaml.j2``).

Jinja2's immutable sandbox keeps a template from reaching Python's internals; this one also keeps it
from hanging ``storyreel validate`` or taking all the memory, in two lines of defence.

The first runs inside the template: a deadline (a few seconds), a bounded number of loop iterations,
``range()`` of at most 100,000 numbers, values (strings, lists, bytes) of at most a million items,
numbers of at most 4096 bits and an output the size of the largest storyboard, blocks captured by
``{% set %}``, macros, ``caller()`` and ``{% filter %}`` included. Operators, calls, filters, string
methods and printing are checked before they build anything: a value is measured as it would be
written out, a list held in several places counted once for each, so that ``{{ 9 ** (9 ** 9) }}``,
``{{ "x" * 10 ** 9 }}`` or a list that nests itself 40 times is refused at once. Each limit is a
:class:`TemplateLimitError`, raised where the template stands, so that its line can be named. Before
any of it, the template's size and number of tags are bounded (:func:`compile_template`), since
compiling is not cheap either.

The second is a guarantee for whatever the first did not foresee (Python work a template starts that
never comes back to the sandbox, such as comparing two deep lists): where the platform can fork, the
template is compiled and rendered in a child process (:func:`render_in_child`) with a hard limit on its
memory (``RLIMIT_AS``, where the address space can be measured: Linux) and on its time. Only the
rendered text, or the problems found, come back. Where it cannot fork (Windows) the first line is all
there is.

>>> import time
>>> sandbox = BoundedSandbox(jinja2.StrictUndefined, deadline=time.process_time() + MAX_TEMPLATE_SECONDS)
>>> render_bounded(compile_template(sandbox, "{{ 'ab' * 2 }}", "t.j2"), {})
'abab'
>>> render_bounded(compile_template(sandbox, "{{ 'ab' * 10 ** 7 }}", "t.j2"), {})
Traceback (most recent call last):
...
storyreel.template_sandbox.TemplateLimitError: repeating a str 10,000,000 times would build a value of 20,000,000 items, more than the 1,000,000 a template may
"""

from __future__ import annotations

import functools
import gc
import inspect
import math
import os
import pickle
import re
import select
import signal
import string
import struct
import time
import traceback
import types
import typing
from collections.abc import Callable, Generator, ItemsView, Iterable, Iterator, KeysView, ValuesView
from typing import Any, TypeVar

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from markupsafe import Markup

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


class TemplateUnreadable(jinja2.TemplateError):
    """A template that cannot be compiled within bounds: too large, or nested too deeply. ``lineno`` is the
    template line when one is to blame."""

    def __init__(self, message: str, fix: str, lineno: int | None = None):
        super().__init__(message)
        self.fix = fix
        self.lineno = lineno


# --- the bounded sandbox ----------------------------------------------------------------------------------------


class _Loop:
    """A ``{% for %}`` loop's iterable, counted against the template's iteration budget and clock."""

    def __init__(self, environment: BoundedSandbox, iterable: Any):
        self.environment = environment
        self.iterable = iterable

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            self.environment.iteration()
            yield item


class _Buffer(list):  # type: ignore[type-arg]
    """What a ``{% set %}`` block, a macro, a ``{% call %}`` or a ``{% filter %}`` body writes, counted as it
    grows: only the template's own output is streamed and bounded by :func:`render_bounded`."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, chunk: str) -> None:
        self.size += len(chunk)
        if self.size > MAX_OUTPUT_CHARS:
            raise TemplateLimitError(
                f"a block of the template ({{% set %}}, a macro, {{% call %}} or {{% filter %}}) writes more "
                f"than {MAX_OUTPUT_CHARS:,} characters, the most a storyboard may have",
                "write less inside it",
            )
        super().append(chunk)

    def extend(self, chunks: Iterable[str]) -> None:
        for chunk in chunks:
            self.append(chunk)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b` joins through the environment, which checks the size before building the string.
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def buffer(self, frame: Frame) -> None:
        # Blocks, macros, calls and filter bodies write into a buffer that counts what it holds.
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.bounded_buffer()")


class _FieldCounter(string.Formatter):
    """Counts what ``str.format`` builds, field by field, before each field is formatted: a width can come
    from an argument (``'{:>{w}}'.format(x, w=10**9)``), so the pattern alone does not say."""

    pattern = ""
    size = 0

    def vformat(
        self, format_string: str, args: typing.Sequence[Any], kwargs: typing.Mapping[str, Any]
    ) -> str:
        self.pattern, self.size = format_string, len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        width = max((int(number) for number in re.findall(r"\d+", format_spec)), default=0)
        if width > MAX_VALUE_ITEMS:
            raise TemplateLimitError(
                f"the format {self.pattern[:40]!r} asks for a field {width} wide",
                "use a width under 1,000,000",
            )
        self.size += width + _text_size(value, MAX_VALUE_ITEMS)
        _check_written(self.size, "str.format")
        return super().format_field(value, format_spec)


class _BoundedFormatter(_FieldCounter, jinja2.sandbox.SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_FieldCounter, jinja2.sandbox.SandboxedEscapeFormatter):
    pass


class BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with a clock, a loop budget and bounds on what operators, filters and printing
    build. ``undefined`` may be changed between renders of the same compiled template."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, undefined: type[jinja2.Undefined], deadline: float):
        super().__init__(
            undefined=undefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=self.bounded_output,
        )
        self.deadline = deadline
        self.iterations = 0
        self.globals["range"] = self.bounded_range
        self.globals["lipsum"] = self.bounded_lipsum
        self.filters = {name: self._checked_filter(name, f) for name, f in self.filters.items()}
        self.concat = self.bounded_join  # type: ignore[method-assign]  # what blocks and macros join their output with

    def iteration(self) -> None:
        """One more turn of some loop."""
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise TemplateLimitError(
                f"the template's loops ran more than {MAX_ITERATIONS:,} times",
                "loop over fewer items (nested loops multiply)",
            )
        self.tick()

    def tick(self) -> None:
        """Every loop turn, call, operator, attribute and filter passes here: the clock (this process's CPU time,
        :func:`time.process_time`, which ``deadline`` is in) is checked."""
        if time.process_time() > self.deadline:
            raise TemplateLimitError(
                f"the template took more than {MAX_TEMPLATE_SECONDS:g}s to render",
                "simplify the loops or expressions here; a storyboard template needs only a fraction of that",
            )

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            call = nodes.Call(nodes.EnvironmentAttribute("bounded_loop"), [loop.iter], [], None, None)
            loop.iter = call.set_lineno(loop.lineno)
        tree.set_environment(self)
        return tree

    def bounded_loop(self, iterable: Any) -> _Loop:
        return _Loop(self, iterable)

    def bounded_buffer(self) -> _Buffer:
        return _Buffer()

    def bounded_join(self, chunks: Iterable[str]) -> str:
        """``"".join`` for what a block or macro wrote (a counted buffer, or a block's chunks as they come)."""
        if isinstance(chunks, _Buffer):
            return "".join(chunks)
        counted = _Buffer()
        counted.extend(chunks)
        return "".join(counted)

    def bounded_output(self, value: Any) -> Any:
        """Every ``{{ value }}`` passes here before it is written out: what it would write is measured first."""
        if type(value) is not str:
            _check_written(_text_size(value, MAX_VALUE_ITEMS), "this value")
        return value

    def bounded_range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise TemplateLimitError(
                f"range{args} gives {len(numbers):,} numbers, more than the {MAX_RANGE:,} a template may ask for",
                "ask for fewer",
            )
        return numbers

    def bounded_lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        _check_items(n * max * 12, f"lipsum({n}, max={max})")
        return str(jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max))

    def bounded_concat(self, values: tuple[Any, ...]) -> str:
        self.tick()
        size = 0
        for value in values:
            if type(value) is str:
                size += len(value)
                _check_items(size, "joining with ~")
            else:
                size += _text_size(value, MAX_VALUE_ITEMS)
                _check_written(size, "joining with ~")
        return "".join(str(value) for value in values)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        _check_binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right), f"the result of {operator}")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.tick()
        _check_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return result if isinstance(result, _Loop) else _checked(result, "a call's result")

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map``, sandboxed as Jinja2 does, with every field measured as it is formatted."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        pattern = value.__self__
        if not isinstance(pattern, str):
            return None
        kind = type(pattern)
        format_map = value.__name__ == "format_map"

        def formatted(*args: Any, **kwargs: Any) -> str:
            self.tick()
            formatter: _FieldCounter = (
                _BoundedEscapeFormatter(self, escape=pattern.escape)
                if isinstance(pattern, Markup)
                else _BoundedFormatter(self)
            )
            if format_map and (kwargs or len(args) != 1):
                raise TypeError("format_map() takes exactly one argument, a mapping")
            fields: tuple[Any, ...] = () if format_map else args
            return kind(formatter.vformat(pattern, fields, args[0] if format_map else kwargs))

        return functools.update_wrapper(formatted, value)

    def _checked_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        check = _FILTER_CHECKS.get(name)
        signature = inspect.signature(function) if check is not None else None
        # Jinja2 passes some filters its environment or eval context before the value; a filter with both a sync
        # and an async variant shows the sync signature, without that first parameter.
        given_first = getattr(function, "jinja_pass_arg", None) is not None
        first = next(iter(signature.parameters), "") if signature is not None else ""
        passed = given_first and first not in _PASSED
        value_at = 1 if given_first else 0
        measured = name not in _UNMEASURED_FILTERS

        @functools.wraps(function)  # keeps jinja_pass_arg, which tells Jinja2 what to pass first
        def filtered(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            if measured and len(args) > value_at and type(args[value_at]) is not str:
                # the filter writes out or compares its value: measured as it would be written
                _check_written(_text_size(args[value_at], MAX_VALUE_ITEMS), f"the {name} filter's value")
            if check is not None and signature is not None:
                head, rest = (args[:1], args[1:]) if passed else ((), args)
                try:
                    bound = signature.bind(*rest, **kwargs)
                except TypeError:
                    bound = None  # the call itself is wrong: the filter says how
                if bound is not None:
                    bound.apply_defaults()
                    check(bound.arguments)  # by parameter name
                    args, kwargs = head + bound.args, bound.kwargs
            return _checked(function(*args, **kwargs), f"the {name} filter")

        return filtered


def _too_big(what: str, size: int) -> TemplateLimitError:
    return TemplateLimitError(
        f"{what} would build a value of {size:,} items, more than the {MAX_VALUE_ITEMS:,} a template may",
        "build smaller strings and lists",
    )


def _check_items(size: int, what: str) -> None:
    if size > MAX_VALUE_ITEMS:
        raise _too_big(what, size)


def _check_written(size: int, what: str) -> None:
    """Like :func:`_check_items` for a size measured by :func:`_text_size`, which stops counting at the bound."""
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


def _checked(value: Any, what: str) -> Any:
    if isinstance(value, _SIZED):
        _check_items(len(value), what)
    _check_int(value, what)
    return value


def _text_size(value: Any, budget: int) -> int:
    """About how many characters ``str(value)`` writes, counted without writing it, and not past ``budget``.

    A list held in several places is counted once for each place it is written: ``[a, a]`` nested forty
    times writes a trillion items although it holds eighty lists. Counting stops as soon as it passes
    ``budget``, so measuring costs at most ``budget`` steps, whatever the value.

    >>> a = ["xxxxxxxx"]
    >>> for _ in range(40):
    ...     a = [a, a]
    >>> _text_size("abc", 100), _text_size(a, 1_000_000) > 1_000_000
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


def _check_binop(operator: str, left: Any, right: Any) -> None:
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
                _check_items(len(seq) * count, f"repeating a {type(seq).__name__} {count:,} times")
        if isinstance(left, int) and isinstance(right, int):
            _check_int(1 << min(left.bit_length() + right.bit_length(), MAX_INT_BITS + 1), "a product")
    elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        _check_items(len(left) + len(right), "joining with +")
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
    size += _text_size(arguments, MAX_VALUE_ITEMS)
    _check_written(size, f"the format {pattern[:40]!r}")


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
        size += len(item) if isinstance(item, (str, bytes)) else _text_size(item, MAX_VALUE_ITEMS)
    return size


def _check_method(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Bound the str and bytes methods that build more than they are given."""
    if not isinstance(getattr(function, "__self__", None), (str, bytes, bytearray)):
        return
    owner: Any = function.__self__  # a str or bytes: which one, mypy cannot follow into count() and replace()
    name = getattr(function, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _int_arg(args, kwargs, 0, "width", 0)
        if isinstance(width, int):
            _check_items(width, f"{type(owner).__name__}.{name}({width})")
    elif name == "expandtabs":
        size = _int_arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(size, int):
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
            _check_items(len(owner) + tabs * size, f"{type(owner).__name__}.expandtabs({size})")
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple)):
            _check_written(_joined_size(items, owner), f"{type(owner).__name__}.join")
    elif (
        name == "replace"
        and len(args) >= 2
        and isinstance(args[0], type(owner))
        and isinstance(args[1], type(owner))
    ):
        hits = owner.count(args[0]) if args[0] else len(owner) + 1
        _check_items(len(owner) + hits * len(args[1]), f"{type(owner).__name__}.replace")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _check_items(len(owner) * longest, "str.translate")


def _check_join(arguments: dict[str, Any]) -> None:
    # The items are listed (and kept, for the filter) and measured, with the separator between them, before
    # anything is joined.
    if isinstance(arguments.get("value"), Iterable) and not isinstance(arguments["value"], str):
        arguments["value"] = items = list(arguments["value"])
        _check_written(_joined_size(items, str(arguments.get("d") or "")), "the join filter")


def _check_size(name: str) -> Callable[[dict[str, Any]], None]:
    def check(arguments: dict[str, Any]) -> None:
        size = arguments.get(name)
        if isinstance(size, int):
            _check_items(size, f"{name}={size}")

    return check


def _check_indent(arguments: dict[str, Any]) -> None:
    text, width = str(arguments.get("s", "")), arguments.get("width", 4)
    step = width if isinstance(width, int) else len(str(width))
    _check_items(len(text) + (text.count("\n") + 1) * step, "the indent filter")


def _check_replace(arguments: dict[str, Any]) -> None:
    text, old, new = (str(arguments.get(key, "")) for key in ("s", "old", "new"))
    hits = text.count(old) if old else len(text) + 1
    _check_items(len(text) + hits * len(new), "the replace filter")


def _check_wordwrap(arguments: dict[str, Any]) -> None:
    text = str(arguments.get("s", ""))
    _check_items(len(text) * (1 + len(str(arguments.get("wrapstring") or "\n"))), "the wordwrap filter")


def _check_sum(arguments: dict[str, Any]) -> None:
    # sum(start=[]) adds lists (or strings) one by one, copying the growing total each time: bounded by what
    # that copying costs, not only by the result.
    if isinstance(arguments.get("start"), (list, tuple, str)) and isinstance(
        arguments.get("iterable"), Iterable
    ):
        arguments["iterable"] = items = list(arguments["iterable"])
        total = sum(len(item) for item in items if isinstance(item, (list, tuple, str)))
        _check_items(total, "the sum filter")
        _check_items(total * len(items) // 100, "the sum filter's copying")


def _check_format_filter(arguments: dict[str, Any]) -> None:
    if isinstance(arguments.get("value"), str):
        _check_printf(arguments["value"], (arguments.get("args"), arguments.get("kwargs")))


def _check_tojson(arguments: dict[str, Any]) -> None:
    # An indent is written once for each level on each line: every item may start a line.
    indent = arguments.get("indent")
    step = indent if isinstance(indent, int) else len(indent) if isinstance(indent, str) else 0
    _check_written(
        _text_size(arguments.get("value"), MAX_VALUE_ITEMS) * (1 + max(step, 0)), "the tojson filter"
    )


_PASSED = ("eval_ctx", "environment", "env", "context", "ctx")
_FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
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
_UNMEASURED_FILTERS = frozenset(
    "abs attr batch count d default first float int items join last length list map random reject rejectattr "
    "reverse round select selectattr slice sum filesizeformat".split()
)


# --- compiling --------------------------------------------------------------------------------------------------


_TAG = re.compile(r"\{[{%]")


def compile_template(environment: jinja2.Environment, source: str, name: str) -> jinja2.Template:
    """``source`` compiled in ``environment``, once its size and number of tags are known to be bounded.

    Raises :class:`jinja2.TemplateSyntaxError` (with its line) for a template that does not parse and
    :class:`TemplateUnreadable` for one too large or nested too deeply to compile, with a line when one is
    to blame. ``name`` is what tracebacks, and so error lines, name the template by.
    """
    check_template_size(source)
    try:
        tree = environment.parse(source, filename=name)
        count = sum(1 for _ in tree.find_all(nodes.Node))
        if count > MAX_TEMPLATE_NODES:
            raise TemplateUnreadable(
                f"the template is {count:,} expressions and statements, more than the {MAX_TEMPLATE_NODES:,} "
                "a template may be",
                "loop over data in `vars:` instead of writing each expression out",
            )
        code = environment.compile(tree, filename=name)
    except (RecursionError, SyntaxError) as error:
        # Jinja2 parses and generates Python recursively, and Python compiles at most 20 nested loops and 100
        # levels of indentation: a template nested past any of these cannot be compiled.
        raise TemplateUnreadable(
            "the template nests its tags or brackets too deeply to be read",
            "nest fewer {% if %}/{% for %} blocks or brackets inside each other",
            _deepest_block(source) if isinstance(error, SyntaxError) else None,
        ) from None
    except MemoryError:
        raise TemplateUnreadable(
            f"compiling the template needs more than the {MAX_TEMPLATE_MEMORY >> 20:,} MiB a template may use",
            "write a shorter template: loop over data in `vars:` instead of writing each expression out",
        ) from None
    template = environment.template_class.from_code(environment, code, environment.make_globals(None))
    template.filename = name  # so tracebacks (and error lines) name this template
    return template


def check_template_size(source: str) -> None:
    """A :class:`TemplateUnreadable` when ``source`` is longer, or holds more tags, than a template may."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateUnreadable(
            f"the template holds {len(source):,} characters, more than the {MAX_TEMPLATE_CHARS:,} a template "
            "may have",
            "loop over data in `vars:` instead of writing everything out, or write a plain .yaml storyboard",
        )
    tags = len(_TAG.findall(source))
    if tags > MAX_TEMPLATE_NODES:
        raise TemplateUnreadable(
            f"the template holds {tags:,} {{{{ }}}} and {{% %}} tags, more than the {MAX_TEMPLATE_NODES:,} a "
            "template may have",
            "loop over data in `vars:` instead of writing each expression out",
        )


def _deepest_block(source: str) -> int | None:
    """The line of the innermost ``{% for %}`` or other block, the one nesting too deeply (None if unknown)."""
    try:
        tree = jinja2.Environment().parse(source)
    except Exception:  # noqa: BLE001 - only a hint for the message
        return None
    deepest, line = -1, None
    pending: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(
            node, (nodes.For, nodes.If, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.With)
        ):
            depth += 1
            if depth > deepest:
                deepest, line = depth, node.lineno
        pending += [(child, depth) for child in node.iter_child_nodes()]
    return line


# --- rendering --------------------------------------------------------------------------------------------------


def render_bounded(template: jinja2.Template, values: dict[str, Any]) -> str:
    """Render, stopping (with the template line) once the output would outgrow a storyboard."""
    chunks: list[str] = []
    size = 0
    # Jinja2 annotates generate() as an iterator; it is a generator, which can be thrown into.
    stream = typing.cast(Generator[str, None, None], template.generate(values))
    for chunk in stream:
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            # Thrown in where the template stands, so that the error carries its line.
            stream.throw(
                TemplateLimitError(
                    f"the template's output grows past {MAX_OUTPUT_CHARS:,} characters, the most a storyboard "
                    "may have",
                    "produce fewer shots, or split the film into several storyboards",
                )
            )
    return "".join(chunks)


# --- the child process ------------------------------------------------------------------------------------------

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
