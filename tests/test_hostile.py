"""Hostile input: whatever a storyboard holds, `validate` and `plan` answer within seconds and bounded memory.

Every answer is exit 0 or 1 with a message naming the file, line and field, never a traceback or an
internal error. Two sources of input:

- tests/hostile/: a corpus of broken and hostile storyboards and templates, each with the exit code
  and message fragments it must produce (tests/hostile/index.yaml; cases that today's code gets wrong
  are marked there, one reason each, and run as strict xfails);
- a fuzz test that mutates the example storyboards and templates (structure and scalars) with a fixed
  seed, 500 inputs (``STORYREEL_FUZZ_EXAMPLES=5000`` for a longer hunt). Inputs of the kinds today's code
  is known to mishandle are skipped by ``KNOWN_FAILURES``, one entry per kind, each also a corpus case.

Each command runs in a child process limited to 1.5 GiB of address space and a few seconds of CPU time. Starting
a Python interpreter with storyreel's imports costs about half a second, which hundreds of inputs cannot
afford, so one server process imports the command line once and forks a child per command (see
``ForkServer``); the child sets its limit with ``resource.setrlimit`` and runs ``storyreel.cli.main()``
as the console script does.
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, reject, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forks children and limits their memory")

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "hostile"
TIMEOUT = 4.0  # CPU seconds for one command; every case that passes answers in well under one
WALL_TIMEOUT = (
    30.0  # seconds on the clock, for a command stuck without using the CPU (a busy machine is slow)
)
MEMORY_LIMIT = 1536 << 20  # bytes of address space for one command (the server alone maps about 200 MiB)
SERVERS = 2  # commands run at once (the machine has two cores)


# --- running commands cheaply --------------------------------------------------------------------------------

# The server: imports what every command needs, then for each request (one JSON line on stdin) forks a
# child that runs the command with its limits, and answers one JSON line when the child is gone.
SERVER = r"""
import io, json, os, resource, signal, sys, time, traceback

import storyreel.cli, storyreel.plan, storyreel.storyboard, storyreel.templating

STREAMS = (sys.stdout.encoding, sys.stdout.errors, sys.stderr.encoding, sys.stderr.errors)


def child(request):
    resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
    resource.setrlimit(resource.RLIMIT_CPU, (int(request["timeout"]), resource.RLIM_INFINITY))
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    # streams on the new descriptors, encoding the way the interpreter's own would
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=STREAMS[0], errors=STREAMS[1])
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding=STREAMS[2], errors=STREAMS[3], line_buffering=True
    )
    os.chdir(request["cwd"])
    sys.argv = ["storyreel", *request["args"]]
    code = 0
    try:
        storyreel.cli.main()
    except SystemExit as exc:  # what the interpreter makes of sys.exit()
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # and of an exception nobody caught
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code & 0xFF)


print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            child(request)
        finally:
            os._exit(70)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > request["wall_timeout"]:
            os.kill(pid, signal.SIGKILL)
            timed_out = True
            done, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.002)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        timed_out = True
    answer = {
        "code": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "seconds": time.monotonic() - started,
        "max_rss_mib": usage.ru_maxrss / 1024,
    }
    print(json.dumps(answer), flush=True)
