"""``describe()``: every unit of any layer described by image-level AUC (with significance) and by WPMI.

Outputs, per layer in ``<out>/<layer>/``: ``descriptions.csv`` (``unit,method,rank,concept,score,
p_value,significant``; units 1-based, rank 1 the best, ``--top-k`` rows per unit and method),
``descriptions.json`` (the same, with each method's settings, the layer's summary and the
final-layer accuracy) and ``descriptions.npz`` (the full score tables and each unit's top
images). ``<out>/describe.json`` records the run (its key, layers and probe images). When
``out`` holds a dissection run of the same model the descriptions join it (its report then
shows them); otherwise ``out`` is a run of its own.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..capture.hooks import resolve_layers
from ..devices import resolve_device
from ..errors import OptionError, RunDirectoryError
from ..files import atomic_write_json, layer_dirname, read_text_lines
from ..models.base import LoadedModel, model_fingerprint
from ..models.preprocess import Preprocess
from ..runs.checkpoints import Checkpointer, checkpoint_key
from ..runs.directory import read_run, run_lock
from ..runs.outputs import DESCRIPTION, DISSECTION, GENERATOR, check_output, claim_output, read_kind
from .concepts import ConceptLabels, load_concepts
from .result import LAYER_FILES, DescriptionResult, LayerDescriptions, describe_layer, write_layer

METHODS = ("auc", "wpmi")
RUN_FILE = "describe.json"
CHECKPOINT = Path("checkpoints") / "describe.ckpt"


def describe(
    model: nn.Module | LoadedModel | str,
    layers: Sequence[str],
    out: str | os.PathLike | None = None,
    *,
    dataset: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    methods: Sequence[str] = ("auc",),
    concepts: str | os.PathLike | Sequence[str] | None = None,
    clip: str | None = None,
    top_k: int = 5,
    min_images: int = 10,
    max_fraction: float = 0.5,
    alpha: float = 0.05,
    formula_length: int = 1,
    beam: int = 5,
    formula_ops: Sequence[str] | str = ("and", "or", "andnot"),
    classes: Sequence[str] | str | os.PathLike | None = None,
    size: int | None = None,
    batch_size: int = 32,
    workers: int = 0,
    device: str | None = None,
    tokens: str | int = "auto",
    channels_last: bool = False,
    checkpoint_every: float = 60.0,
    overwrite: bool = False,
    progress: bool = True,
    report: bool = True,
) -> DescriptionResult:
    """Describe every unit of ``layers`` by image-level concept scores.

    Args:
        model: an ``nn.Module`` (ImageNet preprocessing), a :class:`~netdissect.LoadedModel` or a SPEC.
        layers: dotted layer names; any output shape: (B, C), (B, C, H, W) maps (spatial mean),
            (B, N, C) tokens (mean over the patch tokens).
        out: the run directory (optional): a dissection run of the same model to join, or a new one.
        dataset: a Broden-format dataset: a concept is present in an image when annotated anywhere in it.
        images: a folder of images: an ImageFolder (class = folder), images named by ``labels``
            (a CSV ``image,labels``, ``;``-separated), or unlabelled probe images (for ``wpmi``).
        methods: ``auc`` (INVERT's AUC with a one-sided Mann-Whitney p-value and
            Benjamini-Hochberg at ``alpha``) and/or ``wpmi`` (CLIP-Dissect's soft-WPMI; needs ``clip``).
        concepts: the words WPMI chooses from (a list or a file, one per line); default: the label names.
        clip: a CLIP spec (``demo``, ``open_clip:ARCH/PRETRAINED``, ``hf:NAME_OR_DIR``, ``package.module:callable``).
        top_k: descriptions kept per unit and method.
        min_images: a concept (or formula) is scored by AUC when it holds on at least this many images ...
        max_fraction: ... and on at most this fraction of them.
        formula_length: with N >= 2, also the best AND / OR / AND NOT formulas of up to N concepts by AUC.
        classes: the model's class names (a list or a file) for the final-layer accuracy;
            default: the model source's, or an ImageFolder's folders.
        size: use only the first ``size`` images.

    Returns:
        A :class:`DescriptionResult` (``result[layer]`` is a layer's :class:`LayerDescriptions`).
    """
    methods = _check_options(methods, clip, top_k, min_images, max_fraction, alpha, formula_length, beam, batch_size)
    from ..engine.config import parse_formula_ops

    ops = parse_formula_ops(formula_ops if isinstance(formula_ops, str) else list(formula_ops))
    loaded = _loaded(model)
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise OptionError("--layers names no layer")
    resolve_layers(loaded.module, layers)
    directory = Path(out) if out is not None else None
    joined = _check_out(directory, loaded) if directory is not None else False
    probes = load_concepts(dataset, images, labels, size=size, progress=progress)
    words = _concept_words(concepts, probes, methods)
    _check_data(probes, methods, min_images)
    class_names = _class_names(classes, loaded, probes)
    encoder = None
    if "wpmi" in methods:
        from .clip import load_clip

        encoder = load_clip(str(clip), device)
    dev = resolve_device(device)
    options = {
        "methods": list(methods),
        "top_k": top_k,
        "min_images": min_images,
        "max_fraction": max_fraction,
        "alpha": alpha,
        "formula_length": formula_length,
        "beam": beam,
        "formula_ops": list(ops),
        "clip": clip,
        "concepts": words,
        "tokens": tokens,
        "channels_last": channels_last,
    }
    key = {
        "model": loaded.spec,
        "model_fingerprint": model_fingerprint(loaded.module),
        "probes": probes.identity(),
        "options": options,
        "preprocess": repr(loaded.preprocess),
    }
    key = _jsonable(key)
    began = time.perf_counter()
    if directory is None:
        values, embeddings = _values(loaded, layers, probes, dev, batch_size, workers, tokens, channels_last, encoder, None, progress)  # fmt: skip
        return _describe(layers, values, embeddings, probes, words, encoder, options, class_names, key, began, None)
    if not joined:
        claim_output(directory, DESCRIPTION)
    with run_lock(directory):
        previous = _read_run(directory)
        if previous and previous.get("key") != key and not overwrite:
            raise RunDirectoryError(
                f"{directory} holds descriptions made with another model, probe images or options; "
                "choose another --out or pass --overwrite"
            )
        saved = _saved_values(directory, layers, probes, loaded, size, tokens, channels_last) if joined else {}
        todo = [name for name in layers if name not in saved]
        checkpointer = Checkpointer(directory / CHECKPOINT, checkpoint_key({**key, "layers": todo, "batch": batch_size}), checkpoint_every)  # fmt: skip
        values, embeddings = _values(loaded, todo, probes, dev, batch_size, workers, tokens, channels_last, encoder, checkpointer, progress)  # fmt: skip
        values = {name: saved[name] if name in saved else values[name] for name in layers}
        result = _describe(
            layers, values, embeddings, probes, words, encoder, options, class_names, key, began, directory
        )
        others = [name for name in previous.get("layers", []) if name not in layers]
        same = previous.get("key") == key  # the same descriptions: their other layers stay; else they go
        for name in layers:
            write_layer(result[name], directory / layer_dirname(name))
        for name in [] if same else others:  # layers of the replaced descriptions
            for file in LAYER_FILES:
                (directory / layer_dirname(name) / file).unlink(missing_ok=True)
        kept = others if same else []
        atomic_write_json(
            directory / RUN_FILE,
            {
                "key": key,
                "layers": kept + layers,
                "images": [str(p) for p in probes.images],
                "concepts": probes.names,
                "joined": joined,
                "metadata": result.metadata,
            },
        )
        checkpointer.clear()
    if report:
        from ..report.describe_page import write_describe_page

        write_describe_page(directory)
    return result


def _check_options(
    methods, clip, top_k, min_images, max_fraction, alpha, formula_length, beam, batch_size
) -> list[str]:
    methods = list(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise OptionError(f"--method takes {' and/or '.join(METHODS)}, got {' '.join(unknown) or 'nothing'}")
    if "wpmi" in methods and not clip:
        raise OptionError(
            "--method wpmi needs --clip SPEC (a CLIP model: demo, open_clip:..., hf:..., module:callable)"
        )
    for option, value, low in (
        ("--top-k", top_k, 1),
        ("--min-images", min_images, 1),
        ("--formula-length", formula_length, 1),
        ("--beam", beam, 1),
        ("--batch-size", batch_size, 1),
    ):
        if value < low:
            raise OptionError(f"{option} must be >= {low}, got {value}")
    if not 0 < max_fraction <= 1:
        raise OptionError(f"--max-fraction must lie in (0, 1], got {max_fraction}")
    if not 0 < alpha < 1:
        raise OptionError(f"--alpha must lie in (0, 1), got {alpha}")
    return methods


def _loaded(model: nn.Module | LoadedModel | str) -> LoadedModel:
    if isinstance(model, str):
        from ..models.loading import load_model

        model = load_model(model)
    return model if isinstance(model, LoadedModel) else LoadedModel(model, Preprocess(), type(model).__name__)


def _check_out(directory: Path, loaded: LoadedModel) -> bool:
    """Whether ``directory`` is a dissection run of this model to join; refuses other folders."""
    found = read_kind(directory)
    if found in (DISSECTION, GENERATOR):
        run = read_run(directory)
        theirs = run.get("key", {}).get("model_fingerprint")
        if theirs != model_fingerprint(loaded.module):
            raise RunDirectoryError(
                f"--out {directory} holds a dissection of another model (or other weights): describe this "
                "model into another --out"
            )
        return True
    check_output(directory, DESCRIPTION)
    return False


def _saved_values(
    directory: Path,
    layers: Sequence[str],
    probes: ConceptLabels,
    loaded: LoadedModel,
    size: int | None,
    tokens: str | int,
    channels_last: bool,
) -> dict[str, np.ndarray]:
    """The image-level values the joined dissection kept (``dissect --image-values``) for
    ``layers``, where they are exactly what describe would compute: the same Broden images in the
    same order with the same preprocessing, the same token and layout options, the model's own
    units (no rotation) in full precision (no ``--amp``, contiguous memory)."""
    if not probes.categories or probes.root is None:  # the probes are not a Broden dataset
        return {}
    from ..data.broden import BrodenDataset
    from ..runs.directory import dataset_identity
    from ..runs.layout import IMAGE_VALUES, is_finished_layer, layer_path, read_layer

    key = read_run(directory).get("key", {})
    theirs = key.get("options", {})
    ours = {"tokens": tokens, "channels_last": channels_last}
    if (
        not theirs.get("image_values")
        or theirs.get("rotate") is not None
        or theirs.get("amp")
        or theirs.get("memory_format", "contiguous") != "contiguous"
        or _jsonable({k: theirs.get(k) for k in ours}) != _jsonable(ours)
    ):
        return {}
    identity = dataset_identity(BrodenDataset(probes.root, preprocess=loaded.preprocess, size=size))
    if _jsonable(identity) != key.get("dataset"):
        return {}
    saved = {}
    for name in layers:
        path = layer_path(directory, name)
        values = read_layer(path, maps=False).arrays.get(IMAGE_VALUES) if is_finished_layer(path) else None
        if values is not None and len(values) == len(probes.images):
            saved[name] = values
    return saved


def _jsonable(value: Any) -> Any:
    """``value`` as a run's JSON key holds it (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, default=str))


def _read_run(directory: Path) -> dict:
    try:
        return json.loads((directory / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _concept_words(concepts, probes: ConceptLabels, methods: list[str]) -> list[str] | None:
    """WPMI's words: ``concepts`` (a list or a file) or the probes' label names."""
    if "wpmi" not in methods:
        return None
    if concepts is None:
        words = list(probes.names)
        if not words:
            raise OptionError("--method wpmi needs words: pass --concepts FILE (one per line) or labelled images")
        return words
    if isinstance(concepts, (str, os.PathLike)):
        words = read_text_lines(concepts, "--concepts")
        source = f"--concepts {concepts}"
    else:
        words, source = [str(c).strip() for c in concepts], "concepts"
    if not words:
        raise OptionError(f"{source} lists no concept")
    twice = sorted({w for w in words if words.count(w) > 1})
    if twice:
        raise OptionError(f"{source} lists {', '.join(repr(w) for w in twice[:3])} more than once")
    return words


def _check_data(probes: ConceptLabels, methods: list[str], min_images: int) -> None:
    n = len(probes.images)
    if "auc" in methods:
        if not probes.names:
            raise OptionError(
                f"{probes.source} has no concept labels: --method auc needs labels (a Broden dataset, class "
                "folders or --labels CSV); for unlabelled images use --method wpmi --clip SPEC"
            )
        if min_images > n:
            raise OptionError(f"--min-images {min_images} is more than the {n} probe images")


def _class_names(classes, loaded: LoadedModel, probes: ConceptLabels) -> list[str] | None:
    if classes is not None:
        if isinstance(classes, (str, os.PathLike)):
            return [c for c in read_text_lines(classes, "--classes") if not c.startswith("#")]
        return [str(c) for c in classes]
    from ..ablation.images import model_class_names

    names = model_class_names(loaded)
    if names is None and probes.source.startswith("ImageFolder"):
        names = list(probes.names)
    return names


def _values(loaded, layers, probes, dev, batch_size, workers, tokens, channels_last, encoder, checkpointer, progress):
    from .values import unit_values

    return unit_values(
        loaded,
        layers,
        probes.images,
        dev,
        batch_size=batch_size,
        workers=workers,
        tokens=tokens,
        channels_last=channels_last,
        clip=encoder,
        checkpointer=checkpointer,
        progress=progress,
    )


def _describe(layers, values, embeddings, probes, words, encoder, options, class_names, key, began, directory):
    similarity = None
    if encoder is not None and embeddings is not None and words:
        texts = encoder.encode_texts(words).float().cpu().numpy()
        similarity = embeddings @ texts.T
    described: dict[str, LayerDescriptions] = {}
    for name in layers:
        described[name] = describe_layer(name, values[name], probes, words, similarity, options, class_names)
    metadata = {
        "model": key["model"],
        "model_fingerprint": key["model_fingerprint"],
        "probes": key["probes"],
        "options": options,
        "versions": {"netdissect": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "seconds": round(time.perf_counter() - began, 3),
    }
    return DescriptionResult(described, metadata, directory)
