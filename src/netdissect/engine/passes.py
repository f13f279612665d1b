"""The two streaming passes of a dissection over (one rank's share of) a dataset.

Pass 1 runs the model and collects, per unit, the statistics for its threshold (exact top-k
values while they fit ``threshold_memory``, otherwise a quantile sketch) and its top images.
Pass 2 feeds each batch to a list of collectors (:mod:`netdissect.engine.collectors`): the IoU
counts (:mod:`netdissect.math.tally`), the permutation null's, the formulas' signature tables. When the requested layers'
activations for the whole dataset fit ``cache_memory``, pass 1 keeps them and pass 2 reads only
the segmentations instead of running the model again. See ``docs/design/architecture.md``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..capture.hooks import LayerCapture, as_feature_map
from ..data.broden import BrodenDataset, collate_broden
from ..errors import ActivationError
from ..math.masks import batch_masked_pixels
from ..math.rotation import haar_rotation, match_units, rotate_units, rotation_power
from ..math.stats import QuantileSketch, TopImages, TopKQuantile, topk_needed
from ..math.tally import threshold_level
from ..runs.checkpoints import Checkpointer
from .collectors import Batch, Collector, CountCollector, ImageValueCollector, LayerBatch, NullCollector
from .config import DissectConfig
from .distributed import Shard
from .formula_collector import FormulaCollector

TORCH_MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass
class LayerStats:
    """Statistics of one layer: pass 1's quantiles and top images, pass 2's maps of those images."""

    quantile: TopKQuantile | QuantileSketch | None
    top: TopImages
    method: str
    map_shape: tuple[int, int, int]  # (units, h, w) of the layer's maps
    thresholds: torch.Tensor | None = None  # (U,) set at the end of pass 1
    top_maps: torch.Tensor | None = None  # (U, m, h, w) the maps of each unit's top images

    def pass1_quantile(self) -> TopKQuantile | QuantileSketch:
        """Pass 1's quantile statistics (dropped once the thresholds are known)."""
        if self.quantile is None:
            raise RuntimeError("pass 1's quantile statistics were dropped with the thresholds")
        return self.quantile

    def unit_thresholds(self) -> torch.Tensor:
        """The per-unit thresholds (known once pass 1 has finished)."""
        if self.thresholds is None:
            raise RuntimeError("the thresholds are known only once pass 1 has finished")
        return self.thresholds

    def keep_top_maps(self, acts: torch.Tensor, index: torch.Tensor) -> None:
        """Copy, from a batch ``(B, U, h, w)`` with dataset ``index`` (B,), each unit's top-image maps."""
        b, u, rank = (self.top.indices.unsqueeze(0) == index.view(-1, 1, 1)).nonzero(as_tuple=True)
        self.empty_top_maps(acts.device)[u, rank] = acts[b, u]

    def empty_top_maps(self, device: torch.device) -> torch.Tensor:
        """The top-image maps, allocated (zeros) on first use."""
        if self.top_maps is None:
            units, h, w = self.map_shape
            self.top_maps = torch.zeros((units, self.top.indices.shape[1], h, w), device=device)
        return self.top_maps

    def merge(self, other: LayerStats) -> None:
        """Fold in pass-1 statistics of another part of the data."""
        mine, theirs = self.pass1_quantile(), other.pass1_quantile()
        # one branch per type: each narrows both operands (SIM114's merged condition would not)
        if isinstance(mine, TopKQuantile) and isinstance(theirs, TopKQuantile):  # noqa: SIM114
            mine.merge(theirs)
        elif isinstance(mine, QuantileSketch) and isinstance(theirs, QuantileSketch):
            mine.merge(theirs)
        else:
            raise RuntimeError(f"cannot merge {self.method} with {other.method} threshold statistics")
        self.top.merge(other.top)

    def state_dict(self, quantile: bool = True) -> dict:
        """Tensors and numbers only (checkpoints load them with ``weights_only``)."""
        state = {"method": self.method, "map_shape": list(self.map_shape), "top": self.top.state_dict()}
        if quantile:
            state["quantile"] = self.pass1_quantile().state_dict()
        for name in ("thresholds", "top_maps"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).cpu()
        return state

    @classmethod
    def from_state(cls, state: dict, top_images: int, device: torch.device) -> LayerStats:
        units = state["map_shape"][0]
        quantile: TopKQuantile | QuantileSketch | None = None
        if "quantile" in state:
            q = state["quantile"]
            quantile = (
                TopKQuantile(units, q["k"], device)
                if state["method"] == "exact"
                else QuantileSketch(units, device=device)
            )
            quantile.load_state_dict(q)
        top = TopImages(units, top_images, device)
        top.load_state_dict(state["top"])
        stats = cls(quantile, top, state["method"], tuple(state["map_shape"]))
        for name in ("thresholds", "top_maps"):
            if name in state:
                setattr(stats, name, state[name].to(device))
        return stats


