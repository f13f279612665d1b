"""Build a Broden-format dataset (``docs/design/broden-format.md``) from local copies of the original sources.

Pipeline
--------
1. *Adapters* (:mod:`netdissect.data.build_sources`) list the images of each given source with
   their annotations in the source's native format: pixel layers (an integer map plus the raw name
   of each code) and image-level names, per category.
2. *Unification*: every raw name is lower-cased, cut at the first comma (ADE20K / WordNet
   style ``"person, individual, someone"``), and mapped through :data:`SYNONYMS` to one
   canonical name; one name is one label across sources and categories. Scene names get the
   suffix ``-s`` and colour names ``-c`` (the "label.csv" section of ``docs/design/broden-format.md``).
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

The native layouts each source is read in are described in :mod:`netdissect.data.build_sources`.

Resumability: the dataset is built in ``<out>.partial`` and renamed to ``out`` at the end, so an
interrupted run never leaves something that looks whole. ``<out>.partial`` keeps the scan result
(``.build-scan.json``, with a fingerprint of the options, the source paths and the image list) and a
log of the images written (``.build-done.jsonl``); a rerun with the same arguments skips the scan
and re-reads only those images' written PNGs instead of the sources (other arguments start over).
A call whose ``out`` already holds an ``index.csv`` returns at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DatasetError
from ..runs.outputs import DATASET, check_output
from .broden import decode_label_png
from .build_sources import Record, ade20k_records, dtd_records, opensurfaces_records, pascal_records, read_rgb
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


# --------------------------------------------------------------------------- pipeline


def _split(key: str) -> str:
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16)
    return "val" if h / 2**32 < VAL_FRACTION else "train"


def _nearest(labels: np.ndarray, seg: int) -> np.ndarray:
    im = Image.fromarray(np.asarray(labels, dtype=np.int32), mode="I")
    return np.asarray(im.resize((seg, seg), Image.Resampling.NEAREST), dtype=np.int64)


def _annotate(
    record: Record, image: np.ndarray, seg: int, colors: bool
) -> tuple[dict[str, list[tuple[np.ndarray, dict[int, str]]]], dict[str, list[str]]]:
    """(pixel {cat: [name map arrays as (codes array, code->canonical name)]}, image {cat: [names]})."""
    pixel: dict[str, list[tuple[np.ndarray, dict[int, str]]]] = {}
    for cat, layers in record.layers().items():
        for labels, codes in layers:
            small = _nearest(labels, seg)
            canonical = {c: canonical_name(n, cat) for c, n in codes.items()}
            named = {c: n for c, n in canonical.items() if n}
            pixel.setdefault(cat, []).append((small, named))
    if colors:
        pixel["color"] = [color_layer(image, (seg, seg))]
    scalars: dict[str, list[str]] = {}
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
    check_output(out, DATASET)
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


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _load_scan(staging: Path, fingerprint: dict) -> dict | None:
    try:
        scan = json.loads((staging / SCAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return scan if scan.get("fingerprint") == fingerprint else None


def _scan(records: list[Record], seg: int, colors: bool, min_images: int, min_coverage: float, progress: bool) -> dict:
    """Pass 1: per label name, images and summed coverage; keep, number and categorise labels."""
    freq: dict[str, int] = {}
    cover: dict[str, float] = {}
    cats: dict[str, set[str]] = {}
    for record in tqdm(records, desc="scan", unit="img", disable=not progress):
        image = read_rgb(record.path)
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
    done: dict[str, dict] = {}
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


def _write(
    records: list[Record],
    staging: Path,
    categories: list[str],
    number: dict[str, int],
    size: int,
    seg: int,
    colors: bool,
    progress: bool,
) -> None:
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
                    replayed = {c: [decode_label_png(images / p) for p in ps] for c, ps in pngs.items()}
                    writer.replaying = True
                    try:
                        writer.add_image(
                            name,
                            np.zeros((size, size, 3), np.uint8),
                            split,
                            replayed,
                            entry["scalars"],
                            seg_size=(seg, seg),
                        )
                    finally:
                        writer.replaying = False
                    continue
            image = read_rgb(record.path)
            pixel, scalars = _annotate(record, image, seg, colors)
            big = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
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
