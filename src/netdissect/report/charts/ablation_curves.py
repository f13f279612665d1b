"""An ablation's group curves: a class's accuracy against the number k of its most important units
removed or kept, for the class itself and for the other classes (the ablation page's chart per
class, and ``group_curves.png``: the mean over the classes, each class faint)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from . import pngbase
from .svgbase import empty_svg, escape, svg_open

if TYPE_CHECKING:
    from ...ablation.result import AblationResult

CLASS = "curves"
#: The chart's series: (key, legend, colour, dashed).
SERIES = (
    ("removed", "this class, top k removed", "#e15759", False),
    ("removed_others", "other classes, top k removed", "#e15759", True),
    ("kept", "this class, only top k kept", "#4e79a7", False),
    ("kept_others", "other classes, only top k kept", "#4e79a7", True),
)
WIDTH, HEIGHT = 360, 214  # a card of the page's grid of classes
FAINT_CLASSES = 20  # the mean is drawn over each class's faint curve up to this many classes


def _values(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]


def data(result: AblationResult, cls: int | None = None) -> dict:
    """The chart's data: class ``cls``'s curves, or (``cls`` None) their mean over the classes with
    images and, up to :data:`FAINT_CLASSES` classes, each class's curve. ``{"k", "class" (its name,
    None for the mean), "series": [{"key", "name", "colour", "dashed", "values", "classes"}]}``,
    accuracies in 0-1, None where undefined; no series without images or without a top k."""
    arrays = {
        "removed": result.group_removed,
        "removed_others": result.group_removed_others,
        "kept": result.group_kept,
        "kept_others": result.group_kept_others,
    }
    valid = np.asarray(result.class_counts) > 0
    if cls is not None:
        valid = np.arange(len(valid)) == cls
    series = []
    for key, name, colour, dashed in SERIES if result.top_k and valid.any() else ():
        rows = np.asarray(arrays[key], dtype=np.float64)[valid]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a column of NaN is NaN
            values = _values(rows[0] if cls is not None else np.nanmean(rows, axis=0))
        classes = [_values(r) for r in rows] if cls is None and len(rows) <= FAINT_CLASSES else []
        series.append(
            {"key": key, "name": name, "colour": colour, "dashed": dashed, "values": values, "classes": classes}
        )
    return {"k": int(result.top_k), "class": None if cls is None else str(result.class_names[cls]), "series": series}


def svg(data: Mapping) -> str:
    """The chart as SVG, :data:`WIDTH` x :data:`HEIGHT` (a card of the page's grid, which names the
    class): lines are ``polyline.series`` elements with ``data-series``; axis titles are ``text.axis-title``."""
    if not data["series"]:
        return empty_svg(CLASS, "No class with images, or no top k.")
    width, height = WIDTH, HEIGHT
    left, right, top, bottom = 54, 10, 10, 42
    k = data["k"]
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * (i - 1) / (k - 1) if k > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph * (1 - v)

    def points(values: list) -> str:
        return " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values, 1) if v is not None)

    parts = [svg_open(CLASS, width, height, "accuracy against the number k of units removed or kept")]
    for t in (0, 0.5, 1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#dde1e6"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">{int(t * 100)}%</text>')
    for i in sorted({1, k, (k + 1) // 2}):
        parts.append(f'<text x="{x(i):.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="11">{i}</text>')
    parts.append(
        f'<text class="axis-title" x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="11">'
        "k units</text>"
    )
    parts.append(
        f'<text class="axis-title" x="11" y="{top + ph / 2:.1f}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 11 {top + ph / 2:.1f})">accuracy</text>'
    )
    for s in data["series"]:
        dash = ' stroke-dasharray="5 4"' if s["dashed"] else ""
        for row in s["classes"]:
            parts.append(
                f'<polyline class="class-series" points="{points(row)}" fill="none" stroke="{s["colour"]}" '
                f'stroke-opacity=".15" stroke-width="1"{dash}/>'
            )
        parts.append(
            f'<polyline class="series" data-series="{escape(s["key"])}" points="{points(s["values"])}" fill="none" '
            f'stroke="{s["colour"]}" stroke-width="2"{dash}><title>{escape(s["name"])}</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG, titled with the class (``key``: see :data:`pngbase.CHART_KEY`)."""
    from matplotlib.ticker import MaxNLocator

    fig = pngbase.figure(pngbase.MIN_WIDTH, 3.6)
    ax = fig.add_subplot()
    ks = np.arange(1, data["k"] + 1)

    def array(values: list) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    for s in data["series"]:
        style = "--" if s["dashed"] else "-"
        for row in s["classes"]:
            ax.plot(ks, array(row), color=s["colour"], alpha=0.15, linestyle=style)
        ax.plot(ks, array(s["values"]), color=s["colour"], linestyle=style, label=pngbase.text(s["name"]))
    if not data["series"]:
        ax.text(0.5, 0.5, "no class with images", ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set(xlabel="k (each class's most important units)", ylabel="accuracy", ylim=(-0.02, 1.02))
    if data["class"] is not None:
        ax.set_title(pngbase.text(data["class"]), fontsize=10)
    pngbase.plain(ax)
    cast(MaxNLocator, ax.xaxis.get_major_locator()).set_params(integer=True)  # k is a count
    if data["series"]:
        ax.legend(fontsize=8)
    return pngbase.save(fig, path, key)
