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
