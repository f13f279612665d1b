"""Published results of other Network Dissection tools, read as netdissect runs.

Two tools wrote one CSV per layer with the same layout: NetDissect-Lite's ``tally.csv`` and the
original NetDissect's ``<layer>-result.csv`` (also the per-network CSVs it published for the
paper's figures). Each row is a unit (numbered from 1) with its best ``category``, ``label`` and
``score`` (IoU), followed, per category, by ``<cat>-label``, ``<cat>-truth``,
``<cat>-activation``, ``<cat>-intersect`` and ``<cat>-iou``: the unit's best label in that
category and the counts behind its IoU. Lite's minimal form has only the first four columns.
An empty label is the tools' label 0 (no concept): its IoU is not kept.

The tools count detectors differently (see :data:`CONVENTIONS`); an imported run keeps the
format's convention in its metadata and in its IoU threshold. An imported layer is a
:class:`~netdissect.runs.results.LayerResult` whose IoU matrix is given (``given_iou``): each unit's
per-category best IoU at its label, zeros elsewhere. Everything computed from the best labels
per category (detectors, both unique-detector counts, per-category bests) is exact; the IoU of
labels that were not a unit's best in their category is unknown and reads as 0. Thresholds are
unknown (NaN) and there are no top images, so a report of an imported run shows none.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, OptionError, RunDirectoryError
from ..files import atomic_write_bytes, atomic_write_json
from .directory import read_run, run_lock, set_state
from .layout import RUN_FILE, TALLY_FILE, is_finished_run, layer_path
from .outputs import IMPORTED, claim_output
from .results import DissectionResult, LayerResult

FORMATS = ("lite", "netdissect")
LITE_THRESHOLD = 0.04
#: The original counts a detector when IoU > 0.04 (strictly); the smallest float above 0.04
#: makes netdissect's ``IoU >= threshold`` count exactly those units.
NETDISSECT_THRESHOLD = float(np.nextafter(0.04, 1.0))
CONVENTIONS = {
    "lite": (
        "NetDissect-Lite: a unit is a detector when its best IoU over all labels is >= 0.04; unique "
        "detectors are the distinct best labels of the detectors"
    ),
    "netdissect": (
        "NetDissect (CVPR'17 figures): a unit is a detector of a category when its best IoU in that category "
        "is > 0.04; unique detectors are the distinct labels per category, summed over the categories"
    ),
}
SOURCE_FILE = "imported.csv"
BASE_COLUMNS = ("unit", "category", "label", "score")
GROUP_FIELDS = ("label", "truth", "activation", "intersect", "iou")

#: One unit's best label in one category: (label, truth, activation, intersect, iou); counts None when not given.
_Group = tuple[str, int | None, int | None, int | None, float]


@dataclass
class ForeignTable:
    """One layer's rows of a foreign CSV, checked: per unit its best label and per-category bests."""

    path: Path
    categories: list[str]
    best: dict[int, tuple[str, str, float]] = field(default_factory=dict)  # unit -> (category, label, score)
    groups: dict[int, dict[str, _Group]] = field(default_factory=dict)  # unit -> category -> its best

    @property
    def units(self) -> int:
        return len(self.best)

    @property
    def has_groups(self) -> bool:
        return any(self.groups.values())


def _groups(header: list[str]) -> dict[str, dict[str, int]]:
    """``{category: {field: column}}`` for the ``<cat>-<field>`` columns (label and iou required)."""
    found: dict[str, dict[str, int]] = {}
    for i, name in enumerate(header):
        cat, sep, what = name.rpartition("-")
        if sep and cat and what in GROUP_FIELDS:
            found.setdefault(cat, {})[what] = i
    return {cat: cols for cat, cols in found.items() if "label" in cols and "iou" in cols}


def detect_format(path: str | os.PathLike, header: list[str]) -> str:
    """``lite`` for a file named ``tally.csv`` or one with only unit, category, label, score;
    ``netdissect`` for any other file with per-category columns (``<layer>-result.csv``)."""
    if Path(path).name == TALLY_FILE or not _groups(header):
        return "lite"
    return "netdissect"


