"""ONNX models (``--model path/to/model.onnx``), converted to a torch module with onnx2torch.

onnx2torch (the maintained converter) handles only some of the forms exporters write, so the
graph is normalised first:

* ``Constant`` nodes become initializers and ``Identity`` nodes are bypassed (the legacy
  exporter's constant folding feeds Conv biases through ``Identity``, which onnx2torch cannot
  follow);
* graphs newer than opset 17 are converted down to it with onnx's version converter
  (onnx2torch has no converters for opset-18+ ``ReduceMean`` or opset-19+ ``Identity``);
* ``Reshape``'s ``allowzero=1`` (written by the dynamo exporter) is dropped where the target
  shape is a constant without zeros, where it changes nothing.

When the converter still fails, onnxscript's optimizer (if installed) gets a try. The module
comes back in eval mode (onnx2torch returns it in training mode: BatchNorm would then use batch
statistics). Layer names are the converted graph's module names, as ``netdissect layers``
lists them (for torch exports: ``layer4/layer4/1/relu_1/Relu``). Preprocessing: ImageNet's
mean and std on RGB in [0, 1], unless overridden (``--mean``, ``--std``, ``--bgr``,
``--pixel-scale``).

Needs the optional dependencies ``onnx`` and ``onnx2torch`` (``pip install netdissect[onnx]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ModelError, first_line
from .base import LoadedModel, model_options, register_builtin
from .preprocess import Preprocess

#: The newest default-domain opset every onnx2torch converter we rely on handles.
TARGET_OPSET = 17


def _require():
    try:
        import onnx
        import onnx2torch
    except ImportError as exc:
        raise ModelError(
            f"ONNX models need the packages onnx and onnx2torch ({first_line(exc)}); "
            "install them with `pip install netdissect[onnx]`"
        ) from None
    return onnx, onnx2torch


def _default_opset(model) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def normalise_graph(model):
    """Rewrite an ``onnx.ModelProto`` (in place and returned) into a form onnx2torch converts.

    See the module docstring for the rewrites.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    graph_outputs = {o.name for o in graph.output}
    constants: dict[str, np.ndarray | None] = {init.name: None for init in graph.initializer}
    kept = []
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and node.domain in ("", "ai.onnx")
            and len(node.attribute) == 1
            and node.attribute[0].name == "value"
            and node.output[0] not in graph_outputs
        ):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            constants[tensor.name] = None
            continue
        kept.append(node)
    rename: dict[str, str] = {}
    nodes = []
    for node in kept:
        if (
            node.op_type == "Identity"
            and node.domain in ("", "ai.onnx")
            and len(node.input) == 1
            and node.output[0] not in graph_outputs
        ):
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
            continue
        nodes.append(node)
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(nodes)

    opset = _default_opset(model)
    if opset is not None and opset > TARGET_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
            graph = model.graph
        except Exception:  # keep the original opset; the converter may still cope
            pass

    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        shape = numpy_helper.to_array(initializers[node.input[1]])
        if (shape != 0).all():
            attrs = [a for a in node.attribute if a.name != "allowzero"]
            del node.attribute[:]
            node.attribute.extend(attrs)
    return model


def _convert(onnx2torch, model):
    module = onnx2torch.convert(model)
    return module.eval()


def load_onnx(path: str | os.PathLike) -> LoadedModel:
    """Load an ONNX file as a torch module in eval mode (see the module docstring)."""
    path = Path(path)
    _check_path(path)  # before the packages: a mistyped path is not a missing package
    onnx, onnx2torch = _require()
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ModelError(f"cannot read ONNX file {path}: {first_line(exc)}") from None
    if len(model.graph.node) == 0:
        raise ModelError(f"ONNX file {path} holds no graph nodes")
    original = onnx.ModelProto()
    original.CopyFrom(model)
    try:
        module = _convert(onnx2torch, normalise_graph(model))
    except Exception as exc:
        error = exc
        module = _optimized(onnx2torch, original)
        if module is None:
            raise ModelError(f"cannot convert ONNX file {path} with onnx2torch: {_describe(error)}") from None
    return LoadedModel(module, Preprocess(), str(path), None)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"{model_options().spec} {path}: ONNX file not found")
    if not path.is_file():
        raise ModelError(f"{model_options().spec} {path} is a folder, not an ONNX file")


def _optimized(onnx2torch, model):
    """A second try through onnxscript's optimizer (constant folding, dead code), if installed."""
    try:
        import onnxscript.optimizer
    except ImportError:
        return None
    try:
        optimized = onnxscript.optimizer.optimize(model)
        return _convert(onnx2torch, normalise_graph(optimized))
    except Exception:
        return None


def _describe(exc: BaseException) -> str:
    text = first_line(exc)
    if isinstance(exc, KeyError):
        text = f"missing tensor {text}"
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def _load_source(spec: str, weights: str | None, trust_pickle: bool, model_args: dict) -> LoadedModel:
    _check_path(Path(spec))
    if weights:
        options = model_options()
        raise ModelError(
            f"{options.weights} {weights} does not apply to ONNX models: {options.spec} {spec} holds its weights"
        )
    return load_onnx(spec)


register_builtin("onnx", lambda spec: spec.lower().endswith(".onnx"), _load_source)
