"""A run's fraction of units detecting each category: a stacked bar per layer (the run page's chart
and ``summary.png``)."""

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
    column_labels,
    empty_svg,
    escape,
    fill_step,
    nice_step,
    shorten,
    stacked_segments,
    svg_open,
)

CLASS = "fractions-chart"


def data(fractions: Mapping) -> dict:
    """The chart's data from :func:`netdissect.report.categories.category_fractions`'s output (or a
    run context holding it under ``"fractions"``): ``{"categories": [...], "layers": [{"layer",
    "units", "counts", "fractions"}]}``."""
    if isinstance(fractions.get("fractions"), Mapping):
        fractions = fractions["fractions"]
    return {"categories": list(fractions["categories"]), "layers": list(fractions["layers"])}


def svg(data: Mapping) -> str:
    """The chart as SVG: segments are ``rect.segment`` elements with ``data-layer`` and ``data-category``."""
    categories, rows = list(data["categories"]), list(data["layers"])
    colours = category_colours(categories)
    if not rows:
        return empty_svg(CLASS, "No layers.")
    totals = [sum(r["fractions"].values()) for r in rows]
    peak = max(max(totals), 0.01)
    tick = nice_step(peak, 5)
    ymax = min(1.0, tick * math.ceil(peak / tick - 1e-9)) if peak <= 1 else tick * math.ceil(peak / tick)
    ymax = max(ymax, tick)
    plot_h, top = 220, 20
    names = [shorten(r["layer"], 22) for r in rows]
    extent = max(len(n) for n in names) * CHAR
    step = float(max(56, min(110, 640 // max(len(rows), 1))))
    left = max(56.0, extent * math.cos(math.radians(35)) - step / 2 + 10)
    step = fill_step(step, len(rows), CARD_WIDTH - left - 24 - 130)
    bar_w = min(step * 0.62, 96)
    rotate = extent > step - 6
    drop = (extent * math.sin(math.radians(35)) + 14) if rotate else 22
    if not rotate:  # the labels need no room on the left: the bars take it
        left = 56.0
        step = fill_step(step, len(rows), CARD_WIDTH - left - 24 - 130)
        bar_w = min(step * 0.62, 96)
    legend_x = left + step * len(rows) + 24
    width = legend_x + 130
    height = max(top + plot_h + drop + 24, top + 22 * len(categories) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [svg_open(CLASS, width, height, "fraction of units detecting each category, per layer")]
    value = 0.0
    while value <= ymax + 1e-9:
        y = base - value * scale
        out.append(f'<line x1="{left - 4:.1f}" y1="{y:.1f}" x2="{legend_x - 14:.1f}" y2="{y:.1f}" stroke="#e3e5e8" />')
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
            f"{value * 100:.0f}%</text>"
        )
        value += tick
    out.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" fill="#555" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">units detecting the category</text>'
    )
    for i, (row, name) in enumerate(zip(rows, names)):
        x = left + i * step + (step - bar_w) / 2
        segments, y = stacked_segments(row["fractions"], categories, base, scale)
        for c, f, sy, h in segments:
            n = row["counts"].get(c, 0)
            out.append(
                f'<rect class="segment" x="{x:.1f}" y="{sy:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colours[c]}" data-layer="{escape(row["layer"])}" data-category="{escape(c)}">'
                f"<title>{escape(row['layer'])}: {escape(c)} {n}/{row['units']} units ({f * 100:.1f}%)</title></rect>"
            )
        total = sum(row["fractions"].values())
        column_labels(out, x, bar_w, y, base, f"{total * 100:.1f}%", name, 35 if rotate else 0, "layer-label")
    out.append(f'<line x1="{left - 4:.1f}" y1="{base:.1f}" x2="{legend_x - 14:.1f}" y2="{base:.1f}" stroke="#888" />')
    for j, c in enumerate(reversed(categories)):  # legend top-down in stacking order (top segment first)
        y = top + j * 22
        out.append(f'<rect x="{legend_x:.1f}" y="{y:.1f}" width="14" height="14" rx="2" fill="{colours[c]}" />')
        out.append(f'<text x="{legend_x + 20:.1f}" y="{y + 11:.1f}" font-size="12" fill="#222">{escape(c)}</text>')
    out.append("</svg>")
    return "".join(out)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG (percentages; ``key``: see :data:`pngbase.CHART_KEY`)."""
    categories, rows = list(data["categories"]), list(data["layers"])
    values = {c: [100 * r["fractions"].get(c, 0.0) for r in rows] for c in categories}
    fig = pngbase.stacked_bars(categories, [r["layer"] for r in rows], values, "units detecting the category (%)")
    return pngbase.save(fig, path, key)
