"""GAN Dissection: dissect a generator's units against a segmenter's labels of its own samples.

:func:`dissect_generator` draws ``samples`` latents z ~ N(0, I) from ``seed``, generates their
images, labels them with a segmenter and writes them as a Broden-format dataset in
``<out>/samples`` (:class:`~netdissect.segmenters.annotate.AnnotationWriter`; ``latents.npy`` beside).
The dissection itself is :func:`netdissect.dissect` on that dataset, with the generator as the
model and each sample's latent as its input (:class:`LatentDataset`): thresholds, upsampling to
the segmentation, IoU, run directory and report are exactly those of ``dissect``.

Intervention: for every concept with detectors in a layer, its ``ablate_top`` best detector
units (by IoU) are set to zero (a forward hook on the layer) and the same latents generated
again; the concept's share of the generated pixels (segmenter labels at image resolution)
before and after goes to ``<out>/<layer>/causal.json`` and, with sample pairs, to
``<out>/<layer>/causal.html`` (listed in ``<out>/extra_pages.json``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture.hooks import resolve_layers
from ..data.broden import BrodenDataset
from ..devices import resolve_device
from ..engine.config import DissectConfig
from ..engine.runner import run_dissection
from ..errors import ModelError, NetDissectError, OptionError, RunDirectoryError, first_line
from ..files import atomic_write_json, layer_dirname
from ..memory import require_memory
from ..models.base import LoadedModel, model_fingerprint
from ..models.loading import load_model
from ..models.preprocess import Preprocess
from ..report.causal_page import CausalEffect, write_causal_page
from ..runs.outputs import GENERATOR, claim_output
from ..runs.results import DissectionResult, LayerResult
from .annotate import SEG_BYTES_PER_PIXEL, AnnotationWriter
from .model import Segmenter, load_segmenter, segment

Z_SHAPES = ("vector", "image")
SAMPLES_DIR = "samples"
LATENTS_FILE = "latents.npy"
CAUSAL_FILE = "causal.json"
CAUSAL_OPTIONS = "causal-options.json"  # the ablate_top behind causal.json: the same call skips the layer
PAIRS = 4  # sample pairs shown per concept


def sample_latents(samples: int, z_dim: int, seed: int) -> torch.Tensor:
    """``samples`` latents z ~ N(0, I), float32 (samples, z_dim), the same for the same seed everywhere."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, z_dim, generator=generator)


def shape_latents(z: torch.Tensor, z_shape: str) -> torch.Tensor:
    """Latents (B, D) as the generator takes them: (B, D) for ``vector``, (B, D, 1, 1) for ``image``."""
    return z if z_shape == "vector" else z.reshape(z.shape[0], -1, 1, 1)


