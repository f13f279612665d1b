"""Join an ablation with a dissection of the same layer: each unit's concept label and IoU
beside its importance, and the correlation between interpretability and importance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ModelError, RunDirectoryError
from ..labels import display_name
from ..runs.layout import SUMMARY_FILE, is_finished_run
from ..runs.results import DissectionResult, LayerResult
from .compute import pearson, spearman
from .result import AblationResult


def load_layer(run: str | os.PathLike, layer: str) -> tuple[LayerResult, dict]:
    """The finished dissection of ``layer`` in run directory ``run`` and the run's metadata."""
    run = Path(run)
    if not is_finished_run(run):
        raise RunDirectoryError(f"--dissection {run} holds no finished dissection (no {SUMMARY_FILE})")
    result = DissectionResult.load(run, values=False)
    if layer not in result.layers:
        raise RunDirectoryError(
            f"--dissection {run} has no layer {layer!r} (it has {', '.join(result.layers) or 'none'})"
        )
    return result.layers[layer], result.metadata


def check_dissection(run: str | os.PathLike, layer: str, fingerprint: str | None) -> tuple[LayerResult, dict]:
    """The dissected ``layer`` of ``run`` and its metadata, checked to be of the model with ``fingerprint``
    (called before an ablation starts, so a wrong ``--dissection`` fails at once)."""
    dissected, meta = load_layer(run, layer)
    theirs = meta.get("model_fingerprint")
    if fingerprint and theirs and fingerprint != theirs:
        raise ModelError(
            f"--dissection {run} dissected another model (weights fingerprint {theirs}, this one {fingerprint})"
        )
    return dissected, meta


def join_dissection(result: AblationResult, run: str | os.PathLike, layer: str) -> dict:
    """Add ``metadata["dissection"]`` to ``result``: per unit its label, category and IoU and the
    number of classes for which it is among the top-k units; the correlations of IoU with that
    number. Returns that record."""
    dissected, _ = check_dissection(run, layer, result.metadata.get("model_fingerprint"))
    width = int(result.metadata.get("layer_units", dissected.units))
    if dissected.units != width:
        raise RunDirectoryError(f"--dissection {run}: layer {layer} has {dissected.units} units there, {width} here")
    rows = result.units - 1
    iou = dissected.score[rows].astype(np.float64)
    k = result.top_k
    hits = result.classes_per_unit(k)
    record = {
        "run": str(Path(run).resolve()),
        "k": k,
        "units": [
            {
                "unit": int(u),
                "label": display_name(dissected.label_names[dissected.label[r]]),
                "category": dissected.categories[dissected.category[r]] if dissected.categories else "",
                "iou": round(float(dissected.score[r]), 6),
                "detector": bool(dissected.detectors[r]),
                "top_k_classes": int(h),
            }
            for u, r, h in zip(result.units, rows, hits)
        ],
        "pearson_iou_vs_classes": _finite(pearson(iou, hits)),
        "spearman_iou_vs_classes": _finite(spearman(iou, hits)),
    }
    result.metadata["dissection"] = record
    return record


def _finite(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None
