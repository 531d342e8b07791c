"""Templated storyboards (``.yaml.j2``): a bounded sandbox, and errors that point at the right line."""

from __future__ import annotations

import os
import sys

import pytest

from storyreel import StoryboardError, load_storyboard
from storyreel.templating import parse_var

HEAD = """\
vars:
  n: 3
  items: [a, b, c]
storyreel: 1
characters:
  lin: {description: a small girl in a blue jacket}
scenes:
  - id: a
    shots:
"""
SHOT = "      - {id: x, prompt: p, duration: 1}\n"
WRITTEN_FIX = (
    "build smaller strings and lists (a list that holds another several times writes it out each time)"
)


def only_problem(path, **kwargs) -> str:
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path, **kwargs)
    assert len(caught.value.problems) == 1, caught.value.problems
    return str(caught.value.problems[0])


@pytest.mark.parametrize(
    ("line", "message", "fix"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "the template's loops ran more than 1,000,000 times",
            "loop over fewer items (nested loops multiply)",
        ),
        (
            "{% for i in range(10**9) %}{% endfor %}",
            "range(1000000000,) gives 1,000,000,000 numbers, more than the 100,000 a template may ask for",
            "ask for fewer",
        ),
        (
            "{{ 9**(9**9) }}",
            "9 ** 387420489 would be a number of about 1,228,093,894 bits, more than 4096",
            "use a smaller exponent",
        ),
        (
            "{{ 'x' * 1000000000 }}",
            "repeating a str 1,000,000,000 times would build a value of 1,000,000,000 items, more than the "
            "1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{{ [0] * 1000000000 }}",
            "repeating a list 1,000,000,000 times would build a value of 1,000,000,000 items, more than the "
            "1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "joining with ~ would build a value of 1,048,576 items, more than the 1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "joining with + would build a value of 1,048,576 items, more than the 1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{{ 'x' | center(1000000000) }}",
            "width=1000000000 would build a value of 1,000,000,000 items, more than the 1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{{ 'x'.ljust(1000000000) }}",
            "str.ljust(1000000000) would build a value of 1,000,000,000 items, more than the 1,000,000 a "
            "template may",
            "build smaller strings and lists",
        ),
        (
            "{{ '%0999999999d' % 1 }}",
            "the format '%0999999999d' asks for a field 999999999 wide",
            "use a width under 1,000,000",
        ),
        (
            "{{ '{:>999999999}'.format(1) }}",
            "the format '{:>999999999}' asks for a field 999999999 wide",
            "use a width under 1,000,000",
        ),
        (
            "{% for i in range(1000) %}{{ 'x' * 10000 }}{% endfor %}",
            "the template's output grows past 8,388,608 characters, the most a storyboard may have",
            "produce fewer shots, or split the film into several storyboards",
        ),
        (
            "{{ [1] | slice(1000000000) | list }}",
            "slices=1000000000 would build a value of 1,000,000,000 items, more than the 1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{{ range(100000) | join('x' * 100000) }}",
            "the join filter comes to more than 1,000,000 characters written out, the most a template may build",
            WRITTEN_FIX,
        ),
        (
            "{{ ([[1] * 1000] * 1000) | sum(start=[]) | length }}",
            "the sum filter's copying would build a value of 10,000,000 items, more than the 1,000,000 a template may",
            "build smaller strings and lists",
        ),
        (
            "{% set ns = namespace(n=3) %}{% for i in range(100) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
            "a product would be a number of more than 4096 bits",
            "use smaller numbers",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
            "the template took more than 2s to render",
            "simplify the loops or expressions here; a storyboard template needs only a fraction of that",
        ),
    ],
)
def test_the_sandbox_bounds_time_loops_values_and_output(write_story, line, message, fix):
    path = write_story(HEAD + line + "\n" + SHOT, "limits.yaml.j2")
    assert only_problem(path) == f"{path}:10: template: template limit: {message}; {fix}"


