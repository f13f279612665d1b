"""Segmentation models as concept annotators: load a segmenter, label images with its classes.

A *segmenter* is a model from any model source (``--segmenter`` takes the SPECs of
``--model``: ``torchvision:deeplabv3_resnet50``, ``package.module:callable``, ONNX files ...)
that maps a batch of images, preprocessed as its source says, to class logits ``(B, K, H, W)``
(or a dict holding them under ``"out"``, as torchvision's segmentation models return). A pixel's
label is the class of largest logit; class 0 (the background), and pixels whose softmax
probability stays below ``min_confidence``, are unlabelled. Logits at another resolution than
the image are resized bilinearly to it first.

Class names (K, the first being the background) come from, in this order: the ``classes``
argument (a list, or a file of K lines), the torchvision weights' ``meta["categories"]`` (for
``torchvision:`` SPECs, with or without the weights loaded), or a ``classes`` attribute of the
module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import ModelError, OptionError
from ..files import read_text_lines
from ..models.base import LoadedModel
from ..models.loading import load_model
from ..models.preprocess import Preprocess


@dataclass
class Segmenter:
    """A segmentation model ready to label images: module (eval mode), preprocessing and class names."""

    module: nn.Module
    preprocess: Preprocess
    classes: list[str]
    spec: str
    weights: str | None = None


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names from a file of one name per line (blank lines ignored; the first is the background)."""
    return check_classes(read_text_lines(path, "--classes"), str(path))


def check_classes(names: Sequence[str], source: str) -> list[str]:
    """``names`` as a list, or a one-line error when there are fewer than 2 or a name repeats."""
    names = [str(n) for n in names]
    if len(names) < 2:
        raise OptionError(f"{source}: a segmenter needs at least 2 classes (the background first), got {len(names)}")
    seen: set[str] = set()
    for name in names[1:]:
        if name in seen:
            raise OptionError(f"{source}: class name {name!r} appears twice")
        seen.add(name)
    return names


def torchvision_classes(name: str, model_args: dict) -> list[str] | None:
    """The class names of a torchvision model's weights (None when it has none or ``num_classes`` differs)."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    members = list(enum)
    categories = members[0].meta.get("categories") if members else None
    if not categories or model_args.get("num_classes", len(categories)) != len(categories):
        return None
    return list(categories)


def load_segmenter(
    spec: str | nn.Module | LoadedModel | Segmenter,
    classes: str | os.PathLike | Sequence[str] | None = None,
    weights: str | None = None,
    trust_pickle: bool = False,
    model_args: dict | None = None,
) -> Segmenter:
    """Load a segmenter from a model SPEC (or wrap a module) with its class names.

    Args:
        spec: a model SPEC (see :func:`netdissect.load_model`), an ``nn.Module`` (ImageNet
            preprocessing), a :class:`~netdissect.LoadedModel`, or a :class:`Segmenter` (whose
            class names ``classes`` replaces).
        classes: class names (background first), or the path of a file with one per line;
            default: the source's (torchvision weights' categories, or the module's ``classes``).
        weights: as for :func:`netdissect.load_model` (errors name it ``--segmenter-weights``).
        trust_pickle: as for :func:`netdissect.load_model`.
        model_args: as for :func:`netdissect.load_model`.
    """
    model_args = dict(model_args or {})
    if isinstance(spec, Segmenter):
        if classes is None:
            return spec
        spec = LoadedModel(spec.module, spec.preprocess, spec.spec, spec.weights)
    if isinstance(spec, str):
        loaded = load_model(spec, weights, trust_pickle, model_args, role="segmenter")
    elif isinstance(spec, LoadedModel):
        loaded = spec
    elif isinstance(spec, nn.Module):
        loaded = LoadedModel(spec, Preprocess(), type(spec).__name__)
    else:
        raise ModelError(f"a segmenter is a model SPEC or a torch.nn.Module, not a {type(spec).__name__}")
    if classes is not None:
        if isinstance(classes, (str, os.PathLike)):
            names = read_classes(classes)
        else:
            names = check_classes(list(classes), "classes")
    else:
        found = None
        if loaded.spec.startswith("torchvision:"):
            found = torchvision_classes(loaded.spec.split(":", 1)[1], model_args)
        declared = getattr(loaded.module, "classes", None)
        if found is None and isinstance(declared, (list, tuple)):
            found = [str(name) for name in declared]
        if found is None:
            raise OptionError(
                f"segmenter {loaded.spec!r} does not name its classes: pass --classes FILE "
                "(one name per line, the background first)"
            )
        names = check_classes(found, f"classes of segmenter {loaded.spec!r}")
    return Segmenter(loaded.module.eval(), loaded.preprocess, names, loaded.spec, loaded.weights)


def label_map(logits: torch.Tensor, min_confidence: float = 0.0) -> torch.Tensor:
    """Pixel labels (B, H, W) int64 of class logits (B, K, H, W): argmax, 0 where the softmax
    probability of the winning class is below ``min_confidence``."""
    labels = logits.argmax(dim=1)
    if min_confidence > 0:
        confidence = torch.softmax(logits.float(), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        labels[confidence < min_confidence] = 0
    return labels


def segmenter_logits(segmenter: Segmenter, output, batch: int) -> torch.Tensor:
    """The (B, K, h, w) logits in a segmenter's output, or a one-line error naming what came out."""
    if isinstance(output, dict):
        if "out" not in output:
            raise ModelError(
                f"segmenter {segmenter.spec!r} returned a dict without 'out' (keys: {', '.join(map(str, output))})"
            )
        output = output["out"]
    if not isinstance(output, torch.Tensor):
        raise ModelError(
            f"segmenter {segmenter.spec!r} returned a {type(output).__name__}, not class logits (B, K, H, W)"
        )
    k = len(segmenter.classes)
    if output.dim() != 4 or output.shape[0] != batch:
        raise ModelError(
            f"segmenter {segmenter.spec!r} returned shape {tuple(output.shape)} for {batch} image(s): "
            f"expected class logits ({batch}, {k}, H, W)"
        )
    if output.shape[1] != k:
        raise ModelError(
            f"segmenter {segmenter.spec!r} gives {output.shape[1]} classes but has {k} class names "
            "(pass --classes FILE with one name per class, the background first)"
        )
    return output


def segment(
    segmenter: Segmenter,
    images: Sequence[np.ndarray] | np.ndarray,
    device: torch.device | str = "cpu",
    min_confidence: float = 0.0,
) -> np.ndarray:
    """Label maps (B, H, W) int64 of RGB uint8 images (B, H, W, 3) of one size, at their resolution."""
    if len(images) == 0:
        raise ValueError("segment() needs at least one image")
    shapes = {np.asarray(im).shape for im in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(f"segment() takes RGB images (H, W, 3) of one size, got shapes {sorted(shapes)}")
    height, width = next(iter(shapes))[:2]
    prep = segmenter.preprocess
    x = torch.stack([prep.normalize(prep.resize(Image.fromarray(np.asarray(im, dtype=np.uint8)))) for im in images])
    with torch.inference_mode():
        logits = segmenter_logits(segmenter, segmenter.module(x.to(device)), len(images)).float()
        if tuple(logits.shape[-2:]) != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return label_map(logits, min_confidence).cpu().numpy()
