"""The ablation page in a real browser (headless Chromium driven by Playwright); skipped when
either is missing (tests/browser_helpers.py)."""

from __future__ import annotations

from pathlib import Path

from ablation_helpers import EVIL
from browser_helpers import screenshot


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
    screenshot(page, "ablation-page.png", full_page=False)
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


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom, text: e.textContent}; })",
    )


def overlap(a: dict, b: dict) -> bool:
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


def test_scatter_dots_stay_in_the_plot_and_both_axes_have_titles(page, demo_run):
    """The jittered dots lie inside the plot area, clear of the tick labels; both axes are titled."""
    _, _, out = demo_run
    page.goto((out / "index.html").as_uri())
    page.eval_on_selector("#scatter", "e => e.scrollIntoView()")
    (area,) = boxes(page, "#scatter-svg rect.plot-area")
    dots = boxes(page, "#scatter-svg circle.dot")
    assert len(dots) == 128
    outside = [
        d for d in dots if d["x0"] < area["x0"] or d["x1"] > area["x1"] or d["y0"] < area["y0"] or d["y1"] > area["y1"]
    ]
    assert outside == []
    ticks = boxes(page, "#scatter-svg text.tick")
    assert ticks and not [(d, t) for d in dots for t in ticks if overlap(d, t)]
    titles = boxes(page, "#scatter-svg text.axis-title")
    assert [t["text"] for t in titles] == ["IoU of the unit's label", "classes with the unit in their top 5"]
    (x_title, y_title) = ((t["x1"] - t["x0"], t["y1"] - t["y0"]) for t in titles)
    assert x_title[0] > 3 * x_title[1] and y_title[1] > 3 * y_title[0]  # drawn: along the x axis, up the y axis
    assert not [(d, t) for d in dots for t in titles if overlap(d, t)]
    screenshot(page, "ablation-scatter.png")
    assert page.problems == []


def test_ablation_charts_fill_their_cards(page, demo_run):
    _, _, out = demo_run
    page.goto((out / "index.html").as_uri())
    fits = page.eval_on_selector_all(
        "#scatter-svg, svg.curves",
        """svgs => svgs.map(svg => {
            const holder = svg.parentElement, style = getComputedStyle(holder), r = svg.getBoundingClientRect();
            return {width: r.width, height: r.height,
                    room: holder.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)};
        })""",
    )
    assert len(fits) == 1 + 5  # the scatter and a chart per class
    for fit in fits:
        assert 0.97 * fit["room"] <= fit["width"] <= fit["room"] + 1, fit
        assert 0.2 * fit["width"] < fit["height"] < 0.7 * fit["width"], fit
    assert page.problems == []
