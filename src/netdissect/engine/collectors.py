"""Pass 2's statistics as collectors: one protocol, one class per statistic.

Pass 2 (:meth:`netdissect.engine.passes.Runner.pass_counts`) reads the dataset's batches once and hands
each batch, and then each layer's maps with their masked pixels, to every :class:`Collector`
of a list (as baukit's ``Stat`` objects): :class:`CountCollector` (the IoU counts),
:class:`NullCollector` (the permutation null's counts, with ``null_samples``),
:class:`ImageValueCollector` (each unit's image-level value on every image, with ``image_values``) and
:class:`netdissect.engine.formula_collector.FormulaCollector` (the formulas' signature tables, with
``formula_length`` > 1). A collector's ``state_dict`` goes into pass 2's checkpoints and is
read back by ``load_state_dict``; ``merge`` combines the ranks' collectors under
``torch.distributed``; ``finish`` gives, per layer, the :class:`~netdissect.runs.results.LayerResult`
fields it fills. Adding a score is one collector and one result field
(``docs/development.md``, "How to add a score").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..math.tally import count_masked, count_truth, null_scores, null_shifts, shift_annotations
from .config import NULL_SEED
from .distributed import Shard


@dataclass
class Batch:
    """One batch of pass 2: its number and its annotations, on the device."""

    number: int  # the batch's number in the dataset (the same on every rank and after a resume)
    seg: torch.Tensor  # (B, layers, sh, sw) label numbers of the pixel annotation layers
    scalars: torch.Tensor  # (B, k) int64 image-level label numbers (0: padding)
    present: torch.Tensor  # (B, C) bool: category c annotated in the image
    index: torch.Tensor | None = None  # (B,) the images' dataset indices

    @property
    def images(self) -> int:
        return int(self.seg.shape[0])


@dataclass
class LayerBatch:
    """One layer's maps of a batch with their masks' pixels (computed once for every collector)."""

    name: str
    acts: torch.Tensor  # (B, U, h, w)
    thresholds: torch.Tensor  # (U,)
    masked: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (pair, ys, xs): netdissect.math.masks.batch_masked_pixels
    _pixels: tuple[torch.Tensor, ...] | None = field(default=None, repr=False)

    @property
    def pixels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pair, ys, xs, size)`` for :func:`netdissect.math.tally.count_masked` (``size``: (B, U) mask areas)."""
        if self._pixels is None:
            B, U = self.acts.shape[:2]
            pair, ys, xs = self.masked
            self._pixels = (pair, ys, xs, torch.bincount(pair, minlength=B * U).view(B, U))
        pair, ys, xs, size = self._pixels
        return pair, ys, xs, size


class Collector(Protocol):
    """A statistic accumulated over pass 2's batches."""

    name: str  # its key in pass 2's checkpoints (and ``<name>_seconds`` in the timings when slow_finish)
    slow_finish: bool  # finish() takes long (a search): pass 2 checkpoints before it and times it

    def start_batch(self, batch: Batch) -> None:
        """Take a new batch's annotations (before its layers are added)."""

    def add(self, layer: LayerBatch) -> None:
        """Count one layer's maps of the current batch."""

    def state_dict(self) -> dict:
        """Tensors, numbers and strings only (checkpoints are read back with ``weights_only``)."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` (a resumed run)."""

    def merge(self, shard: Shard) -> None:
        """Combine every rank's statistic (the same on every rank afterwards)."""

    def finish(self) -> dict[str, dict[str, Any]]:
        """Per layer, the ``LayerResult`` fields this statistic fills; a ``metadata`` entry is
        added to the layer's metadata."""
        ...


def _zeros(device: torch.device | str) -> functools.partial[torch.Tensor]:
    return functools.partial(torch.zeros, dtype=torch.int64, device=device)


class CountCollector:
    """The IoU counts of every layer: ``inter`` (U, L), ``act`` (U, C) and ``truth`` (L,).

    Args:
        units: per layer, its number of units.
        label_category: ``(L,)`` primary category per label (-1: none), on the device.
        categories: C.
        iou_mode: ``paper`` or ``lite`` (which images count for a category, see :mod:`netdissect.math.tally`).
    """

    name = "counts"
    slow_finish = False

    def __init__(self, units: dict[str, int], label_category: torch.Tensor, categories: int, iou_mode: str) -> None:
        zeros = _zeros(label_category.device)
        L = len(label_category)
        self.label_category, self.iou_mode = label_category, iou_mode
        self.inter = {name: zeros(u, L) for name, u in units.items()}
        self.act = {name: zeros(u, categories) for name, u in units.items()}
        self.truth = zeros(L)
        self._batch: Batch | None = None

    def start_batch(self, batch: Batch) -> None:
        self.truth += count_truth(batch.seg, batch.scalars, self.label_category)
        self._batch = batch

    def add(self, layer: LayerBatch) -> None:
        b = self._batch
        assert b is not None, "start_batch first"
        i, c = count_masked(layer.pixels, b.seg, b.scalars, b.present, self.label_category, self.iou_mode)
        self.inter[layer.name] += i
        self.act[layer.name] += c

    def state_dict(self) -> dict:
        return {"inter": self.inter, "act": self.act, "truth": self.truth}

    def load_state_dict(self, state: dict) -> None:
        device = self.truth.device
        self.inter = {name: t.to(device) for name, t in state["inter"].items()}
        self.act = {name: t.to(device) for name, t in state["act"].items()}
        self.truth = state["truth"].to(device)

    def merge(self, shard: Shard) -> None:
        for name in self.inter:
            shard.sum_(self.inter[name])
            shard.sum_(self.act[name])
        shard.sum_(self.truth)

    def finish(self) -> dict[str, dict[str, Any]]:
        truth = self.truth.cpu().numpy()
        return {
            name: {"inter": self.inter[name].cpu().numpy(), "act": self.act[name].cpu().numpy(), "truth": truth}
            for name in self.inter
        }