# A list that holds another twice, nested 34 times: 35 lists in memory that write out 17 billion strings.
SHARED = "{% set a = ['xxxxxxxx'] %}" + "{% set a = [a, a] %}" * 34
BIG = "{% set b = 'x' * 1000000 %}"
TOO_MUCH_WRITTEN = "comes to more than 1,000,000 characters written out, the most a template may build"
# Ten million characters, more than a storyboard may be, written where the template's output is not counted.
TEN_MILLION = "{% for i in range(2000) %}{{ 'y' * 5000 }}{% endfor %}"
BLOCK = (
    "a block of the template ({% set %}, a macro, {% call %} or {% filter %}) writes more than 8,388,608 "
    "characters, the most a storyboard may have"
)


@pytest.mark.parametrize(
    ("line", "message", "fix"),
    [
        (SHARED + "{{ a }}", f"this value {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ a | string }}", f"the string filter's value {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ a | tojson }}", f"the tojson filter's value {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ a | upper }}", f"the upper filter's value {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ a ~ '' }}", f"joining with ~ {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ '%s' % (a,) }}", f"the format '%s' {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ '{}'.format(a) }}", f"str.format {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (SHARED + "{{ [a, a] | sort | length }}", f"the sort filter's value {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (BIG + "{{ ([b] * 300) | join }}", f"the join filter {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (BIG + "{{ ([b] * 1000000) | join }}", f"the join filter {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (BIG + "{{ ''.join([b] * 300) }}", f"str.join {TOO_MUCH_WRITTEN}", WRITTEN_FIX),
        (
            BIG + "{{ ('%s' * 300) % ((b,) * 300) }}",
            f"the format {'%s' * 20!r} {TOO_MUCH_WRITTEN}",
            WRITTEN_FIX,
        ),
        (
            "{{ ('%999999s' * 300) % ((1,) * 300) }}",
            f"the format {('%999999s' * 5)[:40]!r} {TOO_MUCH_WRITTEN}",
            WRITTEN_FIX,
        ),
        (
            "{{ '{:>{w}}'.format('x', w=300000000) }}",
            "the format '{:>{w}}' asks for a field 300000000 wide",
            "use a width under 1,000,000",
        ),
        (
            "{{ ('a'.encode() * 300000000) | length }}",
            "repeating a bytes 300,000,000 times would build a value of 300,000,000 items, more than the "
            "1,000,000 a template may",
            "build smaller strings and lists",
        ),
        ("{% set x %}" + TEN_MILLION + "{% endset %}{{ x | length }}", BLOCK, "write less inside it"),
        ("{% macro m() %}" + TEN_MILLION + "{% endmacro %}{{ m() | length }}", BLOCK, "write less inside it"),
        (
            "{% macro m() %}{{ caller() | length }}{% endmacro %}{% call m() %}"
            + TEN_MILLION
            + "{% endcall %}",
            BLOCK,
            "write less inside it",
        ),
        ("{% filter upper %}" + TEN_MILLION + "{% endfilter %}", BLOCK, "write less inside it"),
    ],
)
def test_values_are_measured_before_they_are_written_out(write_story, line, message, fix):
    path = write_story(HEAD + line + "\n" + SHOT, "written.yaml.j2")
    assert only_problem(path) == f"{path}:10: template: template limit: {message}; {fix}"


def test_a_template_stuck_where_the_sandbox_cannot_see_is_stopped_in_time(write_story):
    # Comparing two lists nested forty times compares a trillion strings inside Python, out of the sandbox's
    # sight: only the child process's time limit stops it.
    nested = "{% set a = ['x'] %}{% set b = ['x'] %}" + "{% set a = [a, a] %}{% set b = [b, b] %}" * 40
    path = write_story(HEAD + nested + "{{ a == b }}\n" + SHOT, "compare.yaml.j2")
    assert only_problem(path) == (
        f"{path}: template: template limit: the template did not finish within 3s of CPU time and "
        "was stopped; simplify the "
        "loops or expressions, or compare and print smaller values"
    )


@pytest.mark.skipif(sys.platform != "linux", reason="the child's memory is limited where it can be measured")
def test_a_template_that_takes_too_much_memory_is_stopped(write_story):
    # Each turn keeps a new string of a million characters: no single value is too large, all of them are.
    grow = (
        "{% set ns = namespace(kept=[]) %}{% for i in range(3000) %}"
        "{% set ns.kept = ns.kept + [('x' * 999990) ~ i] %}{% endfor %}"
    )
    path = write_story(HEAD + grow + "\n" + SHOT, "memory.yaml.j2")
    assert only_problem(path) == (
        f"{path}:10: template: template limit: the template needs more than the 512 MiB of memory a template "
        "may use; build smaller strings and lists"
    )


def test_without_fork_the_template_is_rendered_here_with_the_same_limits(write_story, monkeypatch):
    monkeypatch.delattr(os, "fork")  # as on Windows
    test_valid_templates_render_as_before(write_story)
    path = write_story(HEAD + SHARED + "{{ a }}\n" + SHOT, "here.yaml.j2")
    assert (
        only_problem(path)
        == f"{path}:10: template: template limit: this value {TOO_MUCH_WRITTEN}; {WRITTEN_FIX}"
    )


def test_loops_nested_past_what_python_compiles_are_an_error_at_their_line(write_story):
    loops = "".join(f"{{% for i{n} in [1] %}}\n" for n in range(21)) + "x\n" + "{% endfor %}\n" * 21
    path = write_story(HEAD + loops + SHOT, "loops.yaml.j2")
    assert only_problem(path) == (
        f"{path}:30: template: the template nests its tags or brackets too deeply to be read; nest fewer "
        "{% if %}/{% for %} blocks or brackets inside each other"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "{{ n }}" * 6000,
            "the template holds 6,000 {{ }} and {% %} tags, more than the 5,000 a template may have",
        ),
        (
            "{{ [" + ", ".join(["n"] * 6000) + "] }}",
            "the template is 6,004 expressions and statements, more than the 5,000 a template may be",
        ),
    ],
)
def test_a_template_too_large_to_compile_quickly_is_refused_before_it_is_compiled(write_story, body, message):
    path = write_story(HEAD + "# " + body + "\n" + SHOT, "large.yaml.j2")
    assert only_problem(path) == (
        f"{path}: template: {message}; loop over data in `vars:` instead of writing each expression out"
    )


