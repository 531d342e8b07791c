"""Loading storyboards: the format, and a clear file:line:col message for every kind of bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from imageio_ffmpeg import get_ffmpeg_exe
from PIL import Image

from storyreel import Storyboard, StoryboardError, load_storyboard, plan_film
from storyreel.storyboard import parse_duration, resolution_size

SPEC_EXAMPLE = """\
storyreel: 1
title: Swan Lake at Dawn
logline: A swan's day on a mountain lake, dawn to dusk.
style: cinematic, 35mm film grain, soft natural light
generation:
  resolution: 540P
  fps: 24
  seed: 42
enhancer:
  backend: template
characters:
  swan:
    description: a graceful white swan with a curved neck and delicate feathers
scenes:
  - id: dawn
    title: Dawn on the lake
    setting: a serene mountain lake, mist rising from the still water
    after: []
    shots:
      - id: glide
        prompt: "{{ swan }} swims slowly across the lake, its reflection mirrored below"
        duration: 4s
        camera: {shot: wide, angle: eye-level, move: slow push-in}
        characters: [swan]
        caption: Dawn.
      - id: dip
        prompt: "{{ swan }} dips its head into the water to feed"
        duration: 3.5s
        transition: continue
      - id: heron
        prompt: a grey heron watches from the reeds
        duration: 3s
        transition: cut
      - id: back-to-swan
        continues: dip
        prompt: "{{ swan }} lifts its head, water dripping from its beak"
        duration: 3s
        generation: {seed: 7, steps: 40}
"""


def where(path: Path, token: str, occurrence: int = 1, offset: int = 0) -> str:
    """``path:line:col`` of the ``occurrence``-th ``token`` in the file (plus ``offset`` columns), found independently."""
    seen = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        start = line.find(token)
        while start != -1:
            seen += 1
            if seen == occurrence:
                return f"{path}:{number}:{start + 1 + offset}"
            start = line.find(token, start + 1)
    raise AssertionError(f"{token!r} not in {path}")


def problems_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(StoryboardError) as caught:
        board = load_storyboard(path, **kwargs)
        plan_film(board, **kwargs)
    return [str(p) for p in caught.value.problems]


def only_problem(path: Path, **kwargs) -> str:
    found = problems_of(path, **kwargs)
    assert len(found) == 1, found
    return found[0]


def test_spec_example_loads_with_its_semantics(write_story):
    board = load_storyboard(write_story(SPEC_EXAMPLE))
    shots = {shot.id: shot for _, _, _, shot in board.iter_shots()}
    assert board.title == "Swan Lake at Dawn"
    assert board.expanded_prompt(shots["glide"]) == (
        "a graceful white swan with a curved neck and delicate feathers swims slowly across the lake, "
        "its reflection mirrored below"
    )
    assert shots["glide"].camera.shot == "wide" and shots["glide"].camera.move == "slow push-in"
    assert shots["dip"].duration == 3.5
    assert board.setting(shots["back-to-swan"], "steps") == (
        40,
        ("scenes", 0, "shots", 3, "generation", "steps"),
    )
    assert board.setting(shots["glide"], "steps") == (30, None)  # storyreel's default
    assert board.shot_characters(shots["dip"]) == ["swan"]  # named in the prompt, not listed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(4, 4.0), (3.5, 3.5), ("4s", 4.0), ("3.5 s", 3.5), ("1500ms", 1.5), ("2sec", 2.0), ("0.5min", 30.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_resolutions():
    assert resolution_size("540P") == (960, 544)
    assert resolution_size("720P") == (1280, 720)
    board = Storyboard.model_validate(
        {
            "storyreel": 1,
            "generation": {"resolution": "832x480"},
            "scenes": [{"id": "a", "shots": [{"id": "x", "prompt": "p", "duration": 1}]}],
        }
    )
    assert board.generation.resolution == "832x480"


def test_yaml_syntax_error_points_at_the_line(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - id: x
                prompt: "unterminated
        """
    )
    message = only_problem(path)
    assert message.startswith(f"{path}:7:1: YAML syntax error: while scanning a quoted scalar")
    assert message.endswith("check the indentation and quoting here (a value with ': ' or '#' needs quotes)")


