"""The ablation page (``index.html``, offline, in the dissection report's style), its PNG plots,
and the link from a dissection run (``<run>/extra_pages.json``).

Context building is a pure function (its charts are :mod:`netdissect.report.charts.ablation_curves` and
:mod:`~netdissect.report.charts.ablation_scatter`); :func:`write_ablation_page` does the I/O.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from markupsafe import Markup

from ..ablation.result import JSON_FILE, NPZ_FILE, AblationResult
from ..files import atomic_write_bytes, layer_dirname
from ..runs.layout import is_finished_layer
from ..runs.results import LayerResult
from . import add_extra_page
from .charts import ablation_curves, ablation_scatter
from .pages import environment
from .strips import IMAGES_DIR, image_name

INDEX = "index.html"
GROUP_PNG, SCATTER_PNG = "group_curves.png", "scatter.png"
CARDS = 8  # top units shown per class
TOP_IMAGES = 5  # top images shown per unit card


def _pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.1f}%"


def _unit_images(result: AblationResult, run: Path | None, out: Path) -> dict[int, dict]:
    """Per unit, relative links from ``out`` to its top images in the run report
    (``report-images/``, the first :data:`TOP_IMAGES` the report stored) and to its card on the
    layer page (``#unit-N``: the masks over the images, drawn by that page)."""
    if run is None:
        return {}
    directory = run / layer_dirname(str(result.metadata.get("layer", "")))
    if not (directory / INDEX).is_file() or not is_finished_layer(directory):
        return {}
    layer = LayerResult.load(directory, maps=False, values=False)
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
                "chart": (
                    Markup(ablation_curves.svg(ablation_curves.data(result, c)))
                    if result.top_k and result.class_counts[c]
                    else ""
                ),
            }
        )
    scatter = None
    if joined:
        scatter = {
            "svg": Markup(ablation_scatter.svg(ablation_scatter.data(result))),
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
    written = []
    if result.top_k and len(result.class_names):
        written.append(ablation_curves.save_png(ablation_curves.data(result), out / GROUP_PNG))
    if result.metadata.get("dissection"):
        written.append(ablation_scatter.save_png(ablation_scatter.data(result), out / SCATTER_PNG))
    return written


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
