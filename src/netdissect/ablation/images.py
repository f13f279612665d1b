"""Labelled images for ablation: an ImageFolder (or a Broden dataset's scene labels) matched to
the model's output classes.

Folder names are matched to class names after normalisation (case, ``_``/``-``/space, Broden's
``-s`` suffix ignored). Class names come from ``--classes FILE``, else from the model source
(torchvision weights' categories, the demo model's scenes), else integer folder names are
taken as output indices.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DatasetError, OptionError
from ..files import read_text_lines
from ..labels import display_name
from ..models.base import LoadedModel
from ..models.preprocess import Preprocess

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class LabelledImages:
    """Images with their true output class.

    Attributes:
        paths: image files.
        targets: per image, the position of its class in ``class_names``.
        class_names: the classes that have a folder, in the model's output order.
        class_outputs: per class, its index among the model's outputs.
        source: the directory the images came from.
    """

    paths: list[Path]
    targets: list[int]
    class_names: list[str]
    class_outputs: list[int]
    source: str

    def identity(self) -> dict:
        """What identifies this selection in a run key: source, counts and a digest of the pairs."""
        digest = hashlib.sha256()
        for path, target in zip(self.paths, self.targets):
            digest.update(f"{path}\t{self.class_outputs[target]}\n".encode())
        return {"path": self.source, "images": len(self.paths), "sha256": digest.hexdigest()[:16]}

    def counts(self) -> np.ndarray:
        """Images per class (C,)."""
        return np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.class_names))


def normalise(name: str) -> str:
    """A class or folder name for matching: Broden suffix dropped, lower case, separators as spaces."""
    text = display_name(name.strip()).lower()
    for sep in ("_", "-"):
        text = text.replace(sep, " ")
    return " ".join(text.split())


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names, one per line in the model's output order (blank lines and ``#`` lines skipped)."""
    names = [n for n in read_text_lines(path, "--classes") if not n.startswith("#")]
    if not names:
        raise OptionError(f"--classes file {path} lists no class")
    return names


def model_class_names(model: LoadedModel) -> list[str] | None:
    """The output class names the model source knows, or None.

    The demo model: the synthetic dataset's scenes; ``torchvision:<name>`` with a torchvision
    weights name: the weights' ``meta["categories"]``; ``places365:<arch>``: the 365 Places365
    categories with ``/`` written ``_`` so that they can name folders (``arena_hockey``).
    """
    if model.spec == "demo":
        from ..data.synthetic import SCENES

        return [display_name(s) for s in SCENES]
    if model.spec.startswith("places365:"):
        from ..models.places365 import category_names

        return [name.replace("/", "_") for name in category_names()]
    if model.spec.startswith("torchvision:") and model.weights and not os.path.exists(model.weights):
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(model.spec.split(":", 1)[1])
            categories = enum[model.weights.split(".")[-1]].meta.get("categories")
        except (KeyError, ValueError):
            return None
        return list(categories) if categories else None
    return None


def match_classes(
    folders: list[str], class_names: list[str] | None, where: str, num_outputs: int | None = None
) -> dict[str, int]:
    """Map each folder name to a model output index, or stop with one line naming the folder.

    With ``class_names`` folders match names (see :func:`normalise`); without, folders must be
    integers (in ``[0, num_outputs)`` when it is given).
    """
    mapping: dict[str, int] = {}
    if class_names is not None:
        index: dict[str, int] = {}
        for i, name in enumerate(class_names):
            index.setdefault(normalise(name), i)
        for folder in folders:
            key = normalise(folder)
            if key in index:
                mapping[folder] = index[key]
                continue
            close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6)
            hint = f"; close matches: {', '.join(class_names[index[c]] for c in close)}" if close else ""
            raise DatasetError(f"class folder {folder!r} in {where} matches no output class of the model{hint}")
        return mapping
    for folder in folders:
        if not (folder.isdigit() and (num_outputs is None or int(folder) < num_outputs)):
            scope = "an output index" if num_outputs is None else f"an output index in 0..{num_outputs - 1}"
            raise DatasetError(
                f"class folder {folder!r} in {where} is not {scope} and the model has no class names: "
                "pass --classes FILE (one class name per line, in output order)"
            )
        mapping[folder] = int(folder)
    return mapping


