"""Build a Broden-format dataset (DESIGN §2) from local copies of the original sources.

Pipeline
--------
1. *Adapters* list the images of each given source with their annotations in the source's
   native format: pixel layers (an integer map plus the raw name of each code) and image-level
   names, per category.
2. *Unification*: every raw name is lower-cased, cut at the first comma (ADE20K / WordNet
   style ``"person, individual, someone"``), and mapped through :data:`SYNONYMS` to one
   canonical name; one name is one label across sources and categories. Scene names get the
   suffix ``-s`` and colour names ``-c`` (DESIGN §2.3).
3. *Scan* (pass 1): every annotation is resized (nearest) to the segmentation size and counted;
   labels seen in fewer than ``min_images`` images or covering less than ``min_coverage`` whole
   images in all (an image-level label covers 1) are dropped (pixels become 0).
4. Labels are numbered 1.. by descending image frequency (ties by name).
5. *Write* (pass 2): images are resized bilinear to ``size`` x ``size`` (square, as Broden),
   segmentations nearest to ``seg_size`` x ``seg_size`` (default ``size // 2``); the split is
   ``val`` for 20 % of the images, chosen by the SHA-1 of the image's source-relative path
   (stable across runs and machines), and rows are written with :class:`BrodenWriter`.

Colour labels (``colors=True``): the 11 basic colour terms, named per pixel in CIELAB by
:mod:`netdissect.data.colors`.

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

Resumability: the dataset is built in ``<out>.partial`` and renamed to ``out`` at the end, so an
interrupted run never leaves something that looks whole. ``<out>.partial`` keeps the scan result
(``.build-scan.json``, with a fingerprint of the options, the source paths and the image list) and a
log of the images written (``.build-done.jsonl``); a rerun with the same arguments skips the scan
and re-reads only those images' written PNGs instead of the sources (other arguments start over).
A call whose ``out`` already holds an ``index.csv`` returns at once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DatasetError
from .broden import decode_label_png
from .colors import color_layer
from .writer import LabelSpec, ResumingWriter

CATEGORY_ORDER = ["color", "object", "part", "material", "scene", "texture"]
VAL_FRACTION = 0.2

#: raw name (lower case, first comma-separated term) -> canonical name
SYNONYMS: dict[str, str] = {
    "people": "person",
    "persons": "person",
    "individual": "person",
    "human": "person",
    "tvmonitor": "television",
    "tv": "television",
    "tv monitor": "television",
    "television receiver": "television",
    "aeroplane": "airplane",
    "aircraft": "airplane",
    "plane": "airplane",
    "motorbike": "motorbike",
    "motorcycle": "motorbike",
    "diningtable": "table",
    "dining table": "table",
    "pottedplant": "plant",
    "potted plant": "plant",
    "flora": "plant",
    "sofa": "sofa",
    "couch": "sofa",
    "auto": "car",
    "automobile": "car",
    "bicycle": "bicycle",
    "bike": "bicycle",
    "sheep": "sheep",
    "cow": "cow",
    "cattle": "cow",
    "ground": "ground",
    "earth": "ground",
    "grass": "grass",
    "tree": "tree",
    "sky": "sky",
    "water": "water",
    "rug": "carpet",
    "carpet": "carpet",
    "carpeting": "carpet",
    "bookcase": "bookcase",
    "bookshelf": "bookcase",
    "wooden": "wood",
    "wood": "wood",
    "hair": "hair",
    "fur": "fur",
    "mirror": "mirror",
    "painting": "painting",
    "picture": "painting",
    "road": "road",
    "route": "road",
    "sidewalk": "sidewalk",
    "pavement": "sidewalk",
    "stairs": "stairs",
    "steps": "stairs",
    "stairway": "stairway",
    "staircase": "stairway",
    "ceramic": "ceramic",
    "porcelain": "ceramic",
    "tile": "tile",
    "tiles": "tile",
    "glass": "glass",
    "metal": "metal",
    "fabric": "fabric",
    "cloth": "fabric",
    "textile": "fabric",
}


def canonical_name(raw: str, category: str) -> str | None:
    """The unified label name of a source's raw name in ``category`` (None: no label)."""
    name = raw.strip().lower().split(",")[0].strip().replace("_", " ") if category != "scene" else raw.strip().lower()
    if not name or name in ("-", "background", "unlabeled", "unknown", "other"):
        return None
    if category == "scene":
        return name.replace(" ", "_") + "-s"
    if category == "color":
        return name + "-c"
    return SYNONYMS.get(name, name)


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


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what}: {path} does not exist")
    return path