def test_a_macro_calling_itself_without_end_is_an_error_not_a_crash(write_story):
    path = write_story(HEAD + "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}\n" + SHOT, "macro.yaml.j2")
    assert only_problem(path).startswith(f"{path}:10: template: template failed: RecursionError")


def test_templates_cannot_change_the_values_they_are_given(write_story):
    # The sandbox is immutable: `append` could otherwise grow a list without any operator.
    path = write_story(HEAD + "{{ items.append(1) }}\n" + SHOT, "append.yaml.j2")
    assert "template error: access to attribute 'append' of 'list' object is unsafe" in only_problem(path)


def test_valid_templates_render_as_before(write_story):
    path = write_story(
        HEAD + "{% for item in items %}\n"
        "      - id: {{ item }}-{{ loop.index }}-of-{{ loop.length }}\n"
        "        prompt: \"{{ lin }} holds {{ item | upper }}{{ ' ' ~ (n * 2) }}{{ '!' * 2 if loop.last }}\"\n"
        "        duration: {{ '%.1f' % (n / 2) }}s\n"
        "{% endfor %}\n",
        "good.yaml.j2",
    )
    board = load_storyboard(path)
    shots = [shot for _, _, _, shot in board.iter_shots()]
    assert [shot.id for shot in shots] == ["a-1-of-3", "b-2-of-3", "c-3-of-3"]
    assert shots[2].prompt == "{{ lin }} holds C 6!!" and shots[0].duration == 1.5
    assert board.expanded_prompt(shots[0]) == "a small girl in a blue jacket holds A 6"


def test_a_yaml_error_in_a_template_with_characters_is_reported_as_yaml(write_story):
    path = write_story(
        "# a comment line\n" + HEAD + '      - {id: x, prompt: "{{ lin }} runs", duration: 1}\n'
        "      - id: y\n       prompt: bad indent\n",
        "broken.yaml.j2",
    )
    assert only_problem(path) == (
        f"{path}:13:8: YAML syntax error: while parsing a block collection, did not find expected '-' indicator; "
        "check the indentation and quoting here (a value with ': ' or '#' needs quotes)"
    )


