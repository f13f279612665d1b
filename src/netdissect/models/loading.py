"""Model sources behind one ``--model SPEC``; each declares its preprocessing.

SPECs:
  * ``demo``: the bundled demo CNN;
  * ``caffe:deploy.prototxt`` (``weights``: the ``.caffemodel``), ``places365:<arch>``,
    ``path/to/model.onnx``: see :mod:`.caffe`, :mod:`.places365`, :mod:`.onnx`;
  * ``torchvision:<name>``: a torchvision architecture, random init (seed 0, no pretrained backbone
    either) unless ``weights`` is a torchvision weights name (``IMAGENET1K_V1``; downloaded into
    torch's cache) or a checkpoint;
  * ``package.module:callable``: imported (the current directory is on the path) and called
    with ``model_args`` as keyword arguments;
  * a file path: a whole pickled model, loaded only with ``trust_pickle=True``.

A checkpoint given with ``weights`` may be a state dict or ``{'state_dict': ...}``; ``module.``
prefixes (DataParallel) are stripped. Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, first_line
from ..model_specs import BUILTIN_SOURCES, spec_list
from .base import (
    SOURCES,
    LoadedModel,
    ModelSource,
    cwd_on_path,
    import_object,
    load_checkpoint,
    load_state,
    loading_as,
    model_fingerprint,
    model_options,
    prefix_matcher,
    register_builtin,
    torch_load,
)
from .demo import demo_model
from .preprocess import Preprocess

__all__ = ["LoadedModel", "list_sources", "load_checkpoint", "load_model", "load_state", "model_fingerprint"]

#: Modules of the built-in sources registered on import (kept lazy: onnx and protobuf are heavy).
BUILTIN_SOURCE_MODULES = tuple(dict.fromkeys(s.module for s in BUILTIN_SOURCES if s.module != "loading"))


def load_model(
    spec: str,
    weights: str | None = None,
    trust_pickle: bool = False,
    model_args: dict | None = None,
    *,
    role: str = "model",
) -> LoadedModel:
    """Load a model from a SPEC (see the module docstring and :mod:`netdissect.models.base`).

    ``role`` (``"model"``, ``"segmenter"`` or ``"generator"``) says what is loaded, so that
    errors name its options: ``--weights`` for a model, ``--segmenter-weights`` for a
    segmenter, ``--generator-weights`` for a generator (see :data:`~netdissect.models.base.ROLES`).
    """
    sources = list_sources()
    with loading_as(role):
        for source in sources:
            if source.matches(spec):
                return source.load(spec, weights, trust_pickle, model_args or {})
    raise ModelError(f"unknown model spec {spec!r}: use {spec_list(s.syntax for s in sources)}")


def list_sources() -> list[ModelSource]:
    """Every registered model source (the built-in ones imported first) in the order :func:`load_model`
    asks them: ascending ``priority``; ties: the built-in sources in :data:`BUILTIN_SOURCES` order
    (whichever module was imported first), then the others in registration order."""
    for name in BUILTIN_SOURCE_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    builtin = {s.name: i for i, s in enumerate(BUILTIN_SOURCES)}
    order = {id(s): i for i, s in enumerate(SOURCES)}
    return sorted(SOURCES, key=lambda s: (s.priority, builtin.get(s.name, len(builtin)), order[id(s)]))


def _load_demo(spec: str, weights: str | None, trust_pickle: bool, model_args: dict) -> LoadedModel:
    module = demo_model(weights, trust_pickle) if weights else demo_model()
    return LoadedModel(module, Preprocess(), spec, weights)


def _load_torchvision(spec: str, weights: str | None, trust_pickle: bool, model_args: dict) -> LoadedModel:
    module = _torchvision(spec.split(":", 1)[1], weights, trust_pickle, model_args)
    return LoadedModel(module.eval(), Preprocess(), spec, weights)


def _load_callable(spec: str, weights: str | None, trust_pickle: bool, model_args: dict) -> LoadedModel:
    module = _callable(spec, model_args)
    if weights:
        load_checkpoint(module, weights, trust_pickle)
    return LoadedModel(module.eval(), Preprocess(), spec, weights)


def _load_pickled(spec: str, weights: str | None, trust_pickle: bool, model_args: dict) -> LoadedModel:
    module = _whole_model(Path(spec), trust_pickle)
    if weights:
        load_checkpoint(module, weights, trust_pickle)
    return LoadedModel(module.eval(), Preprocess(), spec, weights)


def _torchvision(name: str, weights: str | None, trust_pickle: bool, model_args: dict) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown torchvision model {name!r}{hint}")
    if weights and not _looks_like_path(weights):
        enum = torchvision.models.get_model_weights(name)
        key = weights.split(".")[-1]
        if key not in enum.__members__:
            raise ModelError(
                f"torchvision model {name!r} has no weights {weights!r}; available: {', '.join(enum.__members__)}"
            )
        url = enum[key].url
        try:
            return torchvision.models.get_model(name, weights=enum[key], **model_args)
        except OSError as exc:  # URLError is an OSError: offline or host down
            target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
            raise ModelError(
                f"cannot download {key} weights of {name} from {url} ({first_line(exc)}); fetch that file "
                f"on a machine with internet and put it at {target}, or pass {model_options().weights} PATH"
            ) from None
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
        # segmentation and detection models default to a pretrained backbone: random init stays offline
        model_args = {"weights_backbone": None, **model_args}
    with torch.random.fork_rng(devices=[]):  # random init: the same weights in every process and run
        torch.manual_seed(0)
        module = torchvision.models.get_model(name, weights=None, **model_args)
    if weights:
        load_checkpoint(module, weights, trust_pickle)
    return module


def _looks_like_path(weights: str) -> bool:
    """A checkpoint path rather than a torchvision weights name (``IMAGENET1K_V1``, ``ResNet18_Weights.DEFAULT``)."""
    return (
        os.path.exists(weights)
        or weights.endswith((".pth", ".pt", ".tar", ".ckpt"))
        or any(sep in weights for sep in {"/", os.sep, os.altsep or "/"})
    )


def _callable(spec: str, model_args: dict) -> nn.Module:
    factory = import_object(spec, "model")
    if callable(factory) and not isinstance(factory, nn.Module):
        try:
            model = factory(**model_args)
        except Exception as exc:
            raise ModelError(
                f"model spec {spec!r} failed with {model_options().args} {model_args}: {first_line(exc)}"
            ) from None
    else:
        model = factory
    if not isinstance(model, nn.Module):
        raise ModelError(f"model spec {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def _whole_model(path: Path, trust_pickle: bool) -> nn.Module:
    cwd_on_path()  # a pickled model's classes usually live beside it
    loaded = torch_load(path, trust_pickle, model_options().spec)
    if not isinstance(loaded, nn.Module):
        options = model_options()
        raise ModelError(
            f"{path} holds a {type(loaded).__name__}, not a whole model; give the architecture as "
            f"{options.spec} and the file as {options.weights}"
        )
    return loaded


register_builtin("demo", lambda spec: spec == "demo", _load_demo)
register_builtin("torchvision", prefix_matcher("torchvision:"), _load_torchvision)
register_builtin("callable", lambda spec: ":" in spec and not os.path.exists(spec), _load_callable)
register_builtin("pickle", os.path.isfile, _load_pickled)