def test_typo_in_a_key_suggests_the_right_one(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - id: x
                prompt: hi
                duraton: 4s
        """
    )
    assert only_problem(path) == (
        f"{where(path, 'duraton')}: scenes[0].shots[0].duraton: unknown key 'duraton'; did you mean 'duration'?"
    )


def test_unknown_top_level_key_lists_the_allowed_ones(write_story):
    path = write_story(
        "storyreel: 1\nsoundtrack: x\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n"
    )
    message = only_problem(path)
    assert message.startswith(
        f"{path}:2:1: soundtrack: unknown key 'soundtrack'; remove it; allowed keys here: "
    )
    assert "audio" in message and "scenes" in message


@pytest.mark.parametrize("duration", ["0s", "-2s", "0"])
def test_zero_or_negative_duration(write_story, duration):
    path = write_story(
        f"""\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - id: x
                prompt: hi
                duration: {duration}
        """
    )
    message = only_problem(path)
    assert message.startswith(f"{path}:7:") and "scenes[0].shots[0].duration" in message
    assert message.endswith("set a duration such as 4s") or "is not a duration" in message


def test_unsupported_version(write_story):
    path = write_story("storyreel: 2\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n")
    assert only_problem(path) == (
        f"{where(path, '2')}: storyreel: unsupported storyboard format version 2; "
        "this storyreel reads version 1; write `storyreel: 1`"
    )


def test_missing_version(write_story):
    path = write_story("title: t\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n")
    assert (
        only_problem(path) == f"{path}:1:1: storyreel: `storyreel` is required; add `storyreel: 1` at the top"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "1:1: the storyboard is empty; start from a template: storyreel new story.yaml"),
        (
            "# only a comment\n",
            "1:1: the storyboard is empty; start from a template: storyreel new story.yaml",
        ),
        (
            "storyreel: 1\nscenes: []\n",
            "2:9: scenes: there are no scenes; add at least one scene with a shot",
        ),
        (
            "storyreel: 1\nscenes: [{id: a, shots: []}]\n",
            "2:25: scenes[0].shots: there are no shots; add at least one shot",
        ),
        ("- just\n- a list\n", "1:1: a storyboard must be a mapping of keys"),
    ],
)
def test_empty_storyboards(write_story, text, expected):
    path = write_story(text)
    assert only_problem(path).startswith(f"{path}:{expected}")


def test_invalid_resolution_suggests_a_valid_one(write_story):
    path = write_story(
        "storyreel: 1\ngeneration:\n  resolution: 1000x500\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n"
    )
    assert only_problem(path) == (
        f"{where(path, '1000x500')}: generation.resolution: 1000x500 is not a valid size: both sides must be multiples of 16 "
        "and at least 64; use 992x496"
    )


def test_frames_settings_must_be_4k_plus_1(write_story):
    path = write_story(
        "storyreel: 1\ngeneration: {base_num_frames: 96}\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n"
    )
    assert only_problem(path) == (
        f"{where(path, '96')}: generation.base_num_frames: 96 is not of the form 4k+1 (the video VAE encodes 1 + 4k frames); "
        "use 93 or 97; 97, 77 and 57 are usual"
    )


def test_unknown_transition(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - {id: x, prompt: p, duration: 1}
              - {id: y, prompt: p, duration: 1, transition: wipe}
        """
    )
    assert only_problem(path) == (
        f"{where(path, 'wipe')}: scenes[0].shots[1].transition: 'wipe' is not allowed; use 'continue', 'cut', 'dissolve' or 'fade'"
    )


def test_unknown_references_are_all_reported_with_suggestions(write_story):
    path = write_story(
        """\
        storyreel: 1
        characters:
          swan: {description: a white swan}
        scenes:
          - id: lake
            after: [reed]
            shots:
              - id: glide
                prompt: "{{ swann }} swims"
                duration: 2s
                characters: [swam]
              - id: dip
                prompt: hi
                duration: 2s
                continues: glid
          - id: reeds
            shots: [{id: heron, prompt: p, duration: 2s}]
        """
    )
    assert problems_of(path) == [
        f"{where(path, 'reed]')}: scenes[0].after[0]: unknown scene 'reed'; did you mean 'reeds'?",
        f"{where(path, chr(34) + '{{ swann')}: scenes[0].shots[0].prompt: unknown character 'swann' in {{{{ swann }}}}; did you mean 'swan'? "
        "(define it under the top-level `characters:`)",
        f"{where(path, 'swam]')}: scenes[0].shots[0].characters[0]: unknown character 'swam'; did you mean 'swan'? "
        "(define characters under the top-level `characters:`)",
        f"{where(path, 'glid', 2)}: scenes[0].shots[1].continues: unknown shot 'glid'; did you mean 'glide'?",
    ]


def test_duplicate_ids_and_duplicate_keys(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - {id: x, prompt: p, duration: 1}
              - {id: x, prompt: p, duration: 1}
          - id: a
            shots:
              - id: z
                prompt: p
                prompt: q
                duration: 1
        """
    )
    assert problems_of(path) == [
        f"{where(path, 'prompt', 4)}: scenes[1].shots[0].prompt: 'prompt' is written twice in the same mapping; keep one of them",
    ]
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - {id: x, prompt: p, duration: 1}
              - {id: x, prompt: p, duration: 1}
          - id: a
            shots: [{id: z, prompt: p, duration: 1}]
        """
    )
    assert problems_of(path) == [
        f"{where(path, 'id: x', 2, offset=4)}: scenes[0].shots[1].id: shot id 'x' is already used by scenes[0].shots[0]; "
        "give every shot in the film a unique id",
        f"{where(path, 'id: a', 2, offset=4)}: scenes[1].id: scene id 'a' is already used by scenes[0]; give every scene a unique id",
    ]