"""


@dataclass(frozen=True)
class Outcome:
    """What one command did: exit code (negative: the signal that killed it), output, seconds, peak memory."""

    args: tuple[str, ...]
    code: int
    output: str
    seconds: float
    max_rss_mib: float
    timed_out: bool

    def __str__(self) -> str:
        ending = f"killed after {TIMEOUT:.0f}s of CPU time" if self.timed_out else f"exit {self.code}"
        shown = (
            self.output if len(self.output) < 4000 else self.output[:2000] + "\n[...]\n" + self.output[-2000:]
        )
        return (
            f"storyreel {' '.join(self.args)}: {ending} ({self.seconds:.2f}s, {self.max_rss_mib:.0f} MiB peak)\n"
            f"{shown}"
        )


class ForkServer:
    """A process that has imported storyreel's command line and forks a child for each command."""

    def __init__(self, env: dict[str, str]):
        self.scratch = Path(tempfile.mkdtemp(prefix="storyreel-hostile-"))
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests, self.answers = self.process.stdin, self.process.stdout
        if self.answers.readline().strip() != "ready":
            raise RuntimeError("the storyreel fork server did not start")

    def run(self, args: list[str], cwd: Path) -> Outcome:
        output = self.scratch / "output.txt"
        request = {
            "args": args,
            "cwd": str(cwd),
            "timeout": TIMEOUT,
            "wall_timeout": WALL_TIMEOUT,
            "memory": MEMORY_LIMIT,
            "output": str(output),
        }
        self.requests.write(json.dumps(request) + "\n")
        self.requests.flush()
        answer = json.loads(self.answers.readline())
        return Outcome(
            args=tuple(args),
            code=answer["code"],
            output=output.read_bytes().decode("utf-8", errors="backslashreplace"),
            seconds=answer["seconds"],
            max_rss_mib=answer["max_rss_mib"],
            timed_out=answer["timed_out"],
        )

    def close(self) -> None:
        self.requests.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.scratch, ignore_errors=True)


class Commands:
    """A few fork servers and threads to keep them busy: ``submit`` runs commands one after another on one
    server, and stops early when a command already shows the input was not answered properly."""

    def __init__(self, cache: Path):
        env = {name: value for name, value in os.environ.items() if name != "STORYREEL_DEBUG"}
        env.update(
            STORYREEL_CACHE=str(cache),
            # no helper threads in the server: a forked child keeps only the thread that forked
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
        )
        self.idle: queue.Queue[ForkServer] = queue.Queue()
        self.servers = [ForkServer(env) for _ in range(SERVERS)]
        for server in self.servers:
            self.idle.put(server)
        self.pool = ThreadPoolExecutor(SERVERS)

    def submit(self, commands: list[list[str]], cwd: Path) -> Future[list[Outcome]]:
        return self.pool.submit(self._run, commands, cwd)

    def run_at_once(self, commands: list[list[str]], cwd: Path) -> list[Outcome]:
        """Each command on its own server, at the same time."""
        futures = [self.pool.submit(self._run, [command], cwd) for command in commands]
        return [outcome for future in futures for outcome in future.result()]

    def _run(self, commands: list[list[str]], cwd: Path) -> list[Outcome]:
        server = self.idle.get()
        try:
            outcomes = []
            for args in commands:
                outcomes.append(server.run(args, cwd))
                if outcomes[-1].timed_out or outcomes[-1].code not in (0, 1):
                    break  # the case has failed; the next command would only spend the same time
            return outcomes
        finally:
            self.idle.put(server)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        for server in self.servers:
            server.close()


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commands]:
    running = Commands(tmp_path_factory.mktemp("hostile-cache"))
    yield running
    running.close()


def answered_properly(outcome: Outcome) -> list[str]:
    """What is wrong with how a command answered, whatever the input: [] when nothing."""
    problems = []
    if outcome.timed_out:
        problems.append(f"no answer within {TIMEOUT:.0f}s of CPU time")
    elif outcome.code < 0:
        problems.append(f"killed by signal {-outcome.code}")
    elif outcome.code not in (0, 1):
        problems.append(f"exit code {outcome.code}: only 0 (ok) and 1 (the input is wrong) answer an input")
    if "Traceback" in outcome.output:
        problems.append("a traceback")
    if "internal error" in outcome.output:
        problems.append("an internal error")
    if "MemoryError" in outcome.output:
        problems.append(f"ran out of its {MEMORY_LIMIT >> 20} MiB")
    return problems


# --- the corpus ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One corpus file and what storyreel must answer to it (see tests/hostile/index.yaml)."""

    file: str
    exit: int
    expect: tuple[str, ...] = ()
    where: bool = True
    source: str | None = None  # what the message must name instead of the file (a problem in a --var value)
    args: tuple[str, ...] = ()
    build: dict[str, Any] | None = field(default=None, hash=False)
    xfail: str | None = None
    what: str = ""


