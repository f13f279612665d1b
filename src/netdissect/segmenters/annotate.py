"""A Broden-format dataset from a segmentation model's labels: ``netdissect annotate``.

Every image is (optionally resized to ``size`` x ``size``, bilinear, and) labelled by the
segmenter at its own resolution (:func:`netdissect.segmenters.model.segment`); the label map is
stored, nearest-resized, at the segmentation size (``seg_size`` x ``seg_size``, default half
the image's size) in the category ``object``, and with ``colors`` the CIELAB colour terms of
:mod:`.colors` in the category ``color``. Object class k is label number k; colour term c
(1..11) is label K - 1 + c. Labels never predicted are left out of ``label.csv``; statistics and
``c_*.csv`` come from :class:`~.writer.BrodenWriter`. The split is a stable hash of the image's
name (20 % ``val``); ``index.csv`` lists the ``train`` rows first.

Resumability, as ``build-broden``: the dataset is written in ``<out>.partial`` and renamed
when complete; a log of the images written lets the same call after an interruption re-read
those images' label PNGs instead of segmenting them again. The finished dataset keeps the
call's identity in ``annotation.json``: the same call returns it at once, another is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.broden import decode_label_png
from ..data.colors import COLOR_NAMES, color_layer
from ..data.importer import stable_split
from ..data.writer import LabelSpec, ResumingWriter
from ..devices import resolve_device
from ..errors import DatasetError, OptionError
from ..memory import require_memory
from ..models.base import model_fingerprint
from ..runs.outputs import DATASET, MANIFEST, check_output
from .model import Segmenter, load_segmenter, segment

ANNOTATION_FILE = "annotation.json"
STATE_FILE = ".annotate-state.json"
DONE_FILE = ".annotate-done.jsonl"
VAL_FRACTION = 0.2
#: Lower bounds of the memory one pixel takes: a stored label (int64 map, its PNG, the resize) and
#: an image (uint8, float input, and at least two classes' float logits).
SEG_BYTES_PER_PIXEL = 16
IMAGE_BYTES_PER_PIXEL = 3 + 12 + 2 * 4


def label_specs(classes: Sequence[str], colors: bool) -> tuple[list[str], list[LabelSpec]]:
    """Categories and labels of an annotated dataset: object class k is label k, colours follow."""
    labels = [LabelSpec(k, name) for k, name in enumerate(classes) if k > 0]
    if not colors:
        return ["object"], labels
    offset = len(classes) - 1
    labels += [LabelSpec(offset + c, f"{name}-c") for c, name in enumerate(COLOR_NAMES, 1)]
    return ["color", "object"], labels


def nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Integer labels (H, W) resized to ``size`` (h, w) with nearest neighbours (Pillow's, as ``build-broden``)."""
    if labels.shape == size:
        return np.asarray(labels, dtype=np.int64)
    im = Image.fromarray(np.asarray(labels, dtype=np.int32), mode="I")
    return np.asarray(im.resize((size[1], size[0]), Image.Resampling.NEAREST), dtype=np.int64)


