"""A comparison's unique detectors per category: a stacked bar per run and layer (the paper's
figure; the comparison page's chart and ``unique_detectors.png``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from ..categories import category_colours
from . import pngbase
from .svgbase import (
    CARD_WIDTH,
    CHAR,
    axis,
    column_labels,
    empty_svg,
    escape,
    fill_step,
    integer_scale,
    legend,
    shorten,
    stacked_segments,
    svg_open,
)

CLASS = "unique-chart"


def data(comparison: Mapping) -> dict:
    """The chart's data from :func:`netdissect.report.compare_page.comparison_data`'s output:
    ``{"categories": [...], "rows": [{"run", "layer", "unique_detectors", "unique_by_category"}]}``."""
    keys = ("run", "layer", "unique_detectors", "unique_by_category")
    return {
        "categories": list(comparison["categories"]),
        "rows": [{k: row[k] for k in keys} for row in comparison["rows"]],
    }


def svg(data: Mapping) -> str:
    """The chart as SVG: segments are ``rect.segment`` elements with ``data-run``, ``data-layer``,
    ``data-category`` and ``data-count``."""
    categories, rows = list(data["categories"]), list(data["rows"])
    colours = category_colours(categories)
    if not rows:
        return empty_svg(CLASS, "No layers.")
    ymax, tick = integer_scale(max(max(r["unique_detectors"] for r in rows), 1))
    plot_h, top, step = 220, 20, 60.0
    names = [shorten(f"{r['run']} · {r['layer']}", 30) for r in rows]
    extent = max(len(n) for n in names) * CHAR
    left = max(50.0, extent * math.cos(math.radians(40)) - step / 2 + 10)
    step = fill_step(step, len(rows), CARD_WIDTH - left - 24 - 130)
    angle = 0 if extent <= step - 6 else 40
    if not angle:  # the labels need no room on the left: the bars take it
        left = 50.0
        step = fill_step(step, len(rows), CARD_WIDTH - left - 24 - 130)
    bar_w = min(step * 0.62, 96)
    drop = extent * math.sin(math.radians(angle)) + 16 if angle else 24
    legend_x = left + step * len(rows) + 24
    width, height = legend_x + 130, max(top + plot_h + drop + 10, top + 22 * len(categories) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [svg_open(CLASS, width, height, "unique detectors per category, per run and layer")]
    axis(out, left, legend_x - 14, base, plot_h, ymax, tick, "unique detectors", top)
    for i, (row, name) in enumerate(zip(rows, names)):
        x = left + i * step + (step - bar_w) / 2
        segments, y = stacked_segments(row["unique_by_category"], categories, base, scale)
        run, layer = escape(row["run"]), escape(row["layer"])
        for c, n, sy, h in segments:
            out.append(
                f'<rect class="segment" x="{x:.1f}" y="{sy:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colours[c]}" '
                f'data-run="{run}" data-layer="{layer}" data-category="{escape(c)}" data-count="{n}">'
                f"<title>{run} · {layer}: {n} unique {escape(c)} detectors</title></rect>"
            )
        column_labels(out, x, bar_w, y, base, str(row["unique_detectors"]), name, angle)
    legend(out, legend_x, top, [(c, colours[c]) for c in reversed(categories)])
    out.append("</svg>")
    return "".join(out)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG (``key``: see :data:`pngbase.CHART_KEY`)."""
    categories, rows = list(data["categories"]), list(data["rows"])
    values = {c: [r["unique_by_category"].get(c, 0) for r in rows] for c in categories}
    names = [f"{r['run']}\n{r['layer']}" for r in rows]
    fig = pngbase.stacked_bars(categories, names, values, "unique detectors", bar_width=0.8, rotate_above=3, fontsize=8)
    return pngbase.save(fig, path, key)
