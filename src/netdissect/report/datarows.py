"""The rows of a run's concept dataset as the report needs them, read without torch.

The report shows, for each unit, its top images (dataset positions) and, on request, where its
label is annotated on them. That needs, per dataset position, the image file, its size and its
label PNGs and image-level labels: :class:`Rows`, read from a :class:`BrodenDataset` already
open (``rows_of``) or parsed from ``index.csv`` with the run's selection (``read_rows``; the
dissection validated these files, so parsing here only selects).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import DatasetError

if TYPE_CHECKING:
    from ..data.broden import BrodenDataset


@dataclass(frozen=True)
class Row:
    """One dataset position: its image, sizes and annotations (all selected categories flattened)."""

    row: int  # index.csv data row number
    image: str  # path under images/
    ih: int
    iw: int
    sh: int
    sw: int
    pngs: tuple[str, ...]  # label PNGs under images/
    scalars: tuple[int, ...]  # image-level label numbers


@dataclass(frozen=True)
class Rows:
    """The run's dataset rows, by position."""

    directory: Path
    rows: list[Row]

    def image_path(self, index: int) -> Path:
        return self.directory / "images" / self.rows[index].image

    def concept_mask(self, index: int, label: int, decoded: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Where label number ``label`` is annotated in row ``index``: bool ``(sh, sw)``.

        An image-level label covers the whole image. ``decoded`` caches the decoded layers per row.
        """
        row = self.rows[index]
        if label in row.scalars:
            return np.ones((row.sh, row.sw), dtype=bool)
        if decoded is not None and index in decoded:
            seg = decoded[index]
        else:
            seg = self.layers(index)
            if decoded is not None:
                decoded[index] = seg
        return (seg == label).any(axis=0)

    def layers(self, index: int) -> np.ndarray:
        """The row's annotation layers, int32 ``(layers, sh, sw)`` (Broden: label = R + 256 G)."""
        row = self.rows[index]
        out = np.zeros((len(row.pngs), row.sh, row.sw), dtype=np.int32)
        for k, rel in enumerate(row.pngs):
            path = self.directory / "images" / rel
            try:
                with Image.open(path) as im:
                    rgb = np.asarray(im.convert("RGB"))
            except OSError as exc:
                raise DatasetError(f"cannot read PNG {path} (index.csv row {row.row}): {exc}") from None
            if rgb.shape[:2] != (row.sh, row.sw):
                raise DatasetError(f"PNG {path} (index.csv row {row.row}) is not {row.sh}x{row.sw}")
            out[k] = rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)
        return out


def rows_of(dataset: BrodenDataset) -> Rows:
    """The rows of an open dataset."""
    rows = [
        Row(
            r.row,
            r.image,
            r.ih,
            r.iw,
            r.sh,
            r.sw,
            tuple(p for paths in r.pngs for p in paths),
            tuple(n for numbers in r.scalars for n in numbers),
        )
        for r in dataset.meta.rows
    ]
    return Rows(dataset.meta.directory, rows)


def read_rows(directory: str | Path, recorded: Mapping[str, Any]) -> Rows | None:
    """The rows the run used, parsed from ``<directory>/index.csv``; ``None`` when neither all rows
    nor one split starts with the rows the run records (``first_row``, ``last_row``, ``images``)."""
    directory = Path(directory)
    path = directory / "index.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        categories = recorded.get("categories") or header[6:]
        columns = [header.index(c) for c in categories if c in header]
        parsed: list[tuple[str, Row]] = []
        for i, values in enumerate(reader, 1):
            if len(values) < 6:
                continue
            pngs: list[str] = []
            scalars: list[int] = []
            for j in columns:
                for item in values[j].split(";"):
                    item = item.strip()
                    if item.isascii() and item.isdigit():
                        if int(item):
                            scalars.append(int(item))
                    elif item:
                        pngs.append(item)
            try:
                ih, iw, sh, sw = (int(v) for v in values[2:6])
            except ValueError:
                raise DatasetError(f"{path} row {i}: image sizes must be integers") from None
            parsed.append((values[1], Row(i, values[0], ih, iw, sh, sw, tuple(pngs), tuple(scalars))))
    for split in (None, "val", "train"):
        rows = [r for s, r in parsed if split is None or s == split]
        n = int(recorded.get("images", len(rows)))
        if (
            0 < n <= len(rows)
            and rows[0].row == recorded.get("first_row", rows[0].row)
            and rows[n - 1].row == recorded.get("last_row", rows[n - 1].row)
        ):
            return Rows(directory, rows[:n])
    return None
