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
compiling is not cheap either. Every limit, and how each check measures, is in
:mod:`storyreel.template_limits`.

The second line is a guarantee for whatever the first did not foresee: the template is compiled and
rendered in a child process whose memory and time the operating system limits
(:mod:`storyreel.template_child`).

>>> import time
>>> sandbox = BoundedSandbox(jinja2.StrictUndefined, deadline=time.process_time() + MAX_TEMPLATE_SECONDS)
>>> render_bounded(compile_template(sandbox, "{{ 'ab' * 2 }}", "t.j2"), {})
'abab'
>>> render_bounded(compile_template(sandbox, "{{ 'ab' * 10 ** 7 }}", "t.j2"), {})
Traceback (most recent call last):
...
storyreel.template_limits.TemplateLimitError: repeating a str 10,000,000 times would build a value of 20,000,000 items, more than the 1,000,000 a template may
"""

from __future__ import annotations

import functools
import inspect
import re
import string
import time
import types
import typing
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from markupsafe import Markup

from .template_limits import (
    FILTER_CHECKS,
    MAX_ITERATIONS,
    MAX_OUTPUT_CHARS,
    MAX_RANGE,
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_MEMORY,
    MAX_TEMPLATE_NODES,
    MAX_TEMPLATE_SECONDS,
    MAX_VALUE_ITEMS,
    UNMEASURED_FILTERS,
    TemplateLimitError,
    check_binop,
    check_items,
    check_method,
    check_written,
    checked,
    text_size,
)


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
        self.size += width + text_size(value, MAX_VALUE_ITEMS)
        check_written(self.size, "str.format")
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
            check_written(text_size(value, MAX_VALUE_ITEMS), "this value")
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
        check_items(n * max * 12, f"lipsum({n}, max={max})")
        return str(jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max))

    def bounded_concat(self, values: tuple[Any, ...]) -> str:
        self.tick()
        size = 0
        for value in values:
            if type(value) is str:
                size += len(value)
                check_items(size, "joining with ~")
            else:
                size += text_size(value, MAX_VALUE_ITEMS)
                check_written(size, "joining with ~")
        return "".join(str(value) for value in values)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        check_binop(operator, left, right)
        return checked(super().call_binop(context, operator, left, right), f"the result of {operator}")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.tick()
        check_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return result if isinstance(result, _Loop) else checked(result, "a call's result")

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
        check = FILTER_CHECKS.get(name)
        signature = inspect.signature(function) if check is not None else None
        # Jinja2 passes some filters its environment or eval context before the value; a filter with both a sync
        # and an async variant shows the sync signature, without that first parameter.
        given_first = getattr(function, "jinja_pass_arg", None) is not None
        first = next(iter(signature.parameters), "") if signature is not None else ""
        passed = given_first and first not in _PASSED
        value_at = 1 if given_first else 0
        measured = name not in UNMEASURED_FILTERS

        @functools.wraps(function)  # keeps jinja_pass_arg, which tells Jinja2 what to pass first
        def filtered(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            if measured and len(args) > value_at and type(args[value_at]) is not str:
                # the filter writes out or compares its value: measured as it would be written
                check_written(text_size(args[value_at], MAX_VALUE_ITEMS), f"the {name} filter's value")
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
            return checked(function(*args, **kwargs), f"the {name} filter")

        return filtered


# What filters name the environment or context Jinja2 passes them before their value.
_PASSED = ("eval_ctx", "environment", "env", "context", "ctx")


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
