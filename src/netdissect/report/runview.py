"""A run directory read for the report without torch: what the pages show, from the saved files.

:class:`netdissect.runs.results.LayerResult` recomputes IoU and best labels with torch (its
``__post_init__``), and importing torch alone costs seconds, more than rebuilding a small
report. :class:`LayerView` reads the same files (``units.json``, ``iou.npz``, ``top_maps.npz``)
through :func:`netdissect.runs.layout.read_layer` (as ``LayerResult.load`` does) and exposes the
attributes the report uses, with the same values: the IoU matrix is the one the dissection
saved, best labels come from :func:`netdissect.labels.unit_labels` as in ``LayerResult`` and
the summary is the one in ``units.json``. Extra per-unit fields of ``units.json`` (e.g.
``formula``, ``formula_iou``) are kept in :attr:`LayerView.records`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formulas.terms import UnitFormulas
from ..labels import unit_labels
from ..runs.layout import layer_path, read_layer, read_summary

__all__ = ["LayerView", "RunView"]


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
        files = read_layer(directory, maps)
        z = files.arrays
        return cls(
            layer=files.layer,
            categories=files.categories,
            label_names=files.label_names,
            label_category=z["label_category"],
            thresholds=z["thresholds"],
            iou=z["iou"],
            top_indices=z["top_indices"],
            top_values=z["top_values"],
            top_maps=files.top_maps,
            iou_threshold=files.iou_threshold,
            saved_summary=files.document["summary"],
            metadata=files.metadata,
            records=files.document.get("units", []),
            formulas=files.formulas,
            **files.null,
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
        summary = read_summary(directory)
        layers = {name: LayerView.load(layer_path(directory, name), maps) for name in summary["layers"]}
        return cls(layers, summary.get("metadata", {}), directory)