class NullCollector:
    """The permutation null's counts of every layer: ``(K, U, L)`` and ``(K, U, C)``.

    Null sample k of a batch pairs the masks of image b with the annotations of image
    ``(b + shift_k) % B``, the shifts a function of the batch's number only (the same on every
    rank and after a resume, see :func:`netdissect.math.tally.null_shifts`); a batch of one image
    keeps its own annotations. ``finish`` gives each layer's ``null_score`` ``(K, U)``.
    """

    name = "null"
    slow_finish = False

    def __init__(
        self, units: dict[str, int], label_category: torch.Tensor, categories: int, iou_mode: str, samples: int
    ) -> None:
        zeros = _zeros(label_category.device)
        L, K = len(label_category), samples
        self.label_category, self.iou_mode, self.samples = label_category, iou_mode, samples
        self.inter = {name: zeros(K, u, L) for name, u in units.items()}
        self.act = {name: zeros(K, u, categories) for name, u in units.items()}
        self.truth = zeros(L)  # a permutation leaves it as it is: the IoU counts' truth
        self.unshuffled = zeros(())  # images in batches of one, which the null cannot shift
        self._batch: Batch | None = None
        self._shifts: torch.Tensor | None = None

    def start_batch(self, batch: Batch) -> None:
        self.truth += count_truth(batch.seg, batch.scalars, self.label_category)
        self._batch = batch
        # the same permutation for every layer, a function of the batch (not of the rank or resume)
        generator = torch.Generator().manual_seed(NULL_SEED + batch.number)
        self._shifts = null_shifts(batch.images, self.samples, generator)
        if self._shifts is None:
            self.unshuffled += batch.images

    def add(self, layer: LayerBatch) -> None:
        b = self._batch
        assert b is not None, "start_batch first"
        if self._shifts is None:  # a batch of one image keeps its own annotations
            i, c = count_masked(layer.pixels, b.seg, b.scalars, b.present, self.label_category, self.iou_mode)
            self.inter[layer.name].add_(i)
            self.act[layer.name].add_(c)
            return
        null = [
            count_masked(
                layer.pixels,
                *shift_annotations(b.seg, b.scalars, b.present, int(s)),
                self.label_category,
                self.iou_mode,
            )
            for s in self._shifts.tolist()
        ]
        self.inter[layer.name].add_(torch.stack([i for i, _ in null]))
        self.act[layer.name].add_(torch.stack([c for _, c in null]))

    def state_dict(self) -> dict:
        return {"inter": self.inter, "act": self.act, "truth": self.truth, "unshuffled": self.unshuffled}

    def load_state_dict(self, state: dict) -> None:
        device = self.truth.device
        self.inter = {name: t.to(device) for name, t in state["inter"].items()}
        self.act = {name: t.to(device) for name, t in state["act"].items()}
        self.truth, self.unshuffled = state["truth"].to(device), state["unshuffled"].to(device)

    def merge(self, shard: Shard) -> None:
        for name in self.inter:
            shard.sum_(self.inter[name])
            shard.sum_(self.act[name])
        shard.sum_(self.truth)
        shard.sum_(self.unshuffled)

    def finish(self) -> dict[str, dict[str, Any]]:
        info = {"null": {"samples": self.samples, "unshuffled_images": int(self.unshuffled)}}
        label_category = self.label_category.cpu()
        return {
            name: {
                "null_score": null_scores(self.inter[name], self.act[name], self.truth, label_category).cpu().numpy(),
                "metadata": info,
            }
            for name in self.inter
        }


class ImageValueCollector:
    """Each unit's image-level value on every image of the dataset: the spatial mean of its map,
    as ``describe`` computes it, so that a dissected layer can be described without running the
    model again. ``finish`` gives each layer's ``image_values`` ``(N, U)`` float32.

    Rows are filled by the images' dataset indices; each rank fills its own images and the
    others' rows stay zero, so ``merge`` is a sum (on ``device``, which the process group
    reduces on). Memory: ``4 * N * U`` bytes per layer, kept on the CPU.
    """

    name = "image_values"
    slow_finish = False

    def __init__(self, units: dict[str, int], images: int, device: torch.device | str = "cpu") -> None:
        self.values = {name: torch.zeros(images, u) for name, u in units.items()}
        self.device = device
        self._index: torch.Tensor | None = None

    def start_batch(self, batch: Batch) -> None:
        assert batch.index is not None, "image values need the batch's dataset indices"
        self._index = batch.index.cpu()

    def add(self, layer: LayerBatch) -> None:
        assert self._index is not None, "start_batch first"
        self.values[layer.name][self._index] = layer.acts.float().mean(dim=(2, 3)).cpu()

    def state_dict(self) -> dict:
        return {"values": self.values}

    def load_state_dict(self, state: dict) -> None:
        self.values = {name: t.cpu() for name, t in state["values"].items()}

    def merge(self, shard: Shard) -> None:
        for name, values in self.values.items():
            self.values[name] = shard.sum_(values.to(self.device)).cpu()

    def finish(self) -> dict[str, dict[str, Any]]:
        return {name: {"image_values": values.numpy()} for name, values in self.values.items()}
