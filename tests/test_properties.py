"""Property-based tests: random storyboards only ever raise storyreel's own error, and plans keep the invariants."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storyreel import StoryboardError, plan_film
from storyreel.plan import latent_count
from storyreel.storyboard import parse_storyboard

ids = st.text(alphabet="abcxyz-_1", min_size=0, max_size=4)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(-2, 50),
    st.just(float("nan")),
    st.just(float("inf")),
    st.text(max_size=12),
    ids,
)
durations = st.one_of(scalars, st.sampled_from(["4s", "0s", "-1s", "3.5 s", "1500ms", "2min", "abc", "1e9s"]))


def maybe(strategy):
    return st.one_of(st.just(None), strategy)


@st.composite
def shots(draw):
    shot = {
        "id": draw(ids),
        "prompt": draw(
            st.one_of(
                st.text(max_size=20), st.sampled_from(["{{ swan }} swims", "{{ ghost }}", "{{", "{% if %}"])
            )
        ),
        "duration": draw(durations),
        "frames": draw(maybe(st.integers(-3, 400))),
        "transition": draw(maybe(st.sampled_from(["continue", "cut", "dissolve", "fade", "wipe", 3]))),
        "continues": draw(maybe(ids)),
        "camera": draw(
            maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "shot": st.sampled_from(["wide", "close up", "closup", 4]),
                        "move": st.sampled_from(["slow push-in", "wobble", "pan left", ""]),
                    },
                )
            )
        ),
        "image": draw(maybe(st.sampled_from(["missing.png", "../x.png", "/etc/hostname"]))),
        "generation": draw(maybe(generation())),
        draw(st.sampled_from(["caption", "captoin", "characters"])): draw(
            st.one_of(st.text(max_size=5), st.lists(ids, max_size=2))
        ),
    }
    return {k: v for k, v in shot.items() if v is not None or draw(st.booleans())}


def generation():
    return st.fixed_dictionaries(
        {},
        optional={
            "resolution": st.sampled_from(["540P", "720p", "64x64", "100x100", "x", 540]),
            "fps": st.integers(-1, 60),
            "steps": st.integers(0, 40),
            "base_num_frames": st.sampled_from([5, 17, 21, 57, 96, 97, 0]),
            "overlap_history": st.sampled_from([1, 5, 17, 21, 37, 97, 100]),
            "causal_block_size": st.integers(0, 6),
            "ar_step": st.integers(-1, 40),
            "addnoise_condition": st.integers(-1, 100),
            "guidance_scale": st.floats(-1, 10),
            "seed": st.integers(-1, 2**33),
        },
    )


@st.composite
def storyboards(draw):
    scenes = draw(
        st.lists(
            st.fixed_dictionaries(
                {"id": ids, "shots": st.lists(shots(), max_size=4)},
                optional={
                    "after": st.lists(ids, max_size=2),
                    "setting": st.text(max_size=8),
                    "generation": generation(),
                },
            ),
            max_size=3,
        )
    )
    board = {
        "storyreel": draw(st.sampled_from([1, 1, 1, 2, "1", None])),
        "scenes": scenes,
        "characters": draw(
            st.sampled_from(
                [{}, {"swan": {"description": "a swan"}}, {"swan": {}}, {"bad name": {"description": "x"}}]
            )
        ),
        "generation": draw(generation()),
    }
    if draw(st.booleans()):
        board["audio"] = {"music": draw(st.sampled_from(["score.mp3", "../score.mp3"]))}
    return board


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(storyboards())
def test_random_storyboards_raise_only_storyboard_errors(board):
    text = yaml.safe_dump(board, sort_keys=False)
    try:
        plan = plan_film(parse_storyboard(text, "random.yaml"))
    except StoryboardError as exc:
        for problem in exc.problems:
            assert problem.message and problem.file == "random.yaml"
        return
    check_invariants(plan)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_storyboard_errors(text):
    try:
        plan_film(parse_storyboard(text, "noise.yaml"))
    except StoryboardError:
        pass


@st.composite
def valid_films(draw):
    block = draw(st.sampled_from([1, 5]))
    overlap = draw(st.sampled_from([17, 37] if block == 5 else [1, 5, 17, 37]))
    base = draw(st.sampled_from([57, 77, 97] if block == 5 else [41, 57, 97]))
    count = draw(st.integers(1, 5))
    shot_list = []
    for i in range(count):
        shot = {"id": f"s{i}", "prompt": "p", "duration": draw(st.floats(0.8, 20))}
        if i and draw(st.booleans()):
            shot["transition"] = draw(st.sampled_from(["cut", "dissolve", "fade"]))
        shot_list.append(shot)
    return {
        "storyreel": 1,
        "generation": {
            "fps": draw(st.sampled_from([16, 24, 25, 30])),
            "causal_block_size": block,
            "ar_step": draw(st.sampled_from([0, block])),
            "overlap_history": overlap,
            "base_num_frames": base,
            "steps": draw(st.integers(1, 30)),
        },
        "scenes": [{"id": "only", "shots": shot_list}],
    }


@settings(max_examples=200, deadline=None)
@given(valid_films())
def test_plans_keep_the_diffusion_forcing_invariants(board):
    try:
        plan = plan_film(parse_storyboard(yaml.safe_dump(board), "valid.yaml"))
    except StoryboardError as exc:
        # the only legitimate refusal: a parent shorter than the overlap its continuation needs
        assert all("needs the last" in p.message for p in exc.problems), exc
        return
    check_invariants(plan)


def check_invariants(plan) -> None:
    for shot in plan.shots:
        settings_ = shot.settings
        block = settings_.causal_block_size
        if shot.mode == "continue":
            assert shot.frames % 4 == 0
        else:
            assert shot.frames % 4 == 1
        for window in shot.windows:
            assert window.latent_frames % block == 0
            assert window.prefix_latent_frames % block == 0
            assert window.latent_frames <= latent_count(settings_.base_num_frames) or len(shot.windows) == 1
            assert window.denoise_steps >= settings_.steps
        new_latent = sum(w.latent_frames - w.prefix_latent_frames for w in shot.windows)
        prefix = latent_count(settings_.overlap_history) if shot.mode == "continue" else 0
        assert new_latent == shot.latent_frames - (1 if shot.mode == "image" else 0) - prefix
        assert shot.dit_passes == sum(w.denoise_steps for w in shot.windows) * settings_.passes_per_step
    ends = [s.film_start_frame + s.frames for s in plan.shots]
    assert plan.film_frames == ends[-1] == max(ends)
