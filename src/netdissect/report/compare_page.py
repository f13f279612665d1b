"""Comparing finished runs: a page and PNG charts over several dissection runs.

``compare_runs([run_a, run_b, ...], out)`` writes ``<out>/index.html`` (self-contained: inline
CSS and SVG, images by relative paths, no network) with

* the unique detectors per category per run and layer (the paper's stacked bars),
  also as ``unique_detectors.png``;
* the detectors per layer across runs (a table and grouped bars, ``detectors_per_layer.png``);
* for two runs of the same architecture (same layers, same unit counts), a per-unit table of
  label changes: units whose best label or detector status changed;
* with ``series=True`` (runs given in order, e.g. checkpoints over training), the concept
  emergence chart: detectors per category and unique detectors per run, as lines
  (``concept_emergence.png``).

The numbers behind every chart are in :func:`comparison_data`'s output, which is also written
as ``<out>/compare.json``. A unit's label is its best label (highest IoU over all categories);
a detector is a unit whose best IoU reaches the IoU threshold; the unique detectors of a
category are the distinct labels of that category among the detectors whose best label is in
it (so they add up to the layer's unique detectors); the tables also show the per-category-sum
convention (distinct labels per category reaching the threshold as some unit's best label in
that category, summed over the categories).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from ..errors import NetDissectError, OptionError, RunDirectoryError
from ..files import atomic_write_bytes
from ..labels import display_name
from ..runs.layout import SUMMARY_FILE, is_finished_run
from ..runs.outputs import COMPARISON, claim_output
from ..runs.results import DissectionResult, LayerResult
from .categories import category_colours, ordered_categories
from .charts import detectors_per_layer, unique_detectors
from .charts import emergence as emergence_chart
from .pages import _iou_text, environment

__all__ = ["compare_runs", "comparison_data", "label_changes", "layer_counts"]

INDEX = "index.html"
DATA_FILE = "compare.json"
UNIQUE_PNG = "unique_detectors.png"
DETECTORS_PNG = "detectors_per_layer.png"
EMERGENCE_PNG = "concept_emergence.png"


# ---------------------------------------------------------------------------------------------
# numbers


def _threshold(layer: LayerResult, iou_threshold: float | None) -> float:
    return float(layer.iou_threshold if iou_threshold is None else iou_threshold)


def layer_counts(layer: LayerResult, iou_threshold: float | None = None) -> dict:
    """Units, detectors and unique detectors of a layer, in total and per category.

    Two conventions of unique detectors (as the layer's ``summary()``): ``unique_by_category``
    counts the distinct best labels of the detectors by the label's category (adding up to
    ``unique_detectors``); ``unique_by_category_sum`` counts, per category, the distinct labels
    that are some unit's best label in that category with an IoU reaching the threshold (adding
    up to ``unique_detectors_by_category_sum``, NetDissect-Lite's and the original's figures).
    ``iou_threshold`` defaults to the layer's own.
    """
    t = _threshold(layer, iou_threshold)
    det = layer.score >= t
    detectors, unique, unique_sum = {}, {}, {}
    for ci, c in enumerate(layer.categories):
        members = det & (layer.category == ci)
        detectors[c] = int(members.sum())
        unique[c] = len(set(layer.label[members].tolist()))
        unique_sum[c] = len(set(layer.category_label[layer.category_iou[:, ci] >= t, ci].tolist()))
    return {
        "units": int(layer.units),
        "detectors": int(det.sum()),
        "unique_detectors": len(set(layer.label[det].tolist())),
        "unique_detectors_by_category_sum": sum(unique_sum.values()),
        "detectors_by_category": detectors,
        "unique_by_category": unique,
        "unique_by_category_sum": unique_sum,
        "iou_threshold": t,
    }


def _unit(layer: LayerResult, u: int, t: float) -> dict:
    ci = int(layer.category[u]) if len(layer.categories) else -1
    score = float(layer.score[u])
    return {
        "label": display_name(layer.label_names[int(layer.label[u])]),
        "name": layer.label_names[int(layer.label[u])],
        "category": layer.categories[ci] if ci >= 0 else "",
        "iou": score,
        "iou_text": _iou_text(score),
        "detector": bool(score >= t),
    }


def label_changes(before: LayerResult, after: LayerResult, iou_threshold: float | None = None) -> list[dict]:
    """Units (1-based) whose best label or detector status differs between two results of a layer.

    Each row: ``{"unit", "before": {...}, "after": {...}, "label_changed", "status_changed"}``
    where the sides hold ``label`` (display name), ``name``, ``category``, ``iou``,
    ``iou_text`` and ``detector``. Labels are compared by name.
    """
    if before.units != after.units:
        raise OptionError(
            f"layer {before.layer}: {before.units} units and {after.units} units cannot be compared unit by unit"
        )
    tb, ta = _threshold(before, iou_threshold), _threshold(after, iou_threshold)
    rows = []
    for u in range(before.units):
        b, a = _unit(before, u, tb), _unit(after, u, ta)
        label_changed = b["name"] != a["name"]
        status_changed = b["detector"] != a["detector"]
        if label_changed or status_changed:
            rows.append(
                {
                    "unit": u + 1,
                    "before": b,
                    "after": a,
                    "label_changed": label_changed,
                    "status_changed": status_changed,
                }
            )
    return rows


def _load(directory: Path) -> DissectionResult:
    if not directory.is_dir():
        raise RunDirectoryError(f"run directory {directory} does not exist")
    if not is_finished_run(directory):
        raise RunDirectoryError(f"{directory} is not a finished run: it has no {SUMMARY_FILE}")
    try:
        return DissectionResult.load(directory, values=False)
    except NetDissectError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise RunDirectoryError(f"cannot read run {directory}: {type(error).__name__}: {error}") from None


def _run_names(directories: Sequence[Path]) -> list[str]:
    """The runs' directory names, made distinct."""
    seen: dict[str, int] = {}
    out = []
    for directory in directories:
        name = directory.resolve().name or str(directory)
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _layer_list(names: Sequence[str]) -> str:
    return f"layer{'s' if len(names) > 1 else ''} {', '.join(names)}"