def _image_folder(root: Path, size: int | None) -> dict[str, list[Path]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root} has no class folders (expected one folder of images per class)")
    groups = {
        f.name: sorted(p for p in f.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS) for f in folders
    }
    if size is None:
        return groups
    taken: dict[str, list[Path]] = {name: [] for name in groups}
    for turn in range(max(len(v) for v in groups.values())):
        for name, paths in groups.items():
            if turn < len(paths) and size > 0:
                taken[name].append(paths[turn])
                size -= 1
    return taken


def _broden_scenes(root: Path, category: str, size: int | None) -> dict[str, list[Path]]:
    from ..data.broden import BrodenMeta

    meta = BrodenMeta.load(root, categories=[category], size=size) if _has_category(root, category) else None
    if meta is None:
        raise DatasetError(f"dataset {root} has no {category!r} category to use as image labels")
    groups: dict[str, list[Path]] = {display_name(meta.label_names[n]): [] for n in meta.labels_of(category)}
    for row in meta.rows:
        labels = [n for n in row.scalars[0] if n]
        if len(labels) == 1:  # images without one scene label cannot be scored
            groups[display_name(meta.label_names[labels[0]])].append(root / "images" / row.image)
    return groups


def _has_category(root: Path, category: str) -> bool:
    import csv

    path = root / "category.csv"
    if not path.is_file():
        raise DatasetError(f"{root} has index.csv but no category.csv: not a Broden dataset")
    with open(path, newline="") as f:
        return any(row.get("name") == category for row in csv.DictReader(f))


def labelled_images(
    directory: str | os.PathLike,
    class_names: list[str] | None = None,
    label_category: str = "scene",
    size: int | None = None,
) -> LabelledImages:
    """The labelled images of an ImageFolder directory, or of a Broden dataset's ``label_category``.

    Classes are the folders (or labels), in the model's output order; folders with no image keep
    their class with a count of 0. ``size`` keeps that many images: a Broden dataset's first rows,
    else images taken in turn from each folder.
    """
    if size is not None and size < 1:
        raise OptionError(f"--size must be >= 1, got {size}")
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"images directory {root} does not exist")
    if (root / "index.csv").is_file():
        groups = _broden_scenes(root, label_category, size)
    else:
        groups = _image_folder(root, size)
    mapping = match_classes(list(groups), class_names, str(root))
    outputs = sorted(set(mapping.values()))
    position = {o: i for i, o in enumerate(outputs)}
    names: list[str] = [""] * len(outputs)
    for folder, output in mapping.items():
        if not names[position[output]]:
            names[position[output]] = class_names[output] if class_names is not None else folder
    paths, targets = [], []
    for folder in sorted(groups, key=lambda f: (mapping[f], f)):
        for path in groups[folder]:
            paths.append(path)
            targets.append(position[mapping[folder]])
    if not paths:
        raise DatasetError(f"{root} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return LabelledImages(paths, targets, names, outputs, str(root.resolve()))


class ImageDataset(Dataset):
    """The images of a :class:`LabelledImages`, preprocessed: items ``(image (3, H, W), target)``."""

    def __init__(self, images: LabelledImages, preprocess: Preprocess) -> None:
        self.images, self.preprocess = images, preprocess

    def __len__(self) -> int:
        return len(self.images.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        path = self.images.paths[index]
        try:
            with Image.open(path) as im:
                x = self.preprocess(im.convert("RGB"))
        except Exception as exc:  # PIL raises many kinds
            raise DatasetError(f"cannot read image {path}: {exc}") from None
        return x, self.images.targets[index], index


def collate_images(items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack images of one size, or stop with one line naming an image of another size."""
    shape = items[0][0].shape
    for x, _, _ in items:
        if x.shape != shape:
            raise DatasetError(
                f"images differ in size ({tuple(shape[1:])} and {tuple(x.shape[1:])}): pass --input-size "
                "to resize them all"
            )
    return (
        torch.stack([x for x, _, _ in items]),
        torch.tensor([t for _, t, _ in items], dtype=torch.int64),
        torch.tensor([i for _, _, i in items], dtype=torch.int64),
    )
