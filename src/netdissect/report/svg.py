"""The report's SVG charts: a layer's bar graph of detectors per label and a run's stacked bars of
the units detecting each category.

They escape their text and attributes themselves (their output is handed to the templates as
markup); the same charts as PNG files are drawn by :mod:`netdissect.report.charts`.

Sizes: a chart is laid out at least :data:`CARD_WIDTH` wide (its bars spread out to fill it) and
the pages scale it to its card (CSS ``width: 100%; height: auto``, the ``viewBox`` keeping its
proportions); a chart that needs more room keeps its size (``min-width``) and scrolls in its card.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence

from .categories import NO_CATEGORY_COLOUR, category_colours


def _e(text) -> str:
    """Escape text or an attribute value for SVG/HTML."""
    return html.escape(str(text), quote=True)


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _shorten(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def place_in_rows(spans: Sequence[tuple[float, float]]) -> list[int]:
    """Rows for centred labels ``(centre, half width)``, left to right: each goes into the first
    row where it does not overlap the previous label of that row."""
    ends: list[float] = []
    rows = []
    for centre, half in spans:
        r = next((i for i, end in enumerate(ends) if centre - half >= end), len(ends))
        if r == len(ends):
            ends.append(float("-inf"))
        ends[r] = centre + half
        rows.append(r)
    return rows


FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif\""

#: The width charts are laid out for: about the inside of a page-wide card on a laptop screen.
CARD_WIDTH = 1100
CHAR = 6.2  # approximate width of a character at font-size 11


def svg_open(cls: str, width: float, height: float, label: str, attributes: str = "") -> str:
    """The ``<svg>`` tag of a chart drawn in ``width`` x ``height`` units (its ``viewBox``).

    The page scales it to its card; it never shrinks below its own width when it is wider than
    :data:`CARD_WIDTH` (it scrolls), nor below about half of it otherwise (text stays readable).
    """
    least = width if width > CARD_WIDTH else 0.55 * width
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" preserveAspectRatio="xMidYMid meet" '
        f'style="min-width: {least:.0f}px" role="img" aria-label="{_e(label)}"{attributes} {FONT}>'
    )


def empty_svg(cls: str, message: str) -> str:
    """A chart's card when there is nothing to draw: one line of text, as wide as a chart."""
    return (
        svg_open(cls, CARD_WIDTH, 44, message)
        + f'<text x="10" y="28" font-size="14" fill="#666">{_e(message)}</text></svg>'
    )


def fill_step(step: float, count: int, room: float) -> float:
    """The step between ``count`` bars: ``step`` at least, more to fill ``room`` units."""
    return max(step, room / max(count, 1))


def stacked_segments(
    values: Mapping[str, float], categories: Iterable[str], base: float, scale: float
) -> tuple[list[tuple[str, float, float, float]], float]:
    """One stacked bar drawn up from ``base``: ``(category, value, y, height)`` of each category
    with a positive value, in ``categories`` order, and the y of the bar's top."""
    segments, y = [], base
    for c in categories:
        value = values.get(c, 0)
        if value <= 0:
            continue
        h = value * scale
        y -= h
        segments.append((c, value, y, h))
    return segments, y