class AnnotationWriter:
    """Writes images and their segmenter label maps into a Broden-format dataset, resumably.

    Args:
        out: the dataset directory (written in ``<out>.partial`` until :meth:`close`).
        classes: the segmenter's class names (the background first).
        names: the file stem of every image, in order (``"street/0001"``).
        identity: what makes two calls the same (segmenter, options, inputs): a JSON object.
        colors: add the ``color`` category.
        seg_size: segmentation side (default: half the image's height and width).
        val_fraction: the share of images in the ``val`` split (a stable hash of the name picks them).

    :attr:`todo` lists the image positions still to :meth:`add`, in order; the ones an
    interrupted call wrote were re-read already. When ``out`` holds the finished dataset of
    the same call, :attr:`finished` is true and nothing is to be added.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        classes: Sequence[str],
        names: Sequence[str],
        identity: dict,
        colors: bool = False,
        seg_size: int | None = None,
        val_fraction: float = VAL_FRACTION,
    ) -> None:
        self.out = Path(out)
        self.val_fraction = val_fraction
        self.classes, self.names = list(classes), list(names)
        self.colors, self.seg_size = colors, seg_size
        if len(set(self.names)) != len(self.names):
            twice = next(n for n in self.names if self.names.count(n) > 1)
            raise DatasetError(f"two images would be stored as {twice!r}: give every image its own file stem")
        self.identity = json.loads(json.dumps({**identity, "names": _digest(self.names)}))
        self.finished = self._finished()
        self.todo: list[int] = []
        if self.finished:
            return
        self.staging = self.out.with_name(self.out.name + ".partial")
        state = _read_json(self.staging / STATE_FILE)
        if state != self.identity:
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.staging.mkdir(parents=True)
            _write_json(self.staging / STATE_FILE, self.identity)
        categories, labels = label_specs(self.classes, colors)
        self.writer = ResumingWriter(self.staging, categories, labels)
        done = self._replay()
        self.added = len(done)
        self.todo = [i for i in range(len(self.names)) if i not in done]

    def _finished(self) -> bool:
        if not (self.out / "index.csv").exists():
            if self.out.is_dir() and any(p.name != MANIFEST for p in self.out.iterdir()):
                raise DatasetError(f"{self.out} exists and is not empty: choose a new or empty --out")
            return False
        if _read_json(self.out / ANNOTATION_FILE) == self.identity:
            return True
        raise DatasetError(
            f"{self.out} already holds a dataset (other images, segmenter or options): choose another --out"
        )

    def _replay(self) -> set[int]:
        """Re-add, without rewriting them, the images the log says an earlier call wrote."""
        done: set[int] = set()
        try:
            lines = (self.staging / DONE_FILE).read_text(encoding="utf-8").splitlines()
        except OSError:
            return done
        position = {name: i for i, name in enumerate(self.names)}
        images = self.staging / "images"
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut by an interruption
                continue
            i = position.get(entry.get("name"))
            pngs = {cat: images / f"{entry['name']}_{cat}.png" for cat in entry["layers"]}
            if i is None or i in done or not all(p.exists() for p in [*pngs.values(), images / f"{entry['name']}.jpg"]):
                continue
            layers = {cat: [decode_label_png(p)] for cat, p in pngs.items()}
            self.writer.replaying = True
            try:
                self.writer.add_image(
                    entry["name"],
                    np.zeros((entry["ih"], entry["iw"], 3), np.uint8),
                    entry["split"],
                    layers,
                    seg_size=(entry["sh"], entry["sw"]),
                )
            finally:
                self.writer.replaying = False
            done.add(i)
        return done

    def add(self, index: int, image: np.ndarray, labels: np.ndarray) -> None:
        """Write image ``index`` (uint8 (H, W, 3)) with its segmenter labels (H, W) (0: unlabelled)."""
        name = self.names[index]
        ih, iw = image.shape[:2]
        if labels.shape != (ih, iw):
            raise ValueError(f"labels of {name} are {labels.shape}, the image is {(ih, iw)}")
        sh, sw = (self.seg_size, self.seg_size) if self.seg_size else (max(1, ih // 2), max(1, iw // 2))
        layers: dict[str, list[np.ndarray]] = {}
        small = nearest(labels, (sh, sw))
        if small.any():
            layers["object"] = [small]
        if self.colors:
            codes, _ = color_layer(np.ascontiguousarray(image), (sh, sw))
            layers["color"] = [codes + len(self.classes) - 1]
        split = stable_split(name, self.val_fraction)
        self.writer.add_image(name, image, split, layers, seg_size=(sh, sw))
        self.added += 1
        entry = {"name": name, "split": split, "ih": ih, "iw": iw, "sh": sh, "sw": sw, "layers": sorted(layers)}
        with open(self.staging / DONE_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    def close(self) -> Path:
        """Write the CSV files and move the dataset to ``out``; returns ``out``."""
        if self.finished:
            return self.out
        if self.added < len(self.names):
            raise DatasetError(f"{self.out}: {len(self.names) - self.added} image(s) were never added")
        self.writer.close()
        _write_json(self.staging / ANNOTATION_FILE, self.identity)
        (self.staging / STATE_FILE).unlink()
        (self.staging / DONE_FILE).unlink()
        if self.out.exists():
            if any(self.out.iterdir()):
                raise DatasetError(f"{self.out} exists and is not empty")
            self.out.rmdir()
        os.replace(self.staging, self.out)
        self.finished = True
        return self.out


def _digest(names: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(names).encode("utf-8")).hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- image folders


def image_files(directory: Path, pattern: str | None = None) -> list[Path]:
    """The files under ``directory`` (recursively) that Pillow reads by extension, or that match ``pattern``."""
    if not directory.is_dir():
        raise DatasetError(f"--images {directory} is not a directory")
    if pattern:
        files = [p for p in directory.rglob(pattern) if p.is_file()]
    else:
        readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
        files = [p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in readable]
    files = sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(directory).parts))
    if not files:
        what = f"matching {pattern!r}" if pattern else "that Pillow reads"
        raise DatasetError(f"no images {what} in {directory}")
    return files


class _ImageFiles(Dataset):
    """Decoded RGB images (uint8 (H, W, 3)), resized to ``size`` x ``size`` when given."""

    def __init__(self, files: Sequence[Path], positions: Sequence[int], size: int | None) -> None:
        self.files, self.positions, self.size = list(files), list(positions), size

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        index = self.positions[i]
        path = self.files[index]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.size and im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
                return index, np.asarray(im)
        except Exception as exc:  # Pillow raises many kinds
            raise DatasetError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None


def _as_is(item):
    return item


def same_size_batches(
    items: Iterator[tuple[int, np.ndarray]], batch_size: int
) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Consecutive items grouped into batches of at most ``batch_size`` images of one size."""
    batch: list[tuple[int, np.ndarray]] = []
    for item in items:
        if batch and (len(batch) == batch_size or item[1].shape != batch[0][1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def annotate_images(
    segmenter: Segmenter | str,
    images: str | os.PathLike,
    out: str | os.PathLike,
    classes: str | os.PathLike | Sequence[str] | None = None,
    min_confidence: float = 0.0,
    colors: bool = False,
    size: int | None = None,
    seg_size: int | None = None,
    pattern: str | None = None,
    device: str | None = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
) -> Path:
    """Label a folder of images with a segmenter and write a Broden-format dataset; returns ``out``.

    Args:
        segmenter: a :class:`~netdissect.segmenters.model.Segmenter` or a segmenter SPEC (see
            :func:`~netdissect.segmenters.model.load_segmenter`).
        images: folder of images, searched recursively (every file Pillow reads, or ``pattern``).
        out: the dataset directory to write.
        classes: class names or a file of them (default: the segmenter's own).
        min_confidence: pixels whose winning class has a lower softmax probability are unlabelled.
        colors: add the ``color`` category (11 colour terms named in CIELAB).
        size: resize images to ``size`` x ``size`` (default: keep their size).
        seg_size: segmentation side (default: half the image's height and width).
        pattern: glob of the files to take (``"*.jpg"``), relative to any folder under ``images``.
        device: where the segmenter runs (default: CUDA when available).
        batch_size: images per segmenter batch.
        workers: image-decoding worker processes.
        progress: show a progress bar.
    """
    if not 0 <= min_confidence <= 1:
        raise OptionError(f"--min-confidence must lie in [0, 1], got {min_confidence}")
    for option, value, low in (("--size", size, 2), ("--seg-size", seg_size, 1)):
        if value is not None and value < low:
            raise OptionError(f"{option} must be >= {low}, got {value}")
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise OptionError(f"--workers must be >= 0, got {workers}")
    check_output(out, DATASET)
    for option, side, per_pixel in (
        ("--seg-size", seg_size, SEG_BYTES_PER_PIXEL),
        ("--size", size, IMAGE_BYTES_PER_PIXEL),
    ):
        if side is not None:
            require_memory(batch_size * side * side * per_pixel, f"{option} {side} (batch of {batch_size})")
    torch_device = resolve_device(device)
    root = Path(images)
    files = image_files(root, pattern)
    segmenter = load_segmenter(segmenter, classes)
    names = [p.relative_to(root).with_suffix("").as_posix() for p in files]
    identity = {
        "segmenter": segmenter.spec,
        "segmenter_fingerprint": model_fingerprint(segmenter.module),
        "classes": segmenter.classes,
        "min_confidence": min_confidence,
        "colors": colors,
        "size": size,
        "seg_size": seg_size,
        "images": str(root.resolve()),
    }
    writer = AnnotationWriter(out, segmenter.classes, names, identity, colors, seg_size)
    if writer.finished:
        return writer.out
    segmenter.module.to(torch_device)
    loader = DataLoader(
        _ImageFiles(files, writer.todo, size), batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is
    )
    with tqdm(total=len(writer.todo), desc="annotate", unit="img", disable=not progress) as bar:
        for batch in same_size_batches(iter(loader), batch_size):
            pixels = [image for _, image in batch]
            labels = segment(segmenter, pixels, torch_device, min_confidence)
            for (index, image), label in zip(batch, labels):
                writer.add(index, image, label)
            bar.update(len(batch))
    return writer.close()