def test_ids_must_be_usable_as_file_names(write_story):
    path = write_story(
        "storyreel: 1\nscenes: [{id: a, shots: [{id: 'my shot/1', prompt: p, duration: 1}]}]\n"
    )
    assert only_problem(path) == (
        f"{where(path, chr(39) + 'my shot/1')}: scenes[0].shots[0].id: id 'my shot/1' may hold only letters, digits, '-', '_' and '.'; "
        "it names the shot's file, e.g. `id: swan-glide`"
    )


def test_scene_cycle_names_the_scenes(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            after: [c]
            shots: [{id: x, prompt: p, duration: 1}]
          - id: b
            after: [a]
            shots: [{id: y, prompt: p, duration: 1}]
          - id: c
            after: [b]
            shots: [{id: z, prompt: p, duration: 1}]
        """
    )
    message = only_problem(path)
    assert "scenes form a cycle: " in message
    assert {"a", "b", "c"} <= set(message.split("cycle: ")[1].split(";")[0].split(" -> "))
    assert message.endswith("remove one of these `after:` entries so that the scenes can be put in order")


def test_continues_cycle(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - {id: x, prompt: p, duration: 2, continues: y}
              - {id: y, prompt: p, duration: 2, continues: x}
        """
    )
    message = only_problem(path)
    assert "shots continue each other in a cycle" in message and message.startswith(f"{path}:")


def test_the_first_shot_of_the_film_cannot_continue(write_story):
    path = write_story(
        "storyreel: 1\nscenes:\n  - id: a\n    shots: [{id: x, prompt: p, duration: 1, transition: continue}]\n"
    )
    assert only_problem(path) == (
        f"{where(path, 'continue' + chr(125))}: scenes[0].shots[0].transition: shot 'x' opens the film, so there is nothing before it to "
        "continue; set `transition: cut` (or fade), or `continues: <shot id>`"
    )


def test_image_on_a_continuing_shot(write_story, tmp_path):
    Image.new("RGB", (16, 16), "grey").save(tmp_path / "heron.png")
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - {id: x, prompt: p, duration: 2}
              - id: y
                prompt: p
                duration: 2
                image: heron.png
        """
    )
    assert only_problem(path) == (
        f"{where(path, 'image:')}: scenes[0].shots[1].image: shot 'y' continues the previous footage, so it cannot also start "
        "from an image; remove `image:`, or set `transition: cut` (or dissolve/fade) to start the shot fresh"
    )


def test_missing_and_escaping_assets(write_story, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    Image.new("RGB", (16, 16), "grey").save(outside)
    path = write_story(
        f"""\
        storyreel: 1
        audio: {{music: score.mp3}}
        scenes:
          - id: a
            shots:
              - {{id: x, prompt: p, duration: 2, image: {outside}}}
        """
    )
    assert problems_of(path) == [
        f"{where(path, 'score.mp3')}: audio.music: file 'score.mp3' not found (looked for {tmp_path / 'score.mp3'}); "
        "check the path; it is relative to the storyboard's folder",
        f"{where(path, str(outside))}: scenes[0].shots[0].image: '{outside}' is outside the storyboard's folder {tmp_path}; "
        "move the file into that folder, or pass --allow-outside",
    ]
    tone = "sine=duration=1"
    subprocess.run(
        [get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", tone, str(tmp_path / "score.mp3")], check=True
    )
    board = load_storyboard(path, allow_outside=True)
    assert board.resolve_asset(board.scenes[0].shots[0].image) == outside


def test_length_is_required_once(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - {id: x, prompt: p}
              - {id: y, prompt: p, duration: 2, frames: 49}
        """
    )
    assert problems_of(path) == [
        f"{where(path, chr(123) + 'id: x')}: scenes[0].shots[0]: shot 'x' has no length; add `duration: 4s` (or `frames: 97`)",
        f"{where(path, 'frames: 49')}: scenes[0].shots[1].frames: both `duration` and `frames` are set; keep one of them",
    ]


def test_film_wide_settings_cannot_change_per_shot(write_story):
    path = write_story(
        "storyreel: 1\nscenes:\n  - id: a\n    shots: [{id: x, prompt: p, duration: 1, generation: {fps: 30}}]\n"
    )
    assert only_problem(path) == (
        f"{where(path, 'fps: 30')}: scenes[0].shots[0].generation.fps: `fps` applies to the whole film and cannot change per "
        "scene or shot; set it once under the top-level `generation:` and remove it here"
    )


