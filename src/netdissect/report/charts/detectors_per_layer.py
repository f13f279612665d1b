"""A comparison's detectors per layer: grouped bars, a group per layer and a bar per run (the
comparison page's chart and ``detectors_per_layer.png``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from . import pngbase
from .svgbase import CARD_WIDTH, axis, empty_svg, escape, fill_step, integer_scale, legend, shorten, svg_open

CLASS = "detectors-chart"
#: The runs' colours, in order (the comparison page's table uses them too).
RUN_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def data(comparison: Mapping) -> dict:
    """The chart's data from :func:`netdissect.report.compare_page.comparison_data`'s output:
    ``{"layers": [...], "runs": [...], "detectors": [per run: [per layer: count or None]]}``."""
    d = comparison["detectors_per_layer"]
    return {"layers": list(d["layers"]), "runs": list(d["runs"]), "detectors": [list(row) for row in d["detectors"]]}


def run_colour(i: int) -> str:
    """The colour of the ``i``-th run."""
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def svg(data: Mapping) -> str:
    """The chart as SVG: bars are ``rect.bar`` elements with ``data-run``, ``data-layer`` and ``data-count``."""
    layers, runs, values = list(data["layers"]), list(data["runs"]), data["detectors"]
    if not layers:
        return empty_svg(CLASS, "No layers.")
    ymax, tick = integer_scale(max([v for row in values for v in row if v is not None] + [1]))
    plot_h, top = 220, 20
    names = [shorten(n, 22) for n in layers]
    left = 50.0
    group = fill_step(18.0 * len(runs) + 18, len(layers), CARD_WIDTH - left - 24 - 160)
    bar = min((group - 18) / max(len(runs), 1), 48.0)  # wider bars when few, the group centred
    legend_x = left + group * len(layers) + 24
    width, height = legend_x + 160, max(top + plot_h + 40, top + 22 * len(runs) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [svg_open(CLASS, width, height, "detectors per layer, per run")]
    axis(out, left, legend_x - 14, base, plot_h, ymax, tick, "detectors", top)
    for li, name in enumerate(names):
        x0 = left + li * group + (group - bar * len(runs)) / 2
        for ri, run in enumerate(runs):
            v = values[ri][li]
            if v is None:
                continue
            h = v * scale
            x = x0 + ri * bar
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                f'fill="{run_colour(ri)}" data-run="{escape(run)}" data-layer="{escape(layers[li])}" data-count="{v}">'
                f"<title>{escape(run)} · {escape(layers[li])}: {v} detectors</title></rect>"
            )
        out.append(
            f'<text x="{x0 + bar * len(runs) / 2:.1f}" y="{base + 16:.1f}" font-size="11" text-anchor="middle" '
            f'fill="#222">{escape(name)}</text>'
        )
    legend(out, legend_x, top, [(r, run_colour(i)) for i, r in enumerate(runs)])
    out.append("</svg>")
    return "".join(out)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG (``key``: see :data:`pngbase.CHART_KEY`)."""
    layers, runs = list(data["layers"]), list(data["runs"])
    fig = pngbase.figure(max(pngbase.MIN_WIDTH, (0.3 * len(runs) + 0.4) * len(layers) + 2.8), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(len(runs), 1)
    for ri, run in enumerate(runs):
        xs = [li - 0.4 + width * (ri + 0.5) for li in range(len(layers))]
        values = [v if v is not None else 0 for v in data["detectors"][ri]]
        ax.bar(xs, values, width=width * 0.92, color=run_colour(ri), label=pngbase.text(run))
    ax.set_xticks(list(range(len(layers))))
    ax.set_xticklabels([pngbase.text(n) for n in layers], fontsize=9)
    ax.set_ylabel("detectors")
    pngbase.plain(ax, integer=True)
    pngbase.legend_outside(ax)
    return pngbase.save(fig, path, key)
