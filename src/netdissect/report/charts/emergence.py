"""Concept emergence over a series of runs (checkpoints): per layer, detectors per category (solid
lines) and unique detectors (dashed) against the run (the comparison page's chart per layer and
``concept_emergence.png``, a panel per layer)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from ..categories import category_colours
from . import pngbase
from .svgbase import CARD_WIDTH, CHAR, axis, empty_svg, escape, fill_step, integer_scale, legend, shorten, svg_open

CLASS = "emergence-chart"
UNIQUE = "unique detectors"


def data(comparison: Mapping, layer: str | None = None) -> dict:
    """The chart's data from :func:`netdissect.report.compare_page.comparison_data`'s output (its
    ``"series"``), every common layer or only ``layer``: ``{"runs": [...], "layers": [{"layer",
    "lines": [{"name", "colour", "values", "dashed"}]}]}``; no layers when the runs are no series."""
    series = comparison.get("series") or {}
    categories = list(comparison["categories"])
    colours = category_colours(categories)
    layers = []
    for entry in series.get("layers", []):
        if layer is not None and entry["layer"] != layer:
            continue
        lines = [
            {"name": c, "colour": colours[c], "values": list(entry["detectors"][c]), "dashed": False}
            for c in categories
            if any(entry["detectors"][c])
        ]
        lines.append({"name": UNIQUE, "colour": "#333", "values": list(entry["unique_total"]), "dashed": True})
        layers.append({"layer": entry["layer"], "lines": lines})
    return {"runs": list(series.get("runs", [])), "layers": layers}


def _panel(out: list[str], runs: list[str], panel: Mapping, left: float, step: float, legend_x: float) -> None:
    """Append one layer's plot (axis, lines, run names, legend) to ``out``."""
    lines = panel["lines"]
    ymax, tick = integer_scale(max([v for line in lines for v in line["values"]] + [1]))
    plot_h, top = 200, 20
    base = top + plot_h
    scale = plot_h / ymax
    axis(out, left, legend_x - 14, base, plot_h, ymax, tick, "units", top)
    xs = [left + (i + 0.5) * step for i in range(len(runs))]
    for line in lines:
        name, colour, values = line["name"], line["colour"], line["values"]
        points = " ".join(f"{x:.1f},{base - v * scale:.1f}" for x, v in zip(xs, values))
        dash = ' stroke-dasharray="5 4"' if line["dashed"] else ""
        out.append(
            f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}" '
            f'data-name="{escape(name)}" data-values="{escape(",".join(str(v) for v in values))}" />'
        )
        for x, v, run in zip(xs, values, runs):
            out.append(
                f'<circle cx="{x:.1f}" cy="{base - v * scale:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(run)}: {v} {escape(name)}</title></circle>"
            )
    for x, name in zip(xs, (shorten(r, 20) for r in runs)):
        cy = base + 14
        out.append(
            f'<text x="{x:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
            f'transform="rotate(-35 {x:.1f} {cy:.1f})">{escape(name)}</text>'
        )
    legend(out, legend_x, top, [(d["name"], d["colour"]) for d in lines], [d["dashed"] for d in lines])


def svg(data: Mapping) -> str:
    """The chart as SVG, a panel per layer (titled when there are several; the comparison page draws
    one layer per card): lines are ``polyline.series`` elements with ``data-name`` and ``data-values``."""
    runs, panels = list(data["runs"]), list(data["layers"])
    if not panels:
        return empty_svg(CLASS, "No layer common to the runs.")
    plot_h, top, n = 200, 20, len(runs)
    step = max(40.0, min(120.0, 640.0 / max(n, 1)))
    names = [shorten(r, 20) for r in runs]
    extent = max([len(x) for x in names] + [0]) * CHAR
    drop = extent * math.sin(math.radians(35)) + 16
    left = max(50.0, extent * math.cos(math.radians(35)) - step / 2 + 10)
    step = fill_step(step, n, CARD_WIDTH - left - 24 - 160)
    legend_x = left + step * n + 24
    heights = [max(top + plot_h + drop + 10, top + 22 * len(p["lines"]) + 10) for p in panels]
    titled = len(panels) > 1
    width, height = legend_x + 160, sum(heights) + (24 * len(panels) if titled else 0)
    out = [svg_open(CLASS, width, height, f"concept emergence in {', '.join(p['layer'] for p in panels)}")]
    y = 0.0
    for panel, h in zip(panels, heights):
        if not titled:
            _panel(out, runs, panel, left, step, legend_x)
            continue
        out.append(
            f'<text class="panel-title" x="{left:.1f}" y="{y + 16:.1f}" font-size="13" font-weight="600" '
            f'fill="#222">{escape(panel["layer"])}</text><g transform="translate(0 {y + 24:.1f})">'
        )
        _panel(out, runs, panel, left, step, legend_x)
        out.append("</g>")
        y += h + 24
    out.append("</svg>")
    return "".join(out)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG, a panel per layer (``key``: see :data:`pngbase.CHART_KEY`)."""
    runs, panels = list(data["runs"]), list(data["layers"])
    fig = pngbase.figure(max(pngbase.MIN_WIDTH, 0.5 * len(runs) + 3.5), 2.9 * max(len(panels), 1) + 0.4)
    xs = list(range(len(runs)))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        for line in panel["lines"]:
            ax.plot(
                xs,
                line["values"],
                marker="o",
                ms=3,
                color=line["colour"],
                linestyle="--" if line["dashed"] else "-",
                label=pngbase.text(line["name"]),
            )
        ax.set_xticks(xs)
        ax.set_xticklabels(
            [pngbase.text(r) for r in runs],
            rotation=30 if len(runs) > 4 else 0,
            ha="right" if len(runs) > 4 else "center",
            fontsize=8,
        )
        ax.set_title(pngbase.text(panel["layer"]), fontsize=10)
        ax.set_ylabel("units")
        ax.set_ylim(bottom=0)
        pngbase.plain(ax, integer=True)
        pngbase.legend_outside(ax, fontsize=8)
    if not panels:
        fig.text(0.5, 0.5, "no layer common to the runs", ha="center", va="center", color="#666")
    fig.tight_layout()
    return pngbase.save(fig, path, key)
