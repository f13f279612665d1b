"""An ablation joined with a dissection: each unit's IoU (interpretability) against the number of
classes it is among the top k most important units for (importance); the ablation page's chart
and ``scatter.png``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import pngbase
from .svgbase import CARD_WIDTH, empty_svg, escape, nice_step, svg_open

if TYPE_CHECKING:
    from ...ablation.result import AblationResult

CLASS = "scatter"
WIDTH, HEIGHT = CARD_WIDTH, 400  # the chart fills its page-wide card
DOT_R = 3.5
JITTER = 0.22  # vertical jitter (in classes) so that units with equal counts stay visible


def data(result: AblationResult) -> dict:
    """The chart's data from the ablation's joined dissection (``metadata["dissection"]``):
    ``{"k", "pearson", "units": [{"unit", "label", "iou", "hits"}]}``; no units without one."""
    joined = result.metadata.get("dissection") or {}
    return {
        "k": joined.get("k"),
        "pearson": joined.get("pearson_iou_vs_classes"),
        "units": [
            {"unit": int(d["unit"]), "label": str(d["label"]), "iou": float(d["iou"]), "hits": int(d["top_k_classes"])}
            for d in joined.get("units", [])
        ],
    }


def svg(data: Mapping) -> str:
    """The chart as SVG, one ``circle.dot`` per unit. Every dot, jitter included, lies inside the
    plot area (``rect.plot-area``), clear of the tick labels; both axes have titles (``text.axis-title``)."""
    if not data["units"]:
        return empty_svg(CLASS, "No unit of the dissection was ablated.")
    k = data["k"]
    iou = np.array([d["iou"] for d in data["units"]])
    hits = np.array([d["hits"] for d in data["units"]])
    width, height = WIDTH, HEIGHT
    left, right, top, bottom = 78, 18, 14, 58
    pw, ph = width - left - right, height - top - bottom
    step = nice_step(max(float(np.max(iou, initial=0.0)), 1e-6))
    xmax = step * np.ceil(max(float(np.max(iou, initial=0.0)), 1e-6) / step - 1e-9)
    ymax = max(int(np.max(hits, initial=0)), 1)
    ystep = max(1, int(np.ceil(nice_step(ymax))))
    pad = DOT_R + 3  # dots at the extremes stay a radius inside the plot area

    def x(v: float) -> float:
        return left + pad + (pw - 2 * pad) * v / xmax

    def y(v: float) -> float:  # counts from -0.5 to ymax + 0.5: the jitter never leaves the plot
        return top + ph * (1 - (v + 0.5) / (ymax + 1))

    title = f"classes with the unit in their top {k}" if k else "classes with the unit in their top k"
    parts = [
        svg_open(CLASS, width, height, "interpretability against importance, one dot per unit", ' id="scatter-svg"'),
        f'<rect class="plot-area" x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" />',
    ]
    for j in range(0, ymax + 1, ystep):
        yy = y(j)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eceef1"/>')
        parts.append(
            f'<text class="tick" x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{j}</text>'
        )
    decimals = max(0, int(-np.floor(np.log10(step))))
    for t in np.arange(0, xmax + step / 2, step):
        xx = x(float(t))
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#9aa0a6"/>')
        parts.append(
            f'<text class="tick" x="{xx:.1f}" y="{top + ph + 17}" text-anchor="middle" font-size="11" fill="#555">'
            f"{t:.{decimals}f}</text>"
        )
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#9aa0a6"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#9aa0a6"/>')
    parts.append(
        f'<text class="axis-title" x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle" font-size="12.5" '
        f'fill="#333">IoU of the unit\'s label</text>'
    )
    cy = top + ph / 2
    parts.append(
        f'<text class="axis-title" x="18" y="{cy:.1f}" text-anchor="middle" font-size="12.5" fill="#333" '
        f'transform="rotate(-90 18 {cy:.1f})">{escape(title)}</text>'
    )
    rng = np.random.default_rng(0)
    for d in data["units"]:
        xx = x(d["iou"])
        yy = y(d["hits"] + rng.uniform(-JITTER, JITTER))
        parts.append(
            f'<circle class="dot" cx="{xx:.1f}" cy="{yy:.1f}" r="{DOT_R}" fill="#4e79a7" fill-opacity=".65">'
            f"<title>unit {d['unit']}: {escape(d['label'])} (IoU {d['iou']:.3f}, {d['hits']} classes)</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG, titled with the Pearson correlation (``key``: see :data:`pngbase.CHART_KEY`)."""
    fig = pngbase.figure(pngbase.MIN_WIDTH, 3.6)
    ax = fig.add_subplot()
    ax.scatter([d["iou"] for d in data["units"]], [d["hits"] for d in data["units"]], s=12, alpha=0.6, color="#4e79a7")
    if not data["units"]:
        ax.text(0.5, 0.5, "no unit", ha="center", va="center", transform=ax.transAxes, color="#666")
    r = data["pearson"]
    k = data["k"] if data["k"] else "k"
    ax.set(xlabel="IoU of the unit's label", ylabel=f"classes with the unit in their top {k}")
    ax.set_title(f"interpretability vs importance (r = {r:.2f})" if r is not None else "interpretability vs importance")
    pngbase.plain(ax, integer=True)
    return pngbase.save(fig, path, key)
