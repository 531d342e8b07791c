"""review.html: written by every render, rebuilt by `storyreel review`, checked in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from headless_chromium import chromium_path, open_page
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.manifest import Manifest

from conftest import small_board

HOSTILE = "<script>document.title='owned'</script> & <b>bold</b>"

VIDEO_DURATION = """new Promise(done => {
  const video = document.querySelector('video');
  if (video.readyState >= 1) done(video.duration);
  video.addEventListener('loadedmetadata', () => done(video.duration));
  video.addEventListener('error', () => done(-1));
})"""

BROKEN_PICTURES = """Promise.all([...document.images].map(image => image.decode().then(() => null, () => image.src)))
  .then(found => found.filter(Boolean))"""


@pytest.fixture(scope="module")
def render_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    board = small_board()
    board["scenes"][0]["shots"][1]["prompt"] = f"{{{{ swan }}}} dips its head {HOSTILE}"
    folder = tmp_path_factory.mktemp("review")
    story = folder / "story.yaml"
    story.write_text(yaml.safe_dump(board, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["render", str(story), "--out", str(folder / "out")])
    assert result.exit_code == 0, result.output
    return folder / "out"


@pytest.fixture
def chromium() -> str:
    found = chromium_path()
    if found is None:
        if os.environ.get("STORYREEL_REQUIRE_CHROMIUM"):
            pytest.fail(
                "STORYREEL_REQUIRE_CHROMIUM is set but no Chromium was found (apt-get install chromium)"
            )
        pytest.skip("no Chromium here (apt-get install chromium, or set STORYREEL_CHROMIUM)")
    return found


def test_a_render_writes_the_page_beside_the_film_with_pictures_in_files(render_folder):
    page = render_folder / "review.html"
    html = page.read_text(encoding="utf-8")
    assert (render_folder / "film.mp4").is_file() and page.is_file()
    assert (
        "data:image" not in html and "http://" not in html and "https://" not in html
    )  # offline, nothing inlined
    pictures = sorted(p.name for p in (render_folder / "review").iterdir())
    assert pictures and all(name.endswith(".jpg") for name in pictures)
    assert len(html.encode()) < 100_000
    assert HOSTILE not in html and "&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;" in html


def test_the_page_loads_in_chromium_with_the_film_every_shot_and_every_seam(
    render_folder, chromium, tmp_path
):
    manifest = Manifest.read(render_folder / "manifest.json")
    assert manifest.film is not None
    with open_page(render_folder / "review.html") as page:
        duration = page.evaluate(VIDEO_DURATION)
        cards = page.evaluate("[...document.querySelectorAll('.card')].map(card => card.dataset.shot)")
        seams = page.evaluate("[...document.querySelectorAll('.seam')].map(seam => seam.dataset.shot)")
        strip = page.evaluate("document.querySelectorAll('#timeline figure').length")
        graph = page.evaluate(
            "[document.querySelectorAll('#graph circle').length, document.querySelectorAll('#graph path[marker-end]').length]"
        )
        charts = page.evaluate("document.querySelectorAll('svg.drift').length")
        broken = page.evaluate(BROKEN_PICTURES)
        title = page.evaluate("document.title")
        screenshot = page.screenshot(tmp_path / "review.png")
        errors = list(page.errors)
    assert errors == []
    assert duration == pytest.approx(manifest.film.seconds, abs=0.05)
    timeline = [shot.id for shot in sorted(manifest.shots, key=lambda shot: shot.timeline_index)]
    assert cards == timeline and strip == len(timeline)
    continuing = [shot_id for shot_id in timeline if manifest.shot(shot_id).conditioned_on]
    assert seams == continuing
    assert graph == [len(timeline), len(continuing)]
    assert charts == len(manifest.film.qa["chains"]) >= 1
    assert broken == []
    assert title == "Small: review"  # the hostile prompt was shown, not run
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


def test_every_warning_is_on_the_page(render_folder, chromium):
    manifest = Manifest.read(render_folder / "manifest.json")
    manifest.warnings.append("shot 'dip': a warning written for this test")
    manifest.write(render_folder / "manifest.json")
    assert CliRunner().invoke(app, ["review", str(render_folder)]).exit_code == 0
    with open_page(render_folder / "review.html") as page:
        shown = page.evaluate("[...document.querySelectorAll('#warnings li')].map(item => item.textContent)")
        flagged = page.evaluate(
            "[...document.querySelectorAll('.card.warned')].map(card => card.dataset.shot)"
        )
    assert shown == manifest.warnings
    assert "dip" in flagged


def test_review_rebuilds_the_page_from_the_manifest(render_folder):
    shutil.rmtree(render_folder / "review")
    (render_folder / "review.html").unlink()
    result = CliRunner().invoke(app, ["review", str(render_folder)])
    assert result.exit_code == 0, result.output
    assert "review.html" in result.output
    html = (render_folder / "review.html").read_text(encoding="utf-8")
    for shot in Manifest.read(render_folder / "manifest.json").shots:
        assert f'data-shot="{shot.id}"' in html
    assert any((render_folder / "review").glob("*-thumb.jpg"))


def test_review_of_a_folder_without_a_manifest_is_a_user_error(tmp_path):
    result = CliRunner().invoke(app, ["review", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path}: no manifest.json here" in " ".join(result.output.split())
