"""The explain page in a real browser (headless Chromium driven by Playwright); skipped when either
is missing (tests/browser_helpers.py). A screenshot goes to ``test-artifacts/explain.png``."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from browser_helpers import screenshot
from netdissect import explain
from netdissect.explain.result import read_segmentation
from netdissect.report.explain_page import legend_colour


@pytest.fixture(scope="module")
def explained(demo_run, tmp_path_factory):
    data, run = demo_run
    out = tmp_path_factory.mktemp("explain-page") / "explain"
    images = sorted((data / "images").rglob("*.jpg"))[:3]
    return run, out, explain(run, images, out, top_units=6, device="cpu", iou_threshold=0.0)


def shot(element) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"), dtype=np.float64)


def test_explain_page_shows_images_segmentation_predictions_and_units(page, explained):
    run, out, result = explained
    page.goto((out / "index.html").as_uri())
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.naturalWidth).map(i => i.src)") == []
    sections = page.locator(".image-section")
    assert sections.count() == 3
    for i, explained_image in enumerate(result.images):
        section = sections.nth(i)
        chips = section.locator(".legend-item")
        assert chips.count() == len(explained_image.legend)
        for k in range(chips.count()):  # each chip in its legend colour
            colour = chips.nth(k).evaluate("c => getComputedStyle(c).getPropertyValue('--c').trim()")
            assert colour == legend_colour(k + 1)
        rows = section.locator("table.predictions tr")
        assert rows.count() == len(explained_image.predictions)
        assert rows.first.inner_text().startswith(str(explained_image.top_class["class"]))
        cards = section.locator(".unit-card")
        assert [int(c) for c in cards.evaluate_all("cs => cs.map(c => c.dataset.unit)")] == [
            u["unit"] for u in explained_image.units
        ]
        for href in cards.locator("a.unit-link").evaluate_all("as => as.map(a => a.href)"):  # to the layer page
            target = urlparse(href)
            assert Path(unquote(target.path)).is_file() and target.fragment.startswith("unit-")
    assert Path(unquote(urlparse(page.locator("#run-link").evaluate("a => a.href")).path)) == (run / "index.html")
    assert page.problems == []
    screenshot(page, "explain.png", full_page=True)


def test_overlays_colour_labelled_pixels_only_and_dim_outside_masks(page, explained):
    _, out, result = explained
    page.goto((out / "index.html").as_uri())
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    i = max(range(len(result.images)), key=lambda k: (result.images[k].segmentation > 0).mean())
    seg = read_segmentation(out / f"seg-{i}.png")
    assert (seg > 0).any()
    section = page.locator(".image-section").nth(i)
    plain = shot(section.locator(".stage").nth(0))
    painted = shot(section.locator(".stage").nth(1))
    h, w = min(plain.shape[0], painted.shape[0]), min(plain.shape[1], painted.shape[1])  # sub-pixel widths
    plain, painted = plain[:h, :w], painted[:h, :w]
    # each segmentation cell's centre on screen: changed where labelled, unchanged where clear
    sh, sw = seg.shape
    ys, xs = ((np.arange(sh) + 0.5) * h / sh).astype(int), ((np.arange(sw) + 0.5) * w / sw).astype(int)
    diff = np.abs(plain - painted).sum(-1)[np.ix_(ys, xs)]
    assert np.median(diff[seg == 0]) < 6
    assert np.median(diff[seg > 0]) > 40
    # a unit card: its mask's pixels as in the image, the others dimmed
    unit = next(u for u in result.images[i].units if u["area"] > 0.02)
    mask = np.asarray(Image.open(out / f"mask-{i}-{unit['unit']}.png")) > 0
    assert np.array_equal(mask, result.images[i].masks[unit["unit"]])
    card = section.locator(f'.unit-card[data-unit="{unit["unit"]}"] .stage')
    dimmed = shot(card)
    ch, cw = dimmed.shape[:2]
    plain_small = np.asarray(Image.fromarray(plain.astype(np.uint8)).resize((cw, ch), Image.Resampling.BILINEAR), float)
    cy, cx = ((np.arange(sh) + 0.5) * ch / sh).astype(int), ((np.arange(sw) + 0.5) * cw / sw).astype(int)
    ratio = (dimmed.sum(-1) / np.maximum(plain_small.sum(-1), 1))[np.ix_(cy, cx)]
    assert np.median(ratio[mask]) > 0.85 and np.median(ratio[~mask]) < 0.45
