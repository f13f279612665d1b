"""The report in a real browser (headless Chromium driven by Playwright, set up once in
tests/browser_helpers.py: skipped when either is missing). A screenshot of the layer page is saved
under ``test-artifacts/`` (or $NETDISSECT_ARTIFACTS).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from browser_helpers import demo_report, open_layer, screenshot
from fake_run import write_fake_run
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.report.pages import PAGE_SIZE

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # a hostile label name must show as text
    return demo_report(tmp_path_factory.mktemp("browser"), rename=("ball", EVIL))


def scroll_through(page) -> None:
    """Scroll the page to its end a screen at a time (cards make their tiles when they come near)."""
    page.evaluate("""async () => {
        const frame = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
        for (let y = 0; y < document.body.scrollHeight; y += innerHeight) { scrollTo(0, y); await frame(); await frame(); }
    }""")


def overlay_pixels(page, selector: str) -> list[int]:
    """The RGBA bytes of every overlay canvas under ``selector`` (canvases the page drew itself)."""
    return page.eval_on_selector_all(
        selector + " canvas",
        "cs => cs.flatMap(c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))",
    )


def visible_cards(page) -> list[dict]:
    return page.eval_on_selector_all(
        ".unit-card",
        """cards => cards.filter(c => c.offsetParent !== null).map(c => ({
            unit: c.dataset.unit, label: c.dataset.label, category: c.dataset.category}))""",
    )


def test_pages_load_without_errors_and_every_strip_loads(page, report):
    page.goto((report / "index.html").as_uri())
    assert "conv4" in page.content()
    open_layer(page, report)
    assert len(visible_cards(page)) == 128
    # scroll through every card: its tiles are made when it comes near the viewport
    scroll_through(page)
    # generous limits: painting 1,280 tiles takes seconds on a quiet 2-core machine, minutes on a loaded one
    page.wait_for_function(
        "() => [...document.querySelectorAll('.unit-card')].every(c => c.querySelectorAll('canvas[data-painted=unit]').length === 10)",
        timeout=120_000,
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.unit-card img')].every(i => i.complete)", timeout=120_000
    )
    broken = page.eval_on_selector_all(".unit-card img", "imgs => imgs.filter(i => !i.naturalWidth).map(i => i.src)")
    assert broken == []
    assert page.eval_on_selector_all(".unit-card img", "imgs => imgs.length") == 128 * 10
    # the overlay dims outside the mask (black at 70 %) and outlines it (gold); inside stays clear
    pixels = overlay_pixels(page, ".unit-card:first-child")
    rgba = [tuple(pixels[i : i + 4]) for i in range(0, len(pixels), 4)]
    assert (0, 0, 0, 179) in rgba and (255, 215, 0, 255) in rgba and (0, 0, 0, 0) in rgba
    page.evaluate("window.scrollTo(0, 0)")
    shot = screenshot(page, "report-layer.png", full_page=False)
    assert shot.stat().st_size > 10_000
    assert page.problems == []


def test_sort_by_label_orders_cards(page, report):
    open_layer(page, report)
    before = [c["unit"] for c in visible_cards(page)]
    page.select_option("#sort", "label")
    labels = [c["label"] for c in visible_cards(page)]
    in_order = page.evaluate("ls => ls.every((l, i) => i === 0 || ls[i - 1].localeCompare(l) <= 0)", labels)
    assert in_order
    assert [c["unit"] for c in visible_cards(page)] != before
    page.select_option("#sort", "unit")
    assert [int(c["unit"]) for c in visible_cards(page)] == list(range(1, 129))
    assert page.problems == []


def test_category_filter_hides_other_cards(page, report):
    open_layer(page, report)
    all_cards = visible_cards(page)
    category = max({c["category"] for c in all_cards}, key=lambda k: sum(c["category"] == k for c in all_cards))
    page.select_option("#category", category)
    shown = visible_cards(page)
    assert shown and all(c["category"] == category for c in shown)
    assert len(shown) == sum(c["category"] == category for c in all_cards)
    page.select_option("#category", "")
    assert len(visible_cards(page)) == len(all_cards)
    assert page.problems == []


def test_search_and_viewer_with_ground_truth_toggle(page, report):
    open_layer(page, report)
    first = visible_cards(page)[0]
    page.fill("#search", first["label"])
    shown = visible_cards(page)
    assert shown and all(first["label"].lower() in c["label"].lower() for c in shown)
    page.click(f".unit-card[data-unit='{first['unit']}']")
    page.wait_for_selector("#viewer", state="visible")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{first['unit']}:unit']")
    assert page.eval_on_selector_all("#viewer-tiles img", "imgs => imgs.length") == 10
    mask = overlay_pixels(page, "#viewer-tiles")
    page.click("#toggle-truth")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{first['unit']}:truth']")
    assert page.get_attribute("#toggle-truth", "aria-pressed") == "true"
    truth = overlay_pixels(page, "#viewer-tiles")
    assert truth != mask
    rgba = {tuple(truth[i : i + 4]) for i in range(0, len(truth), 4)}
    assert (0, 200, 255, 140) in rgba or (0, 200, 255, 255) in rgba  # the label's ground truth, tinted
    page.keyboard.press("g")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{first['unit']}:unit']")
    assert overlay_pixels(page, "#viewer-tiles") == mask
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.problems == []


def test_hostile_label_is_text(page, report):
    open_layer(page, report)
    page.select_option("#sort", "label")
    page.fill("#search", "alert")
    assert page.problems == []  # no alert dialog ran
    scripts = page.eval_on_selector_all("script", "ss => ss.map(s => s.textContent)")
    assert not any("alert(1)" in s for s in scripts)  # no injected script element
    if any(c["label"] == EVIL for c in visible_cards(page)):  # a unit is labelled with it
        assert page.locator(".unit-card", has_text=EVIL).first.is_visible()  # shown literally
    for html in [report / "index.html", report / "conv4" / "index.html"]:
        assert EVIL not in html.read_text()  # only ever written escaped


@pytest.fixture(scope="module")
def formula_report(tmp_path_factory):
    return demo_report(tmp_path_factory.mktemp("browser-formulas"), formula_length=2)


MAGENTA = {(255, 60, 200, 140), (255, 60, 200, 255)}  # the formula's tint (inside, edge)


def test_viewer_overlays_the_formula(page, formula_report):
    """F (or the button) draws the unit's formula mask in its own colour; G switches to the label's
    ground truth; F again goes back to the unit's mask; the arrow keys keep the formula on."""
    open_layer(page, formula_report)
    card = page.locator(".unit-card[data-formula]").first
    unit = card.get_attribute("data-unit")
    card.click()
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:unit']")
    assert page.is_visible("#toggle-formula")
    mask = overlay_pixels(page, "#viewer-tiles")
    page.keyboard.press("f")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:formula']")
    assert page.get_attribute("#toggle-formula", "aria-pressed") == "true"
    formula = overlay_pixels(page, "#viewer-tiles")
    assert formula != mask
    assert MAGENTA & {tuple(formula[i : i + 4]) for i in range(0, len(formula), 4)}
    page.click("#toggle-truth")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:truth']")
    assert page.get_attribute("#toggle-formula", "aria-pressed") == "false"
    page.click("#toggle-formula")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{unit}:formula']")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#viewer-tiles[data-shown$=':formula']")
    assert not page.text_content("#viewer-title").startswith(f"Unit {unit}:")
    page.keyboard.press("f")
    page.wait_for_selector("#viewer-tiles[data-shown$=':unit']")
    assert page.problems == []


