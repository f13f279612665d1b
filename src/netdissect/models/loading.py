"""Model sources behind one ``--model SPEC``; each declares its preprocessing.

SPECs:
  * ``demo``: the bundled demo CNN;
  * ``caffe:deploy.prototxt`` (``weights``: the ``.caffemodel``), ``places365:<arch>``,
    ``path/to/model.onnx``: see :mod:`.caffe`, :mod:`.places365`, :mod:`.onnx`;
  * ``torchvision:<name>``: a torchvision architecture, random init (seed 0) unless ``weights`` is a
    torchvision weights name (``IMAGENET1K_V1``; downloaded into torch's cache) or a checkpoint;
  * ``package.module:callable``: imported (the current directory is on the path) and called
    with ``model_args`` as keyword arguments;
  * a file path: a whole pickled model, loaded only with ``trust_pickle=True``.

A checkpoint given with ``weights`` may be a state dict or ``{'state_dict': ...}``; ``module.``
prefixes (DataParallel) are stripped. Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..hooks import first_line
from .demo import demo_model
from .preprocess import Preprocess


@dataclass
class LoadedModel:
    """A model ready to dissect: the module (in eval mode), its preprocessing and its identity."""

    module: nn.Module
    preprocess: Preprocess
    spec: str
    weights: str | None = None


def load_model(
    spec: str,
    weights: str | None = None,
    trust_pickle: bool = False,
    model_args: dict | None = None,
) -> LoadedModel:
    """Load a model from a SPEC (see the module docstring)."""
    model_args = model_args or {}
    if spec == "demo":
        module = demo_model(weights) if weights else demo_model()
        return LoadedModel(module, Preprocess(), spec, weights)
    if spec.startswith("torchvision:"):
        module = _torchvision(spec.split(":", 1)[1], weights, trust_pickle, model_args)
        return LoadedModel(module.eval(), Preprocess(), spec, weights)
    if spec.startswith("caffe:"):
        from .caffe import load_caffe

        return load_caffe(spec.split(":", 1)[1], weights)
    if spec.startswith("places365:"):
        from .places365 import load_places365

        return load_places365(spec.split(":", 1)[1], weights, trust_pickle)
    if spec.lower().endswith(".onnx"):
        from .onnx import load_onnx

        return load_onnx(spec)
    if ":" in spec and not os.path.exists(spec):
        module = _callable(spec, model_args)
    elif os.path.isfile(spec):
        module = _whole_model(Path(spec), trust_pickle)
    else:
        raise ModelError(
            f"unknown model spec {spec!r}: use demo, torchvision:<name>, package.module:callable "
            "or the path of a pickled model"
        )
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
    if weights and not os.path.exists(weights) and not weights.endswith((".pth", ".pt", ".tar", ".ckpt")):
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
                f"on a machine with internet and put it at {target}, or pass --weights PATH"
            ) from None
    with torch.random.fork_rng(devices=[]):  # random init: the same weights in every process and run
        torch.manual_seed(0)
        module = torchvision.models.get_model(name, weights=None, **model_args)
    if weights:
        load_checkpoint(module, weights, trust_pickle)
    return module


def _callable(spec: str, model_args: dict) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    _cwd_on_path()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import {module_name!r} for model spec {spec!r}: {exc}") from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ModelError(f"module {module_name!r} has no attribute {attr!r} (model spec {spec!r})")
        factory = getattr(factory, part)
    if callable(factory) and not isinstance(factory, nn.Module):
        try:
            model = factory(**model_args)
        except Exception as exc:
            raise ModelError(f"model spec {spec!r} failed with --model-args {model_args}: {first_line(exc)}") from None
    else:
        model = factory
    if not isinstance(model, nn.Module):
        raise ModelError(f"model spec {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise ModelError(
                f"{path} holds pickled Python objects, which can run code when loaded; pass "
                "--trust-pickle (trust_pickle=True) only if you trust the file"
            ) from None
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from None


def _cwd_on_path() -> None:
    """Let user modules in the current directory import (as ``python -m`` would)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _whole_model(path: Path, trust_pickle: bool) -> nn.Module:
    _cwd_on_path()  # a pickled model's classes usually live beside it
    loaded = _torch_load(path, trust_pickle)
    if not isinstance(loaded, nn.Module):
        raise ModelError(
            f"{path} holds a {type(loaded).__name__}, not a whole model; give the architecture as "
            "--model and the file as --weights"
        )
    return loaded


def load_checkpoint(module: nn.Module, path: str | os.PathLike, trust_pickle: bool = False) -> None:
    """Load a state dict (plain, ``{'state_dict': ...}``, or with ``module.`` prefixes) into ``module``."""
    path = Path(path)
    state = _torch_load(path, trust_pickle)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict (nor a dict with a 'state_dict' entry)")
    load_state(module, {k.removeprefix("module."): v for k, v in state.items()}, path)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Load ``state`` into ``module``, or stop with one line naming the first mismatched keys.

    BatchNorm counters (``num_batches_tracked``) missing from old checkpoints are filled in.
    """
    own = module.state_dict()
    state = dict(state)
    for key, value in own.items():  # pre-0.4 checkpoints have no BatchNorm counters
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected keys {', '.join(unexpected[:3])}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise ModelError(f"weights {source} do not fit the model: {'; '.join(parts)}")
    module.load_state_dict(state)


def model_fingerprint(module: nn.Module) -> str:
    """A hash of the model's class and parameters and buffers: equal weights, equal hash."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
