"""The generator contract's prepare_prompts: what render() hands over, and when.

render() gives a generator the prompts of the shots it is about to make (not those the shot cache holds),
once, before the first of them; a generator that runs out of memory while preparing still gets each shot
through the out-of-memory ladder. The SkyReels-V2 generator's own use of it is tested in test_skyreels.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import storyreel
from storyreel.errors import OutOfMemory
from storyreel.generate import (
    Clip,
    GeneratorOptions,
    ProgressCallback,
    PromptRequest,
    ShotRequest,
    ignore_progress,
)
from storyreel.generators.animatic import AnimaticGenerator

from conftest import small_board


class Preparing(AnimaticGenerator):
    """The animatic, recording what it is asked to prepare and generate; preparing can run out of memory,
    and shots can need offloading to fit."""

    def __init__(self, prepare_fits: bool = True, needs_offload: bool = False):
        super().__init__(GeneratorOptions())
        self.prepare_fits, self.needs_offload = prepare_fits, needs_offload
        self.events: list[tuple[str, list[str]]] = []
        self.offloaded = False

    def prepare_prompts(
        self, prompts: Sequence[PromptRequest], progress: ProgressCallback = ignore_progress
    ) -> None:
        self.events.append(("prepare", [p.shot_id for p in prompts]))
        if not self.prepare_fits:
            raise OutOfMemory("the text encoder ran out of cuda memory")

    @property
    def offloading(self) -> bool:
        return self.offloaded

    def enable_offload(self) -> bool:
        self.offloaded = True
        return True

    def release_memory(self) -> None:
        self.events.append(("release", []))

    def generate(self, request: ShotRequest, progress: ProgressCallback = ignore_progress) -> Clip:
        self.events.append(("generate", [request.shot.id]))
        if self.needs_offload and not self.offloaded:
            raise OutOfMemory(f"shot '{request.shot.id}' ran out of cuda memory")
        return super().generate(request, progress)


def test_prompts_of_uncached_shots_are_handed_over_once_before_the_first(write_story, tmp_path: Path) -> None:
    board = small_board()
    story = write_story(board)
    first = Preparing()
    manifest = storyreel.render(story, out=tmp_path / "a", generator=first)
    assert first.events[0] == ("prepare", ["glide", "dip", "heron", "rise"])
    assert [name for name, _ in first.events[1:]] == ["generate"] * 4
    negative = storyreel.plan_film(storyreel.load_storyboard(story)).shot("glide").settings.negative_prompt
    assert negative  # the negative prompt is handed over too

    board["scenes"][0]["shots"][1]["prompt"] = "{{ swan }} dips its long neck"  # dip, and rise continuing it
    again = Preparing()
    storyreel.render(write_story(board), out=tmp_path / "b", generator=again)
    assert again.events == [("prepare", ["dip", "rise"]), ("generate", ["dip"]), ("generate", ["rise"])]

    cached = Preparing()
    storyreel.render(write_story(board), out=tmp_path / "c", generator=cached)
    assert cached.events == []  # every shot from the cache: nothing to prepare
    assert len(manifest.shots) == 4


def test_running_out_of_memory_while_preparing_leaves_each_shot_its_ladder(
    write_story, tmp_path: Path
) -> None:
    generator = Preparing(prepare_fits=False, needs_offload=True)
    manifest = storyreel.render(write_story(small_board()), out=tmp_path / "out", generator=generator)
    assert generator.events[:4] == [
        ("prepare", ["glide", "dip", "heron", "rise"]),
        ("release", []),
        ("generate", ["glide"]),  # out of memory: the ladder switches offloading on
        ("release", []),
    ]
    assert manifest.shot("glide").degraded == ["offload"]
    assert all(not entry.degraded for entry in manifest.shots[1:])
