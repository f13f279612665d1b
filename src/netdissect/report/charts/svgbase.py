"""What the SVG charts share: escaping, the ``<svg>`` tag, the empty chart, tick steps, axes and legends.

Charts escape their text and attributes themselves (their output is handed to the templates as
markup).

Sizes: a chart is laid out at least :data:`CARD_WIDTH` wide (its bars spread out to fill it) and
the pages scale it to its card (CSS ``width: 100%; height: auto``, the ``viewBox`` keeping its
proportions); a chart that needs more room keeps its size (``min-width``) and scrolls in its card.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence

FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif\""

#: The width charts are laid out for: about the inside of a page-wide card on a laptop screen.
CARD_WIDTH = 1100
CHAR = 6.2  # approximate width of a character at font-size 11


def escape(text: object) -> str:
    """Escape text or an attribute value for SVG/HTML."""
    return html.escape(str(text), quote=True)


def nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def integer_scale(peak: float) -> tuple[int, int]:
    """``(top, tick)`` of an axis of counts up to ``peak``: a whole tick step, ``top`` a multiple of it."""
    tick = max(1, math.ceil(nice_step(max(peak, 1))))
    return tick * max(1, math.ceil(peak / tick)), tick


def shorten(text: str, limit: int = 26) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
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


def svg_open(cls: str, width: float, height: float, label: str, attributes: str = "") -> str:
    """The ``<svg>`` tag of a chart drawn in ``width`` x ``height`` units (its ``viewBox``).

    The page scales it to its card; it never shrinks below its own width when it is wider than
    :data:`CARD_WIDTH` (it scrolls), nor below about half of it otherwise (text stays readable).
    """
    least = width if width > CARD_WIDTH else 0.55 * width
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" preserveAspectRatio="xMidYMid meet" '
        f'style="min-width: {least:.0f}px" role="img" aria-label="{escape(label)}"{attributes} {FONT}>'
    )


def empty_svg(cls: str, message: str) -> str:
    """A chart's card when there is nothing to draw: one line of text, as wide as a chart."""
    return (
        svg_open(cls, CARD_WIDTH, 44, message)
        + f'<text x="10" y="28" font-size="14" fill="#666">{escape(message)}</text></svg>'
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


def column_labels(
    out: list[str], x: float, bar_w: float, top: float, base: float, value: str, name: str, angle: int, cls: str = ""
) -> None:
    """A bar's ``value`` above it (``top``) and its ``name`` below the axis (``base``), turned by
    ``angle`` degrees when the names do not fit flat; ``cls`` classes the name's text."""
    cx, cy = x + bar_w / 2, base + 14
    out.append(f'<text x="{cx:.1f}" y="{top - 5:.1f}" font-size="11" text-anchor="middle" fill="#333">{value}</text>')
    attr = f' class="{cls}"' if cls else ""
    if angle:
        out.append(
            f'<text{attr} x="{cx:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
            f'transform="rotate(-{angle} {cx:.1f} {cy:.1f})">{escape(name)}</text>'
        )
    else:
        out.append(
            f'<text{attr} x="{cx:.1f}" y="{cy + 2:.1f}" font-size="11" text-anchor="middle" fill="#222">'
            f"{escape(name)}</text>"
        )


def axis(
    out: list[str],
    left: float,
    right: float,
    base: float,
    plot_h: float,
    ymax: float,
    tick: float,
    title: str,
    top: float,
) -> None:
    """Append a y axis to ``out``: grid lines and values every ``tick`` up to ``ymax``, the rotated
    ``title`` and the base line, for a plot ``plot_h`` high whose base is at ``base``."""
    value = 0.0
    while value <= ymax + 1e-9:
        y = base - value * plot_h / ymax
        out.append(f'<line x1="{left - 4:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e3e5e8" />')
        out.append(
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">{value:g}</text>'
        )
        value += tick
    out.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" fill="#555" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(title)}</text>'
    )
    out.append(f'<line x1="{left - 4:.1f}" y1="{base:.1f}" x2="{right:.1f}" y2="{base:.1f}" stroke="#888" />')


def legend(out: list[str], x: float, top: float, items: Sequence[tuple[str, str]], dashed: Sequence[bool] = ()) -> None:
    """Append a legend to ``out``: a swatch (a dashed line where ``dashed``) and a name per ``(name, colour)``."""
    for j, (name, colour) in enumerate(items):
        y = top + j * 22
        if j < len(dashed) and dashed[j]:
            out.append(
                f'<line x1="{x:.1f}" y1="{y + 7:.1f}" x2="{x + 14:.1f}" y2="{y + 7:.1f}" stroke="{colour}" '
                'stroke-width="2.5" stroke-dasharray="4 3" />'
            )
        else:
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="14" height="14" rx="2" fill="{colour}" />')
        out.append(
            f'<text x="{x + 20:.1f}" y="{y + 11:.1f}" font-size="12" fill="#222">{escape(shorten(name, 22))}</text>'
        )