def to_pixels(images: torch.Tensor, spec: str) -> np.ndarray:
    """Generator output (B, 3, H, W) in [-1, 1] as uint8 RGB (B, H, W, 3), or a one-line error on other shapes."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ModelError(f"generator {spec!r} returned {shape}, expected images (B, 3, H, W) in [-1, 1]")
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


class LatentDataset(BrodenDataset):
    """A generated-samples dataset whose model input (``item["image"]``) is the sample's latent.

    Segmentations and everything else come from the Broden-format files; ``latents[i]`` is the
    input that generated the image stored as ``names[i]`` (a file stem).
    """

    def __init__(self, directory: str | os.PathLike, latents: torch.Tensor, names: Sequence[str], **options) -> None:
        super().__init__(directory, **options)
        position = {f"{name}.jpg": i for i, name in enumerate(names)}
        missing = [row.image for row in self.meta.rows if row.image not in position]
        if len(latents) != len(names) or missing:
            raise ValueError(f"{len(latents)} latents for {len(names)} names; rows without one: {missing[:3]}")
        self.latents = latents[[position[row.image] for row in self.meta.rows]]

    def with_options(self, **changes) -> LatentDataset:
        plain = super().with_options(**changes)
        copied = copy.copy(self)
        copied.__dict__.update(plain.__dict__)
        return copied

    def __getitem__(self, index: int) -> dict:
        load_images, self.load_images = self.load_images, False
        try:
            item = super().__getitem__(index)
        finally:
            self.load_images = load_images
        if load_images:
            item["image"] = self.latents[index]
        return item


@contextlib.contextmanager
def zeroed_units(module: nn.Module, units: Sequence[int], channels_last: bool = False) -> Iterator[None]:
    """While active, ``module``'s output (B, C, H, W), or (B, H, W, C) with ``channels_last``, has
    units ``units`` (0-based) set to zero."""
    index = torch.as_tensor(list(units), dtype=torch.long)

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ModelError(f"ablation needs layer outputs (B, C, H, W); this layer gives {shape}")
        output = output.clone()
        if channels_last:
            output[..., index.to(output.device)] = 0
        else:
            output[:, index.to(output.device)] = 0
        return output

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _generate(
    module: nn.Module, latents: torch.Tensor, z_shape: str, spec: str, device: torch.device, batch_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(first index, uint8 images) per batch of latents."""
    with torch.inference_mode():
        for start in range(0, len(latents), batch_size):
            z = shape_latents(latents[start : start + batch_size], z_shape).to(device)
            try:
                out = module(z)
            except NetDissectError:
                raise
            except Exception as exc:
                raise ModelError(
                    f"generator {spec!r} failed on latents of shape {tuple(z.shape)} ({first_line(exc)}); "
                    "check --z-dim and --z-shape"
                ) from None
            yield start, to_pixels(out, spec)


