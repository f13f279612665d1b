"""Run a model in two parts around one layer, so ablated copies of the layer's output go through
the rest of the network without rerunning the part before it.

Two ways, chosen by :func:`split_model`:

* ``fx``: the model is traced with :mod:`torch.fx` (the layer kept as one call) and cut into a
  prefix, which computes the layer's output and every other value the rest needs (skip
  connections), and a suffix, which takes those values. Ablated copies are stacked along the
  batch axis; the other values are repeated to match. The split is checked on the first batch
  against the whole model.
* ``hook``: when tracing fails (data-dependent control flow, a layer called twice...), the
  whole model runs on the input repeated once per copy, and a forward hook replaces the layer's
  output with the stacked ablated copies: the prefix reruns once per chunk of copies.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from ..capture.hooks import resolve_layers
from ..errors import ModelError, first_line


def logits_of(output: Any, where: str) -> torch.Tensor:
    """A model output as (B, classes) logits (tuples give their first tensor)."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        output = output.logits
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(f"{where}: the model's output is not (batch, classes) scores: got {shape}")
    return output


def layer_tensor(output: Any, layer: str) -> torch.Tensor:
    """The layer's output as a tensor with units on axis 1."""
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(f"layer {layer!r} output is not a (B, C, ...) tensor: got {shape}")
    return output


class _Tracer(fx.Tracer):
    def __init__(self, layer: str) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name == self.layer or super().is_leaf_module(m, module_qualified_name)


class HookSplit:
    """The fallback split: the prefix reruns on the repeated input, a hook swaps in the copies."""

    path = "hook"

    def __init__(self, model: nn.Module, layer: str, reason: str = "") -> None:
        self.model, self.layer, self.reason = model, layer, reason
        self.module = resolve_layers(model, [layer])[layer]

    def prefix(self, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """``(state, layer output)`` for input ``x``."""
        captured: list[torch.Tensor] = []

        def hook(module, inputs, output):
            if not captured:
                captured.append(output)

        handle = self.module.register_forward_hook(hook)
        try:
            logits_of(self.model(x), f"layer {self.layer!r}")
        finally:
            handle.remove()
        if not captured:
            raise ModelError(f"layer {self.layer!r} was not called during the forward pass")
        return x, layer_tensor(captured[0], self.layer)

    def suffix(self, state: Any, replaced: torch.Tensor, copies: int) -> torch.Tensor:
        """The model's logits with the layer's output replaced by ``replaced`` (copies x B rows)."""
        x = state
        done: list[bool] = []

        def hook(module, inputs, output):
            if not done:
                done.append(True)
                return replaced

        handle = self.module.register_forward_hook(hook)
        try:
            repeated = x.repeat(copies, *([1] * (x.dim() - 1))) if copies > 1 else x
            return logits_of(self.model(repeated), f"layer {self.layer!r}")
        finally:
            handle.remove()


class FxSplit:
    """The traced split: prefix and suffix graph modules sharing the model's submodules."""

    path = "fx"
    reason = ""

    def __init__(self, model: nn.Module, layer: str) -> None:
        tracer = _Tracer(layer)
        graph = tracer.trace(model)
        root = fx.GraphModule(tracer.root, graph)
        targets = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
        if len(targets) != 1:
            raise ValueError(f"layer called {len(targets)} times in the traced graph")
        target = targets[0]
        after: set[fx.Node] = set()
        for node in graph.nodes:
            if node is target or any(a in after for a in node.all_input_nodes):
                after.add(node)
        output = next(n for n in graph.nodes if n.op == "output")
        if output not in after:
            raise ModelError(f"the model's output does not depend on layer {layer!r}")
        frontier = [target]
        for node in graph.nodes:
            if node in after and node is not target:
                frontier += [a for a in node.all_input_nodes if a not in after and a not in frontier]
        prefix = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for node in graph.nodes:
            if node not in after or node is target:
                env[node] = prefix.node_copy(node, lambda n: env[n])
        prefix.output(tuple(env[n] for n in frontier))
        suffix = fx.Graph()
        senv: dict[fx.Node, fx.Node] = {}
        for i, node in enumerate(frontier):
            senv[node] = suffix.placeholder(f"frontier_{i}")
        for node in graph.nodes:
            if node in after and node is not target:
                senv[node] = suffix.node_copy(node, lambda n: senv[n])
        self.prefix_module = fx.GraphModule(root, prefix)
        self.prefix_module.graph.eliminate_dead_code()
        self.prefix_module.recompile()
        self.suffix_module = fx.GraphModule(root, suffix)
        self.layer = layer

    def prefix(self, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
        values = self.prefix_module(x)
        return (values, x.shape[0]), layer_tensor(values[0], self.layer)

    def suffix(self, state: Any, replaced: torch.Tensor, copies: int) -> torch.Tensor:
        values, batch = state
        others = []
        for v in values[1:]:
            if copies > 1 and isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == batch:
                v = v.repeat(copies, *([1] * (v.dim() - 1)))
            others.append(v)
        return logits_of(self.suffix_module(replaced, *others), f"layer {self.layer!r}")


Split = FxSplit | HookSplit


def split_model(model: nn.Module, layer: str, x: torch.Tensor, use_fx: bool = True) -> Split:
    """The fastest split that reproduces ``model`` on ``x`` (a first batch)."""
    resolve_layers(model, [layer])  # unknown layers: one line with close matches
    if not use_fx:
        return HookSplit(model, layer, "not tried")
    try:
        split: Split = FxSplit(model, layer)
        with torch.no_grad():
            expected = logits_of(model(x), f"layer {layer!r}")
            state, out = split.prefix(x)
            got = split.suffix(state, torch.cat([out, out]), 2)
        if got.shape != (2 * x.shape[0], expected.shape[1]) or not (
            torch.allclose(got[: x.shape[0]], expected, rtol=1e-4, atol=1e-5)
            and torch.allclose(got[x.shape[0] :], expected, rtol=1e-4, atol=1e-5)
        ):
            raise ValueError("the traced split does not reproduce the model")
        return split
    except ModelError:
        raise
    except Exception as exc:  # tracing fails in many ways on arbitrary models
        return HookSplit(model, layer, first_line(exc))