def test_no_formula_button_without_formulas(page, report):
    open_layer(page, report)
    page.locator(".unit-card").first.click()
    page.wait_for_selector("#viewer-tiles[data-shown$=':unit']")
    assert not page.is_visible("#toggle-formula")
    page.keyboard.press("f")  # nothing to show: stays on the unit's mask
    assert page.get_attribute("#viewer-tiles", "data-shown").endswith(":unit")
    assert page.problems == []


# ---------------------------------------------------------------------------------------------
# a 2,048-unit layer (results written directly, no model)

UNITS = 2048
PAGE = PAGE_SIZE  # cards in the grid at first; more as one scrolls
#: Generous limits for a shared CI machine; the targets (2 s, 200 ms) and the measured numbers
#: are in benchmarks/bench_report.py.
FIRST_CARDS_LIMIT_S = 10.0
ACTION_LIMIT_MS = 2000.0

TIMED = """async ([selector, value]) => {
    const el = document.querySelector(selector), t = performance.now();
    el.value = value;
    el.dispatchEvent(new Event(el.tagName === 'INPUT' ? 'input' : 'change'));
    document.body.offsetHeight;  // layout
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));  // and a frame
    return performance.now() - t;
}"""


@pytest.fixture(scope="module")
def big_report(tmp_path_factory):
    from netdissect.report import write_report

    root = tmp_path_factory.mktemp("big")
    data = make_synthetic_dataset(root / "data", n=60, size=64, seed=5)
    out = write_fake_run(root / "run", data, units=UNITS)
    write_report(out, progress=False)
    return out


