"""The result of an ablation: per-unit, per-class accuracies and importances, group curves,
and their files (``ablation.npz``, ``ablation.json``)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..files import atomic_write_bytes, atomic_write_json

NPZ_FILE, JSON_FILE = "ablation.npz", "ablation.json"
#: The arrays of ``ablation.npz``, exactly.
NPZ_ARRAYS = (
    "class_names",
    "class_counts",
    "base_accuracy",
    "accuracy",
    "importance",
    "prob_drop",
    "units",
    "group_removed",
    "group_kept",
)


def _nan_to_none(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in np.asarray(a, dtype=np.float64).ravel()]


def _rows(a: np.ndarray) -> list[list]:
    return [_nan_to_none(row) for row in np.asarray(a)]


def rank_units(importance: np.ndarray, prob_drop: np.ndarray) -> np.ndarray:
    """Row indices by decreasing importance, ties by decreasing prob_drop, then by row (NaN last)."""
    importance = np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=-np.inf)
    prob = np.nan_to_num(np.asarray(prob_drop, dtype=np.float64), nan=-np.inf)
    return np.lexsort((np.arange(len(importance)), -prob, -importance))


@dataclass
class AblationResult:
    """How much each unit of a layer matters to each output class.

    Arrays (U units, C classes, K group sizes); accuracies are fractions, NaN for a class with
    no images:

    * ``base_accuracy`` (C,): top-1 accuracy per class, nothing ablated;
    * ``accuracy`` (U, C): with unit ``units[i]`` ablated (row i);
    * ``importance`` (U, C): ``base_accuracy - accuracy`` (with ``estimate``: the first-order
      estimate of the drop of the mean true-class log-probability instead, and ``accuracy`` NaN);
    * ``prob_drop`` (U, C): drop of the mean true-class probability;
    * ``group_removed`` / ``group_kept`` (C, K): class c's accuracy with its k most important
      units removed together / with only those kept (every other unit of the layer removed);
      ``group_removed_others`` / ``group_kept_others``: the mean accuracy of the other classes.
    """

    class_names: list[str]
    class_counts: np.ndarray
    base_accuracy: np.ndarray
    accuracy: np.ndarray
    importance: np.ndarray
    prob_drop: np.ndarray
    units: np.ndarray  # (U,) 1-based unit numbers
    group_removed: np.ndarray
    group_kept: np.ndarray
    group_removed_others: np.ndarray
    group_kept_others: np.ndarray
    base_prob: np.ndarray  # (C,) mean true-class probability, nothing ablated
    metadata: dict = field(default_factory=dict)

    @property
    def top_k(self) -> int:
        return int(self.group_removed.shape[1])

    def ranking(self, c: int) -> np.ndarray:
        """Row indices of the units by importance to class index ``c`` (see :func:`rank_units`)."""
        return rank_units(self.importance[:, c], self.prob_drop[:, c])

    def class_index(self, class_name: str) -> int:
        """The position of ``class_name`` among the classes, or a one-line :class:`OptionError`."""
        if class_name in self.class_names:
            return self.class_names.index(class_name)
        raise OptionError(f"no class {class_name!r} in this ablation (classes: {', '.join(self.class_names[:8])} ...)")

    def top_units(self, class_name: str, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` units most important to ``class_name``: ``[(unit number, importance), ...]``."""
        c = self.class_index(class_name)
        rows = self.ranking(c)[:k]
        return [(int(self.units[r]), float(self.importance[r, c])) for r in rows]

    def classes_per_unit(self, k: int) -> np.ndarray:
        """(U,) for how many classes each unit is among the ``k`` most important."""
        hits = np.zeros(len(self.units), dtype=np.int64)
        for c in range(len(self.class_names)):
            if self.class_counts[c] > 0:
                hits[self.ranking(c)[:k]] += 1
        return hits

    def arrays(self) -> dict[str, Any]:
        """The arrays of ``ablation.npz``."""
        return {
            "class_names": np.array(self.class_names),
            "class_counts": np.asarray(self.class_counts, dtype=np.int64),
            "base_accuracy": self.base_accuracy,
            "accuracy": self.accuracy,
            "importance": self.importance,
            "prob_drop": self.prob_drop,
            "units": np.asarray(self.units, dtype=np.int64),
            "group_removed": self.group_removed,
            "group_kept": self.group_kept,
        }

    def to_json(self) -> dict:
        """The readable form of ``ablation.json``: metadata, per class and per unit."""
        return {
            "metadata": self.metadata,
            "classes": [
                {
                    "class": name,
                    "images": int(self.class_counts[c]),
                    "base_accuracy": _nan_to_none(self.base_accuracy[c : c + 1])[0],
                    "base_prob": _nan_to_none(self.base_prob[c : c + 1])[0],
                    "top_units": [u for u, _ in self.top_units(name, self.top_k)] if len(self.units) else [],
                    "group_removed": _nan_to_none(self.group_removed[c]),
                    "group_removed_others": _nan_to_none(self.group_removed_others[c]),
                    "group_kept": _nan_to_none(self.group_kept[c]),
                    "group_kept_others": _nan_to_none(self.group_kept_others[c]),
                }
                for c, name in enumerate(self.class_names)
            ],
            "units": [int(u) for u in self.units],
            "accuracy": _rows(self.accuracy),
            "importance": _rows(self.importance),
            "prob_drop": _rows(self.prob_drop),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``ablation.npz`` and (last) ``ablation.json`` into ``directory``."""
        directory = Path(directory)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self.arrays())
        atomic_write_bytes(directory / NPZ_FILE, buffer.getvalue())
        atomic_write_json(directory / JSON_FILE, self.to_json())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> AblationResult:
        """Read an ablation's files back."""
        directory = Path(directory)
        meta = json.loads((directory / JSON_FILE).read_text())
        classes = meta["classes"]

        def column(key: str) -> np.ndarray:
            return np.array([[np.nan if v is None else v for v in c[key]] for c in classes], dtype=np.float64)

        with np.load(directory / NPZ_FILE) as z:
            arrays = {k: z[k] for k in NPZ_ARRAYS}
        return cls(
            class_names=[str(n) for n in arrays.pop("class_names")],
            **arrays,
            group_removed_others=column("group_removed_others").reshape(arrays["group_removed"].shape),
            group_kept_others=column("group_kept_others").reshape(arrays["group_kept"].shape),
            base_prob=np.array([np.nan if c["base_prob"] is None else c["base_prob"] for c in classes]),
            metadata=meta["metadata"],
        )
