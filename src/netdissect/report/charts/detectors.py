"""A layer's bar graph of detectors per label: one bar per label, coloured and grouped by category
(the layer page's chart and ``bargraph.png``)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import cast

from ..categories import NO_CATEGORY_COLOUR, category_colours
from . import pngbase
from .svgbase import CARD_WIDTH, CHAR, empty_svg, escape, fill_step, integer_scale, place_in_rows, shorten, svg_open

CLASS = "bar-graph"


def data(
    bars: Sequence[tuple[str, str, int]], categories: Iterable[str] | None = None, title: str | None = None
) -> dict:
    """The chart's data: ``bars`` are ``(category, label, count)`` rows in the order drawn (see
    :func:`netdissect.report.categories.bar_data`), ``categories`` the run's categories (their
    colours), ``title`` the PNG's title."""
    bars = [(str(c), str(label), int(n)) for c, label, n in bars]
    return {
        "bars": [list(b) for b in bars],
        "categories": list(categories) if categories is not None else [c for c, _, _ in bars],
        "title": title,
    }


def _groups(bars: Sequence[Sequence]) -> list[tuple[str, int, int]]:
    """``(category, first bar, last bar)`` of each run of bars of one category."""
    groups: list[tuple[str, int, int]] = []
    for i, (category, _, _) in enumerate(bars):
        if groups and groups[-1][0] == category:
            groups[-1] = (category, groups[-1][1], i)
        else:
            groups.append((category, i, i))
    return groups


def svg(data: Mapping) -> str:
    """The bar graph as SVG: bars are ``rect.bar`` elements with ``data-label`` and ``data-category``,
    each category's name under its group (in a second row where a group is too narrow for it)."""
    bars = [tuple(b) for b in data["bars"]]
    colours = category_colours([*data["categories"], *(c for c, _, _ in bars)])
    if not bars:
        return empty_svg(CLASS, "No unit reaches the IoU threshold.")
    plot_h = 200
    names = [shorten(label) for _, label, _ in bars]
    label_extent = max(len(n) for n in names) * CHAR
    step = 24.0 if len(bars) <= 40 else 18.0
    left = max(50.0, label_extent * math.cos(math.radians(60)) - step + 12)
    step = fill_step(step, len(bars), CARD_WIDTH - left - 16)  # few bars spread over the card
    width_bar = round(min(step * 0.72, 48))
    angle = 0 if label_extent <= step - 8 else 60  # label rotation (degrees from horizontal)
    if not angle:  # the labels need no room on the left: the bars take it
        left = 50.0
        step = fill_step(step, len(bars), CARD_WIDTH - left - 16)
        width_bar = round(min(step * 0.72, 48))
    drop = label_extent * math.sin(math.radians(angle)) + 8 if angle else 18.0
    top = 26
    groups = _groups(bars)
    spans = [(left + (first + last + 1) * step / 2, 3.6 * len(category) + 4) for category, first, last in groups]
    rows = place_in_rows(spans)
    width = max(left + step * len(bars) + 16, max(c + h for c, h in spans) + 8)
    height = top + plot_h + drop + 34 + 16 * max(rows, default=0)
    ymax, tick = integer_scale(max(n for _, _, n in bars))
    scale = plot_h / ymax
    base = top + plot_h

    out = [svg_open(CLASS, width, height, f"detectors per label, {len(bars)} labels")]
    for value in range(0, ymax + 1, tick):  # axis and grid
        y = base - value * scale
        out.append(f'<line x1="{left - 4:.1f}" y1="{y:.1f}" x2="{width - 8:.1f}" y2="{y:.1f}" stroke="#e3e5e8" />')
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">{value}</text>'
        )
    out.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" fill="#555" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">units</text>'
    )
    for i, ((category, label, count), name) in enumerate(zip(bars, names)):
        x = left + i * step + (step - width_bar) / 2
        h = count * scale
        colour = colours.get(category, NO_CATEGORY_COLOUR)
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{width_bar}" height="{h:.1f}" '
            f'fill="{colour}" data-label="{escape(label)}" data-category="{escape(category)}" data-count="{count}">'
            f"<title>{escape(label)} ({escape(category)}): {count} unit{'s' if count != 1 else ''}</title></rect>"
        )
        out.append(
            f'<text x="{x + width_bar / 2:.1f}" y="{base - h - 4:.1f}" font-size="10" text-anchor="middle" '
            f'fill="#333">{count}</text>'
        )
        if angle:
            cx, cy = x + width_bar / 2 + 3, base + 10
            out.append(
                f'<text class="bar-label" x="{cx:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
                f'transform="rotate(-{angle} {cx:.1f} {cy:.1f})">{escape(name)}</text>'
            )
        else:
            out.append(
                f'<text class="bar-label" x="{x + width_bar / 2:.1f}" y="{base + 15:.1f}" font-size="11" '
                f'text-anchor="middle" fill="#222">{escape(name)}</text>'
            )
    out.append(f'<line x1="{left - 4:.1f}" y1="{base:.1f}" x2="{width - 8:.1f}" y2="{base:.1f}" stroke="#888" />')
    gy = base + drop + 6  # category groups
    for (category, first, last), row in zip(groups, rows):
        x0, x1 = left + first * step + 1, left + (last + 1) * step - 1
        colour = colours.get(category, NO_CATEGORY_COLOUR)
        out.append(f'<rect x="{x0:.1f}" y="{gy:.1f}" width="{x1 - x0:.1f}" height="4" fill="{colour}" />')
        out.append(
            f'<text class="group-label" x="{(x0 + x1) / 2:.1f}" y="{gy + 20 + 16 * row:.1f}" font-size="12" '
            f'font-weight="600" text-anchor="middle" fill="#333">{escape(category)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the bar graph as a PNG, titled with ``data["title"]`` (``key``: see :data:`pngbase.CHART_KEY`)."""
    from matplotlib.ticker import MaxNLocator

    bars = [tuple(b) for b in data["bars"]]
    colours = category_colours(c for c, _, _ in bars)
    n = len(bars)
    width = min(60.0, max(pngbase.MIN_WIDTH, 0.22 * n + 1.4))
    fig = pngbase.figure(width, 3.4)
    ax = fig.add_subplot()
    rows: list[int] = []
    if n:
        xs = range(n)
        counts = [count for _, _, count in bars]
        ax.bar(xs, counts, width=0.75 if n > 8 else 0.6, color=[colours.get(c, NO_CATEGORY_COLOUR) for c, _, _ in bars])
        ax.set_xticks(list(xs))
        ax.set_xticklabels(
            [pngbase.text(label) for _, label, _ in bars], rotation=60, ha="right", rotation_mode="anchor", fontsize=8
        )
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(0, max(counts) * 1.15 + 0.5)
        cast(MaxNLocator, ax.yaxis.get_major_locator()).set_params(integer=True)
        # category names above their groups, in a second row where a group is too narrow
        groups = _groups(bars)
        bar_points = 72 * 0.775 * width / (n + 0.2)  # approximate width of one bar slot in points
        spans = [((first + last) / 2, (5.6 * len(category) / 2 + 3) / bar_points) for category, first, last in groups]
        rows = place_in_rows(spans)
        for (category, first, last), row in zip(groups, rows):
            ax.annotate(
                pngbase.text(category),
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
    pngbase.plain(ax)
    if data.get("title"):
        ax.set_title(pngbase.text(data["title"]), pad=18 + 12 * max(rows, default=0), fontsize=10)
    return pngbase.save(fig, path, key)