def first_cards_seconds(page, run: Path) -> float:
    start = time.perf_counter()
    page.goto((run / "layer4" / "index.html").as_uri())
    page.wait_for_function(
        """() => { const c = document.querySelector('.unit-card');
                   return c && c.querySelectorAll('canvas[data-painted=unit]').length === 10 &&
                          [...c.querySelectorAll('img')].every(i => i.complete && i.naturalWidth); }""",
        timeout=60_000,
    )
    return time.perf_counter() - start


def layer_counts(run: Path) -> dict:
    """Units per category and per label of the fake layer, from its saved results."""
    from netdissect.labels import display_name
    from netdissect.runs.results import LayerResult

    layer = LayerResult.load(run / "layer4", maps=False)
    categories = [layer.categories[c] for c in layer.category]
    labels = [display_name(layer.label_names[k]) for k in layer.label]
    return {"categories": categories, "labels": labels, "scores": layer.score.tolist()}


def test_large_layer_opens_fast_and_draws_only_what_is_near(page, big_report):
    seconds = first_cards_seconds(page, big_report)
    assert seconds < FIRST_CARDS_LIMIT_S
    assert len(visible_cards(page)) == PAGE  # the first cards; more as one scrolls
    assert page.text_content("#shown-count") == f"{UNITS} of {UNITS} units"
    made = page.eval_on_selector_all(".unit-card img", "imgs => imgs.length")
    assert 0 < made < PAGE * 10 / 2  # tiles are made for the cards near the viewport only
    # scrolling down adds the next cards, and those get their tiles
    for _ in range(3):
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function(f"() => document.querySelectorAll('#units .unit-card').length > {PAGE}")
    count = page.eval_on_selector_all("#units .unit-card", "cs => cs.length")
    assert count % PAGE == 0 and count > PAGE
    page.eval_on_selector(f"#units .unit-card:nth-child({PAGE + 1})", "c => c.scrollIntoView()")
    page.wait_for_function(
        f"() => document.querySelector('#units .unit-card:nth-child({PAGE + 1})')"
        ".querySelectorAll('canvas[data-painted=unit]').length === 10"
    )
    assert page.problems == []


def test_large_layer_sort_filter_search_respond(page, big_report):
    first_cards_seconds(page, big_report)
    counts = layer_counts(big_report)
    timings = {}
    timings["sort"] = page.evaluate(TIMED, ["#sort", "unit"])
    assert [int(c["unit"]) for c in visible_cards(page)] == list(range(1, PAGE + 1))
    timings["sort back"] = page.evaluate(TIMED, ["#sort", "score"])
    scores = page.eval_on_selector_all("#units .unit-card", "cs => cs.map(c => +c.dataset.score)")
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(max(counts["scores"]), abs=1e-5)
    category = max(set(counts["categories"]), key=counts["categories"].count)
    expected = counts["categories"].count(category)
    timings["filter"] = page.evaluate(TIMED, ["#category", category])
    shown = visible_cards(page)
    assert len(shown) == min(PAGE, expected) and all(c["category"] == category for c in shown)
    assert page.text_content("#shown-count") == f"{expected} of {UNITS} units"
    timings["filter off"] = page.evaluate(TIMED, ["#category", ""])
    assert page.text_content("#shown-count") == f"{UNITS} of {UNITS} units"
    label = shown[0]["label"]
    expected = sum(label.lower() in x.lower() for x in counts["labels"])
    timings["search"] = page.evaluate(TIMED, ["#search", label])
    shown = visible_cards(page)
    assert len(shown) == min(PAGE, expected) and all(label.lower() in c["label"].lower() for c in shown)
    assert page.text_content("#shown-count") == f"{expected} of {UNITS} units"
    assert max(timings.values()) < ACTION_LIMIT_MS, timings
    assert page.problems == []


def test_large_layer_bar_click_viewer_and_ground_truth(page, big_report):
    first_cards_seconds(page, big_report)
    bar = page.locator("#bar-graph rect.bar").first
    label = bar.get_attribute("data-label")
    bar.click()
    assert page.input_value("#search") == label
    shown = visible_cards(page)
    assert shown and all(label.lower() in c["label"].lower() for c in shown)
    page.click(f".unit-card[data-unit='{shown[0]['unit']}']")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{shown[0]['unit']}:unit']")
    mask = overlay_pixels(page, "#viewer-tiles")
    page.click("#toggle-truth")
    page.wait_for_selector(f"#viewer-tiles[data-shown='{shown[0]['unit']}:truth']")
    assert overlay_pixels(page, "#viewer-tiles") != mask
    if len(shown) > 1:  # the arrow keys step through the shown units, ground truth kept on
        page.keyboard.press("ArrowRight")
        page.wait_for_selector(f"#viewer-tiles[data-shown='{shown[1]['unit']}:truth']")
        assert page.text_content("#viewer-title").startswith(f"Unit {shown[1]['unit']}:")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.problems == []
