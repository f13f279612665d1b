"""Charts are laid out for their cards: a few bars spread over a page-wide card instead of filling a
third of it, many bars keep their room (the card scrolls), and the ablation scatter keeps its dots
inside its plot area, with both axes titled. (What every chart of the registry shares, PNG widths
included, is tested in ``test_charts.py``.)"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from netdissect.report.charts import ablation_curves, ablation_scatter, detectors
from netdissect.report.charts.svgbase import integer_scale, nice_step

SVG = "{http://www.w3.org/2000/svg}"
CARD = 1000  # about the inside of a page-wide card (1280-pixel window: 1186)


def box(svg: str) -> tuple[float, float, str]:
    """The chart's viewBox width and height, and its inline style."""
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    return width, height, root.get("style") or ""


def min_width(style: str) -> float:
    found = re.search(r"min-width:\s*([\d.]+)px", style)
    return float(found.group(1)) if found else 0.0


def bar_graph(bars: list[tuple[str, str, int]]) -> str:
    return detectors.svg(detectors.data(bars))


def test_bars_take_the_room_they_are_given():
    few = ET.fromstring(bar_graph([("object", "sky", 5), ("part", "door", 2)]))
    widths = [float(r.get("width")) for r in few.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert all(20 <= w <= 48 for w in widths)  # wider than before, never slabs
    labels = [t for t in few.iter(f"{SVG}text") if t.get("class") == "bar-label"]
    assert labels and all(t.get("transform") is None for t in labels)  # room enough: not rotated


def test_many_bars_keep_their_size_and_scroll():
    bars = [("object", f"label number {i}", 300 - i) for i in range(300)]
    width, _, style = box(bar_graph(bars))
    assert width > 3 * CARD
    assert min_width(style) == round(width)  # never squeezed into the card: it scrolls there


def test_tick_steps_are_round():
    assert [nice_step(t) for t in (0, 1, 7, 0.3, 260)] == [1.0, 0.2, 2, 0.1, 100]
    assert integer_scale(7) == (8, 2) and integer_scale(0) == (1, 1) and integer_scale(260) == (300, 100)


def scatter_data(iou: np.ndarray, hits: np.ndarray, labels: list[str], k: int | None) -> dict:
    units = [
        {"unit": i + 1, "label": name, "iou": float(v), "hits": int(h)}
        for i, (v, h, name) in enumerate(zip(iou, hits, labels))
    ]
    return {"k": k, "pearson": None, "units": units}


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
        svg = ablation_scatter.svg(scatter_data(iou, hits, ["<b>"] * 60, 5))
        dots, (x0, y0, x1, y1) = dots_and_plot(svg)
        assert len(dots) == 60
        for cx, cy, r in dots:
            assert x0 <= cx - r and cx + r <= x1 and y0 <= cy - r and cy + r <= y1, (cx, cy, (x0, y0, x1, y1))


def test_scatter_and_curves_have_axis_titles():
    svg = ablation_scatter.svg(scatter_data(np.array([0.1, 0.2]), np.array([0, 3]), ["a", "b"], 5))
    titles = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "axis-title"]
    assert titles == ["IoU of the unit's label", "classes with the unit in their top 5"]
    series = [
        {"key": key, "name": key, "colour": "#000", "dashed": False, "values": values, "classes": []}
        for key, values in (("removed", [0.9, 0.5, 0.1]), ("kept", [0.1, 0.5, 0.9]))
    ]
    curves = ablation_curves.svg({"k": 3, "class": "sky", "series": series})
    titles = [t.text for t in ET.fromstring(curves).iter(f"{SVG}text") if t.get("class") == "axis-title"]
    assert titles == ["k units", "accuracy"]
