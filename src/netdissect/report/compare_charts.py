"""The charts of a comparison page, from :func:`netdissect.report.compare.comparison_data`'s output:
SVG for the page (text and attributes escaped here) and the same charts as PNG files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from .categories import category_colours
from .charts import MIN_WIDTH, _save, _text, save_stacked_bars_png
from .svg import CARD_WIDTH, CHAR, _e, _nice_step, _shorten, empty_svg, fill_step, stacked_segments, svg_open

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


def _svg_open(cls: str, width: float, height: float, label: str) -> str:
    return svg_open(cls, width, height, label)


def _axis(
    out: list, left: float, right: float, base: float, plot_h: float, ymax: float, tick: float, title: str, top: float
) -> None:
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
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{_e(title)}</text>'
    )
    out.append(f'<line x1="{left - 4:.1f}" y1="{base:.1f}" x2="{right:.1f}" y2="{base:.1f}" stroke="#888" />')


def _scale(peak: float) -> tuple[float, float]:
    tick = max(1.0, float(math.ceil(_nice_step(max(peak, 1)))))
    return tick * max(1, math.ceil(peak / tick)), tick


def _legend(out: list, x: float, top: float, items: Sequence[tuple[str, str]], dashed: Sequence[bool] = ()) -> None:
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
            f'<text x="{x + 20:.1f}" y="{y + 11:.1f}" font-size="12" fill="#222">{_e(_shorten(name, 22))}</text>'
        )


def unique_detectors_svg(data: Mapping) -> str:
    """Stacked bars of unique detectors per category, one bar per run and layer."""
    categories, rows = list(data["categories"]), list(data["rows"])
    colours = category_colours(categories)
    if not rows:
        return empty_svg("unique-chart", "No layers.")
    peak = max(max(r["unique_detectors"] for r in rows), 1)
    ymax, tick = _scale(peak)
    plot_h, top, step = 220, 20, 60.0
    names = [_shorten(f"{r['run']} · {r['layer']}", 30) for r in rows]
    extent = max(len(n) for n in names) * CHAR
    left = max(50.0, extent * math.cos(math.radians(40)) - step / 2 + 10)
    step = fill_step(step, len(rows), CARD_WIDTH - left - 24 - 130)
    angle = 0 if extent <= step - 6 else 40
    if not angle:  # the labels need no room on the left: the bars take it
        left = 50.0
        step = fill_step(step, len(rows), CARD_WIDTH - left - 24 - 130)
    bar_w = min(step * 0.62, 96)
    drop = extent * math.sin(math.radians(angle)) + 16 if angle else 24
    legend_x = left + step * len(rows) + 24
    width, height = legend_x + 130, max(top + plot_h + drop + 10, top + 22 * len(categories) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [_svg_open("unique-chart", width, height, "unique detectors per category, per run and layer")]
    _axis(out, left, legend_x - 14, base, plot_h, ymax, tick, "unique detectors", top)
    for i, (row, name) in enumerate(zip(rows, names)):
        x = left + i * step + (step - bar_w) / 2
        segments, y = stacked_segments(row["unique_by_category"], categories, base, scale)
        for c, n, sy, h in segments:
            out.append(
                f'<rect class="segment" x="{x:.1f}" y="{sy:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colours[c]}" '
                f'data-run="{_e(row["run"])}" data-layer="{_e(row["layer"])}" data-category="{_e(c)}" data-count="{n}">'
                f"<title>{_e(row['run'])} · {_e(row['layer'])}: {n} unique {_e(c)} detectors</title></rect>"
            )
        out.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" font-size="11" text-anchor="middle" fill="#333">'
            f"{row['unique_detectors']}</text>"
        )
        cx, cy = x + bar_w / 2, base + 14
        if angle:
            out.append(
                f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
                f'transform="rotate(-{angle} {cx:.1f} {cy:.1f})">{_e(name)}</text>'
            )
        else:
            out.append(
                f'<text x="{cx:.1f}" y="{cy + 2:.1f}" font-size="11" text-anchor="middle" fill="#222">{_e(name)}</text>'
            )
    _legend(out, legend_x, top, [(c, colours[c]) for c in reversed(categories)])
    out.append("</svg>")
    return "".join(out)


def detectors_per_layer_svg(data: Mapping) -> str:
    """Grouped bars: detectors per layer (groups), one bar per run."""
    d = data["detectors_per_layer"]
    layers, runs, values = list(d["layers"]), list(d["runs"]), d["detectors"]
    if not layers:
        return empty_svg("detectors-chart", "No layers.")
    peak = max([v for row in values for v in row if v is not None] + [1])
    ymax, tick = _scale(peak)
    plot_h, top = 220, 20
    names = [_shorten(n, 22) for n in layers]
    left = 50.0
    group = fill_step(18.0 * len(runs) + 18, len(layers), CARD_WIDTH - left - 24 - 160)
    bar = min((group - 18) / max(len(runs), 1), 48.0)  # wider bars when few, the group centred
    legend_x = left + group * len(layers) + 24
    width, height = legend_x + 160, max(top + plot_h + 40, top + 22 * len(runs) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [_svg_open("detectors-chart", width, height, "detectors per layer, per run")]
    _axis(out, left, legend_x - 14, base, plot_h, ymax, tick, "detectors", top)
    for li, name in enumerate(names):
        x0 = left + li * group + (group - bar * len(runs)) / 2
        for ri, run in enumerate(runs):
            v = values[ri][li]
            if v is None:
                continue
            h = v * scale
            x = x0 + ri * bar
            colour = RUN_COLOURS[ri % len(RUN_COLOURS)]
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="{colour}" '
                f'data-run="{_e(run)}" data-layer="{_e(layers[li])}" data-count="{v}">'
                f"<title>{_e(run)} · {_e(layers[li])}: {v} detectors</title></rect>"
            )
        out.append(
            f'<text x="{x0 + bar * len(runs) / 2:.1f}" y="{base + 16:.1f}" font-size="11" text-anchor="middle" '
            f'fill="#222">{_e(name)}</text>'
        )
    _legend(out, legend_x, top, [(r, RUN_COLOURS[i % len(RUN_COLOURS)]) for i, r in enumerate(runs)])
    out.append("</svg>")
    return "".join(out)


def emergence_svg(runs: Sequence[str], layer: Mapping, categories: Sequence[str]) -> str:
    """Lines across a series of runs: detectors per category (solid) and unique detectors (dashed)."""
    colours = category_colours(categories)
    lines = [(c, colours[c], layer["detectors"][c], False) for c in categories if any(layer["detectors"][c])]
    lines.append(("unique detectors", "#333", layer["unique_total"], True))
    peak = max([v for _, _, vs, _ in lines for v in vs] + [1])
    ymax, tick = _scale(peak)
    plot_h, top = 200, 20
    n = len(runs)
    step = max(40.0, min(120.0, 640.0 / max(n, 1)))
    names = [_shorten(r, 20) for r in runs]
    extent = max(len(x) for x in names) * CHAR
    drop = extent * math.sin(math.radians(35)) + 16
    left = max(50.0, extent * math.cos(math.radians(35)) - step / 2 + 10)
    step = fill_step(step, n, CARD_WIDTH - left - 24 - 160)
    legend_x = left + step * n + 24
    width, height = legend_x + 160, max(top + plot_h + drop + 10, top + 22 * len(lines) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [_svg_open("emergence-chart", width, height, f"concept emergence in {layer['layer']}")]
    _axis(out, left, legend_x - 14, base, plot_h, ymax, tick, "units", top)
    xs = [left + (i + 0.5) * step for i in range(n)]
    for name, colour, values, dashed in lines:
        points = " ".join(f"{x:.1f},{base - v * scale:.1f}" for x, v in zip(xs, values))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(
            f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}" '
            f'data-name="{_e(name)}" data-values="{_e(",".join(str(v) for v in values))}" />'
        )
        for x, v, run in zip(xs, values, runs):
            out.append(
                f'<circle cx="{x:.1f}" cy="{base - v * scale:.1f}" r="3" fill="{colour}">'
                f"<title>{_e(run)}: {v} {_e(name)}</title></circle>"
            )
    for x, name in zip(xs, names):
        cy = base + 14
        out.append(
            f'<text x="{x:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
            f'transform="rotate(-35 {x:.1f} {cy:.1f})">{_e(name)}</text>'
        )
    _legend(out, legend_x, top, [(name, colour) for name, colour, _, _ in lines], [d for _, _, _, d in lines])
    out.append("</svg>")
    return "".join(out)


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.yaxis.get_major_locator().set_params(integer=True)


def save_unique_detectors_png(data: Mapping, path: str | os.PathLike) -> Path:
    categories, rows = list(data["categories"]), list(data["rows"])
    values = {c: [r["unique_by_category"].get(c, 0) for r in rows] for c in categories}
    names = [f"{r['run']}\n{r['layer']}" for r in rows]
    return save_stacked_bars_png(
        categories, names, values, "unique detectors", path, bar_width=0.8, rotate_above=3, fontsize=8
    )


def save_detectors_per_layer_png(data: Mapping, path: str | os.PathLike) -> Path:
    d = data["detectors_per_layer"]
    layers, runs = list(d["layers"]), list(d["runs"])
    figure = Figure(figsize=(max(MIN_WIDTH, (0.3 * len(runs) + 0.4) * len(layers) + 2.8), 3.6))
    ax = figure.add_subplot()
    width = 0.8 / max(len(runs), 1)
    for ri, run in enumerate(runs):
        xs = [li - 0.4 + width * (ri + 0.5) for li in range(len(layers))]
        values = [v if v is not None else 0 for v in d["detectors"][ri]]
        ax.bar(xs, values, width=width * 0.92, color=RUN_COLOURS[ri % len(RUN_COLOURS)], label=_text(run))
    ax.set_xticks(list(range(len(layers))))
    ax.set_xticklabels([_text(n) for n in layers], fontsize=9)
    ax.set_ylabel("detectors")
    _style(ax)
    if runs:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return _save(figure, path)


def save_emergence_png(series: Mapping, categories: Sequence[str], path: str | os.PathLike) -> Path:
    layers, runs = list(series["layers"]), list(series["runs"])
    colours = category_colours(categories)
    figure = Figure(figsize=(max(MIN_WIDTH, 0.5 * len(runs) + 3.5), 2.9 * max(len(layers), 1) + 0.4))
    xs = list(range(len(runs)))
    for i, layer in enumerate(layers):
        ax = figure.add_subplot(max(len(layers), 1), 1, i + 1)
        for c in categories:
            if any(layer["detectors"][c]):
                ax.plot(xs, layer["detectors"][c], marker="o", ms=3, color=colours[c], label=_text(c))
        ax.plot(xs, layer["unique_total"], marker="o", ms=3, color="#333", linestyle="--", label="unique detectors")
        ax.set_xticks(xs)
        ax.set_xticklabels(
            [_text(r) for r in runs],
            rotation=30 if len(runs) > 4 else 0,
            ha="right" if len(runs) > 4 else "center",
            fontsize=8,
        )
        ax.set_title(_text(layer["layer"]), fontsize=10)
        ax.set_ylabel("units")
        ax.set_ylim(bottom=0)
        _style(ax)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.tight_layout()
    return _save(figure, path)