def test_camera_vocabulary(write_story):
    board = Storyboard.model_validate(
        {
            "storyreel": 1,
            "scenes": [
                {
                    "id": "a",
                    "shots": [
                        {
                            "id": "x",
                            "prompt": "p",
                            "duration": 1,
                            "camera": {
                                "shot": "Close up shot",
                                "angle": "high angle",
                                "move": "slow dolly in",
                            },
                        }
                    ],
                }
            ],
        }
    )
    camera = board.scenes[0].shots[0].camera
    assert (camera.shot, camera.angle) == ("close-up", "high")
    path = write_story(
        "storyreel: 1\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1, camera: {shot: closup, move: wobble}}]}]\n"
    )
    found = problems_of(path)
    assert found[0].startswith(
        f"{where(path, 'closup')}: scenes[0].shots[0].camera.shot: unknown shot type 'closup'"
    )
    assert "did you mean 'close-up'?" in found[0]
    assert found[1].startswith(
        f"{where(path, 'wobble')}: scenes[0].shots[0].camera.move: no camera move recognised in 'wobble'"
    )


def test_anchors_and_merge_keys_work(write_story):
    path = write_story(
        """\
        storyreel: 1
        scenes:
          - id: a
            shots:
              - &base {id: x, prompt: a calm lake, duration: 2s, camera: {shot: wide}}
              - <<: *base
                id: y
        """
    )
    board = load_storyboard(path)
    y = board.scenes[0].shots[1]
    assert (y.id, y.prompt, y.camera.shot) == ("y", "a calm lake", "wide")


def test_vars_only_in_templates(write_story):
    path = write_story(
        "storyreel: 1\nvars: {n: 1}\nscenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n"
    )
    assert only_problem(path) == (
        f"{where(path, 'vars')}: vars: `vars:` is only read in a templated storyboard; rename the file to end in .yaml.j2, "
        "or remove `vars:`"
    )


TEMPLATE = """\
storyreel: 1
vars:
  hero: fox
  moments: [wakes, hunts, sleeps]
characters:
  fox: {description: a red fox with a white-tipped tail}
scenes:
  - id: day
    shots:
{% for moment in moments %}
      - id: {{ hero }}-{{ loop.index }}
        prompt: "{{ '{{' }} {{ hero }} {{ '}}' }} {{ moment }}, {{ fox }} is alert"
        duration: 2s
{% endfor %}
"""


def test_templated_storyboard(write_story):
    path = write_story(TEMPLATE, name="day.yaml.j2")
    board = load_storyboard(path)
    shots = [shot for _, _, _, shot in board.iter_shots()]
    assert [s.id for s in shots] == ["fox-1", "fox-2", "fox-3"]
    # {{ fox }} survives the template pass and becomes the character's description
    assert board.expanded_prompt(shots[1]) == (
        "a red fox with a white-tipped tail hunts, a red fox with a white-tipped tail is alert"
    )
    board = load_storyboard(path, template_vars={"moments": ["runs"]})
    assert [shot.id for _, _, _, shot in board.iter_shots()] == ["fox-1"]


def test_template_errors_name_the_line(write_story):
    path = write_story(TEMPLATE.replace("{{ moment }},", "{{ momentt }},"), name="day.yaml.j2")
    assert only_problem(path) == (
        f"{path}:12:template: undefined variable: 'momentt' is undefined; "
        "declare it under `vars:` or pass it with --var NAME=VALUE"
    ).replace(":12:template", ":12: template")
    with pytest.raises(StoryboardError, match="unknown template variable"):
        load_storyboard(write_story(TEMPLATE, name="b.yaml.j2"), template_vars={"villain": "wolf"})
    path = write_story(TEMPLATE.replace("{% endfor %}", ""), name="c.yaml.j2")
    assert "template syntax error" in only_problem(path)


def test_template_is_sandboxed(write_story):
    path = write_story(
        "storyreel: 1\ntitle: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n"
        "scenes: [{id: a, shots: [{id: x, prompt: p, duration: 1}]}]\n",
        name="evil.yaml.j2",
    )
    assert "template error" in only_problem(path)


def test_built_in_code_the_same_checks_apply():
    board = Storyboard.model_validate(
        {
            "storyreel": 1,
            "scenes": [{"id": "a", "shots": [{"id": "x", "prompt": "{{ ghost }}", "duration": 1}]}],
        }
    )
    with pytest.raises(StoryboardError) as caught:
        plan_film(board)
    assert str(caught.value) == (
        "<storyboard>: scenes[0].shots[0].prompt: unknown character 'ghost' in {{ ghost }}; "
        "there are no characters defined (define it under the top-level `characters:`)"
    )


# --- reading YAML the way a person means it, within bounds ------------------------------------------------------

ONE_SHOT = "storyreel: 1\nscenes:\n  - id: a\n    shots:\n"


def test_yaml_1_1_surprises_stay_what_was_written(write_story):
    path = write_story(
        ONE_SHOT + "      - {id: yes, prompt: on, duration: 0:45, caption: 11:58}\n"
        "      - {id: 007, prompt: 0x1F, frames: 49, caption: 1.50, transition: cut}\n"
        "      - {id: off, prompt: 2024-05-01, duration: 4, caption: 12, transition: cut}\n"
    )
    board = load_storyboard(path)
    first, second, third = (shot for _, _, _, shot in board.iter_shots())
    assert (first.id, first.prompt, first.duration, first.caption) == ("yes", "on", 45.0, "11:58")
    assert (second.id, second.prompt, second.caption) == ("007", "0x1F", "1.50")
    assert (third.id, third.prompt, third.caption) == ("off", "2024-05-01", "12")