def _same_architecture(
    a: DissectionResult, b: DissectionResult, names: Sequence[str] = ("the first run", "the second run")
) -> str | None:
    """None when the runs have the same layers with the same unit counts, else what differs.

    ``names`` are the two runs' names in the message.
    """
    if not a.layers and not b.layers:
        return "the runs have no layers"
    only = [[n for n in x.layers if n not in y.layers] for x, y in ((a, b), (b, a))]
    if any(only):
        differ = "; ".join(f"{_layer_list(o)} only in {name}" for o, name in zip(only, names) if o)
        shared = [n for n in a.layers if n in b.layers]
        common = f"both have {_layer_list(shared)}" if shared else "no layer in common"
        return f"{differ} ({common}); the unit-by-unit table needs the same layers in both runs"
    if list(a.layers) != list(b.layers):
        return (
            f"{names[0]} lists its layers as {', '.join(a.layers)} and {names[1]} as {', '.join(b.layers)}; "
            "the unit-by-unit table needs them in the same order"
        )
    for name in a.layers:
        if a.layers[name].units != b.layers[name].units:
            return (
                f"layer {name} has {a.layers[name].units} units in {names[0]} and {b.layers[name].units} in "
                f"{names[1]}; the unit-by-unit table needs the same units"
            )
    return None


def comparison_data(
    runs: Sequence[str | os.PathLike | DissectionResult],
    labels: Sequence[str] | None = None,
    series: bool = False,
    iou_threshold: float | None = None,
) -> dict:
    """The numbers of a comparison (what :func:`compare_runs` draws), as plain JSON-able data.

    Returns ``{"runs": [{"label", "directory", "model"}], "categories", "layers",
    "rows": [per run and layer: {"run", "layer", "units", "detectors", "unique_detectors",
    "unique_detectors_by_category_sum", "detectors_by_category", "unique_by_category",
    "unique_by_category_sum", "iou_threshold"}] (see :func:`layer_counts`), "detectors_per_layer":
    {"layers", "runs", "detectors": [[count or None per layer] per run], "units": ...},
    "label_changes": {"available", "note", "before", "after", "layers": [{"layer", "units",
    "changes": [...]}]}, "series": None or {"runs", "layers": [{"layer", "detectors": {category:
    [count per run]}, "unique": {category: [...]}, "detectors_total": [...], "unique_total":
    [...]}], "note"}}``.
    """
    runs = list(runs)
    if len(runs) < 1:
        raise OptionError("compare needs at least one run directory")
    if iou_threshold is not None and not (0.0 <= float(iou_threshold) <= 1.0):
        raise OptionError(f"--iou-threshold must be between 0 and 1, got {iou_threshold}")
    results, directories = _load_runs(runs)
    labels = _labels(labels, results, directories)
    categories, layers = _categories_and_layers(results)
    rows, counts = _counts(labels, results, categories, iou_threshold)
    return {
        "runs": [
            {"label": label, "directory": str(d), "model": str(r.metadata.get("model", ""))}
            for label, d, r in zip(labels, directories, results)
        ],
        "categories": categories,
        "layers": layers,
        "rows": rows,
        "detectors_per_layer": _detectors_per_layer(layers, labels, counts),
        "label_changes": _label_changes(results, labels, series, iou_threshold),
        "series": _series(layers, labels, counts, categories) if series else None,
    }


