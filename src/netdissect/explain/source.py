"""What an explanation takes from a dissection run and from the user: the layer's thresholds and
labels, the sizes and preprocessing of the run, the run's model, and the images.

Every check here runs before anything is written, and every failure is one line naming the
option or file at fault.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError, ModelError, OptionError, RunDirectoryError
from ..files import layer_dirname
from ..models.base import LoadedModel, model_fingerprint
from ..models.preprocess import Preprocess
from ..runs.layout import SUMMARY_FILE, UNITS_FILE
from ..runs.outputs import DISSECTION, read_kind
from ..runs.results import LayerResult

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class RunLayer:
    """One dissected layer of a run, with what is needed to explain images by it.

    Attributes:
        run: the run directory.
        layer: the layer's name.
        view: the layer's saved results (thresholds, labels, IoU).
        metadata: the run's metadata (model, fingerprint, dataset, options).
        input_size: (H, W) the images are resized to for the model, as in the run.
        seg_size: (sh, sw) the run's segmentation size, at which masks are compared.
        preprocess: the run's preprocessing (with ``input_size``).
        iou_threshold: the IoU at which a unit counts as a detector.
    """

    run: Path
    layer: str
    view: LayerResult
    metadata: dict
    input_size: tuple[int, int]
    seg_size: tuple[int, int]
    preprocess: Preprocess
    iou_threshold: float
    options: dict = field(default_factory=dict)

    @property
    def tokens(self) -> str | int:
        return self.options.get("tokens", "auto")

    @property
    def channels_last(self) -> bool:
        return bool(self.options.get("channels_last", False))

    @property
    def detectors(self) -> np.ndarray:
        """Bool (U,): units with a concept label whose IoU reaches :attr:`iou_threshold`."""
        return (self.view.score >= self.iou_threshold) & (self.view.label > 0)

    def label(self, u: int) -> str:
        """The concept label of unit row ``u`` (0-based), as units.json names it."""
        return self.view.label_names[int(self.view.label[u])]


def read_run_layer(
    run: str | os.PathLike,
    layer: str | None = None,
    iou_threshold: float | None = None,
    dataset: str | os.PathLike | None = None,
) -> RunLayer:
    """The dissected ``layer`` of ``run`` (default: its last layer), with the run's sizes.

    ``dataset`` replaces the run's dataset path when the dataset moved (only its ``index.csv`` is
    read: the image and segmentation sizes).
    """
    run = Path(run)
    if not run.exists():
        raise RunDirectoryError(f"--run {run}: not found")
    kind = read_kind(run)
    if kind is not None and kind.name != DISSECTION.name:
        raise RunDirectoryError(
            f"--run {run} holds {kind.what} (written by {kind.written_by}), not a dissection run of a classifier"
        )
    if not (run / SUMMARY_FILE).is_file():
        raise RunDirectoryError(f"--run {run} holds no finished dissection (no {SUMMARY_FILE})")
    try:
        summary = json.loads((run / SUMMARY_FILE).read_text(encoding="utf-8"))
        layers, metadata = list(summary["layers"]), dict(summary.get("metadata") or {})
    except (ValueError, KeyError, TypeError):
        raise RunDirectoryError(f"--run {run}: {SUMMARY_FILE} is not a dissection summary") from None
    if layer is None:
        if not layers:
            raise RunDirectoryError(f"--run {run} has no dissected layer")
        layer = layers[-1]
    if layer not in layers or not (run / layer_dirname(layer) / UNITS_FILE).is_file():
        raise RunDirectoryError(f"--run {run} has no layer {layer!r} (it has {', '.join(layers) or 'none'})")
    options = dict(metadata.get("options") or {})
    if options.get("rotate") is not None:
        raise RunDirectoryError(
            f"--run {run} dissected a rotation of {layer}'s units (--rotate): explain needs a run of its own units"
        )
    if not metadata.get("model_fingerprint"):
        raise RunDirectoryError(f"--run {run} records no model (imported results?): explain needs a dissection run")
    if iou_threshold is None:
        iou_threshold = float(options.get("iou_threshold", 0.04))
    if not 0 <= iou_threshold <= 1:
        raise OptionError(f"--iou-threshold must lie in [0, 1], got {iou_threshold}")
    view = LayerResult.load(run / layer_dirname(layer), maps=False, values=False)
    recorded: dict = metadata["dataset"] if isinstance(metadata.get("dataset"), dict) else {}
    image_size, seg_size = run_sizes(recorded, dataset)
    given = recorded.get("preprocess") or {}
    preprocess = Preprocess(
        mean=tuple(given.get("mean", Preprocess.mean)),
        std=tuple(given.get("std", Preprocess.std)),
        bgr=bool(given.get("bgr", False)),
        pixel_scale=float(given.get("pixel_scale", 1.0)),
    )
    input_size = tuple(given["input_size"]) if given.get("input_size") else image_size
    preprocess = replace(preprocess, input_size=(int(input_size[0]), int(input_size[1])))
    size = (int(input_size[0]), int(input_size[1]))
    return RunLayer(run, layer, view, metadata, size, seg_size, preprocess, iou_threshold, options)


def run_sizes(recorded: dict, dataset: str | os.PathLike | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """The image size (ih, iw) and segmentation size (sh, sw) of the run's dataset rows (the most
    common pair when they vary), read from its ``index.csv``."""
    if dataset is not None:
        path, option = Path(dataset), f"--dataset {dataset}"
    else:
        if not recorded.get("path"):
            raise DatasetError("the run does not record its dataset: pass --dataset DIR (for its image sizes)")
        path, option = Path(recorded["path"]), f"the run's dataset {recorded['path']}"
    index = path / "index.csv"
    if not index.is_file():
        hint = "" if dataset is not None else ": pass --dataset DIR to where it is now"
        raise DatasetError(f"{option} is missing (no index.csv){hint}")
    first, last = int(recorded.get("first_row", 1)), recorded.get("last_row")
    sizes: Counter[tuple[int, int, int, int]] = Counter()
    with open(index, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), 1):
            if number < first or (last is not None and number > int(last)):
                continue
            try:
                sizes[(int(row["ih"]), int(row["iw"]), int(row["sh"]), int(row["sw"]))] += 1
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{index} row {number}: no image and segmentation sizes (ih, iw, sh, sw)") from None
    if not sizes:
        raise DatasetError(f"{index} lists none of the run's images")
    ih, iw, sh, sw = sizes.most_common(1)[0][0]
    return (ih, iw), (sh, sw)


def run_model(
    layer: RunLayer,
    model: object | None = None,
    weights: str | None = None,
    trust_pickle: bool = False,
    model_args: dict | None = None,
) -> LoadedModel:
    """The run's model: ``model`` (a module, a :class:`LoadedModel` or a SPEC) or the run's
    recorded SPEC, with ``weights``; refused unless its weights fingerprint is the run's."""
    from torch import nn

    recorded = str(layer.metadata.get("model", ""))
    if model is None:
        from ..models.loading import load_model

        try:
            loaded = load_model(recorded, weights, trust_pickle, model_args)
        except ModelError as exc:
            if weights is not None:  # the error names the weights file
                raise
            raise ModelError(
                f"--run {layer.run} records the model {recorded!r}, which does not load ({exc.message}): "
                "pass --model SPEC (and --weights)"
            ) from None
        given = f"the run's model {recorded}" + (f" with --weights {weights}" if weights else "")
    elif isinstance(model, str):
        from ..models.loading import load_model

        loaded = load_model(model, weights, trust_pickle, model_args)
        given = f"--model {model}" + (f" --weights {weights}" if weights else "")
    elif isinstance(model, LoadedModel):
        loaded, given = model, f"the model {model.spec}"
    elif isinstance(model, nn.Module):
        loaded, given = LoadedModel(model, Preprocess(), type(model).__name__), f"the model {type(model).__name__}"
    else:
        raise ModelError(f"model must be a SPEC, an nn.Module or a LoadedModel, got {type(model).__name__}")
    ours, theirs = model_fingerprint(loaded.module), str(layer.metadata.get("model_fingerprint"))
    if ours != theirs:
        hint = " (its weights were not recorded: pass --weights)" if model is None and weights is None else ""
        raise ModelError(
            f"{given} is not the model of --run {layer.run} (weights fingerprint {ours}, the run's {theirs}){hint}"
        )
    return loaded


def image_files(images: list[str | os.PathLike]) -> list[Path]:
    """The image files named (a folder stands for the images directly inside it, sorted)."""
    files: list[Path] = []
    if not images:
        raise OptionError("--images names no image")
    for item in images:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise OptionError(f"--images {path} is a folder without images")
            files += found
        elif not path.exists():
            raise OptionError(f"--images {path}: not found")
        else:
            files.append(path)
    return files


def read_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    """The image's RGB pixels at the model's input size, as the run's preprocessing resizes them."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except Exception as exc:  # PIL raises many kinds
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptionError(f"--images {path} is not an image that can be read ({reason})") from None
    return preprocess.resize(im)
