"""The prompt lock: enhanced prompts are kept, reused while their shot is unchanged, editable by hand."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import storyreel
from storyreel.cli import app
from storyreel.enhance import EnhancedPrompt, FilmContext, ShotContext
from storyreel.errors import StoryboardError, UserError
from storyreel.prompt_lock import LockEntry, PromptLock, lock_path_for, text_sha256
from storyreel.rendering import RenderProgress, enhance_storyboard

from conftest import small_board


class CountingEnhancer:
    """An LLM-like backend: not reproducible (so its answers are locked), counting what it is asked."""

    name = "counting"
    reproducible = False

    def __init__(self, fail_after: int | None = None, tag: str = "v1"):
        self.asked: list[str] = []
        self.fail_after = fail_after
        self.tag = tag

    def fingerprint(self) -> str:
        return f"counting-{self.tag}"

    def enhance(
        self,
        film: FilmContext,
        shots: Sequence[ShotContext],
        on_result: Callable[[EnhancedPrompt], None] | None = None,
    ) -> list[EnhancedPrompt]:
        results = []
        for shot in shots:
            if self.fail_after is not None and len(self.asked) >= self.fail_after:
                raise UserError("cannot reach the enhancer at http://127.0.0.1:9/v1")
            self.asked.append(shot.id)
            results.append(
                EnhancedPrompt(shot.id, f"Enhanced: {shot.prompt} ({film.style})", self.name, "tiny-llm")
            )
            if on_result:
                on_result(results[-1])
        return results


class Notes(RenderProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.fixture
def story(write_story) -> Path:
    board = small_board()
    board["style"] = "watercolour"
    return write_story(board)


def test_lock_path_sits_beside_the_storyboard() -> None:
    assert lock_path_for(Path("films/swan.yaml")) == Path("films/swan.lock.yaml")
    assert lock_path_for(Path("films/festival.yaml.j2")) == Path("films/festival.lock.yaml")


def test_enhance_writes_every_prompt_and_a_second_run_asks_nothing(story: Path) -> None:
    first = CountingEnhancer()
    lock_path, prompts = enhance_storyboard(story, enhancer=first)
    assert lock_path == story.with_name("story.lock.yaml") and lock_path.exists()
    assert first.asked == ["glide", "dip", "heron", "rise"]
    assert {p.origin for p in prompts.values()} == {"enhancer"}
    document = yaml.safe_load(lock_path.read_text())
    assert list(document["shots"]) == ["glide", "dip", "heron", "rise"]  # timeline order
    assert document["shots"]["glide"]["prompt"] == "Enhanced: a white swan glides (watercolour)"
    assert document["shots"]["glide"]["model"] == "tiny-llm"

    again = CountingEnhancer()
    _, prompts = enhance_storyboard(story, enhancer=again)
    assert again.asked == [] and {p.origin for p in prompts.values()} == {"lock"}


def test_render_reuses_locked_prompts_and_records_their_origin(story: Path, tmp_path: Path) -> None:
    enhance_storyboard(story, enhancer=CountingEnhancer())
    counting = CountingEnhancer()
    manifest = storyreel.render(story, out=tmp_path / "out", enhancer=counting)
    assert counting.asked == []
    assert {s.prompt_origin for s in manifest.shots} == {"lock"}
    assert manifest.shot("dip").enhanced_prompt == "Enhanced: a white swan dips its head (watercolour)"
    assert (
        manifest.shot("dip").enhanced_by == "counting" and manifest.shot("dip").enhancer_model == "tiny-llm"
    )


def test_editing_one_shot_re_enhances_that_shot_alone(story: Path) -> None:
    enhance_storyboard(story, enhancer=CountingEnhancer())
    story.write_text(story.read_text().replace("a heron in the reeds", "a heron stalks through the reeds"))
    counting = CountingEnhancer()
    _, prompts = enhance_storyboard(story, enhancer=counting)
    assert counting.asked == ["heron"]
    assert prompts["heron"].prompt.prompt == "Enhanced: a heron stalks through the reeds (watercolour)"


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text.replace("watercolour", "oil painting"),  # the film's style
        lambda text: text.replace("description: a white swan", "description: a black swan"),  # a character
    ],
    ids=["style", "character"],
)
def test_film_wide_changes_re_enhance_what_they_touch(story: Path, edit: Callable[[str], str]) -> None:
    enhance_storyboard(story, enhancer=CountingEnhancer())
    story.write_text(edit(story.read_text()))
    counting = CountingEnhancer()
    enhance_storyboard(story, enhancer=counting)
    expected = ["glide", "dip", "heron", "rise"] if "oil" in story.read_text() else ["glide", "dip", "rise"]
    assert counting.asked == expected


def test_a_changed_backend_or_refresh_re_enhances_everything(story: Path) -> None:
    enhance_storyboard(story, enhancer=CountingEnhancer())
    other = CountingEnhancer(tag="v2")  # e.g. another model or system template
    enhance_storyboard(story, enhancer=other)
    assert len(other.asked) == 4
    refreshed = CountingEnhancer(tag="v2")
    enhance_storyboard(story, enhancer=refreshed, refresh_prompts=True)
    assert len(refreshed.asked) == 4


def test_a_hand_edited_prompt_is_used_until_its_shot_changes(story: Path, tmp_path: Path) -> None:
    lock_path, _ = enhance_storyboard(story, enhancer=CountingEnhancer())
    document = yaml.safe_load(lock_path.read_text())
    document["shots"]["dip"]["prompt"] = "Close-up: the swan's beak breaks the mirror of the lake."
    lock_path.write_text(yaml.safe_dump(document, sort_keys=False))

    counting = CountingEnhancer()
    manifest = storyreel.render(story, out=tmp_path / "out", enhancer=counting)
    assert counting.asked == []
    assert manifest.shot("dip").enhanced_prompt == "Close-up: the swan's beak breaks the mirror of the lake."
    assert manifest.shot("dip").prompt_origin == "edited"

    story.write_text(story.read_text().replace("dips its head", "dips its head twice"))
    notes = Notes()
    _, prompts = enhance_storyboard(story, enhancer=CountingEnhancer(), progress=notes)
    assert prompts["dip"].origin == "enhancer"
    assert any("shot 'dip' changed, so its hand-edited prompt" in n for n in notes.notes)


def test_answers_are_locked_as_they_arrive_so_a_failure_loses_none(story: Path) -> None:
    with pytest.raises(UserError, match="cannot reach the enhancer"):
        enhance_storyboard(story, enhancer=CountingEnhancer(fail_after=2))
    lock = PromptLock.load(lock_path_for(story), "story.yaml")
    assert sorted(lock.entries) == ["dip", "glide"]
    resumed = CountingEnhancer()
    enhance_storyboard(story, enhancer=resumed)
    assert resumed.asked == ["heron", "rise"]


def test_fallback_fills_in_and_is_not_locked(story: Path, tmp_path: Path) -> None:
    notes = Notes()
    manifest = storyreel.render(
        story,
        out=tmp_path / "out",
        enhancer=CountingEnhancer(fail_after=1),
        enhancer_fallback="template",
        progress=notes,
    )
    origins = {s.id: (s.prompt_origin, s.enhanced_by) for s in manifest.shots}
    assert origins["glide"] == ("enhancer", "counting")
    assert origins["dip"] == origins["heron"] == origins["rise"] == ("fallback", "template")
    assert any("the template enhancer writes the prompts of 3 shot(s)" in n for n in notes.notes)
    assert sorted(PromptLock.load(lock_path_for(story), "story.yaml").entries) == ["glide"]


def test_an_unknown_fallback_fails_before_any_request(story: Path) -> None:
    counting = CountingEnhancer()
    with pytest.raises(UserError, match="unknown enhancer 'templat'; did you mean 'template'"):
        enhance_storyboard(story, enhancer=counting, enhancer_fallback="templat")
    assert counting.asked == []


def test_reproducible_backends_leave_no_lock_behind_a_render(story: Path, tmp_path: Path) -> None:
    storyreel.render(story, out=tmp_path / "out", only=["glide"])
    assert not lock_path_for(story).exists()


def test_a_malformed_lock_is_reported_with_its_line(story: Path) -> None:
    lock_path_for(story).write_text("storyreel_lock: 1\nshots:\n  glide: {prompt: [unclosed\n")
    with pytest.raises(StoryboardError, match=r"story.lock.yaml:\d+:\d+: the prompt lock is not valid YAML"):
        enhance_storyboard(story, enhancer=CountingEnhancer())
    lock_path_for(story).write_text("storyreel_lock: 1\nshots:\n  glide: {backend: x}\n")
    with pytest.raises(StoryboardError, match="shots.glide: needs a non-empty `prompt`"):
        enhance_storyboard(story, enhancer=CountingEnhancer())


@pytest.mark.parametrize(
    "prompt",
    [
        "Wide shot: a swan's 'reflection' — mirrored # not a comment: really",
        "  leading and trailing spaces and a\nnew line  ",
        "Ünïcödé swan, 白鳥, " + "long " * 40,
        "short",
    ],
)
def test_prompts_survive_the_lock_file_exactly(tmp_path: Path, prompt: str) -> None:
    lock = PromptLock(tmp_path / "s.lock.yaml", "s.yaml")
    lock.put("a", LockEntry(prompt.strip(), "vllm", None, "f" * 64, text_sha256(prompt.strip())))
    loaded = PromptLock.load(tmp_path / "s.lock.yaml", "s.yaml").entries["a"]
    assert loaded.prompt == prompt.strip() and not loaded.edited


def test_concurrent_puts_all_land(tmp_path: Path) -> None:
    lock = PromptLock(tmp_path / "s.lock.yaml", "s.yaml")

    def put(i: int) -> None:
        lock.put(f"shot-{i}", LockEntry(f"prompt {i}", "vllm", None, "f", text_sha256(f"prompt {i}")))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(PromptLock.load(tmp_path / "s.lock.yaml", "s.yaml").entries) == 16


def test_cli_enhance_writes_the_lock_and_reports_origins(story: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["enhance", str(story), "--json"])
    assert result.exit_code == 0, result.output
    assert lock_path_for(story).exists()  # an explicit `enhance` locks even the template backend
    again = runner.invoke(app, ["enhance", str(story), "--json"])
    document = json.loads(again.stdout)
    assert {v["origin"] for v in document.values()} == {"lock"} and document["glide"]["backend"] == "template"
    result = runner.invoke(app, ["enhance", str(story), "--enhancer", "nope"])
    assert result.exit_code == 1 and "unknown enhancer 'nope'" in result.output