def _load_runs(
    runs: Sequence[str | os.PathLike | DissectionResult],
) -> tuple[list[DissectionResult], list[Path]]:
    """The runs' results and directories (``run<i>`` for a result that has none)."""
    results: list[DissectionResult] = []
    directories: list[Path] = []
    for run in runs:
        if isinstance(run, DissectionResult):
            results.append(run)
            directories.append(Path(run.directory) if run.directory is not None else Path(f"run{len(results)}"))
        else:
            directories.append(Path(run))
            results.append(_load(Path(run)))
    return results, directories


def _labels(labels: Sequence[str] | None, results: list[DissectionResult], directories: list[Path]) -> list[str]:
    """The runs' names: the given ``labels``, checked, else the directories' names made distinct."""
    if labels is None:
        return _run_names(directories)
    labels = [str(x) for x in labels]
    if len(labels) != len(results):
        raise OptionError(f"--labels gives {len(labels)} names for {len(results)} runs")
    if len(set(labels)) != len(labels):
        raise OptionError("--labels names must be distinct")
    return labels


def _categories_and_layers(results: list[DissectionResult]) -> tuple[list[str], list[str]]:
    """Every run's categories (in the usual order) and layers (in order of first appearance)."""
    categories: list[str] = []
    layers: list[str] = []
    for result in results:
        for name, layer in result.layers.items():
            categories += layer.categories
            if name not in layers:
                layers.append(name)
    return ordered_categories(categories), layers


def _counts(
    labels: list[str], results: list[DissectionResult], categories: list[str], iou_threshold: float | None
) -> tuple[list[dict], list[dict[str, dict]]]:
    """The table's rows (per run and layer) and, per run, ``{layer: counts}`` over all ``categories``."""
    rows = []
    counts: list[dict[str, dict]] = []
    for label, result in zip(labels, results):
        per_layer = {}
        for name, layer in result.layers.items():
            c = layer_counts(layer, iou_threshold)
            for key in ("detectors_by_category", "unique_by_category", "unique_by_category_sum"):
                c[key] = {k: c[key].get(k, 0) for k in categories}
            per_layer[name] = c
            rows.append({"run": label, "layer": name, **c})
        counts.append(per_layer)
    return rows, counts


def _detectors_per_layer(layers: list[str], labels: list[str], counts: list[dict[str, dict]]) -> dict:
    def per_run(key: str) -> list[list]:
        return [[per_layer[n][key] if n in per_layer else None for n in layers] for per_layer in counts]

    return {
        "layers": layers,
        "runs": labels,
        "detectors": per_run("detectors"),
        "units": per_run("units"),
        "unique_detectors": per_run("unique_detectors"),
    }


def _label_changes(
    results: list[DissectionResult], labels: list[str], series: bool, iou_threshold: float | None
) -> dict[str, Any]:
    """The per-unit label changes between two runs (the first and last of a series), or why there are none."""
    changes: dict[str, Any] = {"available": False, "note": "", "before": None, "after": None, "layers": []}
    if len(results) == 1:
        changes["note"] = "Label changes need two runs."
        return changes
    if len(results) > 2 and not series:
        changes["note"] = "Label changes are shown for two runs, or for the first and last run of a series (--series)."
        return changes
    i, j = 0, len(results) - 1
    why = _same_architecture(results[i], results[j], (f"run {labels[i]}", f"run {labels[j]}"))
    if why:
        changes["note"] = f"No per-unit label changes: {why}."
        return changes
    changes.update(available=True, before=labels[i], after=labels[j])
    for name in results[i].layers:
        a, b = results[i].layers[name], results[j].layers[name]
        changes["layers"].append({"layer": name, "units": a.units, "changes": label_changes(a, b, iou_threshold)})
    return changes


def _series(
    layers: list[str], labels: list[str], counts: list[dict[str, dict]], categories: list[str]
) -> dict[str, Any]:
    """Per layer that every run has, each category's detectors and unique detectors along the runs."""
    common = [n for n in layers if all(n in per_layer for per_layer in counts)]
    series_data: dict[str, Any] = {"runs": labels, "layers": [], "note": ""}
    if not common:
        series_data["note"] = "The runs share no layer: no concept-emergence chart."
    for name in common:
        series_data["layers"].append(
            {
                "layer": name,
                "detectors": {
                    c: [per_layer[name]["detectors_by_category"][c] for per_layer in counts] for c in categories
                },
                "unique": {c: [per_layer[name]["unique_by_category"][c] for per_layer in counts] for c in categories},
                "detectors_total": [per_layer[name]["detectors"] for per_layer in counts],
                "unique_total": [per_layer[name]["unique_detectors"] for per_layer in counts],
            }
        )
    return series_data


