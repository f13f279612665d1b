"""What the PNG charts share (for papers): matplotlib figures rendered with Agg, written atomically.

Figures are built from :class:`matplotlib.figure.Figure` directly, never through pyplot, so
making them touches no global state (no backend switch, no open-figure registry) and works
without a display. matplotlib is imported when a figure is made, not with this module (the pages
import the charts for their SVG).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...files import atomic_write_bytes
from ..categories import NO_CATEGORY_COLOUR, category_colours

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150
#: The least width of a chart (inches): as wide for its height as the page's chart in its card,
#: so that a chart of a few bars is not a narrow column.
MIN_WIDTH = 6.4
#: PNG text key holding a digest of what a report chart shows (the report redraws it only when that changes).
CHART_KEY = "netdissect-chart"


def text(s: object) -> str:
    """A label for matplotlib: ``$`` escaped so that names are never read as mathtext."""
    return str(s).replace("$", r"\$")


def figure(width: float, height: float) -> Figure:
    """A figure ``width`` x ``height`` inches with an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plain(ax: Any, integer: bool = False) -> None:
    """No top and right spines; whole numbers only on the y axis when ``integer``."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if integer:
        ax.yaxis.get_major_locator().set_params(integer=True)


def legend_outside(ax: Any, fontsize: float = 9, reverse: bool = False) -> None:
    """The axes' legend right of the plot (in reverse order for stacked bars: top segment first)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        if reverse:
            handles, labels = handles[::-1], labels[::-1]
        ax.legend(handles, labels, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=fontsize)


def save(fig: Figure, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically; ``key``: a digest stored in its text, see :data:`CHART_KEY`)."""
    buffer = io.BytesIO()
    metadata = {CHART_KEY: key} if key else None
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=metadata)
    fig.clear()
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def stacked_bars(
    categories: Sequence[str],
    bar_names: Sequence[str],
    values: Mapping[str, Sequence[float]],
    ylabel: str,
    bar_width: float = 1.0,
    rotate_above: int = 4,
    fontsize: float | None = None,
) -> Figure:
    """Stacked bars, one per name, one segment per category (in ``categories`` order)."""
    colours = category_colours(categories)
    fig = figure(max(MIN_WIDTH, bar_width * len(bar_names) + 2.8), 3.7)
    ax = fig.add_subplot()
    xs = list(range(len(bar_names)))
    bottoms = [0.0] * len(bar_names)
    for c in categories:
        column = list(values.get(c, [0.0] * len(bar_names)))
        if not any(column):
            continue
        ax.bar(xs, column, bottom=bottoms, width=0.62, color=colours.get(c, NO_CATEGORY_COLOUR), label=text(c))
        bottoms = [b + v for b, v in zip(bottoms, column)]
    rotate = len(bar_names) > rotate_above
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [text(n) for n in bar_names],
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=fontsize,
    )
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max([*bottoms, 1.0]) * 1.12)
    plain(ax)
    legend_outside(ax, reverse=True)
    return fig
