"""A Jinja2 sandbox that is bounded as well as safe, for storyboard templates (``story.yaml.j2``).

Jinja2's immutable sandbox keeps a template from reaching Python's internals; this one also keeps it
from hanging ``storyreel validate`` or taking all the memory. A template gets a deadline (a few
seconds), a bounded number of loop iterations, ``range()`` of at most 100,000 numbers, values
(strings, lists) of at most a million items, numbers of at most 4096 bits and an output the size of
the largest storyboard. Operators, calls, filters and string methods are checked before they build
anything, so that ``{{ 9 ** (9 ** 9) }}`` or ``{{ "x" * 10 ** 9 }}`` is refused at once. Each limit
is a :class:`TemplateLimitError`, raised where the template stands, so that its line can be named.

>>> import time
>>> sandbox = BoundedSandbox(jinja2.StrictUndefined, deadline=time.monotonic() + MAX_TEMPLATE_SECONDS)
>>> render_bounded(sandbox.from_string("{{ 'ab' * 2 }}"), {})
'abab'
>>> render_bounded(sandbox.from_string("{{ 'ab' * 10 ** 7 }}"), {})
Traceback (most recent call last):
...
storyreel.template_sandbox.TemplateLimitError: repeating a str 10,000,000 times would build a value of 20,000,000 items, more than the 1,000,000 a template may
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import string
import time
import typing
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

from .yaml_source import MAX_DOCUMENT_CHARS

MAX_TEMPLATE_SECONDS = 2.0
MAX_RANGE = 100_000  # numbers one range() may give
MAX_ITERATIONS = 1_000_000  # loop iterations in all, nested loops included
MAX_VALUE_ITEMS = 1_000_000  # characters of a string, items of a list, that an operation may build
MAX_INT_BITS = 4096
MAX_OUTPUT_CHARS = MAX_DOCUMENT_CHARS


class TemplateLimitError(jinja2.TemplateRuntimeError):
    """A template went past one of the sandbox's limits."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


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


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b` joins through the environment, which checks the size before building the string.
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with a clock, a loop budget and bounds on what operators and filters build."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, undefined: type[jinja2.Undefined], deadline: float):
        super().__init__(
            undefined=undefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.deadline = deadline
        self.iterations = 0
        self.globals["range"] = self.bounded_range
        self.globals["lipsum"] = self.bounded_lipsum
        self.filters = {name: self._checked_filter(name, f) for name, f in self.filters.items()}

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
        """Every loop turn, call, operator, attribute and filter passes here: the clock is checked."""
        if time.monotonic() > self.deadline:
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
        parts = [str(value) for value in values]
        _check_items(sum(len(part) for part in parts), "joining with ~")
        return "".join(parts)

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
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(
                obj
            )  # Jinja2 hands back its own wrapper of str.format, which call() cannot see into
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.tick()
        return super().getitem(obj, argument)

    def _checked_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        check = _FILTER_CHECKS.get(name)
        signature = inspect.signature(function) if check is not None else None
        # Jinja2 passes some filters its environment or eval context first; a filter with both a sync and an
        # async variant shows the sync signature, without that first parameter.
        first = next(iter(signature.parameters), "") if signature is not None else ""
        passed = getattr(function, "jinja_pass_arg", None) is not None and first not in _PASSED

        @functools.wraps(function)  # keeps jinja_pass_arg, which tells Jinja2 what to pass first
        def filtered(*args: Any, **kwargs: Any) -> Any:
            self.tick()
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


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(
            f"{what} would be a number of more than {MAX_INT_BITS} bits", "use smaller numbers"
        )


def _checked(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple, dict, set, frozenset)):
        _check_items(len(value), what)
    _check_int(value, what)
    return value


_SEQUENCES = (str, list, tuple)


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
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)


_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(pattern: str) -> None:
    for width, precision in _PRINTF_FIELD.findall(pattern):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_VALUE_ITEMS):
                raise TemplateLimitError(
                    f"the format {pattern[:40]!r} asks for a field {number} wide",
                    "use a width under 1,000,000",
                )


def _check_format(pattern: str) -> None:
    """Widths in a str.format pattern (``{:>1000000000}``) are bounded like every other value."""
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError:
        return  # Python reports the bad pattern itself
    for _, _, spec, _ in fields:
        for number in re.findall(r"\d+", spec or ""):
            if int(number) > MAX_VALUE_ITEMS:
                raise TemplateLimitError(
                    f"the format {pattern[:40]!r} asks for a field {number} wide",
                    "use a width under 1,000,000",
                )


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _check_method(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Bound the str methods that build more than they are given."""
    owner = getattr(function, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(function, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _int_arg(args, kwargs, 0, "width", 0)
        if isinstance(width, int):
            _check_items(width, f"str.{name}({width})")
    elif name == "expandtabs":
        size = _int_arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(size, int):
            _check_items(len(owner) + owner.count("\t") * size, f"str.expandtabs({size})")
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple)):
            _check_items(len(owner) * len(items), "str.join")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = owner.count(args[0]) if args[0] else len(owner) + 1
        _check_items(len(owner) + hits * len(args[1]), "str.replace")
    elif name in ("format", "format_map"):
        _check_format(owner)


def _check_join(arguments: dict[str, Any]) -> None:
    # The items are counted (and kept, for the filter) before the separator is repeated between them.
    if isinstance(arguments.get("value"), Iterable) and not isinstance(arguments["value"], str):
        arguments["value"] = items = list(arguments["value"])
        _check_items(len(str(arguments.get("d") or "")) * len(items), "the join filter")


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
        _check_printf(arguments["value"])


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
}


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
