"""Reader for concept datasets in the Broden format (``docs/design/broden-format.md``).

:class:`BrodenMeta` parses the CSV files (categories, labels, per-category codes, index) and
validates them; :class:`BrodenDataset` is a torch ``Dataset`` that decodes images and label
PNGs (in DataLoader workers) and :func:`collate_broden` batches items whose cells hold
different numbers of annotation layers.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DatasetError
from ..models.preprocess import Preprocess
from .prepared import PreparedData, resolve_prepared

INDEX_FIXED_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw"]
SPLITS = ("train", "val")


@dataclass(frozen=True)
class IndexRow:
    """One row of ``index.csv``: an image and its annotations per selected category."""

    row: int  # 1-based data row number (the header is row 0)
    image: str
    split: str
    ih: int
    iw: int
    sh: int
    sw: int
    pngs: tuple[tuple[str, ...], ...]  # per selected category: PNG paths (annotation layers)
    scalars: tuple[tuple[int, ...], ...]  # per selected category: image-level label numbers


@dataclass
class BrodenMeta:
    """The label space of a Broden-format dataset, restricted to selected categories.

    Attributes:
        directory: dataset root.
        categories: selected category names, in ``category.csv`` order.
        label_names: name of every label number (index 0 is ``"-"``: no label).
        label_category: primary category index (into ``categories``) per label number,
            -1 for label 0 and labels outside the selected categories.
        rows: parsed rows of ``index.csv`` (after split and size selection).
    """

    directory: Path
    categories: list[str]
    all_categories: list[str]
    label_names: list[str]
    label_category: np.ndarray
    known: np.ndarray = field(repr=False)  # bool per label number: listed in label.csv (0 counts as known)
    rows: list[IndexRow] = field(repr=False)

    @property
    def num_labels(self) -> int:
        """Size of the label axis: the largest label number + 1 (label 0 included)."""
        return len(self.label_names)

    def labels_of(self, category: str) -> np.ndarray:
        """Label numbers whose primary category is ``category``."""
        return np.flatnonzero(self.label_category == self.categories.index(category))

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        categories: Sequence[str] | None = None,
        split: str | None = None,
        size: int | None = None,
    ) -> BrodenMeta:
        """Parse and validate a dataset directory.

        Args:
            directory: the dataset root (holding ``index.csv`` and ``images/``).
            categories: categories to use (default: all, in ``category.csv`` order).
            split: ``"train"``, ``"val"`` or ``None`` for both.
            size: keep only the first ``size`` rows (after split selection).
        """
        root = Path(directory)
        if not root.is_dir():
            raise DatasetError(f"dataset directory {root} does not exist")
        all_categories = [r["name"] for r in _read_csv(root / "category.csv", ["name"])]
        if categories is None:
            selected = list(all_categories)
        else:
            unknown = [c for c in categories if c not in all_categories]
            if unknown:
                raise DatasetError(
                    f"unknown category {unknown[0]!r} for --categories; {root / 'category.csv'} "
                    f"has: {', '.join(all_categories)}"
                )
            selected = [c for c in all_categories if c in categories]
        if split is not None and split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}: use train or val")
        if size is not None and size < 1:
            raise DatasetError(f"size must be >= 1 (the number of images to use), got {size}")

        label_rows = _read_csv(root / "label.csv", ["number", "name"])
        numbers = [_int(r["number"], root / "label.csv", i, "number") for i, r in enumerate(label_rows, 1)]
        num_labels = max(numbers, default=0) + 1
        names = ["-"] * num_labels
        known = np.zeros(num_labels, dtype=bool)
        for i, (number, r) in enumerate(zip(numbers, label_rows), 1):
            if number < 1:
                raise DatasetError(f"{root / 'label.csv'} row {i}: label number must be >= 1, got {number}")
            names[number] = r["name"]
            known[number] = True

        # Primary category: largest per-category coverage; ties go to the later category.
        coverage = np.full((len(selected), num_labels), -1.0)
        for ci, cat in enumerate(selected):
            path = root / f"c_{cat}.csv"
            for i, r in enumerate(_read_csv(path, ["code", "number", "coverage"]), 1):
                number = _int(r["number"], path, i, "number")
                if not 0 < number < num_labels or not known[number]:
                    raise DatasetError(f"{path} row {i}: unknown label number {number}")
                try:
                    coverage[ci, number] = float(r["coverage"])
                except ValueError:
                    raise DatasetError(f"{path} row {i}: coverage {r['coverage']!r} is not a number") from None
        label_category = np.full(num_labels, -1, dtype=np.int64)
        if selected:
            flipped = coverage[::-1]  # argmax picks the first maximum: flip so ties go to the later category
            best = len(selected) - 1 - flipped.argmax(axis=0)
            has = coverage.max(axis=0) >= 0
            label_category[has] = best[has]
        label_category[0] = -1

        rows = _read_index(root, all_categories, selected, known, split, size)
        known[0] = True
        return cls(root, selected, all_categories, names, label_category, known, rows)


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"dataset is missing file {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path} is empty") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{path}: header lacks column {missing[0]!r}")
        rows = []
        for i, values in enumerate(reader, 1):
            if not values:
                continue
            if len(values) != len(header):
                raise DatasetError(f"{path} row {i}: expected {len(header)} columns, got {len(values)}")
            rows.append(dict(zip(header, values)))
    return rows


def _int(text: str, path: Path, row: int, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path} row {row}: column {column} must be an integer, got {text!r}") from None


def _split_cell(cell: str, known: np.ndarray, where: str, cat: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """An index cell's PNG paths and image-level label numbers (label 0 and empty items dropped)."""
    layer_paths, numbers = [], []
    for item in cell.split(";"):
        item = item.strip()
        if not item:
            continue
        if item.isascii() and item.isdigit():
            number = int(item)
            if number == 0:
                continue
            if number >= len(known) or not known[number]:
                raise DatasetError(f"{where}: unknown label number {number} in column {cat}")
            numbers.append(number)
        else:
            layer_paths.append(item)
    return tuple(layer_paths), tuple(numbers)