class Runner:
    """Runs the two passes for a set of layers of one model on (this rank's share of) one dataset.

    ``checkpointer`` saves the accumulators during both passes; the passes take the state it
    saved (or ``None``) and continue from the batch after the last one it covers.
    """

    def __init__(
        self,
        module: nn.Module,
        dataset: BrodenDataset,
        layers: list[str],
        device,
        config: DissectConfig,
        shard: Shard | None = None,
        checkpointer: Checkpointer | None = None,
    ):
        self.module, self.dataset, self.layers = module, dataset, layers
        self.device, self.config = device, config
        self.shard = shard or Shard()
        self.checkpointer = checkpointer or Checkpointer(None, "", 0)
        self.first, self.end = self.shard.batch_range(len(dataset), config.batch_size)
        self.level = threshold_level(config.quantile, config.iou_mode)
        self.rotations: dict[str, torch.Tensor] = {}  # per layer, when dissecting a rotated basis
        self.cache: list[dict[str, torch.Tensor]] | None = None

    @contextlib.contextmanager
    def _batches(self, dataset: BrodenDataset, start: int, desc: str) -> Iterator[Iterator[tuple[int, dict]]]:
        """``(batch number, batch)`` from batch ``start`` to the end of this rank's share, with a
        progress bar; worker processes end even on error."""
        bs = self.config.batch_size
        items = range(start * bs, min(self.end * bs, len(dataset)))
        if len(items) == 0:
            yield iter(())
            return
        loader = DataLoader(
            Subset(dataset, items),
            batch_size=bs,
            shuffle=False,
            num_workers=self.config.workers,
            collate_fn=collate_broden,
            pin_memory=self.device.type == "cuda",
        )
        iterator = iter(loader)
        try:
            with tqdm(
                iterator,
                desc=desc,
                initial=start - self.first,
                total=self.end - self.first,
                unit="batch",
                disable=not self.config.progress or not self.shard.is_main,
                leave=False,
            ) as bar:
                yield zip(itertools.count(start), bar)
        finally:
            # an exception's traceback keeps the iterator alive; stop its workers now, not at GC
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def _activations(self, capture: LayerCapture, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.to(self.device, non_blocking=True).contiguous(
            memory_format=TORCH_MEMORY_FORMATS[self.config.memory_format]
        )
        half = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        with torch.autocast(self.device.type, dtype=half, enabled=self.config.amp):
            outputs = capture(images)
        hw, batch = (images.shape[-2], images.shape[-1]), images.shape[0]
        tokens, channels_last = self.config.tokens, self.config.channels_last
        acts = {
            name: as_feature_map(name, outputs[name], tokens, channels_last, hw, batch).float() for name in self.layers
        }
        if self.config.rotate is not None and self.config.rotation_power > 0:
            for name, a in acts.items():
                if name not in self.rotations:
                    rotation = haar_rotation(a.shape[1], self.config.rotate)
                    matrix = rotation_power(rotation, self.config.rotation_power)
                    if self.config.rotation_match:
                        matrix = matrix[match_units(matrix)]
                    self.rotations[name] = matrix.float()
                acts[name] = rotate_units(a, self.rotations[name])
        return acts

    def _maxima(self, name: str, acts: torch.Tensor) -> torch.Tensor:
        """Per (image, unit) maxima; checks the layer for NaN/Inf on the way (they reach max or min)."""
        maxima = acts.amax(dim=(2, 3))
        bad = ~torch.isfinite(maxima) | ~torch.isfinite(acts.amin(dim=(2, 3)))
        if bad.any():
            raise ActivationError(f"layer {name!r} produced NaN or Inf activations in {int(bad.any(0).sum())} unit(s)")
        return maxima

    def _restore(self, states: dict) -> dict[str, LayerStats]:
        return {name: LayerStats.from_state(s, self.config.top_images, self.device) for name, s in states.items()}

    def pass_thresholds(self, saved: dict | None = None) -> dict[str, LayerStats]:
        """Pass 1: per-unit quantile statistics and top images, merged over ranks; thresholds at the end."""
        if saved is not None and saved["pass"] == 2:  # pass 1 finished before the checkpoint
            return self._restore(saved["stats"])
        start, stats = self.first, {}
        if saved is not None:
            start, stats = saved["next_batch"], self._restore(saved["stats"])
        data = self.dataset.with_options(load_images=True, load_segmentations=False)
        with (
            LayerCapture(self.module, self.layers) as capture,
            self._batches(data, start, "pass 1/2 thresholds") as batches,
        ):
            for number, batch in batches:
                acts = self._activations(capture, batch["image"])
                if not stats:
                    stats = self._start(acts, len(data))
                for name, a in acts.items():
                    maxima = self._maxima(name, a)
                    quantile = stats[name].pass1_quantile()
                    if isinstance(quantile, TopKQuantile):
                        quantile.add_maps(a, maxima)
                    else:
                        quantile.add(a.transpose(0, 1).reshape(a.shape[1], -1))
                    stats[name].top.add(maxima, batch["index"])
                if self.cache is not None:
                    self.cache.append({name: a.cpu() for name, a in acts.items()})
                if self.checkpointer.due():
                    state = {name: s.state_dict() for name, s in stats.items()}
                    self.checkpointer.save({"pass": 1, "next_batch": number + 1, "stats": state})
        stats = self._merge(stats)
        for s in stats.values():
            s.thresholds = s.pass1_quantile().quantile(self.level)
            s.quantile = None  # pass 2 needs only the thresholds
        if self.checkpointer.path is not None:
            state = {name: s.state_dict(quantile=False) for name, s in stats.items()}
            self.checkpointer.save({"pass": 2, "next_batch": self.first, "stats": state})
        return stats

    def _merge(self, stats: dict[str, LayerStats]) -> dict[str, LayerStats]:
        """Every rank's pass-1 statistics merged in rank order (the same on every rank)."""
        if self.shard.world == 1:
            return stats
        merged: dict[str, LayerStats] = {}
        for states in self.shard.gather({name: s.state_dict() for name, s in stats.items()}):
            for name, part in self._restore(states).items():
                if name in merged:
                    merged[name].merge(part)
                else:
                    merged[name] = part
        return merged

    def _start(self, acts: dict[str, torch.Tensor], n_images: int) -> dict[str, LayerStats]:
        stats = {}
        for name, a in acts.items():
            units, h, w = a.shape[1:]
            quantile: TopKQuantile | QuantileSketch
            k = topk_needed(n_images * h * w, self.level)
            if TopKQuantile.memory_bytes(units, k) <= self.config.threshold_memory:
                quantile, method = TopKQuantile(units, k, self.device), "exact"
            else:
                quantile, method = QuantileSketch(units, device=self.device), "sketch"
            top = TopImages(units, self.config.top_images, self.device)
            stats[name] = LayerStats(quantile, top, method, (units, h, w))
        per_image = sum(a[0].numel() * 4 for a in acts.values())
        shard_images = min(self.end * self.config.batch_size, len(self.dataset)) - self.first * self.config.batch_size
        if per_image * shard_images <= self.config.cache_memory:
            self.cache = []
        return stats

    def collectors(self, stats: dict[str, LayerStats]) -> list[Collector]:
        """Pass 2's statistics (:mod:`netdissect.engine.collectors`): the IoU counts, and the permutation
        null's counts, the units' image-level values and the formulas' signature tables when the
        options ask for them."""
        meta, config = self.dataset.meta, self.config
        units = {name: s.map_shape[0] for name, s in stats.items()}
        label_category = torch.from_numpy(meta.label_category)
        on_device, C = label_category.to(self.device), len(meta.categories)
        collectors: list[Collector] = [CountCollector(units, on_device, C, config.iou_mode)]
        if config.null_samples:
            collectors.append(NullCollector(units, on_device, C, config.iou_mode, config.null_samples))
        if config.image_values:
            collectors.append(ImageValueCollector(units, len(self.dataset), self.device))
        if config.formula_length > 1:
            collectors.append(
                FormulaCollector(
                    units,
                    label_category,
                    config.formula_length,
                    config.beam,
                    config.formula_ops,
                    self.device,
                    config.chunk_pixels,
                )
            )
        return collectors

    def pass_counts(self, stats: dict[str, LayerStats], saved: dict | None = None) -> list[Collector]:
        """Pass 2: every collector of :meth:`collectors` fed each batch (from cached activations or a
        second forward pass), merged over ranks; each layer's top-image maps kept in ``stats``."""
        collectors = self.collectors(stats)
        start = self.first
        if saved is not None and saved["pass"] == 2 and saved["next_batch"] > self.first and "collectors" in saved:
            start = saved["next_batch"]
            for collector in collectors:
                collector.load_state_dict(saved["collectors"][collector.name])
            self.cache = None  # the cache held pass 1's batches of a process that is gone
        with contextlib.closing(self._pass2_batches(start)) as batches:
            for number, batch, acts in batches:
                self._count_batch(collectors, stats, number, batch, acts)
                if self.checkpointer.due():
                    self.checkpointer.save(self._pass2_state(number + 1, stats, collectors))
        slow = any(collector.slow_finish for collector in collectors)
        if slow and self.checkpointer.path is not None and start < self.end:
            # what follows (the formula search) can take a while: a killed run restarts it from here
            self.checkpointer.save(self._pass2_state(self.end, stats, collectors))
        # each top image belongs to one rank, which filled its maps; the others hold zeros there
        for s in stats.values():
            self.shard.sum_(s.empty_top_maps(self.device))
        for collector in collectors:
            collector.merge(self.shard)
        return collectors

    def _count_batch(
        self, collectors: list[Collector], stats: dict[str, LayerStats], number: int, batch: dict, acts: dict
    ) -> None:
        """Hand one batch, then each layer's maps and masked pixels, to every collector."""
        seg = batch["seg"].to(self.device, non_blocking=True)
        scalars = batch["scalars"].to(self.device, torch.int64)
        present = batch["present"].to(self.device)
        index = batch["index"].to(self.device)
        for collector in collectors:
            collector.start_batch(Batch(number, seg, scalars, present, index))
        for name, a in acts.items():
            a = a.to(self.device)
            stats[name].keep_top_maps(a, index)
            thresholds = stats[name].unit_thresholds()
            # the masked pixels, once for every collector
            masked = batch_masked_pixels(a, thresholds, (seg.shape[-2], seg.shape[-1]), self.config.chunk_pixels)
            layer = LayerBatch(name, a, thresholds, masked)
            for collector in collectors:
                collector.add(layer)

    def _pass2_state(self, next_batch: int, stats: dict[str, LayerStats], collectors: list[Collector]) -> dict:
        """Pass 2's accumulators for a checkpoint (continuing at batch ``next_batch``)."""
        return {
            "pass": 2,
            "next_batch": next_batch,
            "stats": {name: s.state_dict(quantile=False) for name, s in stats.items()},
            "collectors": {collector.name: collector.state_dict() for collector in collectors},
        }

    def _pass2_batches(self, start: int) -> Generator[tuple[int, dict, dict[str, torch.Tensor]], None, None]:
        if self.cache is not None:
            data = self.dataset.with_options(load_images=False, load_segmentations=True)
            with self._batches(data, start, "pass 2/2 counts (cached)") as batches:
                for (number, batch), acts in zip(batches, self.cache):
                    yield number, batch, acts
            self.cache = None
            return
        data = self.dataset.with_options(load_images=True, load_segmentations=True)
        with (
            LayerCapture(self.module, self.layers) as capture,
            self._batches(data, start, "pass 2/2 counts") as batches,
        ):
            for number, batch in batches:
                yield number, batch, self._activations(capture, batch["image"])