def _corpus() -> list[Case]:
    index = yaml.safe_load((CORPUS / "index.yaml").read_text(encoding="utf-8"))
    cases = []
    for entry in index:
        unknown = set(entry) - {"file", "exit", "expect", "where", "source", "args", "build", "xfail", "what"}
        assert not unknown, f"index.yaml: {entry['file']}: unknown keys {unknown}"
        cases.append(
            Case(
                file=entry["file"],
                exit=entry["exit"],
                expect=tuple(entry.get("expect", ())),
                where=entry.get("where", entry["exit"] == 1),
                source=entry.get("source"),
                args=tuple(entry.get("args", ())),
                build=entry.get("build"),
                xfail=entry.get("xfail"),
                what=entry.get("what", ""),
            )
        )
    return cases


CASES = _corpus()


def test_the_index_lists_every_corpus_file_once() -> None:
    listed = [case.file for case in CASES]
    present = sorted(p.name for p in CORPUS.iterdir() if p.name not in ("index.yaml", "assets"))
    assert sorted(listed) == present
    assert len(set(listed)) == len(listed)
    for case in CASES:
        assert case.exit in (0, 1), case.file
        for pattern in case.expect:
            re.compile(pattern)


@pytest.fixture(scope="module")
def corpus_outcomes(
    request: pytest.FixtureRequest, commands: Commands, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Case], list[Outcome]]:
    """Start every selected case at once (they run two at a time); each test waits for its own."""
    folder = tmp_path_factory.mktemp("corpus") / "hostile"
    shutil.copytree(CORPUS, folder, symlinks=True)  # so that nothing a command writes lands in the tree
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_corpus_case" and hasattr(item, "callspec")
    ]
    futures: dict[str, Future[list[Outcome]]] = {}
    for case in selected:
        if case.build:
            recipe = case.build
            text = (folder / case.file).read_text(encoding="utf-8")
            (folder / case.file).write_text(
                text.replace(recipe["marker"], recipe["text"] * recipe["times"]), encoding="utf-8"
            )
        runs = [[command, case.file, *case.args] for command in ("validate", "plan")]
        futures[case.file] = commands.submit(runs, folder)
    return lambda case: futures[case.file].result()


def _corpus_params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.file,
            marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [],
        )
        for case in CASES
    ]


@pytest.mark.parametrize("case", _corpus_params())
def test_corpus_case(case: Case, corpus_outcomes: Callable[[Case], list[Outcome]]) -> None:
    outcomes = corpus_outcomes(case)
    for outcome in outcomes:
        problems = answered_properly(outcome)
        if not problems and outcome.code != case.exit:
            problems.append(f"exit {outcome.code}, expected {case.exit}")
        if not problems and outcome.code == 1:
            source = case.source or case.file
            if case.where and not re.search(re.escape(source) + r"(?: \(rendered\))?:\d+", outcome.output):
                problems.append(f"the message does not name where the problem is ({source}:LINE)")
            elif source not in outcome.output:
                problems.append(f"the message does not name {source}")
        message = outcome.output.replace(case.file, "<file>")  # `expect` is about the message, not the name
        if not problems:
            problems += [
                f"no match for {pattern!r}" for pattern in case.expect if not re.search(pattern, message)
            ]
        assert not problems, (
            f"{case.file} ({case.what or 'see index.yaml'}): {'; '.join(problems)}\n{outcome}"
        )
    assert len(outcomes) == 2  # both commands ran


# --- the fuzz test -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A valid storyboard the fuzz test starts from."""

    path: Path
    text: str
    document: Any  # the parsed YAML; None for a template, which is mutated line by line

    @property
    def templated(self) -> bool:
        return self.path.name.endswith(".j2")