def bar_graph_svg(bars: Sequence[tuple[str, str, int]], categories: Iterable[str] | None = None) -> str:
    """An SVG bar graph of detectors per label, one bar per ``(category, label, count)``.

    Bars keep the given order (see :func:`bar_data`), coloured by category, with each
    category's name under its group. Bars are ``rect.bar`` elements with ``data-label`` and
    ``data-category``.
    """
    categories = list(categories) if categories is not None else [c for c, _, _ in bars]
    colours = category_colours([*categories, *(c for c, _, _ in bars)])
    if not bars:
        return empty_svg("bar-graph", "No unit reaches the IoU threshold.")
    plot_h = 200
    names = [_shorten(label) for _, label, _ in bars]
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
    # category names under their groups, in a second row where a group is too narrow for its name
    groups: list[tuple[str, int, int]] = []  # category, first bar, last bar
    for i, (category, _, _) in enumerate(bars):
        if groups and groups[-1][0] == category:
            groups[-1] = (category, groups[-1][1], i)
        else:
            groups.append((category, i, i))
    spans = [(left + (first + last + 1) * step / 2, 3.6 * len(category) + 4) for category, first, last in groups]
    rows = place_in_rows(spans)
    width = max(left + step * len(bars) + 16, max(c + h for c, h in spans) + 8)
    height = top + plot_h + drop + 34 + 16 * max(rows, default=0)
    peak = max(n for _, _, n in bars)
    tick = max(1, int(math.ceil(_nice_step(peak))))
    ymax = tick * math.ceil(peak / tick)
    scale = plot_h / ymax
    base = top + plot_h

    out = [svg_open("bar-graph", width, height, f"detectors per label, {len(bars)} labels")]
    # axis and grid
    for value in range(0, ymax + 1, tick):
        y = base - value * scale
        out.append(f'<line x1="{left - 4:.1f}" y1="{y:.1f}" x2="{width - 8:.1f}" y2="{y:.1f}" stroke="#e3e5e8" />')
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">{value}</text>'
        )
    out.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" fill="#555" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">units</text>'
    )
    # bars
    for i, ((category, label, count), name) in enumerate(zip(bars, names)):
        x = left + i * step + (step - width_bar) / 2
        h = count * scale
        colour = colours.get(category, NO_CATEGORY_COLOUR)
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{width_bar}" height="{h:.1f}" '
            f'fill="{colour}" data-label="{_e(label)}" data-category="{_e(category)}" data-count="{count}">'
            f"<title>{_e(label)} ({_e(category)}): {count} unit{'s' if count != 1 else ''}</title></rect>"
        )
        out.append(
            f'<text x="{x + width_bar / 2:.1f}" y="{base - h - 4:.1f}" font-size="10" text-anchor="middle" '
            f'fill="#333">{count}</text>'
        )
        if angle:
            cx, cy = x + width_bar / 2 + 3, base + 10
            out.append(
                f'<text class="bar-label" x="{cx:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
                f'transform="rotate(-{angle} {cx:.1f} {cy:.1f})">{_e(name)}</text>'
            )
        else:
            out.append(
                f'<text class="bar-label" x="{x + width_bar / 2:.1f}" y="{base + 15:.1f}" font-size="11" '
                f'text-anchor="middle" fill="#222">{_e(name)}</text>'
            )
    out.append(f'<line x1="{left - 4:.1f}" y1="{base:.1f}" x2="{width - 8:.1f}" y2="{base:.1f}" stroke="#888" />')
    # category groups
    gy = base + drop + 6
    for (category, first, last), row in zip(groups, rows):
        x0, x1 = left + first * step + 1, left + (last + 1) * step - 1
        colour = colours.get(category, NO_CATEGORY_COLOUR)
        out.append(f'<rect x="{x0:.1f}" y="{gy:.1f}" width="{x1 - x0:.1f}" height="4" fill="{colour}" />')
        out.append(
            f'<text class="group-label" x="{(x0 + x1) / 2:.1f}" y="{gy + 20 + 16 * row:.1f}" font-size="12" '
            f'font-weight="600" text-anchor="middle" fill="#333">{_e(category)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def category_fractions_svg(data: Mapping) -> str:
    """An SVG chart of the fraction of units detecting each category, a stacked bar per layer.

    ``data`` is :func:`category_fractions`'s output (or a run context holding it under
    ``"fractions"``).
    """
    if isinstance(data.get("fractions"), Mapping):
        data = data["fractions"]
    categories, rows = list(data["categories"]), list(data["layers"])
    colours = category_colours(categories)
    if not rows:
        return empty_svg("fractions-chart", "No layers.")
    totals = [sum(r["fractions"].values()) for r in rows]
    peak = max(max(totals), 0.01)
    tick = _nice_step(peak, 5)
    ymax = min(1.0, tick * math.ceil(peak / tick - 1e-9)) if peak <= 1 else tick * math.ceil(peak / tick)
    ymax = max(ymax, tick)
    plot_h, top = 220, 20
    names = [_shorten(r["layer"], 22) for r in rows]
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
    out = [svg_open("fractions-chart", width, height, "fraction of units detecting each category, per layer")]
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
                f'fill="{colours[c]}" data-layer="{_e(row["layer"])}" data-category="{_e(c)}">'
                f"<title>{_e(row['layer'])}: {_e(c)} {n}/{row['units']} units ({f * 100:.1f}%)</title></rect>"
            )
        total = sum(row["fractions"].values())
        out.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" font-size="11" text-anchor="middle" fill="#333">'
            f"{total * 100:.1f}%</text>"
        )
        cx, cy = x + bar_w / 2, base + 14
        if rotate:
            out.append(
                f'<text class="layer-label" x="{cx:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
                f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{_e(name)}</text>'
            )
        else:
            out.append(
                f'<text class="layer-label" x="{cx:.1f}" y="{cy + 2:.1f}" font-size="11" text-anchor="middle" '
                f'fill="#222">{_e(name)}</text>'
            )
    out.append(f'<line x1="{left - 4:.1f}" y1="{base:.1f}" x2="{legend_x - 14:.1f}" y2="{base:.1f}" stroke="#888" />')
    for j, c in enumerate(reversed(categories)):  # legend top-down in stacking order (top segment first)
        y = top + j * 22
        out.append(f'<rect x="{legend_x:.1f}" y="{y:.1f}" width="14" height="14" rx="2" fill="{colours[c]}" />')
        out.append(f'<text x="{legend_x + 20:.1f}" y="{y + 11:.1f}" font-size="12" fill="#222">{_e(c)}</text>')
    out.append("</svg>")
    return "".join(out)
