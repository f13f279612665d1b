"""Image-level concept labels: which concepts each probe image has.

Three sources, one table (:class:`ConceptLabels`: N images x K concepts, boolean):

- a Broden-format dataset: a concept is present in an image when it is annotated anywhere in it,
  pixel-level (any annotation layer) or image-level (scene, texture);
- ``--images DIR`` laid out as an ImageFolder: each image has one concept, its folder's name;
- ``--images DIR --labels CSV``: rows ``image,labels``, the image relative to DIR and its
  concepts ``;``-separated (an empty field: none).

Without labels (``--images DIR`` with images directly inside) the images are probes only: WPMI
needs no labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..ablation.images import IMAGE_EXTENSIONS
from ..errors import DatasetError, OptionError
from ..files import read_text_lines


@dataclass
class ConceptLabels:
    """Probe images and their image-level concepts."""

    images: list[Path]
    names: list[str]  # K concept names
    present: np.ndarray  # (N, K) bool
    source: str  # where the labels come from, in words
    categories: list[str] = field(default_factory=list)  # per concept (Broden), else empty
    root: Path | None = None  # the images' common folder

    def identity(self) -> dict:
        """What identifies the probe set in a run's key."""
        digest = hashlib.sha256()
        for path in self.images:
            digest.update(str(path).encode() + b"\n")
        digest.update(np.packbits(self.present).tobytes())
        digest.update("\n".join(self.names).encode())
        return {"source": self.source, "images": len(self.images), "sha256": digest.hexdigest()[:16]}

    def take(self, size: int | None) -> ConceptLabels:
        """The first ``size`` images (all with None)."""
        if size is None:
            return self
        if size < 1:
            raise OptionError(f"--size must be >= 1, got {size}")
        return ConceptLabels(
            self.images[:size], self.names, self.present[:size], self.source, self.categories, self.root
        )


def broden_concepts(directory: str | os.PathLike, size: int | None = None, progress: bool = True) -> ConceptLabels:
    """Each image of a Broden-format dataset with the labels annotated anywhere in it."""
    from ..data.broden import BrodenDataset

    dataset = BrodenDataset(directory, size=size)
    dataset.load_images = False
    meta = dataset.meta
    numbers = [n for n in range(1, len(meta.label_names)) if meta.known[n]]
    column = {n: k for k, n in enumerate(numbers)}
    present = np.zeros((len(dataset), len(numbers)), dtype=bool)
    for i in tqdm(range(len(dataset)), desc="concept labels", unit="img", disable=not progress):
        item = dataset[i]
        found = set(np.unique(item["seg"].numpy()).tolist()) | set(item["scalars"].tolist())
        present[i, [column[n] for n in found if n in column]] = True
    names = [meta.label_names[n] for n in numbers]
    categories = [meta.categories[int(meta.label_category[n])] for n in numbers]
    images = [meta.directory / "images" / row.image for row in meta.rows]
    return ConceptLabels(images, names, present, f"Broden dataset {meta.directory}", categories, meta.directory)


def folder_concepts(directory: str | os.PathLike, size: int | None = None) -> ConceptLabels:
    """An ImageFolder: each image's concept is its folder's name. Images directly in ``directory``
    (no class folders) are probes without labels."""
    root = _image_root(directory)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = {f.name: _images_under(f) for f in folders}
    groups = {name: paths for name, paths in groups.items() if paths}
    if not groups:
        images = _images_under(root, recursive=False)
        if not images:
            raise DatasetError(f"--images {root} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        labels = ConceptLabels(images, [], np.zeros((len(images), 0), dtype=bool), f"images in {root}", root=root)
        return labels.take(size)
    names = list(groups)
    if size is not None and size < 1:
        raise OptionError(f"--size must be >= 1, got {size}")
    # in turn from each folder, so that a small --size keeps every class
    order = sorted((i, k) for k, name in enumerate(names) for i in range(len(groups[name])))
    chosen = sorted(order[:size] if size is not None else order, key=lambda pair: (pair[1], pair[0]))
    images = [groups[names[k]][i] for i, k in chosen]
    present = np.zeros((len(images), len(names)), dtype=bool)
    present[np.arange(len(images)), [k for _, k in chosen]] = True
    return ConceptLabels(images, names, present, f"ImageFolder {root}", root=root)


def csv_concepts(directory: str | os.PathLike, labels: str | os.PathLike, size: int | None = None) -> ConceptLabels:
    """Images of ``directory`` named by the rows ``image,labels`` of the CSV ``labels``."""
    root = _image_root(directory)
    lines = read_text_lines(labels, "--labels")
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "labels"]:
        rows = rows[1:]
        first = 2
    else:
        first = 1
    if not rows:
        raise DatasetError(f"--labels {labels} lists no image (rows image,labels)")
    images, sets = [], []
    for number, row in enumerate(rows, first):
        if len(row) not in (1, 2) or not row[0].strip():
            raise DatasetError(f"--labels {labels} row {number}: expected image,labels (labels ';'-separated)")
        path = root / row[0].strip()
        if not path.is_file():
            raise DatasetError(f"--labels {labels} row {number}: image {path} not found")
        images.append(path)
        sets.append({name.strip() for name in (row[1] if len(row) > 1 else "").split(";") if name.strip()})
    names = sorted(set().union(*sets))
    column = {name: k for k, name in enumerate(names)}
    present = np.zeros((len(images), len(names)), dtype=bool)
    for i, found in enumerate(sets):
        present[i, [column[n] for n in found]] = True
    return ConceptLabels(images, names, present, f"--labels {labels}", root=root).take(size)


def load_concepts(
    dataset: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    size: int | None = None,
    progress: bool = True,
) -> ConceptLabels:
    """The probe images and their labels from ``dataset`` (Broden) or ``images`` (with ``labels``)."""
    if (dataset is None) == (images is None):
        raise OptionError("give either --dataset (a Broden dataset) or --images (a folder of images)")
    if labels is not None and images is None:
        raise OptionError("--labels goes with --images: the CSV names images of that folder")
    if dataset is not None:
        return broden_concepts(dataset, size=size, progress=progress)
    assert images is not None
    if labels is not None:
        return csv_concepts(images, labels, size=size)
    if (Path(images) / "index.csv").is_file():
        return broden_concepts(images, size=size, progress=progress)
    return folder_concepts(images, size=size)


def _image_root(directory: str | os.PathLike) -> Path:
    root = Path(directory)
    if not root.exists():
        raise DatasetError(f"--images {root}: not found")
    if not root.is_dir():
        raise DatasetError(f"--images {root} is not a folder")
    return root


def _images_under(folder: Path, recursive: bool = True) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
