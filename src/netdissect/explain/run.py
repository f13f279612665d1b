"""``explain()``: images segmented by a dissected layer's detector units, with the units their prediction needs."""

from __future__ import annotations

import os
import platform
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..devices import resolve_device
from ..errors import OptionError, RunDirectoryError
from ..models.base import LoadedModel
from ..runs.directory import finish_replacement, run_lock, swap_in_staged
from ..runs.layout import STAGING_DIR, is_run_layer
from ..runs.outputs import EXPLANATION, check_output, claim_output
from .effects import LayerRunner
from .result import ExplainResult, ImageExplanation
from .segment import segment_by_units, unit_masks
from .source import RunLayer, image_files, read_image, read_run_layer, run_model

#: Predictions listed per image.
TOP_PREDICTIONS = 5
#: The files of an explanation's folder (the rest of the folder is left alone when it is rewritten).
OWNED = re.compile(r"explain\.json|explain\.npz|index\.html|(image|seg)-\d+\.png|mask-\d+-\d+\.png")


def owned_entries(directory: Path) -> list[str]:
    """The names of the files an explanation wrote in ``directory`` (what a new one replaces)."""
    return sorted(p.name for p in directory.iterdir() if OWNED.fullmatch(p.name))


def explain(
    run: str | os.PathLike,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    layer: str | None = None,
    top_units: int = 10,
    classes: Sequence[str] | str | os.PathLike | None = None,
    iou_threshold: float | None = None,
    model: nn.Module | LoadedModel | str | None = None,
    weights: str | None = None,
    trust_pickle: bool = False,
    model_args: dict | None = None,
    dataset: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int = 8,
    ablation_batch: int = 128,
    report: bool = True,
) -> ExplainResult:
    """Explain images by a dissected layer: segment each by the layer's detector units, and measure
    which units its top prediction needs.

    Args:
        run: a finished dissection run of a classifier (its thresholds, labels, sizes and model).
        images: image files (a folder: the images directly inside it).
        out: the output folder (``explain.json``, ``explain.npz``, PNGs, ``index.html``); rewritten
            each time, the old contents kept until the new ones are complete. Optional.
        layer: the dissected layer (default: the run's last).
        top_units: how many units with the largest effects to list per image (with their masks).
        classes: the model's class names in output order (a list, or a file of one per line);
            default: the model source's, else output indices.
        iou_threshold: the IoU at which a unit is a detector (default: the run's).
        model: the run's model, if its recorded SPEC does not load it as dissected: a SPEC, an
            ``nn.Module`` or a :class:`~netdissect.LoadedModel`; checked against the run's
            weights fingerprint. ``weights``, ``trust_pickle`` and ``model_args`` go with a SPEC
            (or with the recorded one).
        dataset: the run's dataset, if it moved (its ``index.csv`` gives the image and
            segmentation sizes).
        batch_size: images per forward pass.
        ablation_batch: at most this many images (unit copies x batch) per pass of the layers after ``layer``.
        report: write ``index.html`` and link it from the run's page.

    Returns:
        An :class:`~netdissect.explain.ExplainResult`, one :class:`~netdissect.explain.ImageExplanation`
        per image.
    """
    began = time.perf_counter()
    for option, value in (("--top-units", top_units), ("--batch-size", batch_size), ("--ablation-batch", ablation_batch)):  # fmt: skip
        if value < 1:
            raise OptionError(f"{option} must be >= 1, got {value}")
    source = read_run_layer(run, layer, iou_threshold, dataset)
    paths = image_files([images] if isinstance(images, (str, os.PathLike)) else list(images))
    pixels = [read_image(p, source.preprocess) for p in paths]
    names, names_from = _class_names(classes)
    loaded = run_model(source, model, weights, trust_pickle, model_args)
    if names is None:
        from ..ablation.images import model_class_names

        names = model_class_names(loaded)
        names_from = "model" if names else "output indices"
    directory = Path(out) if out is not None else None
    if directory is not None:  # refused before the work; marked (claimed) only once there is a result to write
        if is_run_layer(directory):
            raise RunDirectoryError(
                f"--out {directory} is a layer of a dissection run: give --out a folder of its own (e.g. RUN/explain)"
            )
        check_output(directory, EXPLANATION)
    dev = resolve_device(device)
    module = loaded.module.to(dev).eval()
    explained, runner = _explain_all(source, module, paths, pixels, names, top_units, batch_size, ablation_batch, dev)
    metadata = {
        "run": str(source.run.resolve()),
        "layer": source.layer,
        "model": str(source.metadata.get("model", loaded.spec)),
        "weights": loaded.weights,
        "model_fingerprint": source.metadata.get("model_fingerprint"),
        "iou_threshold": source.iou_threshold,
        "detectors": int(source.detectors.sum()),
        "units": source.view.units,
        "top_units": top_units,
        "input_size": list(source.input_size),
        "segmentation_size": list(source.seg_size),
        "class_names_from": names_from,
        "effect": "drop of the top class's probability when the unit alone is set to 0",
        "split": runner.path,
        "split_fallback_reason": runner.split.reason,
        "versions": {"netdissect": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "device": str(dev),
        "seconds": round(time.perf_counter() - began, 3),
    }
    result = ExplainResult(explained, metadata, directory)
    if directory is not None:
        claim_output(directory, EXPLANATION)
        _write(result, directory, source, report)
    return result


def _class_names(classes) -> tuple[list[str] | None, str]:
    if classes is None:
        return None, ""
    if isinstance(classes, (str, os.PathLike)):
        from ..ablation.images import read_class_file

        return read_class_file(classes), f"--classes {classes}"
    names = [str(c) for c in classes]
    if not names:
        raise OptionError("classes lists no class")
    return names, "given"


def _explain_all(
    source: RunLayer,
    module: nn.Module,
    paths: list[Path],
    pixels: list[np.ndarray],
    names: list[str] | None,
    top_units: int,
    batch_size: int,
    ablation_batch: int,
    device: torch.device,
) -> tuple[list[ImageExplanation], LayerRunner]:
    """Every image's explanation, a batch of images per forward pass."""

    def batch(start: int, stop: int) -> torch.Tensor:
        return torch.stack([source.preprocess.normalize(p) for p in pixels[start:stop]]).to(device)

    first = batch(0, 2)
    runner = LayerRunner(module, source.layer, first, source.tokens, source.channels_last)
    view = source.view
    thresholds = torch.from_numpy(np.asarray(view.thresholds, dtype=np.float32))
    detectors = np.flatnonzero(source.detectors)
    labels = [source.label(int(u)) for u in detectors]
    explained: list[ImageExplanation] = []
    for start in range(0, len(pixels), batch_size):
        x = batch(start, start + batch_size)
        maps, probabilities, effects = runner.run(x, ablation_batch)
        if maps.shape[1] != view.units:
            raise OptionError(
                f"layer {source.layer!r} has {maps.shape[1]} units here, {view.units} in --run {source.run}: "
                "is this the run's model and layer?"
            )
        if names is not None and len(names) != probabilities.shape[1]:
            raise OptionError(f"{len(names)} class names are given, the model has {probabilities.shape[1]} outputs")
        maps = maps.cpu()
        for b in range(x.shape[0]):
            i = start + b
            segmentation, legend, coverage = segment_by_units(
                maps[b, detectors], thresholds[detectors], labels, source.seg_size
            )
            order = np.lexsort((np.arange(view.units), -effects[b]))[: min(top_units, view.units)]
            masks = unit_masks(maps[b, order], thresholds[order], source.seg_size).numpy()
            units = [
                {**_unit_record(source, int(u), float(effects[b, u])), "area": round(float(masks[k].mean()), 6)}
                for k, u in enumerate(order)
            ]
            explained.append(
                ImageExplanation(
                    image=str(paths[i]),
                    layer=source.layer,
                    pixels=pixels[i],
                    probabilities=probabilities[b],
                    predictions=_predictions(probabilities[b], names),
                    effects=effects[b],
                    segmentation=segmentation,
                    legend=legend,
                    coverage=coverage,
                    units=units,
                    masks={int(u) + 1: masks[k] for k, u in enumerate(order)},
                )
            )
    return explained, runner


def _unit_record(source: RunLayer, u: int, effect: float) -> dict:
    """A listed unit (row ``u``): its number, label, category, IoU, detector flag and effect."""
    view = source.view
    category = int(view.category[u])
    return {
        "unit": u + 1,
        "label": source.label(u),
        "category": view.categories[category] if 0 <= category < len(view.categories) else "",
        "iou": round(float(view.score[u]), 6),
        "detector": bool(source.detectors[u]),
        "effect": effect,
    }


def _predictions(probabilities: np.ndarray, names: list[str] | None) -> list[dict]:
    """The top predictions, highest first (ties: the lower output)."""
    order = np.lexsort((np.arange(len(probabilities)), -probabilities))[:TOP_PREDICTIONS]
    return [
        {"class": names[k] if names else int(k), "output": int(k), "probability": float(probabilities[k])}
        for k in order
    ]


def _write(result: ExplainResult, directory: Path, source: RunLayer, report: bool) -> None:
    """Write the explanation into ``directory``: staged, then swapped in for the old one whole."""
    with run_lock(directory):
        finish_replacement(directory)
        staging = directory / STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        result.save(staging)
        if report:
            from ..report.explain_page import write_explain_page

            write_explain_page(staging, source.run, page_dir=directory)
        had_page = (directory / "index.html").is_file()
        swap_in_staged(directory, owned_entries(directory))
    run = source.run
    if not os.access(run, os.W_OK):  # a read-only run keeps its pages as they are
        return
    from ..report.explain_page import link_from_run

    link_from_run(run, source.layer, directory / "index.html" if report else None, had_page)
