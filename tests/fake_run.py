"""A run directory written without a model: a layer of many units with planted results.

Used by the report tests (a 2,048-unit layer in the browser) and by ``benchmarks/bench_report.py``.
The numbers are random but consistent (intersections within activations and ground truth), top
images are drawn from a real Broden-format dataset and top maps are smooth random fields, so the
report has real images, masks and ground truth to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netdissect.data import BrodenDataset
from netdissect.runs.directory import dataset_identity
from netdissect.runs.results import DissectionResult, LayerResult


def fake_layer(
    dataset: BrodenDataset,
    units: int,
    name: str = "layer4",
    examples: int = 10,
    map_size: int = 7,
    seed: int = 0,
) -> LayerResult:
    """A layer of ``units`` units whose top images are ``examples`` distinct images of ``dataset``."""
    rng = np.random.default_rng(seed)
    meta = dataset.meta
    labels, categories = meta.num_labels, len(meta.categories)
    truth = rng.integers(200, 4000, labels)
    act = rng.integers(200, 4000, (units, categories))
    inter = np.minimum(rng.integers(0, 400, (units, labels)), truth)
    inter = np.minimum(inter, act[:, np.maximum(meta.label_category, 0)])
    inter[:, 0] = 0
    n = len(dataset)
    m = min(examples, n)
    top = np.argsort(rng.random((units, n)), axis=1)[:, :m]
    fields = rng.standard_normal((units, m, map_size + 2, map_size + 2)).astype(np.float32)
    maps = (fields[:, :, :-2, :-2] + fields[:, :, 1:-1, 1:-1] + fields[:, :, 2:, 2:]) / 3  # smooth a little
    thresholds = np.quantile(maps.reshape(units, -1), 0.9, axis=1).astype(np.float32)
    return LayerResult(
        layer=name,
        categories=list(meta.categories),
        label_names=list(meta.label_names),
        label_category=meta.label_category,
        thresholds=thresholds,
        inter=inter.astype(np.int64),
        act=act.astype(np.int64),
        truth=truth.astype(np.int64),
        top_indices=top.astype(np.int64),
        top_values=np.sort(rng.random((units, m)).astype(np.float32), axis=1)[:, ::-1].copy(),
        top_maps=maps,
        metadata={"model": "fake", "layer": name},
    )


def write_fake_run(
    out: Path, dataset_dir: Path, units: int = 2048, name: str = "layer4", examples: int = 10, seed: int = 0
) -> Path:
    """Write a finished run directory with one fake layer (see :func:`fake_layer`); return ``out``."""
    dataset = BrodenDataset(dataset_dir)
    layer = fake_layer(dataset, units, name, examples, seed=seed)
    metadata = {"model": "fake", "dataset": dataset_identity(dataset), "options": {"top_images": examples}}
    DissectionResult({name: layer}, metadata).save(out)
    return out