def _label_counts(
    batches: Iterator[tuple[int, np.ndarray]],
    segmenter: Segmenter,
    device: torch.device,
    min_confidence: float,
    keep: Sequence[int] = (),
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Per sample and class, the pixels the segmenter gives the class (N, K); and the images of samples ``keep``."""
    rows, kept = [], {}
    wanted = set(keep)
    k = len(segmenter.classes)
    for start, pixels in batches:
        labels = segment(segmenter, pixels, device, min_confidence)
        rows.append(np.stack([np.bincount(m.ravel(), minlength=k) for m in labels]))
        kept.update({start + i: image for i, image in enumerate(pixels) if start + i in wanted})
    return np.concatenate(rows), kept


def _identity(latents: torch.Tensor, generator: LoadedModel, z_shape: str) -> dict:
    return {
        "generator": generator.spec,
        "generator_fingerprint": model_fingerprint(generator.module),
        "z_shape": z_shape,
        "latents_sha256": hashlib.sha256(latents.numpy().tobytes()).hexdigest()[:16],
    }


def _check_options(
    config: DissectConfig, z_dim: int, samples: int, z_shape: str, seg_size: int | None, ablate_top: int
) -> None:
    """Refuse ``dissect_generator``'s bad options before anything is loaded."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise OptionError("dissect-generator runs in one process: start it without torchrun")
    if z_shape not in Z_SHAPES:
        raise OptionError(f"--z-shape must be one of {', '.join(Z_SHAPES)}, got {z_shape!r}")
    for option, value, low in (("--z-dim", z_dim, 1), ("--samples", samples, 1), ("--ablate-top", ablate_top, 0)):
        if value < low:
            raise OptionError(f"{option} must be >= {low}, got {value}")
    if seg_size is not None:
        require_memory(config.batch_size * seg_size * seg_size * SEG_BYTES_PER_PIXEL, f"--seg-size {seg_size}")
    if config.memory_format == "channels_last" and z_shape == "vector":
        raise OptionError("--memory-format channels_last needs --z-shape image (4-D latents)")


def _as_loaded(generator: nn.Module | LoadedModel | str) -> LoadedModel:
    if isinstance(generator, str):
        return load_model(generator)
    if not isinstance(generator, LoadedModel):
        return LoadedModel(generator, Preprocess(), type(generator).__name__)
    return generator


def _write_samples(
    writer: AnnotationWriter,
    latents: torch.Tensor,
    generator: LoadedModel,
    segmenter: Segmenter,
    z_shape: str,
    device: torch.device,
    config: DissectConfig,
    min_confidence: float,
) -> None:
    """Generate and segment the samples ``writer`` still needs, and finish the dataset."""
    todo = latents[writer.todo]
    bar = tqdm(total=len(todo), desc="generate", unit="img", disable=not config.progress)
    with bar:
        for start, pixels in _generate(generator.module, todo, z_shape, generator.spec, device, config.batch_size):
            labels = segment(segmenter, pixels, device, min_confidence)
            for offset, (image, label) in enumerate(zip(pixels, labels)):
                writer.add(writer.todo[start + offset], image, label)
            bar.update(len(pixels))
    writer.close()


def dissect_generator(
    generator: nn.Module | LoadedModel | str,
    segmenter: Segmenter | str,
    layers: Sequence[str],
    out: str | os.PathLike,
    z_dim: int,
    samples: int = 1000,
    seed: int = 0,
    z_shape: str = "vector",
    classes: str | os.PathLike | Sequence[str] | None = None,
    min_confidence: float = 0.0,
    seg_size: int | None = None,
    ablate_top: int = 20,
    config: DissectConfig | None = None,
    **options: Any,
) -> DissectionResult:
    """Dissect ``layers`` of a generator on its own samples labelled by a segmenter; test detectors causally.

    Args:
        generator: an ``nn.Module``, a :class:`~netdissect.LoadedModel` or a model SPEC; maps
            latents (B, z_dim) (or (B, z_dim, 1, 1) with ``z_shape="image"``) to images
            (B, 3, H, W) in [-1, 1].
        segmenter: a :class:`~netdissect.segmenters.model.Segmenter` or a segmenter SPEC.
        layers: the generator's layers to dissect (dotted module names).
        out: the run directory (``dissect``'s files, plus ``samples-<digest>/`` and per layer ``causal.json``).
        z_dim: dimension of the latents.
        samples: number of latents drawn from N(0, I).
        seed: seed of the latents (the same seed, the same samples).
        classes: the segmenter's class names (see :func:`~netdissect.segmenters.annotate.annotate_images`).
        min_confidence: pixels whose winning class has a lower probability are unlabelled.
        seg_size: the segmentation size.
        ablate_top: units zeroed per concept (its best detectors by IoU); 0 skips the intervention.
        config: the dissection's options (:class:`~netdissect.DissectConfig`).
        **options: :class:`~netdissect.DissectConfig` fields overriding ``config``.

    Returns:
        The :class:`~netdissect.runs.results.DissectionResult` of ``dissect``.
    """
    config = DissectConfig(**{**(asdict(config) if config else {}), **options})
    _check_options(config, z_dim, samples, z_shape, seg_size, ablate_top)
    generator = _as_loaded(generator)
    generator.module.eval()
    segmenter = load_segmenter(segmenter, classes)
    layers = list(dict.fromkeys(layers))
    modules = resolve_layers(generator.module, layers)
    device = resolve_device(config.device)
    run_dir = Path(out)
    latents = sample_latents(samples, z_dim, seed)
    generator.module.to(device)
    segmenter.module.to(device)
    next(_generate(generator.module, latents[:1], z_shape, generator.spec, device, 1))  # shape errors first

    names = [f"sample/{i:06d}" for i in range(samples)]
    identity = {
        **_identity(latents, generator, z_shape),
        "segmenter": segmenter.spec,
        "segmenter_fingerprint": model_fingerprint(segmenter.module),
        "classes": segmenter.classes,
        "min_confidence": min_confidence,
        "seg_size": seg_size,
    }
    # The samples live in a directory named by their identity, so that an overwrite writes new
    # samples beside the old run's, which stays whole until the new run has finished.
    dataset_dir = (
        run_dir / f"{SAMPLES_DIR}-{hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]}"
    )
    claim_output(run_dir, GENERATOR)  # before any sample is written
    # an interrupted run's samples are staged in <samples>.partial: the same command goes on with them
    others = [d for d in run_dir.glob(f"{SAMPLES_DIR}-*") if d.name.split(".")[0] != dataset_dir.name]
    if others and not config.overwrite:
        raise RunDirectoryError(
            f"{run_dir} holds the samples of another generator run (other model, latents or segmenter); "
            "choose another --out or pass --overwrite"
        )
    writer = AnnotationWriter(dataset_dir, segmenter.classes, names, identity, seg_size=seg_size, val_fraction=0)
    if not writer.finished:
        _write_samples(writer, latents, generator, segmenter, z_shape, device, config, min_confidence)
        np.save(dataset_dir / LATENTS_FILE, latents.numpy())
    dataset = LatentDataset(dataset_dir, shape_latents(latents, z_shape), names)
    result = run_dissection(generator, dataset, layers, run_dir, config, GENERATOR)
    for stale in others:  # the replaced run's samples
        shutil.rmtree(stale, ignore_errors=True)
    if ablate_top:
        for name in layers:
            _intervene(
                result.layers[name],
                modules[name],
                generator,
                segmenter,
                latents,
                z_shape,
                device,
                config,
                min_confidence,
                ablate_top,
                run_dir,
            )
    return result


def detector_units(layer: LayerResult, ablate_top: int) -> dict[int, list[int]]:
    """Per label number with detectors: its best ``ablate_top`` detector units (0-based), by descending IoU."""
    found: dict[int, list[int]] = {}
    for u in np.argsort(-layer.score, kind="stable"):
        if layer.detectors[u]:
            units = found.setdefault(int(layer.label[u]), [])
            if len(units) < ablate_top:
                units.append(int(u))
    return found


def _intervene(
    layer: LayerResult,
    module: nn.Module,
    generator: LoadedModel,
    segmenter: Segmenter,
    latents: torch.Tensor,
    z_shape: str,
    device: torch.device,
    config: DissectConfig,
    min_confidence: float,
    ablate_top: int,
    run_dir: Path,
) -> None:
    """Zero each concept's best detectors, regenerate, and write ``causal.json`` and ``causal.html``.

    A layer whose ``causal.json`` came from the same ``ablate_top`` in this run directory is skipped
    (a different run clears the layer's files before it dissects it).
    """
    directory = run_dir / layer_dirname(layer.layer)
    options = {"ablate_top": ablate_top}
    try:
        if json.loads((directory / CAUSAL_OPTIONS).read_text()) == options and (directory / CAUSAL_FILE).exists():
            return
    except (OSError, ValueError):
        pass
    concepts = detector_units(layer, ablate_top)

    def generate(z: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
        return _generate(generator.module, z, z_shape, generator.spec, device, config.batch_size)

    effects, record = [], {}
    if concepts:
        before, _ = _label_counts(generate(latents), segmenter, device, min_confidence)
        area = before.sum(axis=1)  # pixels per sample
    bar = tqdm(concepts.items(), desc=f"ablate {layer.layer}", unit="concept", disable=not config.progress)
    for label, units in bar:
        # the samples where the concept covers most pixels (object label k is segmenter class k)
        shown = [int(i) for i in np.argsort(-before[:, label], kind="stable")[:PAIRS] if before[i, label] > 0]
        with zeroed_units(module, units, config.channels_last):
            after, kept = _label_counts(generate(latents), segmenter, device, min_confidence, shown)
        originals = [image for _, images in generate(latents[shown]) for image in images]
        name = layer.label_names[label]
        f0, f1 = float((before[:, label] / area).mean()), float((after[:, label] / area).mean())
        record[name] = {"units": [u + 1 for u in units], "pixel_fraction_before": f0, "pixel_fraction_after": f1}
        pairs = [(i, originals[j], kept[i]) for j, i in enumerate(shown)]
        effects.append(CausalEffect(label, name, [u + 1 for u in units], f0, f1, pairs))
    atomic_write_json(directory / CAUSAL_FILE, record)
    samples = len(latents)
    write_causal_page(directory, layer.layer, generator.spec, effects, samples, ablate_top, run=run_dir)
    atomic_write_json(directory / CAUSAL_OPTIONS, options)
