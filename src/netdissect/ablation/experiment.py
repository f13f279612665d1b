"""``ablate()``: the ablation experiment, from a model and labelled images to an :class:`AblationResult`.

Stages (each a pass over the images, checkpointed in ``out`` so a killed run continues):
``mean`` (only with ``method="mean"``: each unit's mean value), ``single`` (every unit alone;
with ``estimate`` the first-order estimate instead), ``group`` (each class's top units together).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .._version import __version__
from ..capture.hooks import resolve_layers
from ..devices import resolve_device
from ..errors import ModelError, OptionError, RunDirectoryError, first_line
from ..files import atomic_write_json
from ..models.base import LoadedModel, model_fingerprint
from ..models.preprocess import Preprocess
from ..runs.checkpoints import Checkpointer, checkpoint_key
from ..runs.directory import finish_replacement, run_lock, swap_in_staged
from ..runs.layout import LOCK_FILE, REPLACED_DIR, STAGING_DIR, is_run_layer
from ..runs.outputs import ABLATION, MANIFEST, claim_output
from . import compute
from .images import ImageDataset, LabelledImages, collate_images, labelled_images, model_class_names, read_class_file
from .result import JSON_FILE, AblationResult, rank_units
from .split import split_model

RUN_FILE = "ablation-run.json"
CHECKPOINT = Path("checkpoints") / "ablation.ckpt"
METHODS = ("zero", "mean")


def ablate(
    model: nn.Module | LoadedModel | str,
    images: str | os.PathLike | LabelledImages,
    layer: str,
    out: str | os.PathLike | None = None,
    *,
    classes: Sequence[str] | str | os.PathLike | None = None,
    units: str | Sequence[int] | None = None,
    method: str = "zero",
    top_k: int = 20,
    estimate: bool = False,
    dissection: str | os.PathLike | None = None,
    batch_size: int = 32,
    workers: int = 0,
    device: str | None = None,
    ablation_batch: int = 512,
    checkpoint_every: float = 60.0,
    overwrite: bool = False,
    progress: bool = True,
    report: bool = True,
    split: str = "auto",
    size: int | None = None,
) -> AblationResult:
    """Measure how much each unit of ``layer`` matters to each output class of a classifier.

    Args:
        model: an ``nn.Module`` (ImageNet preprocessing), a :class:`LoadedModel` or a model SPEC.
        images: an ImageFolder directory (one folder per class), a Broden dataset (its scene
            labels are the classes), or :class:`LabelledImages`.
        layer: the dotted name of the layer whose output channels are the units.
        out: directory for ``ablation.npz``, ``ablation.json``, ``index.html`` and the PNG plots
            (optional); a killed run continues there, a different one is refused unless ``overwrite``.
        classes: the model's class names in output order (a list or a file, one per line);
            default: the model source's, else integer folder names.
        units: ``"all"``, ``"1,5,9-20"`` or a list of 1-based unit numbers.
        method: ``"zero"`` (set the unit to 0) or ``"mean"`` (to its mean over the images and positions).
        top_k: the largest group of top units removed or kept per class.
        estimate: rank units by the first-order estimate (activation x gradient of the true
            class's log-probability) instead of exact single-unit ablation.
        dissection: a finished dissection run of the same model and layer, joined on the page.
        ablation_batch: at most this many images (ablated copies x batch) per forward pass.
        split: ``"auto"`` (torch.fx split, hook fallback) or ``"hook"``.
        size: use only this many images, taken in turn from each class (Broden: its first rows).
    """
    _check_options(method, top_k, batch_size, ablation_batch, split)
    loaded = _as_loaded(model)
    module = loaded.module.eval()
    resolve_layers(module, [layer])  # a wrong layer fails before anything is written
    class_names, names_source = _class_names(classes, loaded)
    if not isinstance(images, LabelledImages):
        images = labelled_images(images, class_names, size=size)
    dev = resolve_device(device)
    module.to(dev)
    data = ImageDataset(images, loaded.preprocess)
    options = {
        "layer": layer,
        "method": method,
        "units": units if isinstance(units, str) or units is None else [int(u) for u in units],
        "top_k": top_k,
        "estimate": estimate,
        "batch_size": batch_size,
    }
    fingerprint = model_fingerprint(module)
    key_parts = {
        "model": loaded.spec,
        "fingerprint": fingerprint,
        "images": images.identity(),
        "classes": images.class_outputs,
        "options": options,
        "preprocess": repr(loaded.preprocess),
    }
    runner = _Experiment(module, loaded, images, data, dev, options, workers, ablation_batch, progress, split)
    runner.class_names = class_names
    if dissection is not None:  # a wrong --dissection fails before the work, not after it
        from .join import check_dissection

        check_dissection(dissection, layer, fingerprint)
    directory = Path(out) if out is not None else None
    with _run_directory(directory, key_parts, overwrite) as work:
        checkpointer = Checkpointer(work / CHECKPOINT if work else None, checkpoint_key(key_parts), checkpoint_every)
        result = runner.run(checkpointer)
        result.metadata.update(
            {
                "model": loaded.spec,
                "weights": loaded.weights,
                "model_fingerprint": key_parts["fingerprint"],
                "class_names_from": names_source,
                "images": images.identity(),
                "versions": {
                    "netdissect": __version__,
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                },
                "device": str(dev),
            }
        )
        if dissection is not None:
            from .join import join_dissection

            join_dissection(result, dissection, layer)
        if work is not None and directory is not None:
            _save(result, work, directory, checkpointer, report, dissection)
    return result


def _check_options(method: str, top_k: int, batch_size: int, ablation_batch: int, split: str) -> None:
    if method not in METHODS:
        raise OptionError(f"--method must be zero or mean, got {method!r}")
    for name, value in (("top-k", top_k), ("batch-size", batch_size), ("ablation-batch", ablation_batch)):
        if value < 1:
            raise OptionError(f"--{name} must be >= 1, got {value}")
    if split not in ("auto", "hook"):
        raise OptionError(f"split must be auto or hook, got {split!r}")


def _as_loaded(model: nn.Module | LoadedModel | str) -> LoadedModel:
    """A model SPEC loaded, a bare module with ImageNet preprocessing; a LoadedModel as it is."""
    if isinstance(model, str):
        from ..models.loading import load_model

        model = load_model(model)
    return model if isinstance(model, LoadedModel) else LoadedModel(model, Preprocess(), type(model).__name__)


def _class_names(
    classes: Sequence[str] | str | os.PathLike | None, loaded: LoadedModel
) -> tuple[list[str] | None, str]:
    """The model's class names in output order (None: the folders' names) and where they came from."""
    if isinstance(classes, (str, os.PathLike)):
        return read_class_file(classes), f"--classes {classes}"
    if classes is not None:
        return [str(c) for c in classes], "given"
    class_names = model_class_names(loaded)
    return class_names, "model" if class_names else "folders"


def _save(
    result: AblationResult,
    work: Path,
    directory: Path,
    checkpointer: Checkpointer,
    report: bool,
    dissection: str | os.PathLike | None,
) -> None:
    """Write the finished ablation into ``work``, swap it in over an old one, write or drop its page."""
    result.save(work)
    checkpointer.clear()
    if work != directory:  # an overwrite: the finished new ablation replaces the old one now
        swap_in_staged(directory, _entries(directory))
    from ..report.ablation_page import remove_page, write_ablation_page

    if report:
        write_ablation_page(result, directory, dissection)
    else:  # a page left from before would describe other results or link a replaced run
        remove_page(directory)


def _entries(directory: Path) -> list[str]:
    """The entries of an ablation's folder that an overwrite replaces (all but the lock and staging)."""
    keep = {LOCK_FILE, STAGING_DIR, REPLACED_DIR, MANIFEST}
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@contextlib.contextmanager
def _run_directory(directory: Path | None, key_parts: dict, overwrite: bool) -> Iterator[Path | None]:
    """Lock ``directory`` and yield where this ablation writes: the folder, or its staging folder.

    A different finished ablation is refused without ``overwrite``; with it, the new one is
    written into ``<out>/.overwrite`` and replaces the old one only once it has finished, so a
    failed or interrupted overwrite leaves the old results as they were (the same command
    resumes the staged one).
    """
    if directory is None:
        yield None
        return
    if is_run_layer(directory):
        raise RunDirectoryError(
            f"{directory} is a layer of a dissection run: give --out a directory of its own (e.g. RUN/ablation)"
        )
    claim_output(directory, ABLATION)
    with run_lock(directory):
        finish_replacement(directory)
        key = json.loads(json.dumps(key_parts, default=str))
        work = directory
        if _key(directory) not in (None, key):
            if (directory / JSON_FILE).exists():
                if not overwrite:
                    raise RunDirectoryError(
                        f"{directory} holds a different ablation (other model, images or options); "
                        "choose another --out or pass --overwrite"
                    )
                work = directory / STAGING_DIR
                if _key(work) != key:  # nothing staged, or a staged ablation of other options
                    shutil.rmtree(work, ignore_errors=True)
            else:  # an unfinished different ablation: nothing finished to keep
                from ..report.ablation_page import clear_outputs

                clear_outputs(directory)
                shutil.rmtree(directory / CHECKPOINT.parent, ignore_errors=True)
        work.mkdir(exist_ok=True)
        atomic_write_json(work / RUN_FILE, {"key": key})
        yield work