def test_a_hex_looking_resolution_is_text_and_refused_as_a_size(write_story):
    path = write_story(
        "storyreel: 1\ngeneration: {resolution: 0x0}\n"
        + ONE_SHOT[13:]
        + "      - {id: x, prompt: p, duration: 1}\n"
    )
    assert only_problem(path) == (
        f"{where(path, '0x0')}: generation.resolution: 0x0 is not a valid size: both sides must be multiples of 16 "
        "and at least 64; use 64x64"
    )


def test_true_in_a_text_field_asks_for_quotes(write_story):
    path = write_story(ONE_SHOT + "      - {id: x, prompt: p, duration: 1, caption: true}\n")
    assert only_problem(path) == (
        f"{where(path, 'true')}: scenes[0].shots[0].caption: true was read as true/false, not as text; "
        'write it in quotes: "true"'
    )


def test_minutes_and_seconds_durations():
    assert parse_duration("1:30") == 90.0 and parse_duration("0:04.5") == 4.5
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("1:75")


def test_billion_laughs_is_refused_at_the_alias_that_expands_too_far(write_story):
    laughs = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
        f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    path = write_story(laughs + ONE_SHOT + "      - {id: x, prompt: p, duration: 1}\n")
    assert only_problem(path) == (
        f"{path}:6:8: aliases (*name) here expand the document past 100,000 copied values; write the values out, "
        "or reuse fewer anchors; a storyboard never needs this many copies"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "storyreel: 1\nx: " + "[" * 100 + "]" * 100 + "\n",
            "2:67: the document nests more than 64 levels deep",
        ),
        ("storyreel: 1\n---\nstoryreel: 1\n", "2:1: a storyboard is a single YAML document"),
        (
            "storyreel: !!python/object:os.system 1\n",
            "1:12: the tag !!python/object:os.system is not supported",
        ),
        ("storyreel: 1\ntitle: *nowhere\n", "2:8: *nowhere names no anchor; define it first with &nowhere"),
        ("storyreel: 1\nscenes:\n\t- id: a\n", "3:1: YAML syntax error: while scanning for the next token"),
    ],
)
def test_documents_that_cannot_be_read_are_positioned_errors(write_story, text, expected):
    path = write_story(text)
    assert only_problem(path).startswith(f"{path}:{expected}")


@pytest.mark.parametrize(
    ("shot", "expected"),
    [
        (
            "{id: x, prompt: p, frames: true}",
            "frames: true was read as true/false, not as a number; write a number",
        ),
        (
            "{<<: 5, id: x, prompt: p, duration: 1}",
            "scenes[0].shots[0]: `<<:` merges a mapping into this one",
        ),
        ("{id: x, prompt: p, frames: " + "9" * 5000 + "}", "exceeded maximum size"),
        ("{id: x, prompt: p, duration: 1, caption: " + "x" * 5000 + "}", None),
    ],
)
def test_odd_values_are_refused_or_read_as_written(write_story, shot, expected):
    path = write_story(ONE_SHOT + "      - " + shot + "\n")
    if expected is None:
        assert load_storyboard(path).scenes[0].shots[0].caption == "x" * 5000
        return
    message = only_problem(path)
    assert expected in message and len(message) < 400, message


def test_a_huge_file_is_refused_before_it_is_parsed(write_story):
    text = "storyreel: 1\ntitle: '" + "x" * (9 * 1024 * 1024) + "'\n"
    path = write_story(text)
    assert only_problem(path) == (
        f"{path}: the file holds {len(text):,} characters, more than the 8,388,608 a storyboard may have; "
        "split the film into several storyboards"
    )


def test_merge_keys_keep_the_positions_of_what_they_merge(write_story):
    path = write_story(
        ONE_SHOT + "      - &base {id: x, prompt: p, duration: 4s, camera: {shot: closup}}\n"
        "      - id: y\n        <<: *base\n        duration: 2s\n"
    )
    found = problems_of(path)
    # the misspelt shot type is written once, on the anchor's line: both shots point there
    assert [p.split(": ")[0] for p in found] == [where(path, "closup")] * 2
    assert [p.split(": ")[1] for p in found] == [
        "scenes[0].shots[0].camera.shot",
        "scenes[0].shots[1].camera.shot",
    ]