SEEDS = [
    Seed(
        path,
        path.read_text(encoding="utf-8"),
        None if path.name.endswith(".j2") else yaml.safe_load(path.read_text()),
    )
    for path in [
        *sorted((REPO / "examples").glob("*.yaml")),
        *sorted((REPO / "templates").glob("*.yaml")),
        REPO / "examples" / "festival.yaml.j2",
    ]
]


class Raw(str):
    """A scalar written into the YAML as it is, unquoted, so that YAML reads it as it likes (``yes``, ``1:30``)."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_raw(dumper: yaml.SafeDumper, value: Raw) -> yaml.Node:
    tag = dumper.resolve(yaml.ScalarNode, str(value), (True, False))
    return dumper.represent_scalar(tag, str(value))


_Dumper.add_representer(Raw, _represent_raw)

# Scalars a person (or a tool) might write where something else belongs.
NUMBERS = [
    0,
    -1,
    1,
    3,
    2**31,
    2**63,
    10**30,
    -(10**30),
    0.5,
    -0.0,
    1e308,
    1e-308,
    math.inf,
    -math.inf,
    math.nan,
]
EXPRESSIONS = [
    "{{ 7*7 }}",
    "{{ swan }}",
    "{{ nobody }}",
    "{{ swan | upper }}",
    "{{",
    "}}",
    "{% if %}",
    "{% for i in range(3) %}x{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ 9**(9**9) }}",
    "{{ 'a' * 10**9 }}",
    "{{ ''.__class__.__mro__ }}",
    "{# a comment #}",
]
CONTROLS = ["\x1b[2J\x1b[31m", "\x00", "\x07", "\u202e", "\u200b", "\r", "\x7f", "\ud800"]
WORDS = [
    "",
    " ",
    "\t\n",
    "4s",
    "-4s",
    "0s",
    "1e400",
    "100000h",
    "x" * 300,
    "白鳥 🦢",
    "../../etc/passwd",
    "a b c",
]
RAW = ["yes", "no", "on", "off", "~", "null", "1:30", "11:58", "0x0", "0x10", "010", ".inf", "-.inf", ".nan",
       "2024-01-01", "0o17", "1_000", "[]", "{}", "[[[[]]]]", "*undefined", "&anchor x", "!!binary aGVsbG8=",
       "!!python/object/apply:os.system [id]"]  # fmt: skip


# Values a person might try for a particular key: they get past the first checks and reach the plan.
FIELD_VALUES: dict[str, list[Any]] = {
    "duration": ["4s", 0.01, "1ms", 1e-9, 3600, "600min", 1e9, Raw("1:30"), "-1s"],
    "frames": [1, 2, 4, 5, 8, 9, 97, 100000001, 2**31, -1],
    "fps": [1, 7, 120, 121, 0],
    "steps": [1, 2, 1000, 1001],
    "base_num_frames": [1, 5, 9, 17, 57, 97, 101, 1001, 4000001],
    "overlap_history": [1, 5, 17, 37, 97, 101],
    "causal_block_size": [1, 2, 3, 5, 7, 100, 1000000],
    "ar_step": [0, 1, 5, 100, 1000000],
    "addnoise_condition": [0, 60, 1000, 1001],
    "guidance_scale": [0, 1, 1.0001, 1e308],
    "shift": [1e-9, 1e308],
    "seed": [0, 2**32 - 1, 2**32, -1],
    "resolution": [
        "540P",
        "720P",
        "1080P",
        "64x64",
        "16x16",
        "80x48",
        "4096x4096",
        "100000x100000",
        Raw("0x0"),
    ],
    "transition": ["continue", "cut", "dissolve", "fade", "wipe", "CUT"],
    "transition_duration": ["0.1s", "30s", "1ms", 0],
    "continues": ["glide", "dip", "run-1", "nobody", "", 7],
    "after": [[], ["dawn"], ["market", "platform"], ["nobody"], "dawn"],
    "image": ["assets/heron_dawn.png", "assets/score.mp3", "assets", "missing.png", "/etc/hostname"],
    "reference": [["assets/swan_reference.png", "assets/heron_dawn.png"], "assets/score.mp3"],
    "music": ["assets/score.mp3", "assets/heron_dawn.png", "assets"],
    "volume": [0, 4, 4.01, -1],
    "model": ["/nonexistent/model", "Skywork/SkyReels-V2-DF-14B-720P-Diffusers", "", "assets"],
    "backend": ["none", "template", "vllm", "nonexistent"],
    "url": ["http://127.0.0.1:1/v1", "not a url", ""],
    "max_words": [10, 1000, 1001, 0],
    "characters": [[], ["swan", "swan"], ["nobody"], "swan"],
    "camera": [{}, {"shot": "wide", "move": "slow push-in"}, {"move": "orbit fast fast"}, "wide"],
    "move": ["slow push-in", "pan left then tilt up", "", "wobble"],
    "storyreel": [1, 2, 0, "1", 1.0],
}


def scalars(key: Any = None) -> st.SearchStrategy[Any]:
    """Any scalar, or (half the time, when the key has some) a value people try for that key."""
    anything = st.one_of(
        st.sampled_from(NUMBERS),
        st.integers(),
        st.floats(),
        st.sampled_from(WORDS),
        st.sampled_from(EXPRESSIONS),
        st.sampled_from(CONTROLS).map(lambda c: f"a swan{c} glides"),
        st.builds(lambda n: "a swan " * n, st.integers(0, 30000)),
        st.text(max_size=30),
        st.sampled_from(RAW).map(Raw),
        st.booleans(),
        st.none(),
    )
    if key in FIELD_VALUES:
        return st.one_of(st.sampled_from(FIELD_VALUES[key]), anything)
    return anything


def _places(document: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in the document, in a fixed order; the root is (None, None)."""
    found: list[tuple[Any, Any]] = [(None, None)]
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if id(node) in seen:  # an alias made earlier: walk it once
            return
        seen.add(id(node))
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for key in keys:
            found.append((node, key))
            walk(node[key])

    walk(document)
    return found


