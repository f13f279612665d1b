"""HTML report pages: pure functions from results to template contexts, and their rendering.

Nothing here reads or writes files: :func:`netdissect.report.write_report` does the I/O.
Every name that comes from a dataset or a model (labels, categories, layers) is escaped:
the templates run with jinja2's autoescaping on, and the SVG charts (:mod:`netdissect.report.charts`)
escape their text and attributes themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..files import layer_dirname
from ..labels import display_name
from .categories import (
    NO_CATEGORY_COLOUR,
    bar_data,
    category_colours,
    category_fractions,
    ordered_categories,
)
from .charts import category_fractions as fractions_chart
from .charts import detectors as detectors_chart

if TYPE_CHECKING:
    from ..runs.results import DissectionResult, LayerResult

NEXT_BEST = 3  # other labels shown per unit

PAGE_SIZE = 240  # cards in a layer page's grid at first (more load as one scrolls)

IMAGES_HREF = "report-images"  # the run's stored top images (see strips.IMAGES_DIR)


# ---------------------------------------------------------------------------------------------
# contexts


def _href(*parts: str) -> str:
    """A relative URL from path parts (each percent-encoded: layer names may hold any character)."""
    return "/".join(quote(p) for p in parts)


def _next_best(result: LayerResult, k: int = NEXT_BEST) -> list[list[tuple[str, str, float]]]:
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


def _significance(result: LayerResult, u: int) -> dict:
    """A unit card's significance against the permutation null (text None without null samples)."""
    p_value, z_score, null_mean, null_std = result.p_value, result.z_score, result.null_mean, result.null_std
    if p_value is None or z_score is None or null_mean is None or null_std is None:
        return {"p_value": None, "significant": False, "significance_text": None, "significance_title": None}
    p, z = float(p_value[u]), float(z_score[u])
    z_text = "∞" if z == float("inf") else "−∞" if z == float("-inf") else f"{z:.1f}"
    return {
        "p_value": p,
        # p never falls below 1 / (K + 1): K >= 19 samples are needed to reach 0.05
        "significant": p <= SIGNIFICANCE_LEVEL + 1e-12,
        "significance_text": f"p = {p:.2g}, z {z_text}",
        "significance_title": (
            f"permutation null of {result.null_samples} samples: p = {p:.3g}, z = {z_text}, "
            f"null IoU {float(null_mean[u]):.3f} ± {float(null_std[u]):.3f}"
        ),
    }


def layer_header(summary: Mapping) -> str:
    """``"K/U units covering C concepts with IoU >= t"``."""
    return (
        f"{summary['detectors']}/{summary['units']} units covering {summary['unique_detectors']} concepts "
        f"with IoU >= {_threshold_text(summary['iou_threshold'])}"
    )


def layer_context(
    result: LayerResult,
    tiles: Mapping[int, Sequence[int]] | None = None,
    layers: Sequence[str] | None = None,
    model: str | None = None,
    extra_pages: Sequence[Mapping[str, str]] = (),
) -> dict:
    """The template context of a layer page.

    Args:
        result: the layer's results (:class:`~netdissect.runs.results.LayerResult`, computed or
            read back from the run directory).
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
    formulas, formula_iou = result.formula, result.formula_iou  # None without formulas
    summary = result.summary()
    categories = ordered_categories(result.categories)
    colours = category_colours(categories)
    detectors = result.detectors
    next_best = _next_best(result)
    units: list[dict[str, Any]] = []
    for u in range(result.units):
        ci = int(result.category[u]) if len(result.categories) else -1
        category = result.categories[ci] if ci >= 0 else ""
        label = int(result.label[u])
        shown = [int(i) for i in tiles.get(u + 1, ())]
        formula = formulas[u] if formulas is not None else None
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
                "formula_iou_text": _iou_text(float(formula_iou[u])) if formula_iou is not None else None,
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
        "bar_graph": Markup(detectors_chart.svg(detectors_chart.data(bars, categories))),
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


def latent_input(result: DissectionResult, dataset: Mapping) -> str | None:
    """The input of a generator run (``dissect-generator``: the model's input is its latents, not
    images) in words, e.g. ``"latents z ~ N(0, I): 48 of dimension 8"``; None for other runs."""
    directory = getattr(result, "directory", None)
    if directory is None:
        return None
    from ..runs.outputs import GENERATOR, read_kind

    kind = read_kind(directory)
    if kind is None or kind.name != GENERATOR.name:
        return None
    text = "latents z ~ N(0, I)"
    try:
        shape = np.load(Path(str(dataset.get("path", ""))) / "latents.npy", mmap_mode="r").shape
    except (OSError, ValueError):
        return text
    if len(shape) >= 2:
        text += f": {shape[0]} of dimension {int(np.prod(shape[1:]))}"
    return text


def run_context(result: DissectionResult, extra_pages: Sequence[Mapping[str, str]] = ()) -> dict:
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
    latents = latent_input(result, dataset)
    if latents is not None:  # a generator's input: its latents, never preprocessed images
        dataset = {k: v for k, v in dataset.items() if k != "preprocess"}
    sections = [
        (
            "Model",
            [("model", _scalar(meta.get("model", "")))]
            + ([("fingerprint", _scalar(meta["model_fingerprint"]))] if "model_fingerprint" in meta else [])
            + ([("input", latents)] if latents is not None else []),
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
        "fractions_chart": Markup(fractions_chart.svg(fractions_chart.data(fractions))),
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
