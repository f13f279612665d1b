"""Dissection results: :class:`LayerResult` and :class:`DissectionResult`, and their files.

The files' names, layout and reading and writing are :mod:`netdissect.runs.layout`'
(``docs/design/run-directory.md``). Reading a finished run needs no torch: the IoU and the
significance saved in ``iou.npz`` are read back, not recomputed; torch is imported only to
compute them for a result built from counts. The report, ``explain`` and the ablation page read
runs through :meth:`DissectionResult.load` / :meth:`LayerResult.load` too (``maps=False`` where
they need no activation maps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formulas.terms import OP_TEXT, UnitFormulas, formula_arrays, formula_text
from ..labels import display_name, unit_labels
from . import layout
from .layout import IMAGE_VALUES, NULL_ARRAYS, layer_path


@dataclass
class LayerResult:
    """The dissection of one layer.

    Units are numbered from 1 everywhere a person reads them (tally.csv, units.json, report);
    array axes are 0-based (unit ``k`` is row ``k - 1``).
    """

    layer: str
    categories: list[str]
    label_names: list[str]
    label_category: np.ndarray  # (L,) primary category index per label, -1 for none
    thresholds: np.ndarray  # (U,) float32
    inter: np.ndarray  # (U, L) int64
    act: np.ndarray  # (U, C) int64
    truth: np.ndarray  # (L,) int64
    top_indices: np.ndarray  # (U, m) dataset indices of the top images by per-image maximum
    top_values: np.ndarray  # (U, m) those maxima
    top_maps: np.ndarray | None = None  # (U, m, h, w) the unit's activation maps on those images
    iou_threshold: float = 0.04
    metadata: dict = field(default_factory=dict)
    null_score: np.ndarray | None = None  # (K, U) each unit's best IoU under K permutation-null samples
    # (U, L) IoU given as such (results imported from another tool, see netdissect.runs.foreign): used
    # instead of the IoU of the counts, which then only record what the source reported
    given_iou: np.ndarray | None = None
    formulas: UnitFormulas | None = None  # each unit's best formula (formula_length > 1)
    image_values: np.ndarray | None = None  # (N, U) float32 each unit's map mean per image (image_values)

    # iou.npz's ``iou`` and significance arrays as read back by :meth:`load`: used as they are,
    # so that reading a run needs no torch (a result built from counts computes them)
    saved_scores: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        saved = self.saved_scores or {}
        if self.given_iou is not None:
            self.iou = np.asarray(self.given_iou, dtype=np.float64)
        else:
            self.iou = saved["iou"] if "iou" in saved else self._count_iou()
        best = unit_labels(self.iou, self.label_category, len(self.categories))
        self.category_label, self.category_iou, self.category, self.label, self.score = best
        # significance against the permutation null (None without null samples): (U,) float64 each
        self.null_mean = self.null_std = self.z_score = self.p_value = None
        if self.null_score is not None:
            self.null_score = np.asarray(self.null_score, dtype=np.float64)
            stats = saved if all(k in saved for k in NULL_ARRAYS[1:]) else self._null_stats()
            self.null_mean, self.null_std, self.z_score, self.p_value = (stats[k] for k in NULL_ARRAYS[1:])

    def _count_iou(self) -> np.ndarray:
        """The (U, L) IoU of the counts (:func:`netdissect.math.tally.iou_from_counts`)."""
        import torch

        from ..math.tally import Counts, iou_from_counts

        counts = Counts(torch.from_numpy(self.inter), torch.from_numpy(self.act), torch.from_numpy(self.truth))
        return iou_from_counts(counts, torch.from_numpy(self.label_category)).numpy()

    def _null_stats(self) -> dict[str, np.ndarray]:
        """The scores' significance against ``null_score`` (:func:`netdissect.math.tally.null_summary`)."""
        import torch

        from ..math.tally import null_summary

        assert self.null_score is not None
        stats = null_summary(torch.from_numpy(self.score.astype(np.float64)), torch.from_numpy(self.null_score))
        return {k: v.numpy() for k, v in stats.items()}

    @property
    def null_samples(self) -> int:
        """K, the permutation-null samples behind ``p_value`` and ``z_score`` (0: none)."""
        return 0 if self.null_score is None else int(self.null_score.shape[0])

    @property
    def units(self) -> int:
        return len(self.thresholds)

    @property
    def formula(self) -> list[str] | None:
        """Per unit, its best formula, e.g. ``((water OR river) AND NOT blue)`` (None without formulas)."""
        if self.formulas is None:
            return None
        return [formula_text(terms, self.label_names) for terms in self.formulas.terms]

    @property
    def formula_terms(self) -> list[list[list]] | None:
        """Per unit, the formula's ``[op, label name]`` pairs (left-nested; ops ``AND``, ``OR``, ``AND NOT``;
        the first op ``None``)."""
        if self.formulas is None:
            return None
        return [
            [[OP_TEXT[op] if op else None, self.label_names[label]] for op, label in terms]
            for terms in self.formulas.terms
        ]

    @property
    def formula_iou(self) -> np.ndarray | None:
        """(U,) each unit's formula IoU (mask counted on every image, see :mod:`netdissect.formulas.search`)."""
        return None if self.formulas is None else self.formulas.iou

    @property
    def formula_single_iou(self) -> np.ndarray | None:
        """(U,) the IoU of each unit's best single label under the formulas' semantics."""
        return None if self.formulas is None else self.formulas.single_iou

    @property
    def formula_single_label(self) -> list[str] | None:
        """Per unit, that best single label's name."""
        return None if self.formulas is None else [self.label_names[i] for i in self.formulas.single_label]

    @property
    def detectors(self) -> np.ndarray:
        """Bool (U,): units whose best IoU reaches the threshold."""
        return self.score >= self.iou_threshold

    def summary(self) -> dict:
        """Units, detectors, unique detectors (both conventions) and detectors per category."""
        det = self.detectors
        by_category = {c: int((det & (self.category == ci)).sum()) for ci, c in enumerate(self.categories)}
        unique_by_category = {
            c: len(set(self.category_label[self.category_iou[:, ci] >= self.iou_threshold, ci].tolist()))
            for ci, c in enumerate(self.categories)
        }
        return {
            "units": self.units,
            "detectors": int(det.sum()),
            "unique_detectors": len(set(self.label[det].tolist())),
            "unique_detectors_by_category_sum": sum(unique_by_category.values()),
            "detectors_by_category": by_category,
            "unique_detectors_by_category": unique_by_category,
            "iou_threshold": self.iou_threshold,
        }

    def unit_records(self) -> list[dict]:
        """Per unit (1-based): threshold, label, category, score, detector flag, per-category bests, top images."""
        records = []
        null = self._null_arrays()
        for u in range(self.units):
            records.append(
                {
                    "unit": u + 1,
                    "threshold": float(self.thresholds[u]),
                    "label": self.label_names[self.label[u]],
                    "category": self.categories[self.category[u]] if self.categories else "",
                    "score": float(self.score[u]),
                    "detector": bool(self.detectors[u]),
                    "categories": {
                        c: {
                            "label": self.label_names[self.category_label[u, ci]],
                            "iou": float(self.category_iou[u, ci]),
                        }
                        for ci, c in enumerate(self.categories)
                    },
                    "top_images": [int(i) for i in self.top_indices[u]],
                    "top_maxima": [float(v) for v in self.top_values[u]],
                }
            )
            if null:
                records[-1].update(
                    {
                        "p_value": float(null["p_value"][u]),
                        "z_score": _finite_or_none(null["z_score"][u]),
                        "null_mean": float(null["null_mean"][u]),
                        "null_std": float(null["null_std"][u]),
                    }
                )
        if self.formulas is not None:
            for record, text, terms, iou, single, single_iou in zip(
                records,
                self.formula or [],
                self.formula_terms or [],
                self.formulas.iou,
                self.formula_single_label or [],
                self.formulas.single_iou,
            ):
                record.update(
                    {
                        "formula": text,
                        "formula_iou": float(iou),
                        "formula_terms": terms,
                        "formula_single_label": single,
                        "formula_single_iou": float(single_iou),
                    }
                )
        return records

    def _null_arrays(self) -> dict[str, np.ndarray]:
        """``null_score`` and the significance arrays by iou.npz name (empty without null samples)."""
        if (
            self.null_score is None
            or self.null_mean is None
            or self.null_std is None
            or self.z_score is None
            or self.p_value is None
        ):
            return {}
        return {
            "null_score": self.null_score,
            "null_mean": self.null_mean,
            "null_std": self.null_std,
            "z_score": self.z_score,
            "p_value": self.p_value,
        }

    def formula_rows(self) -> list[list]:
        """formulas.csv rows: unit, formula, formula_iou, single_label, single_iou (by unit)."""
        assert self.formulas is not None
        return [
            [u + 1, text, _num(self.formulas.iou[u]), single, _num(self.formulas.single_iou[u])]
            for u, (text, single) in enumerate(zip(self.formula or [], self.formula_single_label or []))
        ]

    def tally_rows(self) -> list[list]:
        """tally.csv rows (NetDissect-Lite's columns), by descending score."""
        rows = []
        for u in np.argsort(-self.score, kind="stable"):
            row = [u + 1, self.categories[self.category[u]], self.label_names[self.label[u]], _num(self.score[u])]
            for ci in range(len(self.categories)):
                lab = self.category_label[u, ci]
                row += [
                    self.label_names[lab] if lab else "",
                    int(self.truth[lab]),
                    int(self.act[u, ci]),
                    int(self.inter[u, lab]),
                    _num(self.category_iou[u, ci]),
                ]
            rows.append(row)
        return rows

    def tally_header(self) -> list[str]:
        """tally.csv's header (NetDissect-Lite's columns)."""
        header = ["unit", "category", "label", "score"]
        for c in self.categories:
            header += [f"{c}-label", f"{c}-truth", f"{c}-activation", f"{c}-intersect", f"{c}-iou"]
        return header

    def arrays(self) -> dict[str, np.ndarray]:
        """iou.npz's arrays, by name."""
        return {
            "iou": self.iou,
            "intersect": self.inter,
            "activation": self.act,
            "truth": self.truth,
            "thresholds": self.thresholds,
            "label_names": np.array(self.label_names),
            "label_category": self.label_category,
            "categories": np.array(self.categories),
            "top_indices": self.top_indices,
            "top_values": self.top_values,
            "iou_given": np.array(self.given_iou is not None),  # iou holds given_iou (imported results)
            **self._null_arrays(),
            **(formula_arrays(self.formulas) if self.formulas is not None else {}),
            **({IMAGE_VALUES: self.image_values} if self.image_values is not None else {}),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write tally.csv, iou.npz, top_maps.npz and (last: the layer's completion mark) units.json."""
        formulas = None
        if self.formulas is not None:
            formulas = (["unit", "formula", "formula_iou", "single_label", "single_iou"], self.formula_rows())
        document = {
            "layer": self.layer,
            "summary": self.summary(),
            "metadata": self.metadata,
            **({"formulas": self.formulas.info} if self.formulas is not None else {}),
            "units": self.unit_records(),
        }
        tally = (self.tally_header(), self.tally_rows())
        return layout.write_layer(directory, tally, self.arrays(), document, formulas, self.top_maps)

    @classmethod
    def load(cls, directory: str | os.PathLike, maps: bool = True, values: bool = True) -> LayerResult:
        """Read a layer's results back from its directory (without torch; ``maps=False`` skips
        ``top_maps.npz``, leaving :attr:`top_maps` None; ``values=False`` skips the (images x
        units) :attr:`image_values`)."""
        return cls.from_files(layout.read_layer(directory, maps, values))

    @classmethod
    def from_files(cls, files: layout.LayerFiles) -> LayerResult:
        """The result of a layer's files as :func:`netdissect.runs.layout.read_layer` read them."""
        z = files.arrays
        return cls(
            layer=files.layer,
            categories=files.categories,
            label_names=files.label_names,
            label_category=z["label_category"],
            thresholds=z["thresholds"],
            inter=z["intersect"],
            act=z["activation"],
            truth=z["truth"],
            top_indices=z["top_indices"],
            top_values=z["top_values"],
            top_maps=files.top_maps,
            iou_threshold=files.iou_threshold,
            metadata=files.metadata,
            null_score=files.null.get("null_score"),
            given_iou=files.given_iou,
            formulas=files.formulas,
            image_values=z.get(IMAGE_VALUES),
            saved_scores={"iou": z["iou"], **files.null},
        )


def _num(x: float) -> float:
    return round(float(x), 6)


def _finite_or_none(x: float) -> float | str | None:
    """A float for JSON: finite values as they are, +-inf as the strings "inf"/"-inf", NaN as None."""
    x = float(x)
    if np.isfinite(x):
        return x
    return None if np.isnan(x) else ("inf" if x > 0 else "-inf")


@dataclass
class DissectionResult:
    """Results of a dissection: one :class:`LayerResult` per layer, plus run metadata."""

    layers: dict[str, LayerResult]
    metadata: dict = field(default_factory=dict)
    directory: Path | None = None

    def __getitem__(self, layer: str) -> LayerResult:
        return self.layers[layer]

    def summary(self) -> dict:
        """Per layer: units, detectors, unique detectors (both conventions), detectors by category."""
        return {name: result.summary() for name, result in self.layers.items()}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write every layer's files and ``summary.json``."""
        directory = Path(directory)
        for name, result in self.layers.items():
            result.save(layer_path(directory, name))
        self.write_summary(directory)
        return directory

    def write_summary(self, directory: Path) -> None:
        layout.write_summary(directory, self.summary(), self.metadata)

    @classmethod
    def load(cls, directory: str | os.PathLike, maps: bool = True, values: bool = True) -> DissectionResult:
        """Read a finished run directory (without torch; ``maps=False`` skips the layers'
        ``top_maps.npz``, ``values=False`` their image-level values)."""
        directory = Path(directory)
        summary = layout.read_summary(directory)
        layers = {name: LayerResult.load(layer_path(directory, name), maps, values) for name in summary["layers"]}
        return cls(layers, summary.get("metadata", {}), directory)

    def format_table(self) -> str:
        """A plain-text table of the per-layer summary."""
        lines = [f"{'layer':<20} {'units':>6} {'detectors':>10} {'unique':>7} {'unique/cat':>10}  top concepts"]
        for name, result in self.layers.items():
            s = result.summary()
            det = result.detectors
            order = np.argsort(-result.score, kind="stable")
            top = [display_name(result.label_names[result.label[u]]) for u in order if det[u]]
            seen = list(dict.fromkeys(top))[:4]
            lines.append(
                f"{name:<20} {s['units']:>6} {s['detectors']:>10} {s['unique_detectors']:>7} "
                f"{s['unique_detectors_by_category_sum']:>10}  {', '.join(seen)}"
            )
        return "\n".join(lines)
