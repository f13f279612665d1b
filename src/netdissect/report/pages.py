"""HTML report pages: pure functions from results to template contexts, SVG charts and HTML.

Nothing here reads or writes files: :func:`netdissect.report.write_report` does the I/O.
Every name that comes from a dataset or a model (labels, categories, layers) is escaped:
the templates run with jinja2's autoescaping on, and the SVG builders escape their text and
attributes themselves (their output is handed to the templates as markup).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Union
from urllib.parse import quote

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..files import layer_dirname
from ..labels import display_name
from .runview import LayerView, RunView

if TYPE_CHECKING:
    from ..results import DissectionResult, LayerResult

#: What the page functions read: a layer's results (``LayerResult`` or the torch-free ``LayerView``).
AnyLayer = Union["LayerResult", LayerView]
AnyRun = Union["DissectionResult", RunView]

#: Order of the categories in charts and menus; categories a dataset lacks are skipped and
#: categories not listed here follow in the dataset's order.
CATEGORY_ORDER: tuple[str, ...] = ("object", "scene", "part", "material", "texture", "color")

#: One fixed colour per Broden category (colour-blind friendly, Tableau 10).
CATEGORY_COLOURS: dict[str, str] = {
    "object": "#4e79a7",
    "scene": "#f28e2b",
    "part": "#59a14f",
    "material": "#b07aa1",
    "texture": "#edc948",
    "color": "#e15759",
}
#: Colours for other categories, given in order of appearance.
EXTRA_COLOURS: tuple[str, ...] = ("#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8")
NO_CATEGORY_COLOUR = "#9aa0a6"

NEXT_BEST = 3  # other labels shown per unit
PAGE_SIZE = 240  # cards in a layer page's grid at first (more load as one scrolls)
IMAGES_HREF = "report-images"  # the run's stored top images (see strips.IMAGES_DIR)


# ---------------------------------------------------------------------------------------------
# categories and bar data


def ordered_categories(categories: Iterable[str]) -> list[str]:
    """``categories`` in the report's order: object, scene, part, material, texture, color,
    then any other category in its given order."""
    categories = list(dict.fromkeys(categories))
    known = [c for c in CATEGORY_ORDER if c in categories]
    return known + [c for c in categories if c not in CATEGORY_ORDER]


def category_colours(categories: Iterable[str]) -> dict[str, str]:
    """A colour per category: the fixed palette for Broden's, then the extra colours in turn."""
    colours = {}
    extra = 0
    for c in ordered_categories(categories):
        if c in CATEGORY_COLOURS:
            colours[c] = CATEGORY_COLOURS[c]
        else:
            colours[c] = EXTRA_COLOURS[extra % len(EXTRA_COLOURS)]
            extra += 1
    return colours


def bar_data(result: AnyLayer) -> list[tuple[str, str, int]]:
    """The bar graph of a layer: ``(category, label display name, detectors)`` per detected label.

    Grouped by category in :data:`CATEGORY_ORDER` (then other categories), most detectors
    first within a category (ties by name).
    """
    counts: dict[tuple[int, int], int] = {}
    for u in np.flatnonzero(result.detectors):
        key = (int(result.category[u]), int(result.label[u]))
        counts[key] = counts.get(key, 0) + 1
    rank = {c: i for i, c in enumerate(ordered_categories(result.categories))}
    rows = [
        (result.categories[ci], display_name(result.label_names[label]), n, label) for (ci, label), n in counts.items()
    ]
    rows.sort(key=lambda r: (rank[r[0]], -r[2], r[1], r[3]))
    return [(c, name, n) for c, name, n, _ in rows]


def category_fractions(result: AnyRun) -> dict:
    """Per layer, the detectors per category and the units: what the summary chart draws.

    Returns ``{"categories": [...], "layers": [{"layer", "units", "counts": {cat: n},
    "fractions": {cat: n / units}}]}`` with categories in the report's order.
    """
    categories: list[str] = []
    for layer in result.layers.values():
        categories += layer.categories
    categories = ordered_categories(categories)
    rows = []
    for name, layer in result.layers.items():
        s = layer.summary()
        counts = {c: int(s["detectors_by_category"].get(c, 0)) for c in categories}
        units = max(int(s["units"]), 1)
        rows.append(
            {
                "layer": name,
                "units": int(s["units"]),
                "counts": counts,
                "fractions": {c: n / units for c, n in counts.items()},
            }
        )
    return {"categories": categories, "layers": rows}


# ---------------------------------------------------------------------------------------------
# SVG charts


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


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


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