def test_positions_inside_nested_anchors_are_replayed_by_an_alias(write_story):
    # Each position is logged once, however many anchored collections are around it.
    path = write_story(
        "storyreel: 1\nscenes:\n  - &outer\n    id: a\n    shots:\n"
        "      - &inner {id: x, prompt: p, duration: 4s, camera: {shot: closup}}\n"
        "  - <<: *outer\n    id: b\n    shots: [{<<: *inner, id: y}]\n"
    )
    found = problems_of(path)
    assert [p.split(": ")[:2] for p in found] == [
        [where(path, "closup"), "scenes[0].shots[0].camera.shot"],
        [where(path, "closup"), "scenes[1].shots[0].camera.shot"],
    ]


def test_an_anchored_collection_too_large_to_copy_is_refused_at_its_alias(write_story):
    # Nested anchors around a long list: the list is logged once and only while it could still be copied.
    nested = "".join(f"&a{n} {{k: " for n in range(60)) + "[" + "1, " * 100_001 + "1]" + "}" * 60
    path = write_story(
        f"storyreel: 1\nx: {nested}\ny: *a59\n" + ONE_SHOT[13:] + "      - {id: x, prompt: p, duration: 1}\n"
    )
    assert only_problem(path) == (
        f"{path}:3:4: aliases (*name) here expand the document past 100,000 copied values; write the values out, "
        "or reuse fewer anchors; a storyboard never needs this many copies"
    )


def test_merge_keys_nested_in_merge_keys_are_bounded_like_aliases(write_story):
    # Each level records what it merges again: twenty levels of a thousand values were a billion positions.
    nested = "{<<: " * 22 + "{k: [" + "1, " * 1000 + "1]}" + "}" * 22
    path = write_story(f"storyreel: 1\nx: {nested}\n")
    assert "merge keys (<<:) here expand the document past 100,000 copied values" in only_problem(path)


def test_a_character_yaml_refuses_is_placed_after_text_that_is_not_ascii(write_story):
    # libyaml counts bytes of UTF-8, a line counts characters: "é" is two of one and one of the other.
    path = write_story('storyreel: 1\ntitle: "ééééé\x07"\n')
    assert only_problem(path) == (
        f"{path}:2:14: the file holds the character U+0007 (a control character), which YAML does not allow; "
        "remove it; a storyboard is plain text"
    )


def test_a_byte_order_mark_does_not_move_where_a_bad_byte_is(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_bytes(b"\xef\xbb\xbfstoryreel: 1\ntitle: caf\xe9\n")  # a UTF-8 mark, then Latin-1
    assert only_problem(path) == (
        f"{path}:2:11: the file is not UTF-8 text: byte 0xe9 here is not a character (is it a binary file, or "
        "saved as Latin-1?); save the storyboard as UTF-8 text"
    )


def test_a_tagged_value_that_is_not_of_its_tag_names_its_field(write_story):
    path = write_story(
        "storyreel: 1\ntitle: !!bool yes\n" + ONE_SHOT[13:] + "      - {id: x, prompt: p, duration: 1}\n"
    )
    assert only_problem(path) == f"{path}:2:8: title: 'yes' is not a !!bool; remove the tag or fix the value"


@pytest.mark.parametrize(
    ("keys", "twice"),
    [("1: a\n1.0: b\n", None), ("1: a\ntrue: b\n", None), ("1: a\n01: b\n", "01"), ("k: a\n'k': b\n", "k")],
)
def test_keys_are_told_apart_by_type_and_value_and_shown_as_written(write_story, keys, twice):
    path = write_story("storyreel: 1\n" + keys + ONE_SHOT[13:] + "      - {id: x, prompt: p, duration: 1}\n")
    found = [p for p in problems_of(path) if "written twice" in p]
    if twice is None:
        assert found == []
    else:
        assert found == [
            f"{path}:3:1: {twice}: '{twice}' is written twice in the same mapping; keep one of them"
        ]


def test_a_variable_of_bytes_that_are_not_utf8_is_an_error_not_a_crash():
    from storyreel.templating import parse_var

    with pytest.raises(StoryboardError, match=r"U\+DCFF, which is not a character"):
        parse_var("hero=\udcff")  # how Python hands over a command-line byte that is not UTF-8


# --- prompts hold {{ character }} references only ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ("{{ 7*7 }} swans", "{{ 7*7 }}"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "{% for i in range(100000) %}",
        ),
        ("{{ 'x' * 1000000000 }}", "{{ 'x' * 1000000000 }}"),
        ("a swan {# a comment #}", "{# a comment #}"),
        ("{{- swan }} glides", "{{- swan }}"),
        ("{{ swan", "{{ swan"),
    ],
)
def test_prompts_only_hold_character_references(write_story, prompt, fragment):
    text = (
        "storyreel: 1\ncharacters:\n  swan: {description: a white swan}\nscenes:\n  - id: a\n    setting: '{{ swan }}'\n"
        "    shots:\n      - id: x\n        prompt: "
        + repr(prompt).replace("\\\\", "\\")
        + "\n        duration: 1\n"
    )
    path = write_story(text)
    assert only_problem(path) == (
        f"{path}:9:17: scenes[0].shots[0].prompt: {fragment!r} is not a character reference: prompts and settings "
        "only hold {{ character }} references; write a character as {{ name }} with a name from `characters:`, or "
        "remove the braces (expressions and loops belong in a .yaml.j2 template)"
    )


