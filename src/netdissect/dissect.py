"""Orchestration of a dissection: two streaming passes over the data, then per-layer results.

Pass 1 runs the model and collects, per unit, the statistics for its threshold (exact top-k
values while they fit ``threshold_memory``, otherwise a quantile sketch) and its top images.
Pass 2 counts mask/label overlaps (:func:`netdissect.tally.count_batch`). When the requested
layers' activations for the whole dataset fit ``cache_memory``, pass 1 keeps them and pass 2
reads only the segmentations instead of running the model again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from . import __version__
from .data.broden import BrodenDataset, collate_broden
from .distributed import Shard, join
from .errors import ActivationError, ModelError, OptionError, RunDirectoryError
from .hooks import LayerCapture, as_feature_map, first_line, resolve_layers
from .models.loading import LoadedModel, load_model, model_fingerprint
from .models.preprocess import Preprocess
from .resume import CHECKPOINT_DIR, Checkpointer, checkpoint_key
from .rundir import RUN_FILE, run_lock, set_state
from .results import UNITS_FILE, DissectionResult, LayerResult, atomic_write_json, layer_dirname
from .stats import QuantileSketch, TopImages, TopKQuantile, topk_needed
from .tally import IOU_MODES, Counts, count_masks_null, count_truth, null_scores, null_shifts, threshold_level
from .rotation import haar_rotation, match_units, rotate_units, rotation_power
from .tokens import parse_tokens

MAX_NULL_SAMPLES = 100  # null counts take 8 * K * units * labels bytes per layer
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
NULL_SEED = 20170721  # the null's shifts are reproducible: a fixed seed, batches in dataset order


@dataclass
class DissectConfig:
    """Options of a dissection (the CLI's flags).

    Attributes:
        quantile: top fraction of activations that defines each unit's mask (0.005: top 0.5 %).
        iou_threshold: IoU at which a unit counts as a detector.
        iou_mode: ``"paper"`` or ``"lite"`` (NetDissect-Lite's counting and threshold level).
        batch_size: images per forward pass.
        workers: DataLoader worker processes decoding images and PNGs (0: in the main process).
        device: ``cpu``, ``cuda`` or ``cuda:N``; default CUDA when available.
        top_images: images kept per unit, by per-image maximum activation.
        threshold_memory: bytes allowed for exact thresholds per layer; beyond, a sketch
            with rank error <= 1e-4 is used.
        cache_memory: bytes of activations kept from pass 1 for pass 2; beyond, pass 2
            runs the model again.
        chunk_pixels: upsampled values evaluated at once while counting (memory bound).
        progress: show tqdm progress bars.
        overwrite: replace a different run found in the output directory.
        tokens: how (B, N, C) token outputs become maps: ``"auto"`` (drop the leading
            class/register tokens found from the count and the input's aspect ratio), a
            number of leading tokens to drop, or ``"off"`` (refuse them); see
            :mod:`netdissect.tokens`.
        channels_last: read 4-D layer outputs as (B, H, W, C) (Swin stages).
        rotate: dissect each layer in a random rotation of its unit basis (the seed of a
            Haar-random rotation R; see :mod:`netdissect.rotation`), or ``None``.
        rotation_power: P in [0, 1]: the rotation used is R**P (0: identity, 1: R).
        rotation_match: number each rotated direction like the original unit it is closest to.
        null_samples: K samples of a permutation null for each unit's score (0: none). In
            pass 2, sample k pairs each image's masks with the annotations of another image of
            the same batch (a seeded random cyclic shift per batch), giving each unit's
            ``p_value``, ``z_score``, ``null_mean`` and ``null_std``. Costs about K times the
            counting work of pass 2 and ``8 * K * units * labels`` bytes per layer while
            counting; at most :data:`MAX_NULL_SAMPLES`. Batches of one image cannot be
            shifted: their images keep their own annotations in every sample.
        memory_format: ``"contiguous"`` or ``"channels_last"``: the model's and the input's
            memory layout in the forward pass. ``channels_last`` is often faster (CUDA, and CPU
            with oneDNN) but changes the activations in their last bits, so results can differ
            from a contiguous run by a pixel here and there.
        amp: run the forward pass under autocast (float16 on CUDA, bfloat16 on CPU). Faster on
            GPUs; the activations change (half precision), thresholds and counts are still
            computed exactly in float32 from them.
        checkpoint_every: seconds between checkpoints of the accumulators in the run
            directory (0: after every batch); a run started again after a crash continues
            from the last one.
    """

    quantile: float = 0.005
    iou_threshold: float = 0.04
    iou_mode: str = "paper"
    batch_size: int = 32
    workers: int = min(4, os.cpu_count() or 1)
    device: str | None = None
    top_images: int = 10
    threshold_memory: int = 1 << 30
    cache_memory: int = 2 << 30
    chunk_pixels: int = 1 << 22
    progress: bool = True
    overwrite: bool = False
    tokens: str | int = "auto"
    channels_last: bool = False
    rotate: int | None = None
    rotation_power: float = 1.0
    rotation_match: bool = False
    null_samples: int = 0
    memory_format: str = "contiguous"
    amp: bool = False
    checkpoint_every: float = 300.0

    def __post_init__(self) -> None:
        self.tokens = parse_tokens(self.tokens)
        if self.iou_mode not in IOU_MODES:
            raise OptionError(f"--iou-mode must be one of {', '.join(IOU_MODES)}, got {self.iou_mode!r}")
        if not 0 < self.quantile < 1:
            raise OptionError(f"--quantile must lie strictly between 0 and 1, got {self.quantile}")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise OptionError(f"--workers must be >= 0, got {self.workers}")
        if self.top_images < 1:
            raise OptionError(f"--top-images must be >= 1, got {self.top_images}")
        if not 0 <= self.iou_threshold <= 1:
            raise OptionError(f"--iou-threshold must lie in [0, 1], got {self.iou_threshold}")
        if not 0 <= self.rotation_power <= 1:
            raise OptionError(f"--rotation-power must lie in [0, 1], got {self.rotation_power}")
        if not 0 <= self.null_samples <= MAX_NULL_SAMPLES:
            raise OptionError(f"--null-samples must lie in [0, {MAX_NULL_SAMPLES}], got {self.null_samples}")
        if self.memory_format not in MEMORY_FORMATS:
            raise OptionError(f"--memory-format must be one of {', '.join(MEMORY_FORMATS)}, got {self.memory_format!r}")
        if self.checkpoint_every < 0:
            raise OptionError(f"--checkpoint-every must be >= 0 seconds, got {self.checkpoint_every}")
        if self.threshold_memory < 0 or self.cache_memory < 0:
            raise OptionError("--threshold-memory and --cache-memory must be >= 0")
        resolve_device(self.device)

    def result_options(self) -> dict:
        """The options that determine the results (the cache key of a run directory)."""
        return {
            "quantile": self.quantile,
            "iou_threshold": self.iou_threshold,
            "iou_mode": self.iou_mode,
            "top_images": self.top_images,
            "tokens": self.tokens,
            "channels_last": self.channels_last,
            "rotate": self.rotate,
            "rotation_power": self.rotation_power if self.rotate is not None else None,
            "rotation_match": self.rotation_match if self.rotate is not None else None,
            "null_samples": self.null_samples,
            "memory_format": self.memory_format,
            "amp": self.amp,
        }


def resolve_device(name: str | None) -> torch.device:
    """The device for ``--device`` (default: CUDA when available), checked to be usable."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def dissect(
    model: nn.Module | LoadedModel | str,
    dataset: BrodenDataset | str | os.PathLike,
    layers: Sequence[str],
    out: str | os.PathLike | None = None,
    config: DissectConfig | None = None,
    **options,
) -> DissectionResult:
    """Dissect ``layers`` of ``model`` on a concept dataset.

    Args:
        model: an ``nn.Module``, a :class:`~netdissect.models.LoadedModel`, or a model SPEC
            (``"torchvision:resnet18"``, ``"demo"``, ``"package.module:callable"``).
        dataset: a :class:`~netdissect.data.BrodenDataset` or the path of a Broden directory.
        layers: dotted module names, e.g. ``["layer3", "layer4.1.conv2"]``.
        out: run directory to write results into (optional). A directory holding the same
            run skips its finished layers; one holding a different run is refused unless
            ``overwrite``.
        config: a :class:`DissectConfig`; keyword ``options`` override its fields.

    With ``out``, the passes checkpoint their accumulators there every ``checkpoint_every``
    seconds; the same call after a crash or a kill continues from the last checkpoint and gives
    the results an uninterrupted run gives. Under ``torchrun`` (or in a process group the caller
    started) every rank reads its share of the batches, the statistics are merged exactly, every
    rank returns the same result and rank 0 writes the run directory.

    Returns:
        A :class:`~netdissect.results.DissectionResult`.
    """
    config = DissectConfig(**{**(asdict(config) if config else {}), **options})
    if isinstance(model, str):
        model = load_model(model)
    preprocess = model.preprocess if isinstance(model, LoadedModel) else Preprocess()
    spec = model.spec if isinstance(model, LoadedModel) else type(model).__name__
    module = model.module if isinstance(model, LoadedModel) else model
    if not isinstance(dataset, BrodenDataset):
        dataset = BrodenDataset(dataset, preprocess=preprocess)
    layers = list(dict.fromkeys(layers))
    resolve_layers(module, layers)  # unknown names fail before any work
    shard, device = join(resolve_device(config.device))
    try:
        module = module.to(device).eval()
        if config.memory_format != "contiguous":
            module = module.to(memory_format=MEMORY_FORMATS[config.memory_format])
        metadata = {
            "model": spec,
            "model_fingerprint": model_fingerprint(module),
            "dataset": _dataset_identity(dataset),
            "options": config.result_options(),
            "versions": {"netdissect": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }
        if len(set(shard.gather(metadata["model_fingerprint"]))) > 1:
            raise ModelError("the model's weights differ between ranks: load the same weights in every "
                             "process (or seed a random init)")
        run_dir = Path(out) if out is not None else None
        if run_dir is None:
            return _dissect(module, dataset, layers, device, config, metadata, shard)
        if not shard.is_main:  # rank 0 owns the run directory; the others keep only their checkpoints
            outcome = shard.broadcast(None)
            if isinstance(outcome, BaseException):
                raise outcome
            all_layers, done = outcome
            return _dissect(module, dataset, layers, device, config, metadata, shard, run_dir, all_layers, done)
        with run_lock(run_dir):
            try:
                all_layers, done = _prepare_run_dir(run_dir, metadata, layers, config.overwrite)  # refuses other runs
            except BaseException as exc:
                shard.broadcast(exc)
                raise
            shard.broadcast((all_layers, done))
            try:
                result = _dissect(module, dataset, layers, device, config, metadata, shard, run_dir, all_layers, done)
            except BaseException as exc:
                set_state(run_dir, "failed", first_line(exc))
                raise
            set_state(run_dir, "done")
            return result
    finally:
        shard.close()


def _dissect(
    module: nn.Module,
    dataset: BrodenDataset,
    layers: list[str],
    device: torch.device,
    config: DissectConfig,
    metadata: dict,
    shard: Shard,
    run_dir: Path | None = None,
    all_layers: list[str] | None = None,
    done: dict[str, LayerResult] | None = None,
) -> DissectionResult:
    """The passes and the results, written into ``run_dir`` by rank 0 (prepared and locked by the caller).

    ``all_layers`` are the run directory's layers (earlier ones first), ``done`` those finished.
    Checkpoints go to ``run_dir``'s checkpoint directory, one file per rank.
    """
    done = done or {}
    all_layers = all_layers or layers
    todo = [name for name in layers if name not in done]
    write = run_dir is not None and shard.is_main

    results = dict(done)
    if todo:
        timings: dict[str, float] = {"processes": shard.world}
        key = checkpoint_key({
            **{k: metadata[k] for k in ("model", "model_fingerprint", "dataset", "options", "versions")},
            "layers": todo, "batch_size": config.batch_size, "threshold_memory": config.threshold_memory,
            "rank": shard.rank, "world": shard.world,
        })
        path = run_dir / CHECKPOINT_DIR / f"rank{shard.rank}.ckpt" if run_dir is not None else None
        checkpointer = Checkpointer(path, key, config.checkpoint_every)
        saved = checkpointer.load()
        runner = _Runner(module, dataset, todo, device, config, shard, checkpointer)
        start = time.perf_counter()
        stats = runner.pass_thresholds(saved)
        timings["pass1_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        counts = runner.pass_counts(stats, saved)
        timings["pass2_seconds"] = time.perf_counter() - start
        meta = dataset.meta
        for name in todo:
            layer_meta = {**metadata, "layer": name, "timings": timings, "threshold_method": stats[name].method}
            null_score = None
            if name in runner.null:
                null_score = runner.null_scores(name, counts[name]).cpu().numpy()
                layer_meta["null"] = {"samples": config.null_samples, "unshuffled_images": runner.null_unshuffled}
            result = LayerResult(
                layer=name,
                categories=list(meta.categories),
                label_names=list(meta.label_names),
                label_category=meta.label_category.copy(),
                thresholds=stats[name].thresholds.cpu().numpy(),
                inter=counts[name].inter.cpu().numpy(),
                act=counts[name].act.cpu().numpy(),
                truth=counts[name].truth.cpu().numpy(),
                top_indices=stats[name].top.indices.cpu().numpy(),
                top_values=stats[name].top.values.cpu().numpy(),
                top_maps=stats[name].top_maps.cpu().numpy(),
                iou_threshold=config.iou_threshold,
                metadata=layer_meta,
                null_score=null_score,
            )
            if write:
                result.save(run_dir / layer_dirname(name))
            results[name] = result
        shard.gather(None)  # rank 0 has written every layer before any rank drops its checkpoint
        checkpointer.clear()
    ordered = {name: results[name] for name in all_layers if name in results}
    result = DissectionResult(ordered, metadata, run_dir)
    if write:
        result.write_summary(run_dir)
    return result


def _dataset_identity(dataset: BrodenDataset) -> dict:
    meta = dataset.meta
    digest = hashlib.sha256()
    for name in ["index.csv", "label.csv", "category.csv", *(f"c_{c}.csv" for c in meta.categories)]:
        digest.update((meta.directory / name).read_bytes())
    rows = meta.rows
    return {
        "path": str(meta.directory.resolve()),
        "csv_sha256": digest.hexdigest()[:16],
        "categories": list(meta.categories),
        "images": len(rows),
        "first_row": rows[0].row,
        "last_row": rows[-1].row,
        "preprocess": asdict(dataset.preprocess),
    }


def _prepare_run_dir(
    run_dir: Path, metadata: dict, layers: list[str], overwrite: bool
) -> tuple[list[str], dict[str, LayerResult]]:
    """Check the run directory; return all its layers (earlier ones first) and those finished."""
    key = json.loads(json.dumps({k: metadata[k] for k in ("model", "model_fingerprint", "dataset", "options")}))
    run_file = run_dir / RUN_FILE
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous.get("key") != key:
            if not overwrite:
                raise RunDirectoryError(
                    f"{run_dir} holds a different run (other model, dataset or options); "
                    "choose another --out or pass --overwrite"
                )
            _clear_run(run_dir, previous.get("layers", []))
            previous = {"layers": []}
    else:
        previous = {"layers": []}
    known_layers = list(dict.fromkeys(previous.get("layers", []) + layers))
    atomic_write_json(run_file, {"key": key, "layers": known_layers})
    set_state(run_dir, "running")
    done = {}
    for name in known_layers:
        if (run_dir / layer_dirname(name) / UNITS_FILE).exists():
            done[name] = LayerResult.load(run_dir / layer_dirname(name))
    return known_layers, done


def _clear_run(run_dir: Path, layers: list[str]) -> None:
    for name in layers:
        directory = run_dir / layer_dirname(name)
        for child in directory.glob("*") if directory.is_dir() else []:
            if child.is_file():
                child.unlink()
    for name in (RUN_FILE, "summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    for stale in (run_dir / CHECKPOINT_DIR).glob("*.ckpt"):
        stale.unlink()


@dataclass
class LayerStats:
    """Statistics of one layer: pass 1's quantiles and top images, pass 2's maps of those images."""

    quantile: TopKQuantile | QuantileSketch | None
    top: TopImages
    method: str
    map_shape: tuple[int, int, int]  # (units, h, w) of the layer's maps
    thresholds: torch.Tensor = field(default=None)
    top_maps: torch.Tensor = field(default=None)  # (U, m, h, w) the maps of each unit's top images

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

    def merge(self, other: "LayerStats") -> None:
        """Fold in pass-1 statistics of another part of the data."""
        self.quantile.merge(other.quantile)
        self.top.merge(other.top)

    def state_dict(self, quantile: bool = True) -> dict:
        """Tensors and numbers only (checkpoints load them with ``weights_only``)."""
        state = {"method": self.method, "map_shape": list(self.map_shape), "top": self.top.state_dict()}
        if quantile:
            state["quantile"] = self.quantile.state_dict()
        for name in ("thresholds", "top_maps"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).cpu()
        return state

    @classmethod
    def from_state(cls, state: dict, top_images: int, device: torch.device) -> "LayerStats":
        units = state["map_shape"][0]
        quantile = None
        if "quantile" in state:
            q = state["quantile"]
            quantile = TopKQuantile(units, q["k"], device) if state["method"] == "exact" else QuantileSketch(units, device=device)
            quantile.load_state_dict(q)
        top = TopImages(units, top_images, device)
        top.load_state_dict(state["top"])
        stats = cls(quantile, top, state["method"], tuple(state["map_shape"]))
        for name in ("thresholds", "top_maps"):
            if name in state:
                setattr(stats, name, state[name].to(device))
        return stats


class _Runner:
    """Runs the two passes for a set of layers of one model on (this rank's share of) one dataset.

    ``checkpointer`` saves the accumulators during both passes; the passes take the state it
    saved (or ``None``) and continue from the batch after the last one it covers.
    """

    def __init__(self, module: nn.Module, dataset: BrodenDataset, layers: list[str], device, config: DissectConfig,
                 shard: Shard | None = None, checkpointer: Checkpointer | None = None):
        self.module, self.dataset, self.layers = module, dataset, layers
        self.device, self.config = device, config
        self.shard = shard or Shard()
        self.checkpointer = checkpointer or Checkpointer(None, "", 0)
        self.first, self.end = self.shard.batch_range(len(dataset), config.batch_size)
        self.level = threshold_level(config.quantile, config.iou_mode)
        self.rotations: dict[str, torch.Tensor] = {}  # per layer, when dissecting a rotated basis
        self.cache: list[dict[str, torch.Tensor]] | None = None
        self.null: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # pass 2's null counts per layer
        self.null_unshuffled = 0  # images in batches of one, which the null cannot shift

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
            with tqdm(iterator, desc=desc, initial=start - self.first, total=self.end - self.first, unit="batch",
                      disable=not self.config.progress or not self.shard.is_main, leave=False) as bar:
                yield zip(itertools.count(start), bar)
        finally:
            # an exception's traceback keeps the iterator alive; stop its workers now, not at GC
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def _activations(self, capture: LayerCapture, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.to(self.device, non_blocking=True).contiguous(
            memory_format=MEMORY_FORMATS[self.config.memory_format])
        half = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        with torch.autocast(self.device.type, dtype=half, enabled=self.config.amp):
            outputs = capture(images)
        hw, batch = tuple(images.shape[-2:]), images.shape[0]
        tokens, channels_last = self.config.tokens, self.config.channels_last
        acts = {
            name: as_feature_map(name, outputs[name], tokens, channels_last, hw, batch).float()
            for name in self.layers
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
            raise ActivationError(
                f"layer {name!r} produced NaN or Inf activations in {int(bad.any(0).sum())} unit(s)"
            )
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
        with LayerCapture(self.module, self.layers) as capture, \
                self._batches(data, start, "pass 1/2 thresholds") as batches:
            for number, batch in batches:
                acts = self._activations(capture, batch["image"])
                if not stats:
                    stats = self._start(acts, len(data))
                for name, a in acts.items():
                    maxima = self._maxima(name, a)
                    if isinstance(stats[name].quantile, TopKQuantile):
                        stats[name].quantile.add_maps(a, maxima)
                    else:
                        stats[name].quantile.add(a.transpose(0, 1).reshape(a.shape[1], -1))
                    stats[name].top.add(maxima, batch["index"])
                if self.cache is not None:
                    self.cache.append({name: a.cpu() for name, a in acts.items()})
                if self.checkpointer.due():
                    state = {name: s.state_dict() for name, s in stats.items()}
                    self.checkpointer.save({"pass": 1, "next_batch": number + 1, "stats": state})
        stats = self._merge(stats)
        for s in stats.values():
            s.thresholds = s.quantile.quantile(self.level)
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

    def pass_counts(self, stats: dict[str, LayerStats], saved: dict | None = None) -> dict[str, Counts]:
        """Pass 2: IoU counts per layer (summed over ranks), from cached activations or a second
        forward pass.

        With ``null_samples`` K > 0 it also fills :attr:`null` with each layer's permutation-null
        counts ``(K, U, L)`` and ``(K, U, C)`` (see :func:`netdissect.tally.count_masks_null`).
        """
        meta = self.dataset.meta
        label_category = torch.from_numpy(meta.label_category).to(self.device)
        L, C, K = len(label_category), len(meta.categories), self.config.null_samples
        zeros = functools.partial(torch.zeros, dtype=torch.int64, device=self.device)
        inter = {name: zeros(s.map_shape[0], L) for name, s in stats.items()}
        act = {name: zeros(s.map_shape[0], C) for name, s in stats.items()}
        null = self.null = {name: (zeros(K, s.map_shape[0], L), zeros(K, s.map_shape[0], C))
                            for name, s in stats.items()} if K else {}
        truth = zeros(L)
        unshuffled = zeros(())
        start = self.first
        if saved is not None and saved["pass"] == 2 and saved["next_batch"] > self.first:
            start = saved["next_batch"]
            inter = {name: t.to(self.device) for name, t in saved["inter"].items()}
            act = {name: t.to(self.device) for name, t in saved["act"].items()}
            null = self.null = {name: (i.to(self.device), c.to(self.device)) for name, (i, c) in saved["null"].items()}
            truth, unshuffled = saved["truth"].to(self.device), saved["unshuffled"].to(self.device)
            self.cache = None  # the cache held pass 1's batches of a process that is gone
        with contextlib.closing(self._pass2_batches(start)) as batches:
            for number, batch, acts in batches:
                seg = batch["seg"].to(self.device, non_blocking=True)
                truth += count_truth(seg, batch["scalars"], label_category)
                index = batch["index"].to(self.device)
                # the same permutation for every layer, a function of the batch (not of the rank or resume)
                shifts = null_shifts(seg.shape[0], K, torch.Generator().manual_seed(NULL_SEED + number))
                if K and shifts is None:
                    unshuffled += seg.shape[0]
                for name, a in acts.items():
                    a = a.to(self.device)
                    stats[name].keep_top_maps(a, index)
                    i, c, ni, nc = count_masks_null(
                        a, stats[name].thresholds, seg, batch["scalars"], batch["present"], label_category,
                        shifts, self.config.iou_mode, self.config.chunk_pixels,
                    )
                    inter[name] += i
                    act[name] += c
                    if K:
                        null[name][0].add_(ni if ni is not None else i)  # a batch of one image keeps
                        null[name][1].add_(nc if nc is not None else c)  # its own annotations
                if self.checkpointer.due():
                    self.checkpointer.save({
                        "pass": 2, "next_batch": number + 1,
                        "stats": {name: s.state_dict(quantile=False) for name, s in stats.items()},
                        "inter": inter, "act": act, "null": null, "truth": truth, "unshuffled": unshuffled,
                    })
        # each top image belongs to one rank, which filled its maps; the others hold zeros there
        for name, s in stats.items():
            self.shard.sum_(s.empty_top_maps(self.device))
            for tensor in (inter[name], act[name], *null.get(name, ())):
                self.shard.sum_(tensor)
        self.shard.sum_(truth)
        self.null_unshuffled = int(self.shard.sum_(unshuffled))
        return {name: Counts(inter[name], act[name], truth) for name in stats}

    def null_scores(self, name: str, counts: Counts) -> torch.Tensor:
        """``(K, U)``: layer ``name``'s null score (best IoU over labels) per null sample."""
        label_category = torch.from_numpy(self.dataset.meta.label_category)
        return null_scores(*self.null[name], counts.truth, label_category)

    def _pass2_batches(self, start: int) -> Iterator[tuple[int, dict, dict[str, torch.Tensor]]]:
        if self.cache is not None:
            data = self.dataset.with_options(load_images=False, load_segmentations=True)
            with self._batches(data, start, "pass 2/2 counts (cached)") as batches:
                for (number, batch), acts in zip(batches, self.cache):
                    yield number, batch, acts
            self.cache = None
            return
        data = self.dataset.with_options(load_images=True, load_segmentations=True)
        with LayerCapture(self.module, self.layers) as capture, \
                self._batches(data, start, "pass 2/2 counts") as batches:
            for number, batch in batches:
                yield number, batch, self._activations(capture, batch["image"])
