"""Import your own segmentation data into the Broden format.

Input: a folder of images, a folder of per-pixel class maps (PNG, same file stem as the image,
pixel value = class index, 0 = no label; 8- or 16-bit, grey or palette), a label list, and
optionally a CSV of image-level labels. The label list is a CSV ``value,name[,category]`` (a
header row is allowed) or a text file with one name per line for values 1, 2, ... Image-level
labels are rows ``image,name[,category]`` (category default ``scene``). Images keep their size
unless ``size`` is given (longer side, bilinear); class maps are resized with nearest
neighbours to half the image size, Broden's convention. The split is a stable hash of the
image's file name.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DatasetError
from ..files import read_text_lines
from ..runs.outputs import DATASET, check_output
from .writer import BrodenWriter, LabelSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def stable_split(name: str, val_fraction: float) -> str:
    """``"val"`` for a stable ``val_fraction`` of names (SHA-1 of the name), else ``"train"``."""
    h = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"


def read_label_list(path: Path, category: str) -> dict[int, tuple[str, str]]:
    """``{class value: (name, category)}`` from a CSV ``value,name[,category]`` or a names-per-line file."""
    lines = read_text_lines(path, "--labels")
    if not lines:
        raise DatasetError(f"label list {path} is empty")
    if "," not in lines[0]:
        return {i: (name.strip(), category) for i, name in enumerate(lines, 1)}
    table = {}
    for row_number, row in enumerate(csv.reader(lines), 1):
        if row_number == 1 and not row[0].strip().isdigit():
            continue  # header
        if len(row) not in (2, 3) or not row[0].strip().isdigit():
            raise DatasetError(f"{path} row {row_number}: expected value,name[,category], got {','.join(row)!r}")
        value = int(row[0])
        if value == 0:
            continue  # 0 is "no label"
        table[value] = (row[1].strip(), (row[2].strip() if len(row) == 3 else category) or category)
    return table


def read_image_labels(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{image stem: [(name, category), ...]}`` from rows ``image,name[,category]``."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row_number, row in enumerate(csv.reader(read_text_lines(path, "--image-labels")), 1):
        if not row or (row_number == 1 and row[0].strip().lower() == "image"):
            continue
        if len(row) not in (2, 3):
            raise DatasetError(f"{path} row {row_number}: expected image,name[,category]")
        found[Path(row[0].strip()).stem].append((row[1].strip(), row[2].strip() if len(row) == 3 else "scene"))
    return found


def import_dataset(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    labels: str | os.PathLike,
    out: str | os.PathLike,
    category: str = "object",
    image_labels: str | os.PathLike | None = None,
    size: int | None = None,
    val_fraction: float = 0.2,
    progress: bool = True,
) -> Path:
    """Write a Broden-format dataset from images, class-map PNGs and a label list; returns ``out``."""
    images, masks = Path(images), Path(masks)
    check_output(out, DATASET)
    if not images.is_dir():
        raise DatasetError(f"image folder {images} does not exist")
    if not masks.is_dir():
        raise DatasetError(f"mask folder {masks} does not exist")
    classes = read_label_list(Path(labels), category)
    scalars = read_image_labels(Path(image_labels)) if image_labels else {}
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images in {images}")
    names = list(dict.fromkeys([classes[v] for v in sorted(classes)] + [x for v in scalars.values() for x in v]))
    number = {entry: i for i, entry in enumerate(names, 1)}  # (name, category) -> label number
    categories = list(dict.fromkeys(cat for _, cat in names))
    # a name used in two categories becomes two labels, told apart by their category
    counts: defaultdict[str, int] = defaultdict(int)
    for name, _ in names:
        counts[name] += 1
    specs = [LabelSpec(i, name if counts[name] == 1 else f"{name} ({cat})") for (name, cat), i in number.items()]
    lookup = np.zeros(max(classes, default=0) + 1, dtype=np.int64)
    lookup_cat = {}
    for value, entry in classes.items():
        lookup[value] = number[entry]
        lookup_cat[value] = entry[1]
    writer = BrodenWriter(out, categories, specs)
    for path in tqdm(files, desc="import", unit="img", disable=not progress):
        rel = path.relative_to(images).with_suffix("")
        mask_path = masks / rel.with_suffix(".png")
        if not mask_path.is_file():
            raise DatasetError(f"no class map {mask_path} for image {path}")
        with Image.open(path) as im:
            picture = im.convert("RGB")
        if size:
            scale = size / max(picture.size)
            picture = picture.resize(
                (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.Resampling.BILINEAR
            )
        with Image.open(mask_path) as m:
            values = np.asarray(m if m.mode in ("L", "P", "I", "I;16") else m.convert("L")).astype(np.int64)
        unknown = np.setdiff1d(np.unique(values), [0, *classes])
        if len(unknown):
            raise DatasetError(f"class map {mask_path} holds value {int(unknown[0])}, which {labels} does not list")
        sw, sh = max(1, picture.width // 2), max(1, picture.height // 2)
        small = np.asarray(
            Image.fromarray(values.astype(np.int32), mode="I").resize((sw, sh), Image.Resampling.NEAREST)
        )
        pixel: dict[str, list[np.ndarray]] = {}
        for cat in categories:
            in_cat = [v for v, c in lookup_cat.items() if c == cat]
            layer = np.where(np.isin(small, in_cat), lookup[np.clip(small, 0, len(lookup) - 1)], 0)
            if layer.any():
                pixel[cat] = [layer]
        level: dict[str, list[int]] = defaultdict(list)
        for entry in scalars.get(rel.name, []):
            level[entry[1]].append(number[entry])
        writer.add_image(
            rel.as_posix(),
            np.asarray(picture),
            stable_split(rel.as_posix(), val_fraction),
            pixel,
            dict(level),
            seg_size=(sh, sw),
        )
    return writer.close()
