"""Adapters for the original sources of a Broden build: DTD, ADE20K, Pascal and OpenSurfaces.

Each adapter lists the images of one source as :class:`Record` objects with their annotations in
the source's native format: pixel layers (an integer map plus the raw name of each code) and
image-level names, per category. :mod:`netdissect.data.build` unifies the names and writes the dataset.

Native layouts assumed (only the tiny fixtures in ``tests/data/test_build.py`` were tested; the
real downloads could not be checked here):

* **DTD** (``dtd=``): ``<dtd>/images/<texture>/<file>.jpg``; the label is the folder name. If
  ``<dtd>/labels/labels_joint_anno.txt`` exists (lines ``<texture>/<file>.jpg name name ...``) its
  several labels per image are used instead.
* **ADE20K** (``ade20k=``, the ADE20K_2016_07_26 release): ``<ade20k>/images/{training,validation}/
  <letter>/<scene>[/<subscene>]/ADE_*.jpg`` with ``<stem>_seg.png`` (object class =
  R // 10 * 256 + G, instance in B, ignored) and ``<stem>_parts_<k>.png`` (same encoding, one part
  layer per level k). The scene is the folder path below the letter joined with ``_``
  (``b/balcony/interior`` -> ``balcony_interior-s``). Class names (1-based class index -> name)
  come from, in this order: ``objectnames.txt`` (one name per line, line 1 = class 1), or
  ``objectnames.csv`` (columns ``index,name``), or ``index_ade20k.mat`` (field ``objectnames``;
  needs scipy).
* **Pascal** (``pascal=``): VOC2010 images in ``JPEGImages/<id>.jpg`` (found under the given
  directory, ``VOC2010/`` or ``VOCdevkit/VOC2010/``); Pascal-Context object/stuff labels in
  ``trainval/<id>.mat`` (variable ``LabelMap``; needs scipy) or, without scipy, ``trainval/<id>.png``
  (a greyscale/16-bit PNG of the same label indices), names in ``labels.txt`` (lines
  ``<index>: <name>``). Pascal-Part (``Annotations_Part/<id>.mat``) is read when scipy is
  installed: per object, its class and part masks (``anno.objects[k].class`` / ``.parts[j].part_name``,
  ``.mask``); part names are used as given (``head``, ``lleg`` ... are not merged) (untested).
* **OpenSurfaces** (``opensurfaces=``): ``photos/<id>.jpg``, ``photos-labels/<id>.png`` whose red
  channel is the substance id, and ``label-substance-colors.csv`` with columns
  ``substance_name,red_color`` (the layout used by the original Broden build scripts). Category
  ``material``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DatasetError

# --------------------------------------------------------------------------- records


Layer = tuple[np.ndarray, dict[int, str]]  # integer map, code -> raw name


@dataclass
class Record:
    """One source image: a stable key (source-relative path) and a loader."""

    key: str
    path: Path
    image_labels: dict[str, list[str]] = field(default_factory=dict)
    load_layers: Callable[[], dict[str, list[Layer]]] | None = None

    def layers(self) -> dict[str, list[Layer]]:
        return self.load_layers() if self.load_layers else {}


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as an RGB array (a one-line DatasetError if it cannot be read)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what}: {path} does not exist")
    return path


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError(f"reading {path} needs scipy (pip install scipy)") from None
    return loadmat(str(path), squeeze_me=True, struct_as_record=False)


# --------------------------------------------------------------------------- DTD


def dtd_records(root: str | os.PathLike) -> list[Record]:
    root = Path(root)
    images = _require(root / "images", "DTD")
    joint = root / "labels" / "labels_joint_anno.txt"
    multi: dict[str, list[str]] = {}
    if joint.exists():
        for line in joint.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts:
                multi[parts[0]] = parts[1:]
    records = []
    for path in sorted(images.glob("*/*.jpg")):
        rel = f"{path.parent.name}/{path.name}"
        names = multi.get(rel) or [path.parent.name]
        records.append(Record(f"dtd/{rel}", path, {"texture": names}))
    return records


# --------------------------------------------------------------------------- ADE20K


def _ade_names(root: Path) -> list[str]:
    """Class names, index 0 = class 1."""
    if (root / "objectnames.txt").exists():
        return (root / "objectnames.txt").read_text(encoding="utf-8").splitlines()
    if (root / "objectnames.csv").exists():
        with open(root / "objectnames.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        names = [""] * max((int(r["index"]) for r in rows), default=0)
        for r in rows:
            names[int(r["index"]) - 1] = r["name"]
        return names
    for mat in (root / "index_ade20k.mat", root.parent / "index_ade20k.mat"):
        if mat.exists():
            index = _loadmat(mat)["index"]
            return [str(n) for n in np.atleast_1d(index.objectnames)]
    raise DatasetError(f"ADE20K: no objectnames.txt, objectnames.csv or index_ade20k.mat in {root}")


def _ade_classes(path: Path) -> np.ndarray:
    rgb = read_rgb(path).astype(np.int64)
    return rgb[..., 0] // 10 * 256 + rgb[..., 1]


def ade20k_records(root: str | os.PathLike) -> list[Record]:
    root = Path(root)
    images = _require(root / "images", "ADE20K")
    names = _ade_names(root)

    def layer(path: Path) -> Layer:
        classes = _ade_classes(path)
        codes = {int(c): names[c - 1] for c in np.unique(classes) if 0 < c <= len(names)}
        classes[classes > len(names)] = 0
        return classes, codes

    records = []
    for path in sorted(images.glob("*/**/ADE_*.jpg")):
        rel = path.relative_to(images)
        seg = path.with_name(path.stem + "_seg.png")
        if not seg.exists():
            continue
        folders = rel.parts[2:-1]  # split / letter / scene...
        scene = "_".join(folders)

        def load(path=path, seg=seg) -> dict[str, list[Layer]]:
            parts = sorted(path.parent.glob(path.stem + "_parts_*.png"))
            return {"object": [layer(seg)], "part": [layer(p) for p in parts]}

        records.append(Record(f"ade20k/{rel.as_posix()}", path, {"scene": [scene]} if scene else {}, load))
    return records


# --------------------------------------------------------------------------- Pascal


def _pascal_root(root: Path) -> Path:
    for cand in (root, root / "VOC2010", root / "VOCdevkit" / "VOC2010"):
        if (cand / "JPEGImages").is_dir():
            return cand / "JPEGImages"
    raise DatasetError(f"Pascal: no JPEGImages/ under {root} (nor VOC2010/, VOCdevkit/VOC2010/)")


def _find(root: Path, name: str) -> Path | None:
    for cand in (root / name, root / "VOC2010" / name, root / "VOCdevkit" / "VOC2010" / name):
        if cand.exists():
            return cand
    return None


def pascal_records(root: str | os.PathLike) -> list[Record]:
    root = Path(root)
    jpegs = _pascal_root(root)
    context = _find(root, "trainval")
    labels_txt = _find(root, "labels.txt")
    parts_dir = _find(root, "Annotations_Part")
    context_names: dict[int, str] = {}
    if context is not None:
        if labels_txt is None:
            raise DatasetError(f"Pascal-Context: {root}/labels.txt (lines '<index>: <name>') is missing")
        for line in labels_txt.read_text(encoding="utf-8").splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                context_names[int(k)] = v.strip()
    records = []
    for path in sorted(jpegs.glob("*.jpg")):
        stem = path.stem
        ctx = None
        if context is not None:
            for ext in (".mat", ".png"):
                if (context / (stem + ext)).exists():
                    ctx = context / (stem + ext)
                    break
        part = parts_dir / f"{stem}.mat" if parts_dir is not None and (parts_dir / f"{stem}.mat").exists() else None
        if ctx is None and part is None:
            continue

        def load(ctx=ctx, part=part) -> dict[str, list[Layer]]:
            out: dict[str, list[Layer]] = {}
            if ctx is not None:
                if ctx.suffix == ".mat":
                    labels = np.asarray(_loadmat(ctx)["LabelMap"], dtype=np.int64)
                else:
                    with Image.open(ctx) as im:
                        labels = np.asarray(im, dtype=np.int64)
                codes = {int(c): context_names.get(int(c), "") for c in np.unique(labels) if c > 0}
                out["object"] = [(labels, codes)]
            if part is not None:
                out["part"] = _pascal_part_layers(part)
            return out

        records.append(Record(f"pascal/{stem}", path, {}, load))
    return records


def _pascal_part_layers(path: Path) -> list[Layer]:
    anno = _loadmat(path)["anno"]
    objects = np.atleast_1d(anno.objects)
    layer: np.ndarray | None = None
    codes: dict[int, str] = {}
    names: dict[str, int] = {}
    for obj in objects:
        for p in np.atleast_1d(getattr(obj, "parts", [])):
            if not hasattr(p, "mask"):
                continue
            mask = np.asarray(p.mask) > 0
            if layer is None:
                layer = np.zeros(mask.shape, dtype=np.int64)
            name = str(p.part_name)
            code = names.setdefault(name, len(names) + 1)
            codes[code] = name
            layer[mask] = code
    return [(layer, codes)] if layer is not None else []


# --------------------------------------------------------------------------- OpenSurfaces


def opensurfaces_records(root: str | os.PathLike) -> list[Record]:
    root = Path(root)
    table = _require(root / "label-substance-colors.csv", "OpenSurfaces")
    with open(table, newline="", encoding="utf-8") as f:
        substances = {int(r["red_color"]): r["substance_name"] for r in csv.DictReader(f)}
    labels_dir = _require(root / "photos-labels", "OpenSurfaces")
    records = []
    for path in sorted(_require(root / "photos", "OpenSurfaces").glob("*.jpg")):
        png = labels_dir / f"{path.stem}.png"
        if not png.exists():
            continue

        def load(png=png) -> dict[str, list[Layer]]:
            red = read_rgb(png)[..., 0].astype(np.int64)
            codes = {int(c): substances.get(int(c), "") for c in np.unique(red) if c > 0}
            return {"material": [(red, codes)]}

        records.append(Record(f"opensurfaces/{path.name}", path, {}, load))
    return records
