"""What every model source shares: the loaded model, the source registry, checkpoint loading.

A *model source* turns a ``--model SPEC`` into a :class:`LoadedModel`. Sources register
themselves with :func:`register_source` when their module is imported;
:func:`netdissect.models.load_model` imports the built-in ones and asks each, in order, whether
it takes the SPEC. Sources import this module only, never the loader, so no import cycle forms.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .preprocess import Preprocess


@dataclass
class LoadedModel:
    """A model ready to dissect: the module (in eval mode), its preprocessing and its identity."""

    module: nn.Module
    preprocess: Preprocess
    spec: str
    weights: str | None = None


@dataclass(frozen=True)
class ModelSource:
    """One kind of ``--model SPEC``.

    Attributes:
        name: short name shown in errors and docs (``"caffe"``).
        matches: whether this source takes a SPEC.
        load: ``load(spec, weights, trust_pickle, model_args) -> LoadedModel``.
        syntax: how the SPEC is written (``"caffe:deploy.prototxt"``), for error messages.
    """

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, str | None, bool, dict], LoadedModel]
    syntax: str


SOURCES: list[ModelSource] = []


@dataclass(frozen=True)
class ModelOptions:
    """The command-line options that give what is being loaded, as error messages name them.

    A model is ``--model``/``--weights``/``--model-args``; a segmenter and a generator have
    options of their own (:data:`ROLES`). :func:`netdissect.models.load_model` sets them for the
    duration of a load (its ``role``); sources read them with :func:`model_options`.
    """

    spec: str = "--model"
    weights: str = "--weights"
    args: str = "--model-args"


#: The options of each thing a SPEC can load (``load_model(..., role=...)``).
ROLES = {
    "model": ModelOptions(),
    "segmenter": ModelOptions("--segmenter", "--segmenter-weights", "--segmenter-args"),
    "generator": ModelOptions("--generator", "--generator-weights", "--generator-args"),
}

_OPTIONS: ContextVar[ModelOptions] = ContextVar("netdissect_model_options", default=ROLES["model"])


def model_options() -> ModelOptions:
    """The options of what is being loaded now (a model's outside :func:`loading_as`)."""
    return _OPTIONS.get()


@contextmanager
def loading_as(role: str) -> Iterator[ModelOptions]:
    """Name ``role``'s options (``"model"``, ``"segmenter"``, ``"generator"``) in errors raised inside."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    token = _OPTIONS.set(ROLES[role])
    try:
        yield ROLES[role]
    finally:
        _OPTIONS.reset(token)


def register_source(source: ModelSource) -> ModelSource:
    """Add a model source (later registrations of the same name replace earlier ones)."""
    SOURCES[:] = [s for s in SOURCES if s.name != source.name]
    SOURCES.append(source)
    return source


def prefix_matcher(prefix: str) -> Callable[[str], bool]:
    """A ``matches`` function for SPECs that start with ``prefix`` (``"caffe:"``)."""
    return lambda spec: spec.startswith(prefix)


def torch_load(path: Path, trust_pickle: bool) -> Any:
    """``torch.load`` on CPU, ``weights_only`` unless the user trusts the file's pickles."""
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


def cwd_on_path() -> None:
    """Let user modules in the current directory import (as ``python -m`` would)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def load_checkpoint(module: nn.Module, path: str | os.PathLike, trust_pickle: bool = False) -> None:
    """Load a state dict (plain, ``{'state_dict': ...}``, or with ``module.`` prefixes) into ``module``."""
    path = Path(path)
    state = torch_load(path, trust_pickle)
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