def _read_index(
    root: Path,
    all_categories: list[str],
    selected: list[str],
    known: np.ndarray,
    split: str | None,
    size: int | None,
) -> list[IndexRow]:
    path = root / "index.csv"
    if not path.is_file():
        raise DatasetError(f"dataset is missing file {path}")
    expected = INDEX_FIXED_COLUMNS + all_categories
    rows: list[IndexRow] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != expected:
            raise DatasetError(f"{path}: header must be {','.join(expected)}; got {','.join(header or [])}")
        columns = [expected.index(c) for c in selected]
        for i, values in enumerate(reader, 1):
            if not values:
                continue
            if len(values) != len(expected):
                raise DatasetError(f"{path} row {i}: expected {len(expected)} columns, got {len(values)}")
            if values[1] not in SPLITS:
                raise DatasetError(f"{path} row {i}: split must be train or val, got {values[1]!r}")
            if split is not None and values[1] != split:
                continue
            ih, iw, sh, sw = (_int(values[j], path, i, expected[j]) for j in range(2, 6))
            where = f"{path} row {i}"
            cells = [_split_cell(values[j], known, where, cat) for cat, j in zip(selected, columns)]
            pngs = [layer_paths for layer_paths, _ in cells]
            scalars = [numbers for _, numbers in cells]
            rows.append(IndexRow(i, values[0], values[1], ih, iw, sh, sw, tuple(pngs), tuple(scalars)))
            if size is not None and len(rows) >= size:
                break
    if not rows:
        raise DatasetError(f"{path}: no rows selected (split={split}, size={size})")
    return rows