def test_a_yaml_error_with_flow_style_characters_is_still_a_yaml_error(write_story):
    text = HEAD.replace(
        "characters:\n  lin: {description: a small girl in a blue jacket}\n",
        "characters: {lin: {description: a girl}}\n",
    )
    path = write_story(
        text
        + '{% for i in items %}\n      - {id: s{{ i }}, prompt: "{{ lin }}", duration: 1\n{% endfor %}\n',
        "flow.yaml.j2",
    )
    assert only_problem(path).startswith(
        f"{path} (rendered):10:9: YAML syntax error: while parsing a flow mapping"
    )


def test_a_real_undefined_variable_is_still_named(write_story):
    path = write_story(
        HEAD + '      - {id: x, prompt: "{{ lin }} {{ hero }}", duration: 1}\n', "undefined.yaml.j2"
    )
    assert only_problem(path) == (
        f"{path}:10: template: undefined variable: 'hero' is undefined; declare it under `vars:` or pass it with "
        "--var NAME=VALUE"
    )


@pytest.mark.parametrize("word", ["no", "yes", "on", "off"])
def test_yes_no_words_in_vars_are_refused_not_guessed(write_story, word):
    path = write_story(HEAD.replace("  n: 3\n", f"  night: {word}\n  n: 3\n") + SHOT, "night.yaml.j2")
    assert only_problem(path) == (
        f"{path}:2:10: vars.night: '{word}' could mean the word or a yes/no value; write true or false for yes/no, or "
        f'quote it ("{word}") for the word'
    )
    quoted = write_story(HEAD.replace("  n: 3\n", f'  night: "{word}"\n  n: 3\n') + SHOT, "quoted.yaml.j2")
    assert load_storyboard(quoted)


def test_booleans_in_vars_still_work(write_story):
    path = write_story(
        HEAD.replace("  n: 3\n", "  night: false\n  n: 3\n")
        + "      - {id: x, prompt: \"{{ 'stars' if night else 'sun' }}\", duration: 1}\n",
        "bool.yaml.j2",
    )
    assert load_storyboard(path).scenes[0].shots[0].prompt == "sun"
    assert load_storyboard(path, template_vars={"night": True}).scenes[0].shots[0].prompt == "stars"


@pytest.mark.parametrize(
    "assignment",
    ["hero=fox\nextra_key: 1", "hero=fox\rx", 'hero="fox\\nextra: 1"', 'hero=["a\\tb", "c\\nd"]'],
)
def test_var_values_cannot_hold_newlines_or_control_characters(assignment):
    with pytest.raises(StoryboardError, match="holds a newline or another control character"):
        parse_var(assignment)


def test_var_values_are_read_with_the_storyboard_rules():
    assert parse_var("lanterns=[amber, sky blue]") == ("lanterns", ["amber", "sky blue"])
    assert parse_var("time=11:58") == ("time", "11:58")
    assert parse_var("n=3") == ("n", 3)
    with pytest.raises(StoryboardError, match="'off' could mean the word or a yes/no value"):
        parse_var("lights=off")


@pytest.mark.parametrize(
    "line",
    ["{% if 1 %}" * 2000 + "{% endif %}" * 2000, "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"],
)
def test_a_template_nested_too_deeply_to_parse_is_an_error(write_story, line):
    path = write_story(HEAD + line + "\n" + SHOT, "deep.yaml.j2")
    assert only_problem(path) == (
        f"{path}: template: the template nests its tags or brackets too deeply to be read; nest fewer "
        "{% if %}/{% for %} blocks or brackets inside each other"
    )


def test_a_template_larger_than_a_storyboard_is_refused_before_it_is_compiled(write_story):
    path = write_story(HEAD + SHOT + "{# " + "x" * (9 * 1024 * 1024) + " #}\n", "big.yaml.j2")
    assert "more than the 131,072 a template may have" in only_problem(path)