def _loadmat(path: Path):
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
    rgb = _read_rgb(path).astype(np.int64)
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
            red = _read_rgb(png)[..., 0].astype(np.int64)
            codes = {int(c): substances.get(int(c), "") for c in np.unique(red) if c > 0}
            return {"material": [(red, codes)]}

        records.append(Record(f"opensurfaces/{path.name}", path, {}, load))
    return records


# --------------------------------------------------------------------------- pipeline


def _split(key: str) -> str:
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return "val" if h / 2**32 < VAL_FRACTION else "train"


def _nearest(labels: np.ndarray, seg: int) -> np.ndarray:
    im = Image.fromarray(np.asarray(labels, dtype=np.int32), mode="I")
    return np.asarray(im.resize((seg, seg), Image.NEAREST), dtype=np.int64)


def _annotate(record: Record, image: np.ndarray, seg: int, colors: bool):
    """(pixel {cat: [name map arrays as (codes array, code->canonical name)]}, image {cat: [names]})."""
    pixel: dict[str, list[tuple[np.ndarray, dict[int, str]]]] = {}
    for cat, layers in record.layers().items():
        for labels, codes in layers:
            small = _nearest(labels, seg)
            named = {c: canonical_name(n, cat) for c, n in codes.items()}
            named = {c: n for c, n in named.items() if n}
            pixel.setdefault(cat, []).append((small, named))
    if colors:
        pixel["color"] = [color_layer(image, (seg, seg))]
    scalars = {}
    for cat, names in record.image_labels.items():
        canon = [canonical_name(n, cat) for n in names]
        scalars[cat] = list(dict.fromkeys(n for n in canon if n))
    return pixel, scalars