def decode_label_png(path: Path) -> np.ndarray:
    """Decode a Broden label PNG: label number = R + 256 * G, as int32."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


class BrodenDataset(Dataset):
    """A Broden-format dataset as a torch ``Dataset``.

    Each item is a dict with
      * ``image``: the preprocessed image, float32 (3, H, W) (when ``load_images``),
      * ``seg``: int32 (layers, sh, sw) label numbers of the pixel annotation layers,
      * ``scalars``: int64 (k,) image-level label numbers,
      * ``present``: bool (categories,) whether each category is annotated in the image,
      * ``index``: the item's position in the dataset.

    Args:
        directory: the dataset root.
        categories: categories to use (default all).
        split: ``"train"``, ``"val"`` or ``None`` (both).
        size: use only the first ``size`` rows.
        preprocess: how images are turned into model input (default ImageNet RGB).
        load_images: decode images (pass 1 and the forward pass need them).
        load_segmentations: decode label PNGs (the counting pass needs them).
        prepared: where decoded pixels come from: ``None`` decodes the files; ``"auto"`` reads
            the matching cache written by :func:`~netdissect.data.prepared.prepare_dataset` in
            the default location when there is one (else decodes); a path must be a prepared
            copy of this dataset at this input size (else :class:`DatasetError`). The items are
            the same either way.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        categories: Sequence[str] | None = None,
        split: str | None = None,
        size: int | None = None,
        preprocess: Preprocess | None = None,
        load_images: bool = True,
        load_segmentations: bool = True,
        meta: BrodenMeta | None = None,
        prepared: str | os.PathLike | PreparedData | None = None,
    ) -> None:
        self.meta = meta or BrodenMeta.load(directory, categories, split, size)
        self.preprocess = preprocess or Preprocess()
        self.load_images = load_images
        self.load_segmentations = load_segmentations
        self._prepared_request = prepared.path if isinstance(prepared, PreparedData) else prepared
        self.prepared: PreparedData | None = resolve_prepared(self, prepared)

    def with_options(self, **changes) -> BrodenDataset:
        """A copy sharing the parsed metadata (and the open prepared cache), with other loading options."""
        options: dict[str, Any] = dict(
            preprocess=self.preprocess,
            load_images=self.load_images,
            load_segmentations=self.load_segmentations,
            prepared=self.prepared,
        )
        options.update(changes)
        if "prepared" not in changes and options["preprocess"].input_size != self.preprocess.input_size:
            options["prepared"] = self._prepared_request  # another input size: look for its own cache
        copy = BrodenDataset(self.meta.directory, meta=self.meta, **options)
        if "prepared" not in changes:
            copy._prepared_request = self._prepared_request
        return copy

    @property
    def directory(self) -> Path:
        return self.meta.directory

    def __len__(self) -> int:
        return len(self.meta.rows)

    def decode_image(self, index: int) -> np.ndarray:
        """Decode row ``index``'s image file and resize it for the model: uint8 (H, W, 3)."""
        row = self.meta.rows[index]
        path = self.meta.directory / "images" / row.image
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except Exception as exc:  # PIL raises many kinds
            raise DatasetError(f"cannot read image {path} (index.csv row {row.row}): {exc}") from None
        if im.size != (row.iw, row.ih):
            raise DatasetError(
                f"image {path} (index.csv row {row.row}) is {im.size[1]}x{im.size[0]}, index.csv says {row.ih}x{row.iw}"
            )
        return self.preprocess.resize(im)

    def decode_layers(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode and check row ``index``'s label PNGs.

        Returns the annotation layers, int32 (layers, sh, sw) in category then cell order, and
        per selected category whether one of its layers holds a nonzero label (bool).
        """
        row = self.meta.rows[index]
        images = self.meta.directory / "images"
        num_labels, known = self.meta.num_labels, self.meta.known
        present = np.zeros(len(self.meta.categories), dtype=bool)
        layers = []
        for ci, paths in enumerate(row.pngs):
            for rel in paths:
                path = images / rel
                try:
                    labels = decode_label_png(path)
                except FileNotFoundError:
                    raise DatasetError(f"missing PNG {path} (index.csv row {row.row})") from None
                except Exception as exc:
                    raise DatasetError(f"cannot read PNG {path} (index.csv row {row.row}): {exc}") from None
                if labels.shape != (row.sh, row.sw):
                    raise DatasetError(
                        f"PNG {path} (index.csv row {row.row}) is {labels.shape[0]}x{labels.shape[1]}, "
                        f"expected {row.sh}x{row.sw}"
                    )
                top = int(labels.max(initial=0))
                values = np.unique(labels)
                if top >= num_labels or not known[values].all():
                    bad = [int(v) for v in values if v >= num_labels or not known[v]]
                    raise DatasetError(f"PNG {path} (index.csv row {row.row}) holds unknown label number {bad[0]}")
                present[ci] |= top > 0
                layers.append(labels)
        seg = np.stack(layers) if layers else np.zeros((0, row.sh, row.sw), dtype=np.int32)
        return seg, present

    def __getitem__(self, index: int) -> dict:
        row = self.meta.rows[index]
        item: dict = {"index": index}
        if self.load_images:
            pixels = self.decode_image(index) if self.prepared is None else self.prepared.image(index)
            item["image"] = self.preprocess.normalize(pixels)
        present = np.array([bool(numbers) for numbers in row.scalars], dtype=bool).reshape(-1)
        scalars = [n for numbers in row.scalars for n in numbers]
        if self.load_segmentations:
            if self.prepared is None:
                seg, annotated = self.decode_layers(index)
            else:
                seg, annotated = self.prepared.layers(index, row.sh, row.sw)
            present |= annotated
        else:
            seg = np.zeros((0, row.sh, row.sw), dtype=np.int32)
        item["seg"] = torch.from_numpy(seg)
        item["scalars"] = torch.tensor(scalars, dtype=torch.int64)
        item["present"] = torch.from_numpy(present)
        return item


def collate_broden(items: list[dict]) -> dict:
    """Batch items whose cells hold different numbers of layers and image-level labels.

    ``seg`` is padded with label 0 to (B, max layers, sh, sw) and ``scalars`` with 0 to
    (B, max labels); label 0 is never counted, so padding changes no statistic.
    """
    batch: dict = {"index": torch.tensor([it["index"] for it in items], dtype=torch.int64)}
    if "image" in items[0]:
        batch["image"] = torch.stack([it["image"] for it in items])
    shapes = {tuple(it["seg"].shape[1:]) for it in items}
    if len(shapes) > 1:
        raise DatasetError(f"segmentations of one batch differ in size: {sorted(shapes)}")
    sh, sw = shapes.pop()
    layers = max(it["seg"].shape[0] for it in items)
    seg = torch.zeros((len(items), layers, sh, sw), dtype=torch.int32)
    for b, it in enumerate(items):
        seg[b, : it["seg"].shape[0]] = it["seg"]
    width = max(len(it["scalars"]) for it in items)
    scalars = torch.zeros((len(items), width), dtype=torch.int64)
    for b, it in enumerate(items):
        scalars[b, : len(it["scalars"])] = it["scalars"]
    batch["seg"] = seg
    batch["scalars"] = scalars
    batch["present"] = torch.stack([it["present"] for it in items])
    return batch
