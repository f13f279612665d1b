"""A run directory read for the report without torch: what the pages show, from the saved files.

:class:`netdissect.results.LayerResult` recomputes IoU and best labels with torch (its
``__post_init__``), and importing torch alone costs seconds, more than rebuilding a small
report. :class:`LayerView` reads the same files (``units.json``, ``iou.npz``, ``top_maps.npz``)
with numpy and exposes the attributes the report uses, with the same values: the IoU matrix is
the one the dissection saved, best labels come from :func:`netdissect.labels.unit_labels` as in
``LayerResult`` and the summary is the one in ``units.json``. Extra per-unit fields
of ``units.json`` (e.g. ``formula``, ``formula_iou``) are kept in :attr:`LayerView.records`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import layer_dirname
from ..formula_terms import UnitFormulas, read_formulas
from ..labels import unit_labels

ARRAYS_FILE, UNITS_FILE, MAPS_FILE, SUMMARY_FILE = "iou.npz", "units.json", "top_maps.npz", "summary.json"


@dataclass
class LayerView:
    """One layer's results as the report reads them (the attributes of ``LayerResult`` it uses)."""

    layer: str
    categories: list[str]
    label_names: list[str]
    label_category: np.ndarray
    thresholds: np.ndarray
    iou: np.ndarray
    top_indices: np.ndarray
    top_values: np.ndarray
    top_maps: np.ndarray | None
    iou_threshold: float
    saved_summary: dict
    metadata: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    null_score: np.ndarray | None = None
    null_mean: np.ndarray | None = None
    null_std: np.ndarray | None = None
    z_score: np.ndarray | None = None
    p_value: np.ndarray | None = None
    formulas: UnitFormulas | None = None  # each unit's best formula (runs with --formula-length > 1)

    def __post_init__(self) -> None:
        best = unit_labels(self.iou, self.label_category, len(self.categories))
        self.category_label, self.category_iou, self.category, self.label, self.score = best

    @property
    def units(self) -> int:
        return len(self.thresholds)

    @property
    def null_samples(self) -> int:
        return 0 if self.null_score is None else int(self.null_score.shape[0])

    @property
    def detectors(self) -> np.ndarray:
        return self.score >= self.iou_threshold

    def summary(self) -> dict:
        return self.saved_summary

    @classmethod
    def load(cls, directory: str | os.PathLike, maps: bool = True) -> LayerView:
        """Read a layer directory (``maps=False`` skips ``top_maps.npz``)."""
        directory = Path(directory)
        meta = json.loads((directory / UNITS_FILE).read_text())
        top_maps = None
        if maps and (directory / MAPS_FILE).exists():
            with np.load(directory / MAPS_FILE) as z:
                top_maps = z["top_maps"]
        with np.load(directory / ARRAYS_FILE) as z:
            null = {k: z[k] for k in ("null_score", "null_mean", "null_std", "z_score", "p_value") if k in z.files}
            return cls(
                layer=meta["layer"],
                categories=[str(c) for c in z["categories"]],
                label_names=[str(n) for n in z["label_names"]],
                label_category=z["label_category"],
                thresholds=z["thresholds"],
                iou=z["iou"],
                top_indices=z["top_indices"],
                top_values=z["top_values"],
                top_maps=top_maps,
                iou_threshold=float(meta["summary"]["iou_threshold"]),
                saved_summary=meta["summary"],
                metadata=meta.get("metadata", {}),
                records=meta.get("units", []),
                formulas=read_formulas(z, meta.get("formulas", {})),
                **null,
            )


@dataclass
class RunView:
    """A finished run directory: its layers (in dissection order) and run metadata."""

    layers: dict[str, LayerView]
    metadata: dict
    directory: Path

    @classmethod
    def load(cls, directory: str | os.PathLike, maps: bool = True) -> RunView:
        directory = Path(directory)
        summary = json.loads((directory / SUMMARY_FILE).read_text())
        layers = {name: LayerView.load(directory / layer_dirname(name), maps) for name in summary["layers"]}
        return cls(layers, summary.get("metadata", {}), directory)