def test_references_expand_as_before_and_settings_are_read_the_same_way(write_story):
    path = write_story(
        'storyreel: 1\ncharacters:\n  swan: {description: "a  white\\n swan"}\nscenes:\n  - id: a\n'
        "    setting: 'a lake {{swan}} knows, {% if x %}'\n    shots:\n"
        "      - {id: x, prompt: '{{swan}} and {{  swan  }}}} }} {', duration: 1}\n"
    )
    assert only_problem(path).startswith(
        f"{path}:6:14: scenes[0].setting: '{{% if x %}}' is not a character reference"
    )
    path.write_text(path.read_text().replace(", {% if x %}", ""))
    board = load_storyboard(path)
    assert board.expanded_prompt(board.scenes[0].shots[0]) == "a white swan and a white swan}} }} {"
    assert plan_film(board).shots[0].setting == "a lake a white swan knows"


@pytest.mark.parametrize("name", ["none", "self", "true", "False", "loop", "range", "namespace"])
def test_character_names_templates_cannot_reference_are_refused(write_story, name):
    path = write_story(
        f"storyreel: 1\ncharacters:\n  '{name}': {{description: a ghost}}\nscenes:\n  - id: a\n    shots:\n"
        f"      - {{id: x, prompt: '{{{{ {name} }}}} walks', duration: 1, characters: ['{name}']}}\n"
    )
    assert only_problem(path) == (
        f"{path}:3:3: characters.{name}: a character cannot be called '{name}': templates read {{{{ {name} }}}} as "
        f"their own '{name}'; rename it, e.g. '{name}_character' or a name that says who it is"
    )


def test_a_boolean_character_name_is_reported_as_such(write_story):
    path = write_story(
        "storyreel: 1\ncharacters:\n  true: {description: a}\n"
        + ONE_SHOT[13:]
        + "      - {id: x, prompt: p, duration: 1}\n"
    )
    assert only_problem(path) == (
        f'{path}:3:3: characters.true: true was read as true/false, not as text; write it in quotes: "true"'
    )


@pytest.mark.parametrize("field", ["prompt", "description"])
def test_whitespace_only_prompts_and_descriptions_are_refused(write_story, field):
    path = write_story(
        "storyreel: 1\ncharacters:\n  swan: {description: 'a swan'}\nscenes:\n  - id: a\n    shots:\n"
        "      - {id: x, prompt: '{{ swan }}', duration: 1}\n".replace(
            "'a swan'" if field == "description" else "'{{ swan }}'", "'  \\t '".replace("\\t", "\t")
        )
    )
    what = {"prompt": "describe what happens in the shot", "description": "describe how the character looks"}
    message = only_problem(path)
    assert message.endswith(f"the {field} is empty (only spaces); {what[field]}"), message


def test_an_expanded_prompt_is_bounded(write_story):
    path = write_story(
        "storyreel: 1\ncharacters:\n  swan: {description: '"
        + "x" * 30_000
        + "'}\nscenes:\n  - id: a\n    shots:\n"
        "      - {id: x, prompt: '{{ swan }} {{ swan }} {{ swan }} {{ swan }}', duration: 1}\n"
    )
    assert only_problem(path) == (
        f"{path}:7:25: scenes[0].shots[0].prompt: filled in with the character descriptions it is 120,003 "
        "characters, more than the 100,000 a prompt may have; shorten it or the descriptions (the video model's "
        "text encoder reads only about 512 tokens)"
    )


def test_the_film_s_expanded_prompts_are_bounded_together(write_story):
    shots = "".join(
        f"      - {{id: s{i}, prompt: '{{{{ swan }}}} {{{{ swan }}}}', duration: 1}}\n" for i in range(300)
    )
    path = write_story(
        "storyreel: 1\ncharacters:\n  swan: {description: '"
        + "x" * 40_000
        + "'}\nscenes:\n  - id: a\n    shots:\n"
        + shots
    )
    assert only_problem(path) == (
        f"{path}:256:28: scenes[0].shots[249].prompt: with this one, the film's prompts and settings, filled in, add "
        "up to more than 20,000,000 characters; reference long character descriptions less often, or split the film"
    )


