"""Writer for Broden-format datasets (``docs/design/broden-format.md``), used by the synthetic generator and builders.

Add images one at a time with their annotations; :meth:`BrodenWriter.close` computes every
label's image counts and coverage and writes ``label.csv``, ``category.csv``, the
``c_<category>.csv`` files and ``index.csv`` (train rows first). Output is byte-for-byte
deterministic for the same input.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError


@dataclass(frozen=True)
class LabelSpec:
    """A label of the dataset: its global number (>= 1), name and synonyms."""

    number: int
    name: str
    syns: tuple[str, ...] = ()


def encode_label_png(labels: np.ndarray) -> Image.Image:
    """Encode label numbers as an RGB image: R = number % 256, G = number // 256, B = 0."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= 65536:
        raise ValueError("label numbers must lie in [0, 65535]")
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return Image.fromarray(rgb, "RGB")


class BrodenWriter:
    """Writes a Broden-format dataset into ``directory``.

    Args:
        directory: output root; created, and must not already hold an ``index.csv``.
        categories: category names in the order of ``category.csv``.
        labels: every label that may occur.
        jpeg_quality: quality of the written JPEG images.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        categories: Sequence[str],
        labels: Sequence[LabelSpec],
        jpeg_quality: int = 92,
    ) -> None:
        self.directory = Path(directory)
        if (self.directory / "index.csv").exists():
            raise DatasetError(f"{self.directory} already holds a dataset (index.csv exists)")
        (self.directory / "images").mkdir(parents=True, exist_ok=True)
        self.categories = list(categories)
        self.labels = {spec.number: spec for spec in labels}
        if any(n < 1 for n in self.labels):
            raise ValueError("label numbers start at 1 (0 means no label)")
        self.jpeg_quality = jpeg_quality
        size = max(self.labels, default=0) + 1
        # Per category and label: number of images, summed coverage (fraction of the image).
        self._images = np.zeros((len(self.categories), size), dtype=np.int64)
        self._coverage = np.zeros((len(self.categories), size), dtype=np.float64)
        self._category_images = np.zeros(len(self.categories), dtype=np.int64)
        self._label_images = np.zeros(size, dtype=np.int64)  # images holding the label in any category
        self._rows: list[tuple[str, list[str]]] = []

    def add_image(
        self,
        name: str,
        image: np.ndarray,
        split: str = "train",
        pixel_labels: Mapping[str, Sequence[np.ndarray]] | None = None,
        image_labels: Mapping[str, Sequence[int]] | None = None,
        seg_size: tuple[int, int] | None = None,
    ) -> None:
        """Add one image.

        Args:
            name: file stem, unique in the dataset (``"synthetic/00001"``).
            image: uint8 (H, W, 3) RGB.
            split: ``"train"`` or ``"val"``.
            pixel_labels: per category, a list of annotation layers, each an integer array of
                label numbers at the segmentation size (0 = no label).
            image_labels: per category, image-level label numbers.
            seg_size: segmentation size (default: half the image size, rounded down as in Broden).
        """
        if split not in ("train", "val"):
            raise ValueError(f"split must be train or val, got {split!r}")
        ih, iw = image.shape[:2]
        sh, sw = seg_size or (ih // 2, iw // 2)
        pixel_labels = pixel_labels or {}
        image_labels = image_labels or {}
        for cat in list(pixel_labels) + list(image_labels):
            if cat not in self.categories:
                raise ValueError(f"unknown category {cat!r}")
        jpg = f"{name}.jpg"
        self._save(jpg, Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB"), jpeg=True)
        cells = []
        in_image: set[int] = set()
        for ci, cat in enumerate(self.categories):
            items: list[str] = []
            seen: set[int] = set()
            for k, layer in enumerate(pixel_labels.get(cat, ()), 1):
                layer = np.asarray(layer)
                if layer.shape != (sh, sw):
                    raise ValueError(f"{name}: {cat} layer is {layer.shape}, expected {(sh, sw)}")
                values, counts = np.unique(layer, return_counts=True)
                keep = values > 0
                if not keep.any():
                    continue
                self._check_known(values[keep])
                png = f"{name}_{cat}_{k}.png" if len(pixel_labels[cat]) > 1 else f"{name}_{cat}.png"
                self._save(png, encode_label_png(layer))
                items.append(png)
                self._coverage[ci, values[keep]] += counts[keep] / float(sh * sw)
                seen.update(int(v) for v in values[keep])
            for number in image_labels.get(cat, ()):
                if number == 0:
                    continue
                self._check_known([number])
                items.append(str(int(number)))
                self._coverage[ci, number] += 1.0
                seen.add(int(number))
            in_image |= seen
            for number in seen:
                self._images[ci, number] += 1
            if seen:
                self._category_images[ci] += 1
            cells.append(";".join(items))
        self._label_images[sorted(in_image)] += 1
        self._rows.append((split, [jpg, split, str(ih), str(iw), str(sh), str(sw), *cells]))

    def _check_known(self, numbers) -> None:
        for n in numbers:
            if int(n) not in self.labels:
                raise ValueError(f"label number {int(n)} is not among the writer's labels")

    def _save(self, relative: str, image: Image.Image, jpeg: bool = False) -> None:
        path = self.directory / "images" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        if jpeg:
            image.save(buffer, format="JPEG", quality=self.jpeg_quality)
        else:
            image.save(buffer, format="PNG", optimize=False)
        path.write_bytes(buffer.getvalue())

    def close(self) -> Path:
        """Write the CSV files; returns the dataset directory. Labels never seen are dropped."""
        seen = self._images.sum(axis=0) > 0
        numbers = [n for n in sorted(self.labels) if seen[n]]
        self._write(
            "label.csv",
            ["number", "name", "category", "frequency", "coverage", "syns"],
            [
                [
                    n,
                    self.labels[n].name,
                    ";".join(
                        f"{cat}({self._images[ci, n]})" for ci, cat in enumerate(self.categories) if self._images[ci, n]
                    ),
                    int(self._label_images[n]),
                    _fmt(self._coverage[:, n].sum()),
                    ";".join(self.labels[n].syns or (self.labels[n].name,)),
                ]
                for n in numbers
            ],
        )
        category_rows = []
        for ci, cat in enumerate(self.categories):
            members = [n for n in numbers if self._images[ci, n]]
            self._write(
                f"c_{cat}.csv",
                ["code", "number", "name", "frequency", "coverage"],
                [
                    [code, n, self.labels[n].name, int(self._images[ci, n]), _fmt(self._coverage[ci, n])]
                    for code, n in enumerate(members, 1)
                ],
            )
            category_rows.append([cat, 1 if members else 0, len(members), len(members), int(self._category_images[ci])])
        self._write("category.csv", ["name", "first", "last", "count", "frequency"], category_rows)
        ordered = [r for s, r in self._rows if s == "train"] + [r for s, r in self._rows if s == "val"]
        self._write("index.csv", ["image", "split", "ih", "iw", "sh", "sw", *self.categories], ordered)
        return self.directory

    def _write(self, name: str, header: list[str], rows: list[list]) -> None:
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, self.directory / name)


class ResumingWriter(BrodenWriter):
    """A BrodenWriter that can re-add an already written image without rewriting its files.

    While ``replaying`` is true, :meth:`add_image` only counts the image's labels: an
    interrupted build re-adds the images it wrote from their files on disk.
    """

    replaying = False

    def _save(self, relative: str, image: Image.Image, jpeg: bool = False) -> None:
        if not self.replaying:
            super()._save(relative, image, jpeg)


def _fmt(value: float) -> str:
    return f"{value:.6g}"
