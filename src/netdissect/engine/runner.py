"""Orchestration of a dissection: the run directory, the two passes, then per-layer results.

:func:`dissect` is the library's entry point; the passes live in :mod:`netdissect.engine.passes`, the
options in :mod:`netdissect.engine.config`, the run directory's bookkeeping in :mod:`netdissect.runs.directory`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .._version import __version__
from ..capture.hooks import resolve_layers
from ..data.broden import BrodenDataset
from ..devices import resolve_device
from ..errors import ModelError, first_line
from ..models.base import LoadedModel, model_fingerprint
from ..models.loading import load_model
from ..models.preprocess import Preprocess
from ..runs.checkpoints import Checkpointer, checkpoint_key, resume_together
from ..runs.directory import dataset_identity, prepare_run_dir, replace_run, run_lock, set_state
from ..runs.layout import checkpoint_path, layer_path
from ..runs.outputs import DISSECTION, OutputKind, claim_output
from ..runs.results import DissectionResult, LayerResult
from .config import DissectConfig
from .distributed import Shard, join
from .passes import TORCH_MEMORY_FORMATS, Runner


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
            ``overwrite``, and then keeps the old run until the new one has finished
            (docs/long-runs.md).
        config: a :class:`DissectConfig`; keyword ``options`` override its fields.

    With ``out``, the passes checkpoint their accumulators there every ``checkpoint_every``
    seconds; the same call after a crash or a kill continues from the last checkpoint and gives
    the results an uninterrupted run gives. Under ``torchrun`` (or in a process group the caller
    started) every rank reads its share of the batches, the statistics are merged exactly, every
    rank returns the same result and rank 0 writes the run directory.

    Returns:
        A :class:`~netdissect.runs.results.DissectionResult`.
    """
    config = DissectConfig(**{**(asdict(config) if config else {}), **options})
    return run_dissection(model, dataset, layers, out, config, DISSECTION)


def run_dissection(
    model: nn.Module | LoadedModel | str,
    dataset: BrodenDataset | str | os.PathLike,
    layers: Sequence[str],
    out: str | os.PathLike | None,
    config: DissectConfig,
    kind: OutputKind,
) -> DissectionResult:
    """:func:`dissect`, with ``out`` marked as an output of ``kind`` (a GAN dissection marks its own)."""
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
            module = module.to(memory_format=TORCH_MEMORY_FORMATS[config.memory_format])
        metadata = {
            "model": spec,
            "model_fingerprint": model_fingerprint(module),
            "dataset": dataset_identity(dataset),
            "options": config.result_options(),
            "versions": {"netdissect": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }
        if len(set(shard.gather(metadata["model_fingerprint"]))) > 1:
            raise ModelError(
                "the model's weights differ between ranks: load the same weights in every "
                "process (or seed a random init)"
            )
        run_dir = Path(out) if out is not None else None
        if run_dir is None:
            return _dissect(module, dataset, layers, device, config, metadata, shard)
        if not shard.is_main:  # rank 0 owns the run directory; the others keep only their checkpoints
            outcome = shard.broadcast(None)
            if isinstance(outcome, BaseException):
                raise outcome
            work, all_layers, done = outcome
            result = _dissect(module, dataset, layers, device, config, metadata, shard, work, all_layers, done)
            result.directory = run_dir
            return result
        with contextlib.ExitStack() as stack:
            try:  # the other ranks wait for the outcome: they get the error too (a held lock, another run)
                claim_output(run_dir, kind)
                stack.enter_context(run_lock(run_dir))
                # refuses other runs; an overwrite writes into a staging directory (work)
                work, all_layers, done = prepare_run_dir(run_dir, metadata, layers, config.overwrite)
            except BaseException as exc:
                shard.broadcast(exc)
                raise
            shard.broadcast((work, all_layers, done))
            try:
                result = _dissect(module, dataset, layers, device, config, metadata, shard, work, all_layers, done)
            except BaseException as exc:
                set_state(work, "failed", first_line(exc))
                raise
            set_state(work, "done")
            if work != run_dir:  # the new run has finished: now it replaces the old one
                replace_run(run_dir)
                result.directory = run_dir
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
    out_dir = run_dir if shard.is_main else None  # where results are written (rank 0 only)

    results = dict(done)
    if todo:
        timings: dict[str, float] = {"processes": shard.world}
        key = checkpoint_key(
            {
                **{k: metadata[k] for k in ("model", "model_fingerprint", "dataset", "options", "versions")},
                "layers": todo,
                **config.checkpoint_options(),
                "rank": shard.rank,
                "world": shard.world,
            }
        )
        path = checkpoint_path(run_dir, shard.rank) if run_dir is not None else None
        checkpointer = Checkpointer(path, key, config.checkpoint_every)
        saved = checkpointer.load()
        if shard.world > 1:  # every rank resumes in the same pass
            saved = resume_together(saved, shard.gather(saved["pass"] if saved else 0))
        runner = Runner(module, dataset, todo, device, config, shard, checkpointer)
        start = time.perf_counter()
        stats = runner.pass_thresholds(saved)
        timings["pass1_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        collectors = runner.pass_counts(stats, saved)
        timings["pass2_seconds"] = time.perf_counter() - start
        meta = dataset.meta
        fields: dict[str, dict] = {name: {} for name in todo}  # per layer, the LayerResult fields of pass 2
        for collector in collectors:
            start = time.perf_counter()
            for name, found in collector.finish().items():
                fields[name].update(found)
            if collector.slow_finish:
                timings[f"{collector.name}_seconds"] = time.perf_counter() - start
        for name in todo:
            layer_meta = {**metadata, "layer": name, "timings": timings, "threshold_method": stats[name].method}
            layer_meta.update(fields[name].pop("metadata", {}))
            layer_result = LayerResult(
                layer=name,
                categories=list(meta.categories),
                label_names=list(meta.label_names),
                label_category=meta.label_category.copy(),
                thresholds=stats[name].unit_thresholds().cpu().numpy(),
                top_indices=stats[name].top.indices.cpu().numpy(),
                top_values=stats[name].top.values.cpu().numpy(),
                top_maps=stats[name].empty_top_maps(device).cpu().numpy(),  # allocated by pass 2
                iou_threshold=config.iou_threshold,
                metadata=layer_meta,
                **fields[name],
            )
            if out_dir is not None:
                layer_result.save(layer_path(out_dir, name))
            results[name] = layer_result
        shard.gather(None)  # rank 0 has written every layer before any rank drops its checkpoint
        checkpointer.clear()
        shard.gather(None)  # ... and every rank has dropped it before rank 0 moves a staged run
    ordered = {name: results[name] for name in all_layers if name in results}
    result = DissectionResult(ordered, metadata, run_dir)
    if out_dir is not None:
        result.write_summary(out_dir)
    return result
