"""The report's charts as PNG images (for papers): matplotlib figures rendered with Agg.

Figures are built from :class:`matplotlib.figure.Figure` directly, never through pyplot, so
making them touches no global state (no backend switch, no open-figure registry) and works
without a display.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..files import atomic_write_bytes
from .categories import NO_CATEGORY_COLOUR, category_colours
from .svg import place_in_rows

DPI = 150
#: The least width of a chart (inches): as wide for its height as the page's chart in its card,
#: so that a chart of a few bars is not a narrow column.
MIN_WIDTH = 6.4


def _text(s: str) -> str:
    """A label for matplotlib: ``$`` escaped so that names are never read as mathtext."""
    return str(s).replace("$", r"\$")


#: PNG text key holding a digest of what a report chart shows (the report redraws it only when that changes).
CHART_KEY = "netdissect-chart"


def _save(figure: Figure, path: str | os.PathLike, key: str | None = None) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    metadata = {CHART_KEY: key} if key else None
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=metadata)
    figure.clear()
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def save_bar_graph_png(
    bars: Sequence[tuple[str, str, int]], path: str | os.PathLike, title: str | None = None, key: str | None = None
) -> Path:
    """Write the bar graph of detectors per label (``(category, label, count)`` rows, in order) as a PNG
    (``key``: a digest stored in the PNG's text, see :data:`CHART_KEY`)."""
    colours = category_colours(c for c, _, _ in bars)
    n = len(bars)
    width = min(60.0, max(MIN_WIDTH, 0.22 * n + 1.4))
    figure = Figure(figsize=(width, 3.4))
    ax = figure.add_subplot()
    if n:
        xs = range(n)
        counts = [count for _, _, count in bars]
        ax.bar(xs, counts, width=0.75 if n > 8 else 0.6, color=[colours.get(c, NO_CATEGORY_COLOUR) for c, _, _ in bars])
        ax.set_xticks(list(xs))
        ax.set_xticklabels(
            [_text(label) for _, label, _ in bars], rotation=60, ha="right", rotation_mode="anchor", fontsize=8
        )
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(0, max(counts) * 1.15 + 0.5)
        cast(MaxNLocator, ax.yaxis.get_major_locator()).set_params(integer=True)
        # category names above their groups, in a second row where a group is too narrow
        groups: list[tuple[str, int, int]] = []
        for i, (category, _, _) in enumerate(bars):
            if groups and groups[-1][0] == category:
                groups[-1] = (category, groups[-1][1], i)
            else:
                groups.append((category, i, i))
        bar_points = 72 * 0.775 * width / (n + 0.2)  # approximate width of one bar slot in points
        spans = [((first + last) / 2, (5.6 * len(category) / 2 + 3) / bar_points) for category, first, last in groups]
        rows = place_in_rows(spans)
        for (category, first, last), row in zip(groups, rows):
            ax.annotate(
                _text(category),
                xy=((first + last) / 2, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 4 + 12 * row),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
                fontweight="bold",
                color=colours.get(category, NO_CATEGORY_COLOUR),
            )
    else:
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no detectors", ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_ylabel("units")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(_text(title), pad=18 + 12 * (max(rows) if n else 0), fontsize=10)
    return _save(figure, path, key)


def save_stacked_bars_png(
    categories: Sequence[str],
    bar_names: Sequence[str],
    values: Mapping[str, Sequence[float]],
    ylabel: str,
    path: str | os.PathLike,
    bar_width: float = 1.0,
    rotate_above: int = 4,
    fontsize: float | None = None,
    key: str | None = None,
) -> Path:
    """Stacked bars, one per name, one segment per category (in ``categories`` order), as a PNG."""
    colours = category_colours(categories)
    figure = Figure(figsize=(max(MIN_WIDTH, bar_width * len(bar_names) + 2.8), 3.7))
    ax = figure.add_subplot()
    xs = list(range(len(bar_names)))
    bottoms = [0.0] * len(bar_names)
    for c in categories:
        column = list(values.get(c, [0.0] * len(bar_names)))
        if not any(column):
            continue
        ax.bar(xs, column, bottom=bottoms, width=0.62, color=colours.get(c, NO_CATEGORY_COLOUR), label=_text(c))
        bottoms = [b + v for b, v in zip(bottoms, column)]
    rotate = len(bar_names) > rotate_above
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [_text(n) for n in bar_names],
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=fontsize,
    )
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max([*bottoms, 1.0]) * 1.12)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[::-1], labels[::-1], frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return _save(figure, path, key)


def save_category_fractions_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the fraction of units detecting each category per layer (stacked bars) as a PNG.

    ``data`` is :func:`netdissect.report.pages.category_fractions`'s output or a run context
    (:func:`netdissect.report.pages.run_context`) holding it under ``"fractions"``.
    """
    if isinstance(data.get("fractions"), Mapping):
        data = data["fractions"]
    categories, rows = list(data["categories"]), list(data["layers"])
    values = {c: [100 * r["fractions"].get(c, 0.0) for r in rows] for c in categories}
    return save_stacked_bars_png(
        categories, [r["layer"] for r in rows], values, "units detecting the category (%)", path, key=key
    )
