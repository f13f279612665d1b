"""Charts are laid out for their cards: a few bars spread over a page-wide card instead of filling a
third of it, many bars keep their room (the card scrolls), the PNGs are as wide as the page's
charts, and the ablation scatter keeps its dots inside its plot area, with both axes titled."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

from netdissect.report.ablation_page import curves_svg, scatter_svg
from netdissect.report.charts import save_bar_graph_png, save_category_fractions_png
from netdissect.report.compare_charts import detectors_per_layer_svg, emergence_svg, unique_detectors_svg
from netdissect.report.svg import bar_graph_svg, category_fractions_svg

SVG = "{http://www.w3.org/2000/svg}"
CARD = 1000  # about the inside of a page-wide card (1280-pixel window: 1186)

FRACTIONS = {
    "categories": ["object", "part", "color"],
    "layers": [
        {
            "layer": f"conv{i}",
            "units": 64,
            "counts": {"object": i, "part": 2},
            "fractions": {"object": i / 64, "part": 2 / 64},
        }
        for i in range(1, 5)
    ],
}
COMPARE = {
    "categories": ["object", "part"],
    "rows": [
        {"run": run, "layer": "conv4", "unique_detectors": 3, "unique_by_category": {"object": 1, "part": 2}}
        for run in ("before", "after")
    ],
    "detectors_per_layer": {"layers": ["conv3", "conv4"], "runs": ["before", "after"], "detectors": [[4, 6], [5, 7]]},
}


def box(svg: str) -> tuple[float, float, str]:
    """The chart's viewBox width and height, and its inline style."""
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    return width, height, root.get("style") or ""


def min_width(style: str) -> float:
    found = re.search(r"min-width:\s*([\d.]+)px", style)
    return float(found.group(1)) if found else 0.0


def test_few_bars_are_spread_over_the_card():
    charts = {
        "bar graph": bar_graph_svg([("object", "sky", 5), ("part", "door", 2), ("color", "red", 1)]),
        "fractions": category_fractions_svg(FRACTIONS),
        "unique detectors": unique_detectors_svg(COMPARE),
        "detectors per layer": detectors_per_layer_svg(COMPARE),
        "emergence": emergence_svg(
            ["before", "after"],
            {"layer": "conv4", "detectors": {"object": [1, 2], "part": [2, 3]}, "unique_total": [3, 4]},
            ["object", "part"],
        ),
    }
    for name, svg in charts.items():
        width, height, style = box(svg)
        assert width >= CARD, (name, width)  # laid out for the card, not a third of it
        assert height < width / 1.8, (name, width, height)  # scaled to the card, it stays a chart's height
        assert min_width(style) < width, name  # it may shrink in a narrow window


def test_bars_take_the_room_they_are_given():
    few = ET.fromstring(bar_graph_svg([("object", "sky", 5), ("part", "door", 2)]))
    widths = [float(r.get("width")) for r in few.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert all(20 <= w <= 48 for w in widths)  # wider than before, never slabs
    labels = [t for t in few.iter(f"{SVG}text") if t.get("class") == "bar-label"]
    assert labels and all(t.get("transform") is None for t in labels)  # room enough: not rotated


def test_many_bars_keep_their_size_and_scroll():
    bars = [("object", f"label number {i}", 300 - i) for i in range(300)]
    width, _, style = box(bar_graph_svg(bars))
    assert width > 3 * CARD
    assert min_width(style) == round(width)  # never squeezed into the card: it scrolls there


def test_empty_charts_are_one_line():
    for svg in (bar_graph_svg([]), category_fractions_svg({"categories": [], "layers": []})):
        width, height, _ = box(svg)
        assert width >= CARD and height <= 60


def test_pngs_are_as_wide_as_the_page_charts(tmp_path):
    for path in (
        save_bar_graph_png([("object", "sky", 5), ("part", "door", 2), ("color", "red", 1)], tmp_path / "bars.png"),
        save_category_fractions_png({"categories": ["object"], "layers": FRACTIONS["layers"][:1]}, tmp_path / "f.png"),
    ):
        with Image.open(path) as im:
            width, height = im.size
        assert width >= 1.5 * height, (path.name, im.size)


def dots_and_plot(svg: str) -> tuple[list[tuple[float, float, float]], tuple[float, float, float, float]]:
    root = ET.fromstring(svg)
    dots = [
        (float(c.get("cx")), float(c.get("cy")), float(c.get("r")))
        for c in root.iter(f"{SVG}circle")
        if c.get("class") == "dot"
    ]
    area = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "plot-area")
    x, y, w, h = (float(area.get(k)) for k in ("x", "y", "width", "height"))
    return dots, (x, y, x + w, y + h)


def test_scatter_dots_stay_inside_the_plot_area():
    rng = np.random.default_rng(1)
    for hits in (np.zeros(60, int), np.full(60, 7), rng.integers(0, 8, 60)):
        iou = np.concatenate([[0.0, 0.3], rng.uniform(0, 0.3, 58)])
        svg = scatter_svg(iou, hits, ["<b>"] * 60, np.arange(1, 61), 5)
        dots, (x0, y0, x1, y1) = dots_and_plot(svg)
        assert len(dots) == 60
        for cx, cy, r in dots:
            assert x0 <= cx - r and cx + r <= x1 and y0 <= cy - r and cy + r <= y1, (cx, cy, (x0, y0, x1, y1))


def test_scatter_and_curves_have_axis_titles():
    svg = scatter_svg(np.array([0.1, 0.2]), np.array([0, 3]), ["a", "b"], np.array([1, 2]), 5)
    titles = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "axis-title"]
    assert titles == ["IoU of the unit's label", "classes with the unit in their top 5"]
    curves = curves_svg({"removed": np.array([0.9, 0.5, 0.1]), "kept": np.array([0.1, 0.5, 0.9])})
    titles = [t.text for t in ET.fromstring(curves).iter(f"{SVG}text") if t.get("class") == "axis-title"]
    assert titles == ["k units", "accuracy"]