def _number(text: str, what: str, where: str, integer: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DatasetError(f"{where}: {what} {text!r} must be a finite number >= 0")
    if integer and value != int(value):
        raise DatasetError(f"{where}: {what} {text!r} must be a whole number")
    return value


def _iou(text: str, what: str, where: str) -> float:
    value = _number(text, what, where)
    if value > 1:
        raise DatasetError(f"{where}: {what} {text!r} is above 1 (an IoU)")
    return value


def _read_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {path}: {error}") from None
    if not rows:
        raise DatasetError(f"{path} is empty")
    return rows


def _check_header(path: Path, header: list[str], fmt: str | None) -> tuple[str, dict[str, dict[str, int]]]:
    """The format (given or detected) and the per-category columns of a checked header."""
    missing = [c for c in BASE_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path} row 1: the header lacks column(s) {', '.join(missing)} (not a per-unit result CSV)")
    fmt = fmt or detect_format(path, header)
    groups = _groups(header)
    if fmt == "netdissect" and not groups:
        raise DatasetError(f"{path} row 1: a NetDissect result has <category>-label and <category>-iou columns")
    return fmt, groups


def _unit_number(text: str, table: ForeignTable, where: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise DatasetError(f"{where}: unit {text!r} is not a unit number (1, 2, ...)")
    unit = int(text)
    if unit in table.best:
        raise DatasetError(f"{where}: unit {unit} appears twice")
    return unit


def _count(row: list[str], cols: dict[str, int], name: str, cat: str, where: str) -> int | None:
    """A ``<cat>-<name>`` count, None when the column is absent or the cell empty."""
    if name not in cols or not row[cols[name]].strip():
        return None
    return int(_number(row[cols[name]].strip(), f"{cat}-{name}", where, integer=True))


def _per_category(row: list[str], groups: dict[str, dict[str, int]], where: str) -> dict[str, _Group]:
    """A row's best label per category with its counts and IoU; categories without a label left out."""
    per_category: dict[str, _Group] = {}
    for cat, cols in groups.items():
        cat_label = row[cols["label"]].strip()
        cat_iou = _iou(row[cols["iou"]].strip() or "0", f"{cat}-iou", where)
        if not cat_label:  # no label (the tools' label 0): its IoU, if any, is not a concept's
            continue
        t, a, i = (_count(row, cols, k, cat, where) for k in ("truth", "activation", "intersect"))
        per_category[cat] = (cat_label, t, a, i, cat_iou)
    return per_category


def _read_row(
    row: list[str], col: dict[str, int], groups: dict[str, dict[str, int]], table: ForeignTable, where: str
) -> None:
    """Check one unit's row and add it to ``table``."""
    unit = _unit_number(row[col["unit"]].strip(), table, where)
    category, label = row[col["category"]].strip(), row[col["label"]].strip()
    score = _iou(row[col["score"]].strip(), "score", where)
    if not category:
        raise DatasetError(f"{where}: unit {unit} has no category")
    if groups and category not in groups:
        raise DatasetError(f"{where}: category {category!r} has no {category}-label/{category}-iou columns")
    if category not in table.categories:
        table.categories.append(category)
    per_category = _per_category(row, groups, where)
    if groups and label:
        mine = per_category.get(category)
        if mine is None or mine[0] != label or abs(mine[4] - score) > 1e-9:
            raise DatasetError(
                f"{where}: unit {unit}'s label {label!r} ({category}, {score}) disagrees with its {category}- columns"
            )
    table.best[unit] = (category, label, score)
    table.groups[unit] = per_category


def _check_units(table: ForeignTable) -> None:
    """Refuse a table without units or with a unit number missing."""
    if not table.best:
        raise DatasetError(f"{table.path} has a header but no units")
    expected = set(range(1, max(table.best) + 1))
    if set(table.best) != expected:
        gap = min(expected - set(table.best))
        raise DatasetError(f"{table.path}: unit {gap} is missing (units 1-{max(table.best)} expected, one row each)")


def read_table(path: str | os.PathLike, fmt: str | None = None) -> tuple[ForeignTable, str]:
    """Parse and check a foreign per-unit CSV; return it and its format (given or detected).

    Raises :class:`~netdissect.errors.DatasetError` naming the file and row at fault.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise OptionError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = _read_rows(path)
    header = [name.strip() for name in rows[0]]
    fmt, groups = _check_header(path, header, fmt)
    col = {name: header.index(name) for name in BASE_COLUMNS}
    table = ForeignTable(path, list(groups))
    for number, row in enumerate(rows[1:], start=2):
        where = f"{path} row {number}"
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} fields, the header has {len(header)}")
        _read_row(row, col, groups, table, where)
    _check_units(table)
    return table, fmt


def layer_from_table(table: ForeignTable, layer: str, fmt: str, metadata: dict | None = None) -> LayerResult:
    """The :class:`LayerResult` of a parsed table (see the module docstring for what it holds)."""
    keys: dict[tuple[str, str], int] = {}  # (category, label) -> label number (from 1)
    for unit in range(1, table.units + 1):
        entries = [(c, v[0]) for c, v in table.groups[unit].items()] + [table.best[unit][:2]]
        for cat, name in filter(lambda entry: entry[1], entries):
            keys.setdefault((cat, name), len(keys) + 1)
    categories = table.categories
    U, L, C = table.units, len(keys) + 1, len(categories)
    label_names = ["-"] + [name for _, name in keys]
    label_category = np.array([-1] + [categories.index(cat) for cat, _ in keys], dtype=np.int64)
    iou = np.zeros((U, L), dtype=np.float64)
    inter = np.zeros((U, L), dtype=np.int64)
    act = np.zeros((U, C), dtype=np.int64)
    truth = np.zeros(L, dtype=np.int64)
    for unit in range(1, table.units + 1):
        u = unit - 1
        for cat, (name, t, a, i, value) in table.groups[unit].items():
            k = keys[(cat, name)]
            iou[u, k] = value
            if t is not None and truth[k] == 0:
                truth[k] = t
            if a is not None:
                act[u, categories.index(cat)] = a
            if i is not None:
                inter[u, k] = i
        cat, name, score = table.best[unit]
        if name:
            iou[u, keys[(cat, name)]] = score
    return LayerResult(
        layer=layer,
        categories=list(categories),
        label_names=label_names,
        label_category=label_category,
        thresholds=np.full(U, np.nan, dtype=np.float32),
        inter=inter,
        act=act,
        truth=truth,
        top_indices=np.zeros((U, 0), dtype=np.int64),
        top_values=np.zeros((U, 0), dtype=np.float32),
        iou_threshold=LITE_THRESHOLD if fmt == "lite" else NETDISSECT_THRESHOLD,
        metadata=dict(metadata or {}),
        given_iou=iou,
    )


def default_model_name(path: str | os.PathLike) -> str:
    """A run's model name from its file: the file's stem, or its directory's name for ``tally.csv``."""
    path = Path(path).resolve()
    return path.parent.name if path.stem == "tally" and path.parent.name else path.stem


def import_results(
    file: str | os.PathLike,
    layer: str,
    out: str | os.PathLike,
    format: str | None = None,
    model: str | None = None,
) -> DissectionResult:
    """Turn another tool's per-unit CSV into (a layer of) a run directory that netdissect reads.

    Args:
        file: NetDissect-Lite's ``tally.csv`` or the original NetDissect's per-unit CSV.
        layer: the layer name the results belong to (e.g. ``layer4``, ``conv5``).
        out: the run directory; a new one, or an imported run to add (or replace) a layer in.
        format: ``"lite"`` or ``"netdissect"``; detected when ``None`` (see :func:`detect_format`).
        model: the run's model name (default: from the file name, see :func:`default_model_name`).

    The run's metadata records ``imported_from`` (``{layer: file}``), ``format`` and
    ``convention``; detectors are counted with the format's convention (:data:`CONVENTIONS`).
    """
    path, out = Path(file), Path(out)
    table, fmt = read_table(path, format)
    if not layer:
        raise OptionError("--layer must name the layer the results belong to")
    source = path.read_bytes()
    claim_output(out, IMPORTED)
    with run_lock(out):
        previous = read_run(out)
        imported = previous.get("key", {}).get("imported") is True
        if (previous and not imported) or (is_finished_run(out) and not previous):
            raise RunDirectoryError(f"{out} holds a dissection run, not imported results: choose another --out")
        existing = DissectionResult.load(out) if is_finished_run(out) else None
        if existing is not None and existing.metadata.get("format") != fmt:
            raise RunDirectoryError(
                f"{out} holds results imported as {existing.metadata.get('format')!r}; "
                f"a {fmt!r} file goes into another --out"
            )
        model = model or (existing.metadata.get("model") if existing else None) or default_model_name(path)
        imported_from = dict(existing.metadata.get("imported_from", {})) if existing else {}
        imported_from[layer] = str(path.resolve())
        layer_meta = {
            "model": model,
            "layer": layer,
            "imported_from": str(path.resolve()),
            "source_sha256": hashlib.sha256(source).hexdigest(),
            "format": fmt,
            "convention": CONVENTIONS[fmt],
        }
        result = layer_from_table(table, layer, fmt, layer_meta)
        layers = dict(existing.layers) if existing else {}
        layers[layer] = result
        metadata = {"model": model, "imported_from": imported_from, "format": fmt, "convention": CONVENTIONS[fmt]}
        run = DissectionResult(layers, metadata, out)
        atomic_write_json(out / RUN_FILE, {"key": {"imported": True, "format": fmt}, "layers": list(layers)})
        set_state(out, "running")
        directory = layer_path(out, layer)
        if directory.is_dir() and existing is not None and layer in existing.layers:
            shutil.rmtree(directory)  # a layer imported again: no files of the old one remain
        result.save(directory)
        atomic_write_bytes(directory / SOURCE_FILE, source)
        run.write_summary(out)
        set_state(out, "done")
    return run
