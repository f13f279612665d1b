"""What the report's pages show, checked in a real browser (headless Chromium driven by Playwright):
long formulas wrap on the cards, the large view keeps the unit's outline under the formula and the
ground truth, and charts fill their cards. Skipped when Chromium or Playwright is missing
(tests/browser_helpers.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import demo_report, open_layer, screenshot
from netdissect.formulas.terms import formula_arrays
from netdissect.runs.results import LayerResult

GOLD = (255, 215, 0, 255)  # the unit's outline
CYAN = {(0, 200, 255, 140), (0, 200, 255, 255)}  # the ground truth's tint (inside, edge)
MAGENTA = {(255, 60, 200, 140), (255, 60, 200, 255)}  # the formula's tint (inside, edge)
LONG_NAME = "a-label-name-far-too-long-to-fit-on-one-line-of-any-unit-card-at-all"


def lengthen_first_formula(run: Path) -> None:
    """Make the first unit's formula long: OR five labels no unit is named by, the last renamed
    :data:`LONG_NAME`, onto it (its text gets long, its mask can only grow: it stays drawn)."""
    path = run / "conv4" / "iou.npz"
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    layer = LayerResult.load(run / "conv4", maps=False)
    assert layer.formulas is not None
    u = next(u for u, terms in enumerate(layer.formulas.terms) if terms)
    used = set(layer.label.tolist()) | {label for _, label in layer.formulas.terms[u]}
    spare = [k for k in range(1, len(layer.label_names)) if k not in used][:5]
    terms = list(layer.formulas.terms)
    terms[u] = (*terms[u], *(("or", k) for k in spare))
    names = list(layer.label_names)
    names[spare[-1]] = LONG_NAME
    arrays.update(formula_arrays(replace(layer.formulas, terms=terms)), label_names=np.array(names))
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def formula_report(tmp_path_factory) -> Path:
    """A dissection of the demo model's conv4 with formulas of two labels, and its report; the
    first unit with a formula is given a long one (see :func:`lengthen_first_formula`)."""
    return demo_report(tmp_path_factory.mktemp("browser-views"), formula_length=2, edit=lengthen_first_formula)


def overlay_pixels(page, selector: str) -> list[tuple[int, ...]]:
    """The RGBA of every pixel of the overlay canvases under ``selector``, canvas after canvas."""
    flat = page.eval_on_selector_all(
        selector + " canvas",
        "cs => cs.flatMap(c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))",
    )
    return [tuple(flat[i : i + 4]) for i in range(0, len(flat), 4)]


def test_long_formula_wraps_on_its_card(page, formula_report):
    open_layer(page, formula_report)
    page.select_option("#sort", "unit")
    card = page.locator(".unit-card", has=page.locator(".formula", has_text=LONG_NAME)).first
    card.scroll_into_view_if_needed()
    box = card.evaluate(
        """c => { const f = c.querySelector('.formula'), r = f.getBoundingClientRect(), cr = c.getBoundingClientRect();
                  return {text: f.textContent, scroll: f.scrollWidth, client: f.clientWidth, height: r.height,
                          line: parseFloat(getComputedStyle(f).lineHeight) || 18, right: r.right, cardRight: cr.right}; }"""
    )
    long = LayerResult.load(formula_report / "conv4", maps=False).formula or []
    assert next(text for text in long if LONG_NAME in text) in box["text"]
    assert box["scroll"] <= box["client"] + 1, box  # nothing cut off or hidden
    assert box["right"] <= box["cardRight"], box  # the text stays inside its card
    assert box["height"] > 1.5 * box["line"], box  # on several lines
    # the large view shows it whole too
    card.click()
    page.wait_for_selector("#viewer", state="visible")
    viewer = page.eval_on_selector("#viewer-meta .formula", "f => [f.scrollWidth, f.clientWidth]")
    assert viewer[0] <= viewer[1] + 1
    screenshot(page, "report-long-formula.png")
    assert page.problems == []


def gold_positions(pixels: list[tuple[int, ...]]) -> set[int]:
    return {i for i, p in enumerate(pixels) if p == GOLD}


def test_large_view_keeps_the_unit_outline_with_formula_and_ground_truth(page, formula_report):
    """F and G draw the formula's mask or the label's ground truth tinted, and the unit's own
    outline over them at the same pixels as in the unit's view, so that they can be compared."""
    open_layer(page, formula_report)
    card = page.locator(".unit-card[data-formula]").first
    unit = card.get_attribute("data-unit")
    card.click()
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:unit']")
    outline = gold_positions(overlay_pixels(page, "#viewer-tiles"))
    assert outline  # the unit fires somewhere on its top images
    assert "unit " + unit in page.text_content("#viewer-legend")

    page.keyboard.press("f")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:formula']")
    formula = overlay_pixels(page, "#viewer-tiles")
    assert MAGENTA & set(formula)  # the formula's mask
    assert gold_positions(formula) == outline  # and the unit's outline, unchanged
    assert page.eval_on_selector_all("#viewer-tiles canvas", "cs => cs.every(c => c.dataset.outline === 'unit')")
    legend = page.text_content("#viewer-legend")
    assert "unit " + unit in legend and "formula" in legend
    screenshot(page, "report-viewer-formula.png")

    page.keyboard.press("g")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:truth']")
    truth = overlay_pixels(page, "#viewer-tiles")
    assert CYAN & set(truth)
    assert gold_positions(truth) == outline
    assert "ground truth" in page.text_content("#viewer-legend")
    assert page.problems == []


def chart_fit(page, selector: str) -> list[dict]:
    """Per chart under ``selector``: its drawn size and the width its card gives it."""
    return page.eval_on_selector_all(
        selector,
        """svgs => svgs.map(svg => {
            const holder = svg.parentElement, style = getComputedStyle(holder), r = svg.getBoundingClientRect();
            const room = holder.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return {cls: svg.getAttribute('class'), width: r.width, height: r.height, room: room};
        })""",
    )


def assert_fills(fits: list[dict]) -> None:
    assert fits
    for fit in fits:
        assert fit["width"] >= 0.97 * fit["room"], fit  # the chart fills its card's width ...
        assert fit["width"] <= fit["room"] + 1, fit  # ... without spilling over it
        assert 0.12 * fit["width"] < fit["height"] < 0.6 * fit["width"], fit  # at a chart's proportions


def test_charts_fill_their_cards(page, formula_report, tmp_path):
    from netdissect.report.compare_page import compare_runs

    page.goto((formula_report / "index.html").as_uri())
    assert_fills(chart_fit(page, "#fractions-chart svg"))
    open_layer(page, formula_report)
    assert_fills(chart_fit(page, "#bar-graph svg"))
    screenshot(page, "report-layer-chart.png")
    other = tmp_path / "other"
    shutil.copytree(formula_report, other)
    compare_runs([formula_report, other], tmp_path / "compare", labels=["first", "second"], series=True)
    page.goto((tmp_path / "compare" / "index.html").as_uri())
    fits = chart_fit(page, ".chart svg")
    assert {f["cls"] for f in fits} == {"unique-chart", "detectors-chart", "emergence-chart"}
    assert_fills(fits)
    screenshot(page, "compare-charts.png", full_page=True)
    # in a narrow window a chart shrinks with its card, down to about half its size
    page.set_viewport_size({"width": 760, "height": 900})
    assert_fills(chart_fit(page, "#unique-chart svg"))
    assert page.problems == []
