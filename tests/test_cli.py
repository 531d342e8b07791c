"""The command line: what a user types and sees, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from storyreel.cli import app

from conftest import small_board

runner = CliRunner()


def test_validate_ok_and_error_exit_codes(write_story):
    good = write_story(small_board())
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert f"ok {good}: 2 scene(s), 4 shot(s)" in result.output

    bad = write_story(
        "storyreel: 1\nscenes:\n  - id: a\n    shots:\n      - {id: x, prompt: p, duraton: 2}\n", "bad.yaml"
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    column = bad.read_text().splitlines()[4].index("duraton") + 1
    assert (
        f"error: {bad}:5:{column}: scenes[0].shots[0].duraton: unknown key 'duraton'; did you mean 'duration'?"
        in (result.output.replace("\n", ""))
    )
    assert "Traceback" not in result.output


def test_plan_json_follows_the_spec(write_story):
    path = write_story(small_board())
    result = runner.invoke(app, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["timeline"] == ["glide", "dip", "heron", "rise"]
    assert plan["render_order"] == ["glide", "dip", "heron", "rise"]
    assert plan["chains"] == [["glide", "dip", "rise"], ["heron"]]
    shots = {s["id"]: s for s in plan["shots"]}
    assert {k: shots["rise"][k] for k in ("frames", "fps", "conditioned_on", "mode")} == {
        "frames": 16,
        "fps": 8,
        "conditioned_on": "dip",
        "mode": "continue",
    }
    assert shots["glide"]["windows"] == [{"latent_frames": 7, "prefix_latent_frames": 0, "denoise_steps": 30}]
    assert shots["glide"]["dit_passes"] == 60
    assert (
        plan["film_frames"] == sum(s["frames"] for s in plan["shots"]) - shots["heron"]["transition_frames"]
    )


def test_plan_table_for_people(write_story):
    result = runner.invoke(app, ["plan", str(write_story(small_board()))])
    assert result.exit_code == 0, result.output
    assert "render order: glide → dip → heron → rise" in result.output
    assert "chains: [glide → dip → rise]  [heron]" in result.output
    assert "25 (asked 24)" in result.output  # the table shows every snapped length


def test_seed_option_changes_the_shot_seeds(write_story):
    path = write_story(small_board())
    first = json.loads(runner.invoke(app, ["plan", str(path), "--json"]).output)
    other = json.loads(runner.invoke(app, ["plan", str(path), "--json", "--seed", "5"]).output)
    assert [s["seed"] for s in first["shots"]] != [s["seed"] for s in other["shots"]]


def test_template_variables_from_the_command_line(write_story):
    path = write_story(
        "storyreel: 1\nvars:\n  n: 2\nscenes:\n  - id: a\n    shots:\n"
        "{% for i in range(n) %}\n      - {id: s{{ i }}, prompt: p, duration: 1}\n{% endfor %}\n",
        "loop.yaml.j2",
    )
    result = runner.invoke(app, ["plan", str(path), "--json", "--var", "n=3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["timeline"] == ["s0", "s1", "s2"]


def test_new_and_templates(tmp_path):
    listing = runner.invoke(app, ["templates"])
    assert listing.exit_code == 0
    names = [line.split()[0] for line in listing.output.splitlines()[1:] if line.strip()]
    assert {"short", "music-video", "product-spot"} <= set(names)

    target = tmp_path / "mine.yaml"
    result = runner.invoke(app, ["new", str(target), "--template", "product-spot"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["validate", str(target)]).exit_code == 0
    again = runner.invoke(app, ["new", str(target)])
    assert again.exit_code == 1 and "already exists" in again.output
    unknown = runner.invoke(app, ["new", str(tmp_path / "x.yaml"), "--template", "western"])
    assert unknown.exit_code == 1 and "unknown template 'western'" in unknown.output


def test_schema_is_json_schema_for_the_storyboard():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "storyreel storyboard"
    assert schema["additionalProperties"] is False
    assert {"storyreel", "scenes"} <= set(schema["required"])
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(small_board(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**small_board(), "scenez": []}, schema)


def test_unknown_generator_is_a_user_error_before_any_work(write_story, tmp_path):
    path = write_story(small_board())
    result = runner.invoke(
        app, ["render", str(path), "--generator", "animatc", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "unknown generator 'animatc'; did you mean 'animatic'?" in result.output
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_1_from_the_real_command(write_story):
    # Typer reports a bad option with exit code 2; storyreel keeps 2 for internal failures.
    result = subprocess.run(
        [sys.executable, "-c", "from storyreel.cli import main; main()", "validate", "x.yaml", "--bogus"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "No such option: --bogus" in result.stderr


def test_internal_errors_exit_2_without_a_traceback(write_story, monkeypatch):
    import storyreel.plan

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(storyreel.plan, "plan_film", broken)
    result = runner.invoke(app, ["validate", str(write_story(small_board()))])
    assert result.exit_code == 2
    assert "internal error: RuntimeError: boom" in result.output
    assert "STORYREEL_DEBUG=1" in result.output and "Traceback" not in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("storyreel ")


def test_a_storyboard_file_plans_as_the_same_storyboard_built_in_python(tmp_path):
    # The YAML loader keeps every value's position for error messages; it must not change any value.
    from storyreel import Storyboard, plan_film

    board = small_board()
    path = tmp_path / "story.yaml"
    path.write_text(yaml.safe_dump(board, sort_keys=False), encoding="utf-8")

    result = runner.invoke(app, ["plan", str(path), "--json"])

    assert result.exit_code == 0, result.output
    in_python = plan_film(Storyboard.model_validate(board)).to_json()
    assert json.loads(result.output) == json.loads(json.dumps(in_python))
    assert json.loads(result.output)["chains"] == [["glide", "dip", "rise"], ["heron"]]


# --- hostile storyboards, --print-yaml, --var and --seed ----------------------------------------------------------

ONE_SHOT = "storyreel: 1\nscenes:\n  - id: a\n    shots:\n"
LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
# Each storyboard, with the words of the message that refuses it.
HOSTILE = {
    "laughs.yaml": (
        LAUGHS + ONE_SHOT + "      - {id: x, prompt: p, duration: 1}\n",
        "aliases (*name) here expand the document past 100,000 copied values",
    ),
    "jinja.yaml": (
        ONE_SHOT + "      - {id: x, prompt: \"{{ 'x' * 1000000000000 }}\", duration: 1}\n",
        "is not a character reference: prompts and settings only hold {{ character }} references",
    ),
    "loops.yaml": (
        ONE_SHOT
        + '      - {id: x, prompt: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}'
        '{% endfor %}", duration: 1}\n',
        "'{% for i in range(100000) %}' is not a character reference",
    ),
    "huge.yaml": (
        ONE_SHOT + "      - {id: x, prompt: p, frames: 100000000}\n",
        "frames: 100000000 is out of bounds: `frames` must be at most 1457",
    ),
    "wide.yaml": (
        "storyreel: 1\ngeneration: {resolution: 100000x100000}\n"
        + ONE_SHOT[13:]
        + "      - {id: x, prompt: p, duration: 1}\n",
        "100000x100000 is larger than a film may be",
    ),
    "deep.yaml": ("storyreel: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n", "exceeded maximum nesting depth"),
    "pow.yaml.j2": (
        "vars:\n  n: 1\n" + ONE_SHOT + '      - {id: x, prompt: "{{ 9**(9**9) }}", duration: 1}\n',
        "template limit: 9 ** 387420489 would be a number of about 1,228,093,894 bits",
    ),
    "hang.yaml.j2": (
        "vars:\n  n: 1\n"
        + ONE_SHOT
        + "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
        "template limit: the template's loops ran more than 1,000,000 times",
    ),
    "strings.yaml.j2": (
        "vars:\n  n: 1\n" + ONE_SHOT + "      - {id: x, prompt: \"{{ 'x' * 10**12 }}\", duration: 1}\n",
        "template limit: repeating a str 1,000,000,000,000 times would build a value",
    ),
}


def test_hostile_storyboards_exit_1_with_a_message_in_bounded_memory(tmp_path):
    """Each is refused by the real command with its memory capped at 2 GiB: a storyboard that tried to expand
    to gigabytes would die of MemoryError (exit 2, a traceback) instead of being refused."""
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
        "from storyreel.cli import main; sys.argv = ['storyreel', 'validate', sys.argv[1]]; main()"
    )
    for name, (text, words) in HOSTILE.items():
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1, (name, result.stderr)
        assert result.stderr.startswith(f"error: {path}:") and "Traceback" not in result.stderr, (
            name,
            result.stderr,
        )
        assert words in " ".join(result.stderr.split()), (name, result.stderr)


def test_print_yaml_shows_what_a_template_renders_to_even_when_it_does_not_validate(write_story):
    path = write_story(
        "vars:\n  n: 2\n"
        + ONE_SHOT
        + "{% for i in range(n) %}\n      - {id: s{{ i }}, prompt: p, duraton: 1}\n{% endfor %}\n",
        "loop.yaml.j2",
    )
    result = runner.invoke(app, ["validate", str(path), "--print-yaml", "--var", "n=3"])
    assert result.exit_code == 1
    rendered = (
        "vars:\n  n: 2\n"
        + ONE_SHOT
        + "".join(f"      - {{id: s{i}, prompt: p, duraton: 1}}\n" for i in range(3))
    )
    assert result.stdout == rendered
    assert (
        f"error: {path} (rendered):7:29: scenes[0].shots[0].duraton: unknown key 'duraton'" in result.stderr
    )
    assert (
        f"note: {path} is a template: the positions above are in the YAML it renders to; see that YAML with "
        f"`storyreel validate {path} --var n=3 --print-yaml`" in result.stderr.replace("\n", "")
    )
    path.write_text(path.read_text().replace("duraton", "duration"))
    ok = runner.invoke(app, ["validate", str(path), "--print-yaml"])
    assert ok.exit_code == 0 and ok.stdout.startswith("vars:\n") and f"ok {path}" in ok.stderr


def test_print_yaml_of_a_plain_storyboard_is_the_file(write_story):
    path = write_story(small_board())
    result = runner.invoke(app, ["validate", str(path), "--print-yaml"])
    assert result.exit_code == 0 and result.stdout == path.read_text()


def test_var_with_a_newline_cannot_add_keys(write_story):
    path = write_story(
        "vars:\n  hero: fox\n" + ONE_SHOT + "      - {id: x, prompt: '{{ hero }}', duration: 1}\n",
        "v.yaml.j2",
    )
    result = runner.invoke(
        app, ["validate", str(path), "--var", "hero=fox'}\n      - {id: y, prompt: injected"]
    )
    assert result.exit_code == 1
    assert (
        "error: --var: the value of hero holds a newline or another control character; give a one-line value"
        in (result.output.replace("\n", ""))
    )


def test_seed_is_bounded_and_replaces_film_and_scene_seeds_but_not_a_shot_seed(write_story):
    board = small_board(seed=3)
    board["scenes"][1]["generation"] = {"seed": 11}
    board["scenes"][1]["shots"][0]["generation"] = {"seed": 7}
    path = write_story(board)
    shots = {
        s["id"]: s["seed"]
        for s in json.loads(runner.invoke(app, ["plan", str(path), "--json", "--seed", "5"]).output)["shots"]
    }
    from storyreel.plan import derive_seed

    assert shots == {
        "glide": derive_seed(5, "glide"),
        "dip": derive_seed(5, "dip"),
        "heron": 7,
        "rise": derive_seed(5, "rise"),
    }
    for command in ("plan", "render"):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from storyreel.cli import main; main()",
                command,
                str(path),
                "--seed",
                str(2**32),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1 and "--seed" in result.stderr and "4294967295" in result.stderr
        helped = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert "a seed set on a shot itself is kept" in " ".join(
            re.sub("[│╭╮╰╯─]", " ", helped.output).split()
        )


def test_a_large_plan_groups_repeated_notes(write_story):
    board = {
        "storyreel": 1,
        "generation": {"causal_block_size": 5},
        "scenes": [
            {
                "id": "a",
                "shots": [
                    {"id": f"s{i}", "prompt": "p", "duration": "3s", "transition": "cut"} for i in range(200)
                ],
            }
        ],
    }
    result = runner.invoke(app, ["plan", str(write_story(board))])
    assert result.exit_code == 0
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert notes == ["note: shots 's0', 's1', 's2' and 197 more: 3s (72 frames) snapped to 77 frames (3.21s)"]
