"""The ablation page (``index.html``, offline, in the dissection report's style), its PNG plots,
and the link from a dissection run (``<run>/extra_pages.json``).

Context building and SVG drawing are pure functions; :func:`write_ablation_page` does the I/O.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
from markupsafe import Markup

from ..ablation.result import JSON_FILE, NPZ_FILE, AblationResult
from ..files import atomic_write_bytes, layer_dirname
from ..runs.layout import is_finished_layer
from . import add_extra_page
from .pages import environment
from .runview import LayerView
from .strips import IMAGES_DIR, image_name
from .svg import CARD_WIDTH, svg_open

INDEX = "index.html"
GROUP_PNG, SCATTER_PNG = "group_curves.png", "scatter.png"
CARDS = 8  # top units shown per class
TOP_IMAGES = 5  # top images shown per unit card
#: Series of the group-ablation charts: (key, legend, colour, dashed).
SERIES = (
    ("removed", "this class, top k removed", "#e15759", False),
    ("removed_others", "other classes, top k removed", "#e15759", True),
    ("kept", "this class, only top k kept", "#4e79a7", False),
    ("kept_others", "other classes, only top k kept", "#4e79a7", True),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.1f}%"


def curves_svg(curves: dict[str, np.ndarray], width: int = 360, height: int = 214) -> str:
    """A line chart of accuracy (0-1) against k = 1..K for the :data:`SERIES` in ``curves``."""
    left, right, top, bottom = 54, 10, 10, 42
    k = max(len(v) for v in curves.values())
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * (i - 1) / (k - 1) if k > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph * (1 - v)

    parts = [svg_open("curves", width, height, "accuracy against the number k of units removed or kept")]
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
    for key, name, colour, dashed in SERIES:
        values = curves.get(key)
        if values is None:
            continue
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values, 1) if np.isfinite(v))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        parts.append(
            f'<polyline class="series" data-series="{_e(key)}" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash}><title>{_e(name)}</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice(top: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about five ticks up to ``top``."""
    raw = max(top, 1e-9) / 5
    power = 10 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if raw <= m * power))


SCATTER_W, SCATTER_H = CARD_WIDTH, 400  # the chart fills its page-wide card
DOT_R = 3.5
JITTER = 0.22  # vertical jitter (in classes) so that units with equal counts stay visible