def build_broden(
    out: str | os.PathLike,
    size: int = 224,
    seg_size: int | None = None,
    ade20k: str | os.PathLike | None = None,
    pascal: str | os.PathLike | None = None,
    opensurfaces: str | os.PathLike | None = None,
    dtd: str | os.PathLike | None = None,
    colors: bool = True,
    min_images: int = 10,
    min_coverage: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Build a Broden-format dataset in ``out`` from the given sources; returns ``out``.

    See the module docstring for the pipeline, the colour naming and the assumed native
    layouts. ``seed`` is accepted for API stability; the build is deterministic and uses no
    randomness (the split comes from a hash of each image's path).
    """
    out = Path(out)
    if (out / "index.csv").exists():
        return out
    if size < 2:
        raise DatasetError(f"--size must be >= 2, got {size}")
    seg = seg_size or max(1, size // 2)
    if seg < 1:
        raise DatasetError(f"--seg-size must be >= 1, got {seg_size}")
    records: list[Record] = []
    for name, root, fn in (
        ("ade20k", ade20k, ade20k_records),
        ("pascal", pascal, pascal_records),
        ("opensurfaces", opensurfaces, opensurfaces_records),
        ("dtd", dtd, dtd_records),
    ):
        if root is not None:
            if not Path(root).is_dir():
                raise DatasetError(f"--{name} {root} is not a directory")
            found = fn(root)
            if not found:
                raise DatasetError(f"--{name} {root}: no images found in the expected layout")
            records.extend(found)
    if not records:
        raise DatasetError("give at least one source (--ade20k, --pascal, --opensurfaces, --dtd)")

    staging = out.with_name(out.name + ".partial")
    fingerprint = {
        "version": 1,
        "size": size,
        "seg": seg,
        "colors": bool(colors),
        "min_images": min_images,
        "min_coverage": min_coverage,
        "keys": hashlib.sha1("\n".join(r.key for r in records).encode()).hexdigest(),
        "sources": {
            k: str(Path(v).resolve())
            for k, v in (("ade20k", ade20k), ("pascal", pascal), ("opensurfaces", opensurfaces), ("dtd", dtd))
            if v
        },
    }
    scan = _load_scan(staging, fingerprint)
    if scan is None:
        if staging.exists():
            shutil.rmtree(staging)
        scan = _scan(records, seg, colors, min_images, min_coverage, progress)
        staging.mkdir(parents=True)
        _write_json(staging / SCAN_FILE, {"fingerprint": fingerprint, **scan})
    number: dict[str, int] = scan["number"]
    categories: list[str] = scan["categories"]
    if not (staging / "index.csv").exists():
        _write(records, staging, categories, number, size, seg, colors, progress)
    if out.exists():
        if any(out.iterdir()):
            raise DatasetError(f"{out} exists and is not empty")
        out.rmdir()
    (staging / SCAN_FILE).unlink()
    (staging / DONE_FILE).unlink()
    os.replace(staging, out)
    return out


SCAN_FILE = ".build-scan.json"
DONE_FILE = ".build-done.jsonl"


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _load_scan(staging: Path, fingerprint: dict) -> dict | None:
    try:
        scan = json.loads((staging / SCAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return scan if scan.get("fingerprint") == fingerprint else None


def _scan(records, seg, colors, min_images, min_coverage, progress) -> dict:
    """Pass 1: per label name, images and summed coverage; keep, number and categorise labels."""
    freq: dict[str, int] = {}
    cover: dict[str, float] = {}
    cats: dict[str, set[str]] = {}
    for record in tqdm(records, desc="scan", unit="img", disable=not progress):
        image = _read_rgb(record.path)
        pixel, scalars = _annotate(record, image, seg, colors)
        seen: set[str] = set()
        for cat, layers in pixel.items():
            for small, named in layers:
                values, counts = np.unique(small, return_counts=True)
                for v, c in zip(values, counts):
                    n = named.get(int(v))
                    if n:
                        cover[n] = cover.get(n, 0.0) + c / small.size
                        cats.setdefault(n, set()).add(cat)
                        seen.add(n)
        for cat, names in scalars.items():
            for n in names:
                cover[n] = cover.get(n, 0.0) + 1.0
                cats.setdefault(n, set()).add(cat)
                seen.add(n)
        for n in seen:
            freq[n] = freq.get(n, 0) + 1
    kept = [n for n in freq if freq[n] >= min_images and cover[n] >= min_coverage]
    if not kept:
        raise DatasetError(
            f"no label is seen in >= {min_images} images covering >= {min_coverage} images; "
            "lower --min-images / --min-coverage or give more data"
        )
    kept.sort(key=lambda n: (-freq[n], n))
    return {
        "number": {n: i for i, n in enumerate(kept, 1)},
        "categories": [c for c in CATEGORY_ORDER if any(c in cats[n] for n in kept)],
    }


def _png_names(name: str, counts: dict[str, int]) -> dict[str, list[str]]:
    # BrodenWriter's naming for non-empty layers
    return {
        cat: [f"{name}_{cat}_{k}.png" if n > 1 else f"{name}_{cat}.png" for k in range(1, n + 1)]
        for cat, n in counts.items()
    }


def _done(staging: Path) -> dict[str, dict]:
    done = {}
    try:
        lines = (staging / DONE_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return done
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut by an interruption
            continue
        done[entry["key"]] = entry
    return done


def _write(records, staging, categories, number, size, seg, colors, progress) -> None:
    """Pass 2: write every image, replaying the ones an interrupted run already wrote."""
    labels = [LabelSpec(i, n) for n, i in number.items()]
    writer = ResumingWriter(staging, categories, labels)
    done = _done(staging)
    images = staging / "images"
    with open(staging / DONE_FILE, "a", encoding="utf-8") as log:
        for record in tqdm(records, desc="write", unit="img", disable=not progress):
            name = str(Path(record.key).with_suffix(""))
            split = _split(record.key)
            entry = done.get(record.key)
            if entry is not None:
                pngs = _png_names(name, entry["layers"])
                paths = [images / p for ps in pngs.values() for p in ps] + [images / f"{name}.jpg"]
                if all(p.exists() for p in paths):
                    layers_out = {c: [decode_label_png(images / p) for p in ps] for c, ps in pngs.items()}
                    writer.replaying = True
                    try:
                        writer.add_image(
                            name,
                            np.zeros((size, size, 3), np.uint8),
                            split,
                            layers_out,
                            entry["scalars"],
                            seg_size=(seg, seg),
                        )
                    finally:
                        writer.replaying = False
                    continue
            image = _read_rgb(record.path)
            pixel, scalars = _annotate(record, image, seg, colors)
            big = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
            layers_out: dict[str, list[np.ndarray]] = {}
            for cat, layers in pixel.items():
                if cat not in categories:
                    continue
                for small, named in layers:
                    mapped = np.zeros_like(small)
                    for c, n in named.items():
                        if n in number:
                            mapped[small == c] = number[n]
                    if mapped.any():
                        layers_out.setdefault(cat, []).append(mapped)
            image_out = {
                c: [number[n] for n in names if n in number] for c, names in scalars.items() if c in categories
            }
            writer.add_image(name, big, split, layers_out, image_out, seg_size=(seg, seg))
            log.write(
                json.dumps(
                    {"key": record.key, "layers": {c: len(v) for c, v in layers_out.items()}, "scalars": image_out}
                )
                + "\n"
            )
            log.flush()
    writer.close()
