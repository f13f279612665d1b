"""The run directory's files, without torch: their names, where they lie, and reading and
writing a finished run's results (``docs/design/run-directory.md``).

Every name of a file or folder in a run directory is declared here, once; the modules that
write a run (:mod:`netdissect.runs.results`, :mod:`netdissect.runs.directory`, :mod:`netdissect.runs.checkpoints`)
and those that read one (``DissectionResult.load``, by which the report and ``explain`` read runs,
``compare``, the ablation's join, ``import-results``) go through this module. A finished layer is read by
:func:`read_layer` into a :class:`LayerFiles` (the arrays and documents as saved), a run's
summary by :func:`read_summary`; :func:`write_layer` and :func:`write_summary` write them, every
file atomically (a temporary file renamed into place), ``units.json`` last: it marks the layer
finished.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes, atomic_write_json, layer_dirname
from ..formulas.terms import UnitFormulas, read_formulas

# per layer, in <run>/<layer_dirname(layer)>/
TALLY_FILE = "tally.csv"  # NetDissect-Lite's table
UNITS_FILE = "units.json"  # per unit records, summary, metadata; written last: the layer is finished
ARRAYS_FILE = "iou.npz"  # counts, IoU, labels, thresholds, top images, null and formula arrays
MAPS_FILE = "top_maps.npz"  # each unit's activation maps on its top images
FORMULAS_FILE = "formulas.csv"  # with formula_length > 1

# per run
SUMMARY_FILE = "summary.json"  # per layer summaries and the run's metadata; written last: the run is finished
RUN_FILE = "run.json"  # the run's identity, layers and state
LOCK_FILE = ".lock"  # held while a process writes the directory
CHECKPOINT_DIR = "checkpoints"  # each rank's checkpoint while a run is unfinished
STAGING_DIR = ".overwrite"  # a new run written beside the old one until it has finished
REPLACED_DIR = ".replaced"  # the old run's entries while the new ones move in
JOURNAL_FILE = ".journal.json"  # in REPLACED_DIR: the renames of a replacement

#: The significance arrays of iou.npz (runs with null samples), in the order they are saved.
NULL_ARRAYS = ("null_score", "null_mean", "null_std", "z_score", "p_value")
#: iou.npz's (N, U) image-level values of the units (runs with ``--image-values``)
IMAGE_VALUES = "image_values"


def layer_path(run_dir: str | os.PathLike, layer: str) -> Path:
    """The directory of ``layer``'s results in run directory ``run_dir``."""
    return Path(run_dir) / layer_dirname(layer)


def checkpoint_path(run_dir: str | os.PathLike, rank: int) -> Path:
    """Where process ``rank`` keeps its checkpoint (:mod:`netdissect.runs.checkpoints`) while the run is unfinished."""
    return Path(run_dir) / CHECKPOINT_DIR / f"rank{rank}.ckpt"


def is_finished_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a finished run (its ``summary.json``)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def is_finished_layer(directory: str | os.PathLike) -> bool:
    """Whether the layer directory ``directory`` holds a finished layer (its ``units.json``)."""
    return (Path(directory) / UNITS_FILE).is_file()


def is_run_layer(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` is a finished layer of a dissection run (the run's ``run.json`` above it)."""
    directory = Path(directory)
    return (directory.parent / RUN_FILE).exists() and (directory / UNITS_FILE).exists()


@dataclass
class LayerFiles:
    """A finished layer's files as saved: ``units.json``'s document and ``iou.npz``'s arrays."""

    document: dict  # units.json: layer, summary, metadata, (formulas,) units
    arrays: dict[str, np.ndarray]  # iou.npz, by array name
    top_maps: np.ndarray | None  # top_maps.npz's (U, m, h, w), None when absent or not read

    @property
    def layer(self) -> str:
        return str(self.document["layer"])

    @property
    def summary(self) -> dict:
        return dict(self.document["summary"])

    @property
    def iou_threshold(self) -> float:
        return float(self.document["summary"]["iou_threshold"])

    @property
    def metadata(self) -> dict:
        return dict(self.document.get("metadata", {}))

    @property
    def records(self) -> list[dict]:
        """Per unit, its record in ``units.json`` (1-based ``unit``)."""
        return list(self.document.get("units", []))

    @property
    def categories(self) -> list[str]:
        return [str(c) for c in self.arrays["categories"]]

    @property
    def label_names(self) -> list[str]:
        return [str(n) for n in self.arrays["label_names"]]

    @property
    def given_iou(self) -> np.ndarray | None:
        """The IoU as given by another tool (imported results), or None when it is the IoU of the counts."""
        given = "iou_given" in self.arrays and bool(self.arrays["iou_given"])
        return self.arrays["iou"] if given else None

    @property
    def null(self) -> dict[str, np.ndarray]:
        """The significance arrays (:data:`NULL_ARRAYS`) the layer has (none without null samples)."""
        return {k: self.arrays[k] for k in NULL_ARRAYS if k in self.arrays}

    @property
    def formulas(self) -> UnitFormulas | None:
        return read_formulas(self.arrays, self.document.get("formulas", {}))


def read_layer(directory: str | os.PathLike, maps: bool = True, values: bool = True) -> LayerFiles:
    """Read a finished layer's files from its directory (``maps=False`` skips ``top_maps.npz``,
    ``values=False`` the image-level values in ``iou.npz``)."""
    directory = Path(directory)
    document = json.loads((directory / UNITS_FILE).read_text())
    top_maps = None
    if maps and (directory / MAPS_FILE).exists():
        with np.load(directory / MAPS_FILE) as z:
            top_maps = z["top_maps"]
    with np.load(directory / ARRAYS_FILE) as z:
        arrays = {name: z[name] for name in z.files if values or name != IMAGE_VALUES}
    return LayerFiles(document, arrays, top_maps)


def read_summary(run_dir: str | os.PathLike) -> dict:
    """A finished run's ``summary.json``: ``layers`` (per layer summaries, in dissection order) and ``metadata``."""
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())


def _csv_bytes(header: list[str], rows: list[list]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    data = io.BytesIO()
    # numpy's stub types **kwds as ArrayLike but mypy also matches them against allow_pickle: bool
    np.savez_compressed(data, **arrays)  # type: ignore[arg-type]
    return data.getvalue()


def write_layer(
    directory: str | os.PathLike,
    tally: tuple[list[str], list[list]],
    arrays: dict[str, np.ndarray],
    document: dict,
    formulas: tuple[list[str], list[list]] | None = None,
    top_maps: np.ndarray | None = None,
) -> Path:
    """Write a layer's files: tally.csv (header, rows), iou.npz, formulas.csv, top_maps.npz, then units.json."""
    directory = Path(directory)
    atomic_write_bytes(directory / TALLY_FILE, _csv_bytes(*tally))
    atomic_write_bytes(directory / ARRAYS_FILE, _npz_bytes(arrays))
    if formulas is not None:
        atomic_write_bytes(directory / FORMULAS_FILE, _csv_bytes(*formulas))
    if top_maps is not None:
        atomic_write_bytes(directory / MAPS_FILE, _npz_bytes({"top_maps": top_maps.astype(np.float32)}))
    atomic_write_json(directory / UNITS_FILE, document)
    return directory


def write_summary(run_dir: str | os.PathLike, layers: dict, metadata: dict) -> None:
    """Write ``summary.json`` (the run's completion mark): per layer summaries and the run's metadata."""
    atomic_write_json(Path(run_dir) / SUMMARY_FILE, {"layers": layers, "metadata": metadata})