def _mappings(document: Any) -> list[dict[Any, Any]]:
    return [
        node
        for node in [document, *(parent[key] for parent, key in _places(document)[1:])]
        if isinstance(node, dict)
    ]


@st.composite
def mutated_documents(draw: st.DrawFn, seed: Seed) -> str:
    """The seed's YAML after one to three mutations of its structure or its scalars."""
    root = {"root": copy.deepcopy(seed.document)}  # a parent for the document itself
    for _ in range(draw(st.integers(1, 3))):
        places = _places(root)[2:]  # not the holder, not the root's own slot
        # half the time a shot's own keys, where most of what decides a film is written
        in_shots = [
            (parent, key) for parent, key in places if isinstance(parent, dict) and "prompt" in parent
        ]
        choice = (
            st.one_of(st.sampled_from(in_shots), st.sampled_from(places))
            if in_shots
            else st.sampled_from(places)
        )
        parent, key = draw(choice) if places else (root, "root")
        value = parent[key]
        kind = draw(
            st.sampled_from(["drop", "duplicate", "swap", "retype", "wrap", "alias", "scalar", "scalar"])
        )
        if kind == "drop":
            del parent[key]
        elif kind == "duplicate":
            if isinstance(parent, list):
                parent.insert(key, copy.deepcopy(value))  # two shots or scenes with the same id, ...
            else:
                draw(st.sampled_from(_mappings(root["root"]) or [root]))[key] = copy.deepcopy(value)
        elif kind == "swap":
            other_parent, other_key = draw(st.sampled_from(places))
            parent[key], other_parent[other_key] = other_parent[other_key], value
        elif kind == "retype":
            parent[key] = draw(
                st.sampled_from([[value], {"value": value}, str(value), 0, None, True, [], {}])
            )
        elif kind == "wrap":
            parent[key] = [value] * draw(st.integers(1, 3))
        elif kind == "alias":  # the same object twice: the YAML gets an anchor and an alias
            other_parent, other_key = draw(st.sampled_from(places))
            parent[key] = other_parent[other_key]
        else:
            parent[key] = draw(scalars(key))
    try:
        return yaml.dump(root["root"], Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    except (yaml.YAMLError, RecursionError, ValueError):
        reject()  # a structure YAML cannot write


_KEY_LINE = re.compile(r"^(\s*(?:- )?)([A-Za-z_]+):\s?(.*)$")


@st.composite
def mutated_lines(draw: st.DrawFn, text: str, least: int = 1) -> str:
    """The text after ``least`` to three line mutations: a value replaced, a line dropped, doubled or moved.

    A template is mutated this way only (its Jinja2 tags are not YAML); a storyboard sometimes gets one
    on top of its structural mutations, for what a mapping cannot hold, such as a key written twice.
    """
    lines = text.splitlines()
    for _ in range(draw(st.integers(least, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["value", "value", "drop", "duplicate", "move"]))
        match = _KEY_LINE.match(lines[index])
        if kind == "value" and match:
            value = draw(scalars(match.group(2)))
            written = (
                str(value) if isinstance(value, Raw) else yaml.dump(value, Dumper=_Dumper, width=4096).strip()
            )
            lines[index] = (
                f"{match.group(1)}{match.group(2)}: {written.removesuffix(chr(10) + '...').strip()}"
            )
        elif kind == "drop":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "move":
            lines.insert(draw(st.integers(0, len(lines) - 1)), lines.pop(index))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Mutant:
    """A mutated seed: the file name it is written as, and its text."""

    name: str
    text: str

    def __repr__(self) -> str:
        return f"Mutant(name={self.name!r}, text=\n{self.text})"


@st.composite
def mutants(draw: st.DrawFn) -> Mutant:
    seed = draw(st.sampled_from(SEEDS))
    if seed.templated:
        return Mutant(seed.path.name, draw(mutated_lines(seed.text)))
    return Mutant(seed.path.name, draw(mutated_lines(draw(mutated_documents(seed)), least=0)))


_LENGTH = re.compile(r"\b(duration|transition_duration|frames):\s*['\"]?([0-9][0-9_.e+]*)\s*([a-z]*)")


def _longest_shot_seconds(text: str) -> float:
    """The longest duration written anywhere in a storyboard's text (frames counted at 24 fps)."""
    longest = 0.0
    for key, number, unit in _LENGTH.findall(text):
        try:
            value = float(number.replace("_", ""))
        except ValueError:
            continue
        if key == "frames":
            value /= 24
        elif unit == "ms":
            value /= 1000
        elif unit.startswith("m"):
            value *= 60
        longest = max(longest, value)
    return longest


# Inputs today's code is known to mishandle, each also a corpus case marked xfail. The fuzz test skips
# them: they would only find the same failures again, each at the cost of a timeout. Delete an entry
# when its corpus cases pass, and the fuzz test explores those inputs again.
KNOWN_FAILURES: dict[str, Callable[[Mutant], bool]] = {}


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the examples' assets, where each mutant is written."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "examples" / "assets", folder / "assets")
    return folder


@settings(
    max_examples=int(os.environ.get("STORYREEL_FUZZ_EXAMPLES", 500)),  # more for a longer hunt
    derandomize=True,  # the same inputs on every run: CI stays stable
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(mutant=mutants())
def test_mutated_storyboards_are_answered_properly(
    mutant: Mutant, commands: Commands, fuzz_folder: Path
) -> None:
    if any(applies(mutant) for applies in KNOWN_FAILURES.values()):
        reject()
    story = fuzz_folder / mutant.name
    story.write_text(mutant.text, encoding="utf-8", errors="surrogatepass")
    outcomes = commands.run_at_once([["validate", mutant.name], ["plan", mutant.name]], fuzz_folder)
    event(f"exits {[o.code for o in outcomes]}")
    event(f"seed {mutant.name}")
    for outcome in outcomes:
        problems = answered_properly(outcome)
        if not problems and outcome.code == 1 and mutant.name not in outcome.output:
            problems.append("the message does not name the file")
        assert not problems, f"{'; '.join(problems)}\n{outcome}"
