"""The bundled enhancers, through the public API: `template` writes SkyReels-style captions, `none` passes prompts on."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storyreel import Storyboard, plan_film
from storyreel.camera import MOVES, SHOT_TYPES, normalise_shot_type
from storyreel.enhance import EnhancedPrompt, film_context, open_enhancer, shot_contexts
from storyreel.storyboard import EnhancerSettings

HERON = "a tall grey heron with a long yellow beak"


def marsh(
    *shots: dict[str, Any], style: str | None = "watercolour animation, soft pastel palette"
) -> Storyboard:
    """A one-scene film in a marsh at dawn with a heron character; each shot 2 seconds unless it says otherwise."""
    return Storyboard.model_validate(
        {
            "storyreel": 1,
            "title": "Heron",
            "style": style,
            "characters": {
                "heron": {"description": HERON},
                "mia": {"description": "a young violinist in a red coat"},
            },
            "scenes": [
                {
                    "id": "marsh",
                    "setting": "a marsh of tall reeds at dawn",
                    "shots": [{"duration": 2, **shot} for shot in shots],
                }
            ],
        }
    )


def enhance(board: Storyboard, backend: str = "template", max_words: int = 120) -> dict[str, EnhancedPrompt]:
    enhancer = open_enhancer(backend, EnhancerSettings(backend=backend, max_words=max_words))
    prompts = enhancer.enhance(film_context(board), shot_contexts(board, plan_film(board)))
    return {prompt.shot_id: prompt for prompt in prompts}


def caption(shot: dict[str, Any], **options: Any) -> str:
    return enhance(marsh({"id": "only", **shot}), **options)["only"].prompt


def sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)


WATCH = {
    "id": "watch",
    "prompt": "the heron watches the water",
    "camera": {"shot": "close-up", "angle": "low"},
}
WATCH["characters"] = ["heron"]
STRIKE = {"id": "strike", "prompt": "{{ heron }} strikes at a fish", "camera": {"move": "fast tilt down"}}


def test_template_caption_for_a_small_fixed_film():
    enhanced = enhance(marsh(WATCH, STRIKE))

    assert enhanced["watch"] == EnhancedPrompt(
        "watch",
        "Close-up from a low angle: the heron watches the water. "
        "The heron is a tall grey heron with a long yellow beak. "
        "The setting is a marsh of tall reeds at dawn. "
        "Soft, warm dawn light and a calm, hushed atmosphere. "
        "Visual style: watercolour animation, soft pastel palette. "
        "The camera slowly pushes in.",
        source="template",
        model=None,
    )
    assert enhanced["strike"].prompt == (
        "Medium shot: a tall grey heron with a long yellow beak strikes at a fish. "
        "The action continues smoothly from the previous moment. "
        "The setting is a marsh of tall reeds at dawn. "
        "Soft, warm dawn light and a calm, hushed atmosphere. "
        "Visual style: watercolour animation, soft pastel palette. "
        "The camera quickly tilts down."
    )


def test_prompts_come_back_one_per_shot_in_timeline_order():
    enhanced = enhance(marsh(WATCH, STRIKE, {"id": "rise", "prompt": "mist rises", "transition": "cut"}))
    assert list(enhanced) == ["watch", "strike", "rise"]
    assert all(prompt.source == "template" and prompt.model is None for prompt in enhanced.values())


@pytest.mark.parametrize("shot_type", SHOT_TYPES)
def test_every_shot_type_opens_its_caption_in_words_that_read_back_as_it(shot_type):
    opening = caption({"prompt": "a swan glides past", "camera": {"shot": shot_type}}).split(":")[0]
    assert normalise_shot_type(opening) == shot_type


def test_shot_type_and_angle_aliases_are_captioned_as_the_words_they_stand_for():
    text = caption(
        {"prompt": "a swan glides past", "camera": {"shot": "establishing", "angle": "bird's-eye"}}
    )
    assert text.startswith("Extreme wide shot from directly overhead: a swan glides past.")


def test_a_prompt_that_opens_with_its_own_shot_type_gets_no_other():
    assert caption({"prompt": "Close-up of a swan gliding past"}).startswith(
        "Close-up of a swan gliding past."
    )
    assert caption({"prompt": "a swan glides past"}).startswith("Medium shot: a swan glides past.")


@pytest.mark.parametrize(
    ("camera", "motion"),
    [
        (None, "The camera slowly pushes in."),
        ({"shot": "close-up"}, "The camera slowly pushes in."),
        ({"shot": "wide"}, "The camera slowly pans across the scene."),
        ({"shot": "extreme wide", "angle": "high"}, "The camera slowly pans across the scene."),
    ],
)
def test_a_static_prompt_without_a_camera_move_gets_a_gentle_one(camera, motion):
    shot = {"prompt": "an old lighthouse on a cliff above the sea", **({"camera": camera} if camera else {})}
    assert caption(shot).endswith(" " + motion)


@pytest.mark.parametrize(
    "prompt",
    [
        "waves crash against the cliff",
        "a swan glides past",
        "gulls are flying over the lighthouse",
        "leaves fell",
    ],
)
def test_a_moving_prompt_gets_no_added_camera_motion(prompt):
    text = caption({"prompt": prompt, "camera": {"shot": "wide"}})
    assert "camera" not in text.lower()


def test_an_explicit_static_camera_is_respected():
    text = caption({"prompt": "an old lighthouse on a cliff", "camera": {"shot": "wide", "move": "static"}})
    assert text.endswith(" The camera holds still.")
    assert "pans" not in text and "pushes" not in text


@pytest.mark.parametrize("move", MOVES)
def test_every_camera_move_is_said_in_a_sentence(move):
    last = sentences(caption({"prompt": "a swan glides past", "camera": {"move": f"slow {move}"}}))[-1]
    assert re.fullmatch(r"The (handheld )?camera [a-z ,'-]+\.", last), last


def test_camera_speed_words_become_adverbs():
    assert caption({"prompt": "a swan", "camera": {"move": "pan left and tilt up"}}).endswith(
        " The camera pans left and tilts up."
    )
    assert caption({"prompt": "a swan", "camera": {"move": "subtle orbit"}}).endswith(
        " The camera subtly orbits around the subject."
    )
    assert caption({"prompt": "a swan", "camera": {"move": "handheld push-in"}}).endswith(
        " The handheld camera pushes in."
    )


def test_characters_descriptions_are_woven_in_once():
    # Named by a {{ reference }}: the description is already there and is not repeated.
    assert caption({"prompt": "{{ heron }} wades", "characters": ["heron"]}).count(HERON) == 1
    # Named by a common noun, a proper name, or not at all.
    assert "The heron is " + HERON + "." in caption({"prompt": "a heron wades", "characters": ["heron"]})
    assert "Mia is a young violinist in a red coat." in caption(
        {"prompt": "Mia plays", "characters": ["mia"]}
    )
    assert f"{HERON[0].upper()}{HERON[1:]} is in the shot." in caption(
        {"prompt": "reeds sway", "characters": ["heron"]}
    )


def test_style_and_setting_are_present():
    text = caption({"prompt": "a heron wades"})
    assert "The setting is a marsh of tall reeds at dawn." in text
    assert "Visual style: watercolour animation, soft pastel palette." in text
    assert (
        "Visual style" not in enhance(marsh({"id": "x", "prompt": "a heron wades"}, style=None))["x"].prompt
    )


def test_light_is_added_only_when_nothing_speaks_of_light():
    assert "dawn light" in caption({"prompt": "a heron wades"})
    assert "atmosphere" not in caption({"prompt": "a heron wades in the moonlight"})


def test_max_words_drops_whole_sentences_and_keeps_the_camera_motion():
    full = enhance(marsh(WATCH))["watch"].prompt
    capped = enhance(marsh(WATCH), max_words=30)["watch"].prompt
    assert len(capped.split()) <= 30 < len(full.split())
    assert capped == (
        "Close-up from a low angle: the heron watches the water. "
        "The heron is a tall grey heron with a long yellow beak. "
        "The camera slowly pushes in."
    )
    assert set(sentences(capped)) <= set(sentences(full))


def test_a_long_prompt_is_cut_at_a_sentence_boundary():
    prompt = (
        "The tide goes out over the flats. Crabs scuttle across the wet sand in their hundreds. "
        "A heron stalks along the edge of the water, head low. Far away a fishing boat turns for home."
    )
    full = caption({"prompt": prompt}, max_words=1000)
    capped = caption({"prompt": prompt}, max_words=25)
    assert len(capped.split()) <= 25
    assert full.startswith(capped[:-1])
    assert capped.endswith("in their hundreds.")


def test_one_overlong_sentence_is_cut_between_words():
    prompt = "a heron " + " ".join(f"then steps past reed number {n}" for n in range(30))
    capped = caption({"prompt": prompt}, max_words=20)
    words = capped.rstrip(".").split()
    assert len(words) <= 20 and capped.endswith(".")
    assert caption({"prompt": prompt}, max_words=1000).split()[: len(words)] == words


@settings(max_examples=60, deadline=None)
@given(
    max_words=st.integers(min_value=10, max_value=80),
    words=st.lists(
        st.sampled_from(["heron", "wades", "slowly", "through", "reeds", "mist", "."]), min_size=1
    ),
)
def test_any_caption_respects_the_cap_and_never_splits_a_word(max_words, words):
    prompt = " ".join(words).strip(". ") or "a heron"
    full = caption({"prompt": prompt, "characters": ["heron"]}, max_words=1000)
    capped = caption({"prompt": prompt, "characters": ["heron"]}, max_words=max_words)
    assert len(capped.split()) <= max_words
    known = {word.strip(".,:;") for word in full.split()}
    assert all(word.strip(".,:;") in known for word in capped.split())


def test_same_input_same_output():
    film = marsh(WATCH, STRIKE, {"id": "lift", "prompt": "{{ heron }} lifts off", "transition": "dissolve"})
    first, second = enhance(film), enhance(film)
    assert first == second
    # Each shot's caption depends on that shot alone: enhancing it on its own gives the same text.
    assert enhance(marsh(WATCH))["watch"] == first["watch"]


def test_whitespace_and_punctuation_are_normalised():
    text = caption({"prompt": "  a heron   wades ,slowly ..  "})
    assert text.startswith("Medium shot: a heron wades, slowly. ")
    assert "  " not in text and " ," not in text and ".." not in text


def test_only_english_is_added_and_the_prompt_is_not_translated():
    assert caption({"prompt": "a heron wades"}).isascii()
    text = caption({"prompt": "一只苍鹭在芦苇中涉水"})
    assert "一只苍鹭在芦苇中涉水" in text
    assert text.replace("一只苍鹭在芦苇中涉水", "").isascii()


def test_none_passes_prompts_through_unchanged():
    board = marsh(WATCH, STRIKE)
    contexts = shot_contexts(board, plan_film(board))
    enhanced = enhance(board, backend="none")
    assert [(p.shot_id, p.prompt, p.source) for p in enhanced.values()] == [
        (c.id, c.prompt, "none") for c in contexts
    ]
    assert enhanced["strike"].prompt == HERON + " strikes at a fish"