def bar_graph_svg(bars: Sequence[tuple[str, str, int]], categories: Iterable[str] | None = None) -> str:
    """An SVG bar graph of detectors per label, one bar per ``(category, label, count)``.

    Bars keep the given order (see :func:`bar_data`), coloured by category, with each
    category's name under its group. Bars are ``rect.bar`` elements with ``data-label`` and
    ``data-category``.
    """
    categories = list(categories) if categories is not None else [c for c, _, _ in bars]
    colours = category_colours([*categories, *(c for c, _, _ in bars)])
    if not bars:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="bar-graph" width="420" height="60" '
            f'viewBox="0 0 420 60" role="img" aria-label="no detectors" {FONT}>'
            '<text x="10" y="35" font-size="14" fill="#666">No unit reaches the IoU threshold.</text></svg>'
        )
    step = 24 if len(bars) <= 40 else 18
    width_bar = round(step * 0.72)
    plot_h = 170
    names = [_shorten(label) for _, label, _ in bars]
    longest = max(len(n) for n in names)
    angle = 60  # label rotation (degrees from horizontal)
    char = 6.2  # approximate width of a character at font-size 11
    label_extent = longest * char
    drop = label_extent * math.sin(math.radians(angle)) + 8
    left = max(46.0, label_extent * math.cos(math.radians(angle)) - step + 12)
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

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bar-graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_e(f"detectors per label, {len(bars)} labels")}" {FONT}>'
    ]
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
        cx, cy = x + width_bar / 2 + 3, base + 10
        out.append(
            f'<text class="bar-label" x="{cx:.1f}" y="{cy:.1f}" font-size="11" text-anchor="end" fill="#222" '
            f'transform="rotate(-{angle} {cx:.1f} {cy:.1f})">{_e(name)}</text>'
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
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="fractions-chart" width="300" height="40" '
            f'viewBox="0 0 300 40" {FONT}><text x="10" y="25" font-size="14">No layers.</text></svg>'
        )
    totals = [sum(r["fractions"].values()) for r in rows]
    peak = max(max(totals), 0.01)
    tick = _nice_step(peak, 5)
    ymax = min(1.0, tick * math.ceil(peak / tick - 1e-9)) if peak <= 1 else tick * math.ceil(peak / tick)
    ymax = max(ymax, tick)
    plot_h, top = 220, 20
    step = max(56, min(110, 640 // max(len(rows), 1)))
    bar_w = step * 0.62
    names = [_shorten(r["layer"], 22) for r in rows]
    longest = max(len(n) for n in names)
    rotate = longest * 6.2 > step - 6
    drop = (longest * 6.2 * math.sin(math.radians(35)) + 14) if rotate else 22
    left = 56 if not rotate else max(56.0, longest * 6.2 * math.cos(math.radians(35)) - step / 2 + 10)
    legend_x = left + step * len(rows) + 24
    width = legend_x + 130
    height = max(top + plot_h + drop + 24, top + 22 * len(categories) + 10)
    base = top + plot_h
    scale = plot_h / ymax
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fractions-chart" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="fraction of units detecting each category, per layer" {FONT}>'
    ]
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
        y = base
        for c in categories:
            f = row["fractions"].get(c, 0.0)
            if f <= 0:
                continue
            h = f * scale
            y -= h
            n = row["counts"].get(c, 0)
            out.append(
                f'<rect class="segment" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
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


# ---------------------------------------------------------------------------------------------
# contexts


def _href(*parts: str) -> str:
    """A relative URL from path parts (each percent-encoded: layer names may hold any character)."""
    return "/".join(quote(p) for p in parts)


def _next_best(result: AnyLayer, k: int = NEXT_BEST) -> list[list[tuple[str, str, float]]]:
    """Per unit, the ``k`` labels with the highest IoU other than its own: (name, category, IoU)."""
    iou = np.array(result.iou, dtype=np.float64, copy=True)
    if iou.ndim != 2 or iou.shape[1] <= 1:
        return [[] for _ in range(result.units)]
    iou[:, 0] = -1.0
    iou[np.arange(result.units), result.label] = -1.0
    k = min(k, iou.shape[1] - 1)
    top = np.argsort(-iou, axis=1, kind="stable")[:, :k]  # ties: the smaller label number first
    out = []
    for u in range(result.units):
        items = []
        for label in top[u].tolist():
            if iou[u, label] <= 0:
                continue
            ci = int(result.label_category[label])
            category = result.categories[ci] if 0 <= ci < len(result.categories) else ""
            items.append((display_name(result.label_names[label]), category, float(iou[u, label])))
        out.append(items)
    return out


def _iou_text(v: float) -> str:
    return f"{v:.3f}" if v >= 0.0005 or v <= 0 else "<0.001"


def _threshold_text(t: float) -> str:
    return f"{t:g}"


SIGNIFICANCE_LEVEL = 0.05


def _significance(result: AnyLayer, u: int) -> dict:
    """A unit card's significance against the permutation null (text None without null samples)."""
    if result.p_value is None:
        return {"p_value": None, "significant": False, "significance_text": None, "significance_title": None}
    p, z = float(result.p_value[u]), float(result.z_score[u])
    z_text = "∞" if z == float("inf") else "−∞" if z == float("-inf") else f"{z:.1f}"
    return {
        "p_value": p,
        # p never falls below 1 / (K + 1): K >= 19 samples are needed to reach 0.05
        "significant": p <= SIGNIFICANCE_LEVEL + 1e-12,
        "significance_text": f"p = {p:.2g}, z {z_text}",
        "significance_title": (
            f"permutation null of {result.null_samples} samples: p = {p:.3g}, z = {z_text}, "
            f"null IoU {float(result.null_mean[u]):.3f} ± {float(result.null_std[u]):.3f}"
        ),
    }


def layer_header(summary: Mapping) -> str:
    """``"K/U units covering C concepts with IoU >= t"``."""
    return (
        f"{summary['detectors']}/{summary['units']} units covering {summary['unique_detectors']} concepts "
        f"with IoU >= {_threshold_text(summary['iou_threshold'])}"
    )


def layer_context(
    result: AnyLayer,
    tiles: Mapping[int, Sequence[int]] | None = None,
    layers: Sequence[str] | None = None,
    model: str | None = None,
    extra_pages: Sequence[Mapping[str, str]] = (),
) -> dict:
    """The template context of a layer page.

    Args:
        result: the layer's results (:class:`~netdissect.results.LayerResult` or
            :class:`~netdissect.report.runview.LayerView`).
        tiles: ``{unit (1-based): dataset positions of the top images shown}``; the page draws
            them from ``../report-images/`` and the layer's ``masks.js``. Units missing here get
            no images.
        layers: all layers of the run, for the navigation between layer pages.
        model: the model's name, for the title.
        extra_pages: more pages of this layer, ``{"title", "href"}`` (relative to the layer page).
    """
    tiles = tiles or {}
    meta = result.metadata
    imported = None
    if meta.get("imported_from"):
        imported = {k: _scalar(meta.get(k, "")) for k in ("format", "convention")}
        imported["file"] = _scalar(meta["imported_from"])
    records = list(getattr(result, "records", None) or [])
    summary = result.summary()
    categories = ordered_categories(result.categories)
    colours = category_colours(categories)
    detectors = result.detectors
    next_best = _next_best(result)
    units = []
    for u in range(result.units):
        ci = int(result.category[u]) if len(result.categories) else -1
        category = result.categories[ci] if ci >= 0 else ""
        label = int(result.label[u])
        shown = [int(i) for i in tiles.get(u + 1, ())]
        record = records[u] if u < len(records) and isinstance(records[u], Mapping) else {}
        formula = record.get("formula")
        formula_iou = record.get("formula_iou")
        units.append(
            {
                "unit": u + 1,
                "label": display_name(result.label_names[label]),
                "category": category,
                "colour": colours.get(category, NO_CATEGORY_COLOUR),
                "score": float(result.score[u]),
                "score_text": _iou_text(float(result.score[u])),
                "detector": bool(detectors[u]),
                "threshold": float(result.thresholds[u]),
                "images": " ".join(str(i) for i in shown),
                "tiles": len(shown),
                "formula": str(formula) if formula else None,
                "formula_iou_text": _iou_text(float(formula_iou)) if isinstance(formula_iou, (int, float)) else None,
                "next_best": [
                    {"label": n, "category": c, "colour": colours.get(c, NO_CATEGORY_COLOUR), "iou_text": _iou_text(v)}
                    for n, c, v in next_best[u]
                ],
            }
        )
        units[-1].update(_significance(result, u))
    order = sorted(range(len(units)), key=lambda i: (-units[i]["score"], units[i]["unit"]))
    units = [units[i] for i in order]
    bars = bar_data(result)
    category_rows = []
    for c in categories:
        category_rows.append(
            {
                "name": c,
                "colour": colours[c],
                "detectors": summary["detectors_by_category"].get(c, 0),
                "unique": sum(1 for bc, _, _ in bars if bc == c),  # distinct labels among its detectors
                "units": sum(1 for unit in units if unit["category"] == c),
            }
        )
    layers = list(layers) if layers is not None else [result.layer]
    return {
        "layer": result.layer,
        "model": model or result.metadata.get("model", ""),
        "header": layer_header(summary),
        "summary": summary,
        "threshold_text": _threshold_text(result.iou_threshold),
        "categories": category_rows,
        "bars": bars,
        "bar_graph": Markup(bar_graph_svg(bars, categories)),
        "units": units,
        "nav": [
            {"name": name, "href": "../" + _href(layer_dirname(name), "index.html"), "current": name == result.layer}
            for name in layers
        ],
        "run_href": "../index.html",
        "images_href": "../" + IMAGES_HREF + "/",
        "page_size": PAGE_SIZE,
        "columns": max(1, min(5, max((len(v) for v in tiles.values()), default=1))),
        "extra_pages": [{"title": str(p["title"]), "href": str(p["href"])} for p in extra_pages],
        "images": imported is None,
        "imported": imported,
    }


def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metadata as ``(key path, text)`` rows."""
    if isinstance(value, Mapping):
        rows = []
        for k, v in value.items():
            rows += _flatten(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
        return rows
    if isinstance(value, (list, tuple)):
        text = ", ".join(_scalar(v) for v in value)
    else:
        text = _scalar(value)
    return [(prefix, text)]


def _scalar(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if v is None:
        return "none"
    return str(v)


def _imported(meta: Mapping) -> dict | None:
    """What the run page says of results imported from another tool (None for a dissection)."""
    sources = meta.get("imported_from")
    if not sources:
        return None
    rows = sources.items() if isinstance(sources, Mapping) else [("", sources)]
    return {
        "format": _scalar(meta.get("format", "")),
        "convention": _scalar(meta.get("convention", "")),
        "sources": [(str(layer), _scalar(file)) for layer, file in rows],
    }


def run_context(result: AnyRun, extra_pages: Sequence[Mapping[str, str]] = ()) -> dict:
    """The template context of the run page (``<out>/index.html``); ``extra_pages`` are more pages
    of the run, ``{"title", "href"}`` relative to the run directory, linked from the page."""
    meta = dict(result.metadata)
    first = next(iter(result.layers.values()), None)
    for key in ("model", "dataset", "options", "versions"):
        if key not in meta and first is not None and key in first.metadata:
            meta[key] = first.metadata[key]
    fractions = category_fractions(result)
    categories = fractions["categories"]
    colours = category_colours(categories)
    layers = []
    timings = []
    for name, layer in result.layers.items():
        s = layer.summary()
        det = layer.detectors
        order = np.argsort(-layer.score, kind="stable")
        top = [display_name(layer.label_names[layer.label[u]]) for u in order if det[u]]
        layers.append(
            {
                "name": name,
                "href": _href(layer_dirname(name), "index.html"),
                "png": _href(layer_dirname(name), "bargraph.png"),
                "units": s["units"],
                "detectors": s["detectors"],
                "detector_percent": f"{100 * s['detectors'] / max(s['units'], 1):.1f}",
                "unique_detectors": s["unique_detectors"],
                "unique_detectors_by_category_sum": s["unique_detectors_by_category_sum"],
                "by_category": [s["detectors_by_category"].get(c, 0) for c in categories],
                "header": layer_header(s),
                "top_concepts": list(dict.fromkeys(top))[:5],
            }
        )
        t = layer.metadata.get("timings", {})
        timings.append(
            {
                "layer": name,
                "values": [
                    (
                        k.replace("_seconds", "").replace("_", " "),
                        f"{v:.2f} s" if isinstance(v, (int, float)) else str(v),
                    )
                    for k, v in t.items()
                ],
                "threshold_method": layer.metadata.get("threshold_method", ""),
            }
        )
    dataset = meta.get("dataset", {}) if isinstance(meta.get("dataset"), Mapping) else {"path": meta.get("dataset")}
    sections = [
        (
            "Model",
            [("model", _scalar(meta.get("model", "")))]
            + ([("fingerprint", _scalar(meta["model_fingerprint"]))] if "model_fingerprint" in meta else []),
        ),
        ("Dataset", _flatten(dataset)),
        ("Options", _flatten(meta.get("options", {}))),
        ("Versions", _flatten(meta.get("versions", {}))),
    ]
    return {
        "model": _scalar(meta.get("model", "")),
        "dataset_path": _scalar(dataset.get("path", "")),
        "sections": [(title, rows) for title, rows in sections if rows],
        "timings": timings,
        "categories": [{"name": c, "colour": colours[c]} for c in categories],
        "layers": layers,
        "fractions": fractions,
        "fractions_chart": Markup(category_fractions_svg(fractions)),
        "summary_png": "summary.png",
        "imported": _imported(meta),
        "extra_pages": [{"title": str(p["title"]), "href": str(p["href"])} for p in extra_pages],
    }


# ---------------------------------------------------------------------------------------------
# rendering


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The jinja2 environment of the report templates (autoescaping on)."""
    env = Environment(
        loader=PackageLoader("netdissect.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render_layer_page(context: Mapping) -> str:
    """The HTML of a layer page from :func:`layer_context`."""
    return environment().get_template("layer.html").render(**context)


def render_run_page(context: Mapping) -> str:
    """The HTML of the run page from :func:`run_context`."""
    return environment().get_template("run.html").render(**context)