def _key(directory: Path) -> dict | None:
    """The key recorded in ``directory``'s ablation-run.json, or None."""
    try:
        return json.loads((directory / RUN_FILE).read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


class _Experiment:
    """The passes over the images, with their checkpointed accumulators."""

    def __init__(
        self,
        module: nn.Module,
        loaded: LoadedModel,
        images: LabelledImages,
        data: ImageDataset,
        device: torch.device,
        options: dict,
        workers: int,
        ablation_batch: int,
        progress: bool,
        split: str,
    ) -> None:
        self.module, self.loaded, self.images, self.data = module, loaded, images, data
        self.device, self.options, self.workers = device, options, workers
        self.ablation_batch, self.progress, self.split_mode = ablation_batch, progress, split
        self.outputs = torch.tensor(images.class_outputs, dtype=torch.long)
        self.num_classes = len(images.class_names)
        self.timings: dict[str, float] = {}
        self.class_names: list[str] | None = None

    def batches(self, start: int, stage: str) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(batch number, images on the device, class positions) from batch ``start`` on."""
        size = self.options["batch_size"]
        subset = Subset(self.data, range(min(start * size, len(self.data)), len(self.data)))
        loader = DataLoader(subset, batch_size=size, num_workers=self.workers, collate_fn=collate_images)
        total = -(-len(self.data) // size)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=start, desc=f"ablation {stage}", unit="batch")
        try:
            for i, (x, targets, _) in enumerate(loader, start):
                yield i, x.to(self.device), targets
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def prefix(self, x: torch.Tensor):
        try:
            with torch.no_grad():
                return self.split.prefix(x)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the model failed on input of shape {tuple(x.shape)}: {first_line(exc)}") from exc

    def setup(self) -> None:
        x, _, _ = collate_images([self.data[i] for i in range(min(2, len(self.data)))])
        x = x.to(self.device)
        try:
            self.split = split_model(self.module, self.options["layer"], x, use_fx=self.split_mode == "auto")
            with torch.no_grad():
                state, out = self.split.prefix(x)
                width_out = self.split.suffix(state, out, 1).shape[1]
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the model failed on input of shape {tuple(x.shape)}: {first_line(exc)}") from exc
        self.width = out.shape[1]
        if self.class_names is not None and len(self.class_names) != width_out:
            raise OptionError(f"{len(self.class_names)} class names are given, the model has {width_out} outputs")
        if max(self.images.class_outputs) >= width_out:
            raise OptionError(f"class index {max(self.images.class_outputs)} is beyond the model's {width_out} outputs")
        self.unit_numbers = compute.parse_units(self.options["units"], self.width)

    def run(self, checkpointer: Checkpointer) -> AblationResult:
        self.setup()
        state = checkpointer.load() or {"stage": "mean", "batch": 0, "acc": {}}
        U, C = len(self.unit_numbers), self.num_classes
        counts = self.images.counts()
        fill = torch.zeros(self.width)
        stages = ["mean"] if self.options["method"] == "mean" else []
        stages += ["single", "group"]
        done = dict(state.get("done", {}))
        for stage in stages:
            if "mean" in done:
                fill = done["mean"]["fill"]
            if stage in done:
                continue
            start = state["batch"] if state["stage"] == stage else 0
            acc = state["acc"] if state["stage"] == stage else {}
            began = time.perf_counter()
            if stage == "mean":
                sums = acc.get("sums", torch.zeros(self.width, dtype=torch.float64))
                n = int(acc.get("n", 0))
            elif stage == "single":
                keep = compute.single_unit_configs([] if self.options["estimate"] else self.unit_numbers, self.width)
            else:
                single = done["single"]
                importance, prob_drop = self._importance(single, counts)
                k = min(self.options["top_k"], U)
                rankings = [
                    [self.unit_numbers[r] for r in rank_units(importance[:, c], prob_drop[:, c])] for c in range(C)
                ]
                keep = compute.group_configs(rankings, k, self.width)
            if stage != "mean":
                correct = acc.get("correct", torch.zeros(keep.shape[0], C, dtype=torch.float64))
                prob = acc.get("prob", torch.zeros(keep.shape[0], C, dtype=torch.float64))
                est = acc.get("estimate", torch.zeros(self.width, C, dtype=torch.float64))
            for i, x, classes in self.batches(start, stage):
                split_state, out = self.prefix(x)
                if stage == "mean":
                    s, count = compute.channel_sums(out)
                    sums, n = sums + s, n + count
                    acc = {"sums": sums, "n": n}
                else:
                    args = (self.split, split_state, out, fill)
                    c, p = compute.score_configs(*args, keep, self.outputs[classes], classes, C, self.ablation_batch)
                    correct, prob = correct + c, prob + p
                    acc = {"correct": correct, "prob": prob}
                    if stage == "single" and self.options["estimate"]:
                        est = est + compute.estimate_drops(*args, self.outputs[classes], classes, C)
                        acc["estimate"] = est
                if checkpointer.due():
                    checkpointer.save({"stage": stage, "batch": i + 1, "acc": acc, "done": done})
            if stage == "mean":
                done["mean"] = {"fill": (sums / max(n, 1)).float()}
            else:
                done[stage] = {"correct": correct, "prob": prob, "estimate": est}
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - began
            state = {"stage": "", "batch": 0, "acc": {}}
            checkpointer.save({"stage": "", "batch": 0, "acc": {}, "done": done})
        return self._result(done, counts)

    def _importance(self, single: dict, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        correct, prob = single["correct"].numpy(), single["prob"].numpy()
        base_acc, base_prob = compute.per_class(correct[0], counts), compute.per_class(prob[0], counts)
        if self.options["estimate"]:
            rows = [u - 1 for u in self.unit_numbers]
            importance = compute.per_class(single["estimate"].numpy()[rows], counts)
            return importance, np.full_like(importance, np.nan)
        return base_acc - compute.per_class(correct[1:], counts), base_prob - compute.per_class(prob[1:], counts)

    def _result(self, done: dict, counts: np.ndarray) -> AblationResult:
        single, group = done["single"], done["group"]
        C = self.num_classes
        base_acc = compute.per_class(single["correct"].numpy()[0], counts)
        base_prob = compute.per_class(single["prob"].numpy()[0], counts)
        importance, prob_drop = self._importance(single, counts)
        if self.options["estimate"]:
            accuracy = np.full_like(importance, np.nan)
        else:
            accuracy = compute.per_class(single["correct"].numpy()[1:], counts)
        k = min(self.options["top_k"], len(self.unit_numbers))
        g = compute.per_class(group["correct"].numpy(), counts).reshape(2, C, k, C)
        removed = np.stack([g[0, c, :, c] for c in range(C)]) if C else np.zeros((0, k))
        kept = np.stack([g[1, c, :, c] for c in range(C)]) if C else np.zeros((0, k))
        removed_others = np.stack([compute.others_mean(g[0, c], c) for c in range(C)])
        kept_others = np.stack([compute.others_mean(g[1, c], c) for c in range(C)])
        empty = [n for n, count in zip(self.images.class_names, counts) if count == 0]
        return AblationResult(
            class_names=list(self.images.class_names),
            class_counts=counts,
            base_accuracy=base_acc,
            accuracy=accuracy,
            importance=importance,
            prob_drop=prob_drop,
            units=np.asarray(self.unit_numbers, dtype=np.int64),
            group_removed=removed,
            group_kept=kept,
            group_removed_others=removed_others,
            group_kept_others=kept_others,
            base_prob=base_prob,
            metadata={
                "layer": self.options["layer"],
                "layer_units": self.width,
                "method": self.options["method"],
                "estimate": self.options["estimate"],
                "top_k": k,
                "options": self.options,
                "split": self.split.path,
                "split_fallback_reason": self.split.reason,
                "classes_without_images": empty,
                "timings": {k: round(v, 3) for k, v in self.timings.items()},
            },
        )
