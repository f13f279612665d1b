"""The ablation page in a real browser (headless Chromium driven by Playwright); skipped when
either is missing, as tests/report/test_browser.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ablation_helpers import EVIL

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("NETDISSECT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.problems = problems
        yield page
        browser.close()


def test_ablation_page_shows_classes_curves_scatter_and_top_images(page, demo_run):
    _, run, out = demo_run
    page.goto((out / "index.html").as_uri())
    sections = page.eval_on_selector_all(".class-section", "s => s.map(x => x.dataset.class)")
    assert sections == ["kitchen", "bedroom", "beach", "street", "forest"]
    # four group curves per class, each with five points (k = 1..5)
    counts = page.eval_on_selector_all(
        ".class-section svg.curves",
        "svgs => svgs.map(s => [...s.querySelectorAll('polyline')].map(p => p.getAttribute('points').trim().split(' ').length))",
    )
    assert counts == [[5, 5, 5, 5]] * 5
    assert page.eval_on_selector_all("#scatter-svg circle.dot", "d => d.length") == 128
    assert "Pearson correlation" in page.inner_text("#correlation")
    # each unit card shows its first 5 top images from the run report's report-images/
    page.eval_on_selector_all("img.top-image", "imgs => imgs.forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.top-image')].every(i => i.complete)", timeout=30_000
    )
    assert page.eval_on_selector_all("img.top-image", "imgs => imgs.filter(i => !i.naturalWidth).length") == 0
    assert page.eval_on_selector_all(".unit-card", "cs => cs.map(c => c.querySelectorAll('img.top-image').length)") == [
        5
    ] * (5 * 8)
    srcs = page.eval_on_selector_all("img.top-image", "imgs => imgs.map(i => i.src)")
    assert all("/run/report-images/" in src for src in srcs)
    labels = page.eval_on_selector_all(".unit-card .label", "ls => ls.map(l => l.textContent)")
    assert all(labels)
    if EVIL in " ".join(labels):  # a hostile label shows as text and runs nothing
        assert page.eval_on_selector_all(".unit-card script", "s => s.length") == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ablation-page.png"), full_page=False)
    # a card's link opens the unit on the layer page, which draws its masks over the same images
    link = page.get_attribute(".unit-card a.unit-link", "href")
    unit = link.rsplit("#unit-", 1)[1]
    page.click(".unit-card a.unit-link")
    page.wait_for_function("() => document.body.getAttribute('data-tiles') === 'ready'", timeout=30_000)
    assert page.url.split("#")[0].endswith("/run/conv4/index.html") and page.url.endswith(f"#unit-{unit}")
    page.go_back()
    page.wait_for_load_state()
    # the brand links back to the dissection run
    page.click("#run-link")
    page.wait_for_load_state()
    assert Path(page.url.removeprefix("file://")).resolve() == (run / "index.html").resolve()
    assert page.problems == []