def scatter_svg(iou: np.ndarray, hits: np.ndarray, labels: list[str], units: np.ndarray, k: int | None = None) -> str:
    """IoU (x) against the number of classes a unit is among the top-``k`` for (y), one dot per unit.

    Every dot, jitter included, lies inside the plot area (``rect.plot-area``), clear of the tick
    labels; both axes have titles (``text.axis-title``).
    """
    width, height = SCATTER_W, SCATTER_H
    left, right, top, bottom = 78, 18, 14, 58
    pw, ph = width - left - right, height - top - bottom
    step = _nice(max(float(np.max(iou, initial=0.0)), 1e-6))
    xmax = step * np.ceil(max(float(np.max(iou, initial=0.0)), 1e-6) / step - 1e-9)
    ymax = max(int(np.max(hits, initial=0)), 1)
    ystep = max(1, int(np.ceil(_nice(ymax))))
    pad = DOT_R + 3  # dots at the extremes stay a radius inside the plot area

    def x(v: float) -> float:
        return left + pad + (pw - 2 * pad) * v / xmax

    def y(v: float) -> float:  # counts from -0.5 to ymax + 0.5: the jitter never leaves the plot
        return top + ph * (1 - (v + 0.5) / (ymax + 1))

    title = f"classes with the unit in their top {k}" if k else "classes with the unit in their top k"
    parts = [
        svg_open(
            "scatter", width, height, "interpretability against importance, one dot per unit", ' id="scatter-svg"'
        ),
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
        f'transform="rotate(-90 18 {cy:.1f})">{_e(title)}</text>'
    )
    rng = np.random.default_rng(0)
    for v, h, name, u in zip(iou, hits, labels, units):
        xx = x(float(v))
        yy = y(float(h) + rng.uniform(-JITTER, JITTER))
        parts.append(
            f'<circle class="dot" cx="{xx:.1f}" cy="{yy:.1f}" r="{DOT_R}" fill="#4e79a7" fill-opacity=".65">'
            f"<title>unit {int(u)}: {_e(name)} (IoU {float(v):.3f}, {int(h)} classes)</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _unit_images(result: AblationResult, run: Path | None, out: Path) -> dict[int, dict]:
    """Per unit, relative links from ``out`` to its top images in the run report
    (``report-images/``, the first :data:`TOP_IMAGES` the report stored) and to its card on the
    layer page (``#unit-N``: the masks over the images, drawn by that page)."""
    if run is None:
        return {}
    directory = run / layer_dirname(str(result.metadata.get("layer", "")))
    if not (directory / INDEX).is_file() or not is_finished_layer(directory):
        return {}
    layer = LayerView.load(directory, maps=False)
    images = run / IMAGES_DIR
    page = Path(os.path.relpath(directory / INDEX, out)).as_posix()
    links = {}
    for u in result.units:
        u = int(u)
        if not 1 <= u <= layer.units:
            continue
        files = [images / image_name(int(i)) for i in layer.top_indices[u - 1, :TOP_IMAGES]]
        links[u] = {
            "images": [Path(os.path.relpath(f, out)).as_posix() for f in files if f.is_file()],
            "href": f"{page}#unit-{u}",
        }
    return links


def page_context(result: AblationResult, out: Path, run: Path | None = None) -> dict:
    """Everything the template shows."""
    joined = result.metadata.get("dissection") or {}
    by_unit = {d["unit"]: d for d in joined.get("units", [])}
    shown = _unit_images(result, run, out)
    estimate = bool(result.metadata.get("estimate"))
    classes = []
    for c, name in enumerate(result.class_names):
        cards = []
        for r in result.ranking(c)[:CARDS] if len(result.units) else []:
            u = int(result.units[r])
            info = by_unit.get(u, {})
            cards.append(
                {
                    "unit": u,
                    "importance": float(result.importance[r, c]),
                    "prob_drop": float(result.prob_drop[r, c]),
                    "label": info.get("label", ""),
                    "iou": info.get("iou"),
                    "images": shown.get(u, {}).get("images", []),
                    "unit_href": shown.get(u, {}).get("href", ""),
                }
            )
        curves = {
            "removed": result.group_removed[c],
            "removed_others": result.group_removed_others[c],
            "kept": result.group_kept[c],
            "kept_others": result.group_kept_others[c],
        }
        classes.append(
            {
                "index": c,
                "name": name,
                "images": int(result.class_counts[c]),
                "base": _pct(result.base_accuracy[c]),
                "removed1": _pct(result.group_removed[c, 0]) if result.top_k else "–",
                "removedk": _pct(result.group_removed[c, -1]) if result.top_k else "–",
                "othersk": _pct(result.group_removed_others[c, -1]) if result.top_k else "–",
                "keptk": _pct(result.group_kept[c, -1]) if result.top_k else "–",
                "cards": cards,
                "chart": Markup(curves_svg(curves)) if result.top_k and result.class_counts[c] else "",
            }
        )
    scatter = None
    if joined:
        units = [d["unit"] for d in joined["units"]]
        iou = np.array([d["iou"] for d in joined["units"]])
        hits = np.array([d["top_k_classes"] for d in joined["units"]])
        scatter = {
            "svg": Markup(scatter_svg(iou, hits, [d["label"] for d in joined["units"]], np.array(units), joined["k"])),
            "pearson": joined.get("pearson_iou_vs_classes"),
            "spearman": joined.get("spearman_iou_vs_classes"),
            "k": joined["k"],
        }
    meta = result.metadata
    return {
        "model": str(meta.get("model", "")),
        "layer": str(meta.get("layer", "")),
        "method": "first-order estimate" if estimate else f"{meta.get('method', 'zero')} ablation",
        "estimate": estimate,
        "fill": "its mean" if meta.get("method") == "mean" else "0",
        "images": int(np.sum(result.class_counts)),
        "units": len(result.units),
        "top_k": result.top_k,
        "split": meta.get("split", ""),
        "empty": meta.get("classes_without_images", []),
        "classes": classes,
        "scatter": scatter,
        "run_href": Path(os.path.relpath(run / INDEX, out)).as_posix() if run and (run / INDEX).is_file() else "",
        "files": {"json": JSON_FILE, "npz": NPZ_FILE, "group_png": GROUP_PNG, "scatter_png": SCATTER_PNG},
    }


def render_page(context: dict) -> str:
    """The HTML of the ablation page."""
    return environment().get_template("ablation.html").render(**context)


def save_plots(result: AblationResult, out: Path) -> list[Path]:
    """``group_curves.png`` (mean over classes, each class faint) and, with a dissection, ``scatter.png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    if result.top_k and len(result.class_names):
        figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        ks = np.arange(1, result.top_k + 1)
        valid = result.class_counts > 0
        arrays = {
            "removed": result.group_removed,
            "removed_others": result.group_removed_others,
            "kept": result.group_kept,
            "kept_others": result.group_kept_others,
        }
        for key, name, colour, dashed in SERIES:
            values = arrays[key][valid]
            for row in values if len(values) <= 20 else []:
                ax.plot(ks, row, color=colour, alpha=0.15, linestyle="--" if dashed else "-")
            ax.plot(ks, np.nanmean(values, axis=0), color=colour, linestyle="--" if dashed else "-", label=name)
        ax.set(xlabel="k (each class's most important units)", ylabel="accuracy", ylim=(-0.02, 1.02))
        ax.legend(fontsize=8)
        written.append(_save(figure, out / GROUP_PNG))
    joined = result.metadata.get("dissection")
    if joined:
        figure = Figure(figsize=(6, 4))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        iou = [d["iou"] for d in joined["units"]]
        hits = [d["top_k_classes"] for d in joined["units"]]
        ax.scatter(iou, hits, s=12, alpha=0.6, color="#4e79a7")
        r = joined.get("pearson_iou_vs_classes")
        ax.set(xlabel="IoU of the unit's label", ylabel=f"classes with the unit in their top {joined['k']}")
        ax.set_title(
            f"interpretability vs importance (r = {r:.2f})" if r is not None else "interpretability vs importance"
        )
        written.append(_save(figure, out / SCATTER_PNG))
    return written


def _save(figure, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_ablation_page(
    result: AblationResult, out: str | os.PathLike, dissection: str | os.PathLike | None = None
) -> Path:
    """Write ``index.html`` and the PNG plots into ``out``; link the page from a writable dissection run."""
    out = Path(out)
    run = Path(dissection) if dissection is not None else None
    context = page_context(result, out, run)
    atomic_write_bytes(out / INDEX, render_page(context).encode("utf-8"))
    save_plots(result, out)
    if run is not None and os.access(run, os.W_OK):  # a read-only run keeps its pages as they are
        add_extra_page(run, f"Unit ablation · {context['layer']}", out / INDEX)
    return out / INDEX


def clear_outputs(out: Path) -> None:
    """Remove an ablation's result files and page from ``out``."""
    for name in (NPZ_FILE, JSON_FILE):
        (out / name).unlink(missing_ok=True)
    remove_page(out)


def remove_page(out: Path) -> None:
    """Remove an ablation's page and plots from ``out`` (a run written without its page)."""
    for name in (INDEX, GROUP_PNG, SCATTER_PNG):
        (out / name).unlink(missing_ok=True)