# --- upper bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            "duration: 36000s",
            "duration: 36000s is longer than the 60s a shot may last; split it into shots of up to 60s",
        ),
        ("duration: 10min", "duration: 600s is longer than the 60s a shot may last"),
        (
            "frames: 100000000",
            "frames: 100000000 is out of bounds: `frames` must be at most 1457; split it into shots",
        ),
        ("duration: .inf", "duration: .inf is not a finite number of seconds; set a duration such as 4s"),
        ("duration: .nan", "duration: .nan is not a finite number of seconds; set a duration such as 4s"),
        ("duration: 1e999", "duration: 1e999 is not a finite number of seconds"),
        (
            "transition_duration: 30s",
            "transition_duration: 30s is longer than the 10s a dissolve or fade may last",
        ),
        (
            "generation: {base_num_frames: 1001}",
            "generation.base_num_frames: 1001 is out of bounds: `base_num_frames` "
            "must be at most 257; use 97 (540P) or 121 (720P)",
        ),
        (
            "generation: {guidance_scale: .inf}",
            "generation.guidance_scale: .inf is not a finite number; use 6.0",
        ),
        (
            "generation: {ar_step: 1000000}",
            "generation.ar_step: 1000000 is out of bounds: `ar_step` must be at most 100",
        ),
    ],
)
def test_upper_bounds_are_refused_with_the_bound_and_a_fix(write_story, setting, expected):
    length = "" if setting.startswith(("duration", "frames")) else "        duration: 1\n"
    path = write_story(ONE_SHOT + "      - id: x\n        prompt: p\n        " + setting + "\n" + length)
    message = only_problem(path)
    assert expected in message, message


@pytest.mark.parametrize(
    ("resolution", "fix"),
    [
        ("100000x100000", "use 720P (1280x720) or 540P (960x544)"),
        ("1920x1920", "use 720P (1280x720) or 540P (960x544)"),
        ("4096x64", "use 720P (1280x720) or 540P (960x544)"),
    ],
)
def test_resolution_is_bounded(write_story, resolution, fix):
    path = write_story(
        f"storyreel: 1\ngeneration: {{resolution: {resolution}}}\n"
        + ONE_SHOT[13:]
        + "      - {id: x, prompt: p, duration: 1}\n"
    )
    message = only_problem(path)
    assert "is larger than a film may be: at most 1920 pixels a side and 2,088,960 pixels in all" in message
    assert message.endswith(fix + ", the sizes SkyReels-V2 is trained at")
    assert load_storyboard(write_story(path.read_text().replace(resolution, "1920x1088"), "ok.yaml"))


def test_frames_beyond_the_bound_at_a_high_frame_rate_are_refused_in_the_plan(write_story):
    path = write_story(
        "storyreel: 1\ngeneration: {fps: 120}\n"
        + ONE_SHOT[13:]
        + "      - {id: x, prompt: p, duration: 30s}\n"
    )
    assert only_problem(path) == (
        f"{where(path, '30s')}: scenes[0].shots[0].duration: shot 'x': 30s at 120 fps is 3600 frames, more than "
        "the 1457 a shot may have; split it into shots of up to 12.14s at 120 fps that continue each other "
        "(`transition: continue`)"
    )


# --- every problem in one pass --------------------------------------------------------------------------------


def test_every_problem_is_reported_in_one_pass(write_story):
    path = write_story(
        """\
        storyreel: 1
        generation: {overlap_history: 97, fps: 0}
        characters:
          swan: {description: a white swan}
          self: {description: a mirror}
        scenes:
          - id: a
            after: [nowhere]
            shots:
              - {id: x, prompt: "{{ swann }} glides", duraton: 4s, camera: {shot: closup}}
              - {id: y, prompt: "{{ swan }} and {{ self }}", duration: 2s, continues: z}
              - {id: 'bad id', prompt: p, duration: 2s, transition: wipe}
              - {id: w, prompt: p, continues: 'bad id'}
        """
    )
    found = problems_of(path)
    assert [p.split(": ")[1] for p in found] == [
        "generation.overlap_history",  # a plan check, found although the file has format errors too
        "generation.fps",
        "characters.self",
        "scenes[0].after[0]",
        "scenes[0].shots[0].prompt",
        "scenes[0].shots[0].duraton",
        "scenes[0].shots[0].camera.shot",
        "scenes[0].shots[1].continues",
        "scenes[0].shots[2].id",
        "scenes[0].shots[2].transition",
        "scenes[0].shots[3]",  # no length
    ]
    # `continues: 'bad id'` names a shot whose id is refused: that is not also an unknown shot
    assert not any("unknown shot 'bad id'" in p for p in found)


def test_a_long_film_lists_only_some_known_ids(write_story):
    shots = "".join(f"      - {{id: s{i}, prompt: p, duration: 1}}\n" for i in range(30))
    path = write_story(ONE_SHOT + shots + "      - {id: last, prompt: p, duration: 1, continues: zzzzz}\n")
    assert only_problem(path).endswith(
        "unknown shot 'zzzzz'; known shot ids: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 and 21 more"
    )


def test_a_long_film_still_suggests_close_ids(write_story):
    shots = "".join(f"      - {{id: shot-{i}, prompt: p, duration: 1}}\n" for i in range(1200))
    path = write_story(
        ONE_SHOT + shots + "      - {id: heron-dive, prompt: p, duration: 1}\n"
        "      - {id: last, prompt: p, duration: 1, continues: heron-dvie}\n"
    )
    assert only_problem(path).endswith("unknown shot 'heron-dvie'; did you mean 'heron-dive'?")
