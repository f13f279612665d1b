"""What every model source shares: the loaded model, the source registry, checkpoint loading.

A *model source* turns a ``--model SPEC`` into a :class:`LoadedModel`. Sources register
themselves with :func:`register_source` when their module is imported;
:func:`netdissect.models.load_model` imports the built-in ones and asks each, in order of
priority, whether it takes the SPEC. Sources import this module only, never the loader, so no import cycle forms.
"""

from __future__ import annotations

import hashlib
import importlib
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

from ..errors import ModelError, first_line
from ..model_specs import builtin_source
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
        syntax: how the SPEC is written (``"caffe:deploy.prototxt"``), listed by the error for a
            SPEC that no source takes (and, for the built-in sources, by ``--model``'s help).
        priority: sources are asked in ascending priority (ties: built-ins first, then registration order); the
            catch-alls (a callable's dotted path, a pickled file) have
            :data:`~netdissect.model_specs.CATCH_ALL` and above.
    """

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, str | None, bool, dict], LoadedModel]
    syntax: str
    priority: int = 0


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


def register_builtin(
    name: str, matches: Callable[[str], bool], load: Callable[[str, str | None, bool, dict], LoadedModel]
) -> ModelSource:
    """Register a built-in source with the syntax and priority of its entry in
    :data:`netdissect.model_specs.BUILTIN_SOURCES`."""
    declared = builtin_source(name)
    return register_source(ModelSource(name, matches, load, declared.syntax, declared.priority))


def prefix_matcher(prefix: str) -> Callable[[str], bool]:
    """A ``matches`` function for SPECs that start with ``prefix`` (``"caffe:"``)."""
    return lambda spec: spec.startswith(prefix)


def torch_load(path: Path, trust_pickle: bool, option: str | None = None) -> Any:
    """``torch.load`` on CPU, ``weights_only`` unless the user trusts the file's pickles.

    Every failure is one :class:`ModelError` line naming ``option`` (default: the weights
    option of what is loaded, :func:`model_options`) and the path: not found, a folder, pickled
    objects without ``trust_pickle``, or "cannot be read as a checkpoint: <cause>".
    """
    path = Path(path)
    name = f"{option or model_options().weights} {path}"
    check_file(path, name, "a checkpoint file")
    if path.stat().st_size == 0:
        raise ModelError(f"{name} cannot be read as a checkpoint: the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _holds_objects(exc):
            raise ModelError(f"{name} cannot be read as a checkpoint: {_cause(exc)}") from None
        if not trust_pickle:
            raise ModelError(
                f"{name} holds pickled Python objects, which can run code when loaded; pass "
                "--trust-pickle (trust_pickle=True) only if you trust the file"
            ) from None
    except Exception as exc:
        raise ModelError(f"{name} cannot be read as a checkpoint: {_cause(exc)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"{name} cannot be read as a checkpoint: {_cause(exc)}") from None


def check_file(path: Path, name: str, what: str) -> None:
    """One line starting with ``name`` (``--weights PATH``) unless ``path`` is a file: not found, or a folder."""
    if not path.exists():
        raise ModelError(f"{name}: not found")
    if not path.is_file():
        raise ModelError(f"{name} is a folder, not {what}")


def _holds_objects(exc: pickle.UnpicklingError) -> bool:
    """Whether ``weights_only`` refused a well-formed pickle for its classes (not a broken file)."""
    text = str(exc)
    return any(s in text for s in ("Unsupported global", "Unsupported class", "not an allowed global"))


def _cause(exc: BaseException) -> str:
    """The first line of why a file could not be read, with the exception's type unless the text names it."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    marker = "WeightsUnpickler error:"  # torch wraps the unpickler's reason in a long explanation
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kind = type(exc).__name__
    if not lines:
        return kind
    return lines[0] if kind in lines[0] else f"{kind}: {lines[0]}"


def cwd_on_path() -> None:
    """Let user modules in the current directory import (as ``python -m`` would)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def import_object(spec: str, kind: str) -> Any:
    """The object a ``module:attribute.path`` SPEC names; modules in the current directory import.

    Errors are one-line :class:`ModelError` s naming the ``kind`` of SPEC (``"model"``, ``"CLIP"``).
    """
    module_name, _, attr = spec.partition(":")
    cwd_on_path()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import {module_name!r} for {kind} spec {spec!r}: {first_line(exc)}") from None
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise ModelError(f"module {module_name!r} has no attribute {attr!r} ({kind} spec {spec!r})")
        value = getattr(value, part)
    return value


def load_checkpoint(
    module: nn.Module, path: str | os.PathLike, trust_pickle: bool = False, option: str | None = None
) -> None:
    """Load a state dict (plain, ``{'state_dict': ...}``, or with ``module.`` prefixes) into ``module``.

    Errors name ``option`` (default: the weights option of what is loaded) and the path.
    """
    load_state(module, checkpoint_state(path, trust_pickle, option), path)


def checkpoint_state(path: str | os.PathLike, trust_pickle: bool = False, option: str | None = None) -> dict:
    """The tensors of a checkpoint: a state dict, ``{'state_dict': ...}`` or a whole model, ``module.`` stripped."""
    path = Path(path)
    state = torch_load(path, trust_pickle, option)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        held = f"a dict with keys {', '.join(map(str, list(state)[:5]))}" if isinstance(state, dict) else None
        held = held or f"a {type(state).__name__}"
        raise ModelError(
            f"{option or model_options().weights} {path} holds {held}, not a state dict "
            "(nor a dict with a 'state_dict' entry)"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


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
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise ModelError(f"weights {source} do not fit the model: {str(exc).strip().splitlines()[-1]}") from None


def model_fingerprint(module: nn.Module) -> str:
    """A hash of the model's class and parameters and buffers: equal weights, equal hash."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