# ---------------------------------------------------------------------------------------------
# page


def _relative_href(target: Path, out: Path) -> str:
    rel = os.path.relpath(target.resolve(), out.resolve())
    return "/".join(quote(p) for p in Path(rel).parts)


def compare_context(data: Mapping, out: Path, run_dirs: Sequence[Path | None], pngs: Mapping[str, str | None]) -> dict:
    """The template context of the comparison page."""
    categories = list(data["categories"])
    colours = category_colours(categories)
    runs = []
    for i, (run, directory) in enumerate(zip(data["runs"], run_dirs)):
        href = None
        if directory is not None and (directory / INDEX).is_file():
            href = _relative_href(directory / INDEX, out)
        runs.append({**run, "href": href, "colour": detectors_per_layer.run_colour(i)})
    d = data["detectors_per_layer"]
    detector_rows = []
    for li, layer in enumerate(d["layers"]):
        cells = []
        for ri in range(len(d["runs"])):
            n, u = d["detectors"][ri][li], d["units"][ri][li]
            cells.append(
                None
                if n is None
                else {
                    "detectors": n,
                    "units": u,
                    "unique": d["unique_detectors"][ri][li],
                    "percent": f"{100 * n / max(u, 1):.1f}",
                }
            )
        detector_rows.append({"layer": layer, "cells": cells})
    series = data["series"]
    emergence = []
    if series:
        for layer in series["layers"]:
            emergence.append(
                {
                    "layer": layer["layer"],
                    "svg": Markup(emergence_chart.svg(emergence_chart.data(data, layer["layer"]))),
                    "rows": [
                        {"name": c, "colour": colours[c], "counts": layer["detectors"][c], "unique": layer["unique"][c]}
                        for c in categories
                    ],
                    "detectors_total": layer["detectors_total"],
                    "unique_total": layer["unique_total"],
                }
            )
    return {
        "runs": runs,
        "categories": [{"name": c, "colour": colours[c]} for c in categories],
        "rows": data["rows"],
        "unique_chart": Markup(unique_detectors.svg(unique_detectors.data(data))),
        "detectors_chart": Markup(detectors_per_layer.svg(detectors_per_layer.data(data))),
        "detector_runs": d["runs"],
        "detector_rows": detector_rows,
        "changes": data["label_changes"],
        "series": series,
        "emergence": emergence,
        "pngs": pngs,
        "data_file": DATA_FILE,
    }


def render_compare_page(context: Mapping) -> str:
    return environment().get_template("compare.html").render(**context)


def compare_runs(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    labels: Sequence[str] | None = None,
    series: bool = False,
    iou_threshold: float | None = None,
) -> Path:
    """Compare finished runs: write ``<out>/index.html``, the PNG charts and ``compare.json``.

    Args:
        runs: run directories (each with ``summary.json``), in order for a series.
        out: the output directory (created).
        labels: names of the runs on the page (default: their directory names).
        series: the runs are a series (e.g. checkpoints over training): draw concept emergence,
            and compare the first and last run unit by unit.
        iou_threshold: the IoU a unit needs to count as a detector (default: each run's own).

    Returns:
        The path of ``<out>/index.html``.
    """
    runs = list(runs)
    data = comparison_data(runs, labels=labels, series=series, iou_threshold=iou_threshold)
    out = Path(out)
    run_dirs = [Path(r) for r in runs]
    if any(out.resolve() == d.resolve() for d in run_dirs):
        raise OptionError(f"--out {out} is one of the compared runs: choose another directory")
    claim_output(out, COMPARISON)
    pngs = {"unique": UNIQUE_PNG, "detectors": DETECTORS_PNG, "emergence": None}
    unique_detectors.save_png(unique_detectors.data(data), out / UNIQUE_PNG)
    detectors_per_layer.save_png(detectors_per_layer.data(data), out / DETECTORS_PNG)
    if data["series"] and data["series"]["layers"]:
        emergence_chart.save_png(emergence_chart.data(data), out / EMERGENCE_PNG)
        pngs["emergence"] = EMERGENCE_PNG
    atomic_write_bytes(out / DATA_FILE, (json.dumps(data, indent=1) + "\n").encode())
    html = render_compare_page(compare_context(data, out, run_dirs, pngs))
    index = out / INDEX
    atomic_write_bytes(index, html.encode())
    return index
