"""Capture the outputs of named layers in one forward pass, stopping after the last one needed."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ModelError, first_line


class _StopForward(Exception):
    """Raised inside the forward pass once every requested layer has been captured."""


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Map dotted layer names (``layer4.1.conv2``, ``features.10``) to modules.

    Raises a :class:`ModelError` naming the unknown layer and suggesting close matches.
    """
    modules = dict(model.named_modules())
    resolved = {}
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelError(f"unknown layer {name!r}{hint} (run `netdissect layers --model ...` to list them)")
        resolved[name] = modules[name]
    return resolved


class LayerCapture:
    """A context manager that records the outputs of ``layers`` during ``model`` forward passes.

    ``capture(x)`` runs the model on ``x`` and returns ``{name: output}``; the forward pass is
    abandoned as soon as every requested layer has produced its output, so layers after the
    deepest requested one cost nothing.

    Example::

        with LayerCapture(model, ["layer3", "layer4"]) as cap:
            outputs = cap(images)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = resolve_layers(model, self.layers)
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> LayerCapture:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if name not in self._outputs:
                self._outputs[name] = output
            if len(self._outputs) == len(self.layers):
                raise _StopForward

        return hook

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._outputs = {}
        try:
            self.model(x)
        except _StopForward:
            pass
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the model failed on input of shape {tuple(x.shape)}: {first_line(exc)}") from exc
        missing = [n for n in self.layers if n not in self._outputs]
        if missing:
            raise ModelError(f"layer {missing[0]!r} was not called during the forward pass")
        outputs, self._outputs = self._outputs, {}
        return {name: outputs[name] for name in self.layers}


def as_feature_map(
    name: str,
    output,
    tokens: str | int = "auto",
    channels_last: bool = False,
    input_hw: tuple[int, int] | None = None,
    batch: int | None = None,
) -> torch.Tensor:
    """A layer output as a (B, C, H, W) map, or a one-line :class:`ModelError`.

    Tuples and lists give their first tensor. (B, N, C) token sequences become maps of their
    patch tokens and, with ``channels_last``, 4-D outputs are read as (B, H, W, C): see
    :mod:`netdissect.capture.tokens` for ``tokens``; ``input_hw`` and ``batch`` describe the model
    input (for non-square token grids and the batch-first check).
    """
    from .tokens import channels_last_to_map, tokens_to_map

    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if isinstance(output, torch.Tensor) and output.dim() == 3 and tokens != "off":
        return tokens_to_map(name, output, tokens, input_hw, batch)
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        tokens_off = tokens == "off" and isinstance(output, torch.Tensor) and output.dim() == 3
        hint = " (a token sequence: --tokens off refuses those)" if tokens_off else ""
        raise ModelError(
            f"layer {name!r} output is not a (B, C, H, W) map: got {shape}{hint}; "
            "`netdissect describe` describes the units of any layer"
        )
    if channels_last:
        return channels_last_to_map(name, output)
    return output


@torch.no_grad()
def layer_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str, tuple | None]]:
    """Every named module with its type and output shape for input ``x`` (None: not called).

    Modules called several times (shared activations) report their first output.
    """
    shapes: dict[str, tuple] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inputs, output, name=name):
            if name not in shapes:
                out = output[0] if isinstance(output, (tuple, list)) and output else output
                shapes[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else ()

        handles.append(module.register_forward_hook(hook))
    try:
        model(x)
    except Exception as exc:
        raise ModelError(f"the model failed on a dummy input of shape {tuple(x.shape)}: {first_line(exc)}") from None
    finally:
        for handle in handles:
            handle.remove()
    return [(name, type(m).__name__, shapes.get(name)) for name, m in model.named_modules() if name]
