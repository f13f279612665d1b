"""The Caffe layer table: how each supported layer type (with its parameters and input shapes)
becomes a torch module and an output shape. :mod:`netdissect.models.caffe` wires the graph."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import ModelError
from .caffe_layers import (
    CaffeBatchNorm,
    CaffeLRN,
    CaffePooling,
    Concat,
    Eltwise,
    InnerProduct,
    Scale,
    Split,
)


class CaffeLayer:
    """A current-format or V1 layer, seen through one interface."""

    def __init__(self, proto, index: int) -> None:
        from .caffe_schema import LayerParameter, v1_type_name

        self.proto = proto
        self.type = proto.type if isinstance(proto, LayerParameter) else v1_type_name(proto)
        self.name = proto.name or f"{self.type.lower()}{index}"
        self.bottoms = list(proto.bottom)
        self.tops = list(proto.top)

    def param(self, field_name: str):
        if field_name in self.proto.DESCRIPTOR.fields_by_name:
            return getattr(self.proto, field_name)
        from . import caffe_schema

        # V1 lacks some parameter messages: their defaults apply.
        message = caffe_schema.LayerParameter().DESCRIPTOR.fields_by_name[field_name].message_type
        return caffe_schema._message_class(message.name)()

    def error(self, what: str) -> ModelError:
        return ModelError(f"Caffe layer {self.name!r} ({self.type}): {what}")


def is_included(rules_in, rules_out) -> bool:
    """Caffe's NetStateRule test for the TEST phase, level 0, no stages."""

    def meets(rule) -> bool:
        if rule.HasField("phase") and rule.phase != 1:
            return False
        if rule.HasField("min_level") and rule.min_level > 0:
            return False
        if rule.HasField("max_level") and rule.max_level < 0:
            return False
        return not rule.stage

    if rules_in:
        return any(meets(r) for r in rules_in)
    return not any(meets(r) for r in rules_out)


def _hw(layer: CaffeLayer, p, name: str, prefix: str | None, default: int | None) -> tuple[int, int]:
    """A 2-D size from ``name`` (repeated or single value) or ``prefix_h``/``prefix_w``."""
    if prefix is not None:
        h_name, w_name = f"{prefix}_h", f"{prefix}_w"
        has_h, has_w = p.HasField(h_name), p.HasField(w_name)
        if has_h or has_w:
            if has_h and has_w:
                return int(getattr(p, h_name)), int(getattr(p, w_name))
            if default is None:
                raise layer.error(f"{h_name} and {w_name} must be given together")
            h = int(getattr(p, h_name)) if has_h else default
            w = int(getattr(p, w_name)) if has_w else default
            return h, w
    value = getattr(p, name)
    if isinstance(value, int):  # optional scalar (Pooling)
        if not p.HasField(name):
            if default is None:
                raise layer.error(f"no {name} given")
            return default, default
        return int(value), int(value)
    values = [int(v) for v in value]
    if not values:
        if default is None:
            raise layer.error(f"no {name} given")
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise layer.error(f"{name} has {len(values)} values; only 2-D layers are supported")


def _axis(layer: CaffeLayer, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise layer.error(f"axis {axis} is out of range for a {ndim}-D input")
    return axis % ndim


@dataclass
class BuiltLayer:
    module: nn.Module
    shapes: list[tuple[int, ...]]
    blob_shapes: list[tuple[int, ...]] = field(default_factory=list)  # expected parameter blobs


def _first(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    return shapes[0] if shapes else ()


def _same(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The input's shape for every top: the shapes of an element-wise layer."""
    return [_first(shapes)] * len(layer.tops)


def _needs_4d(layer: CaffeLayer, first: tuple[int, ...]) -> None:
    if len(first) != 4:
        raise layer.error(f"needs a 4-D input, got shape {first}")


def _enum_name(p, field_name: str) -> str:
    return p.DESCRIPTOR.fields_by_name[field_name].enum_type.values_by_number[getattr(p, field_name)].name


def _convolution(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("convolution_param")
    first = _first(shapes)
    _needs_4d(layer, first)
    if p.axis != 1:
        raise layer.error("only axis 1 is supported")
    kernel = _hw(layer, p, "kernel_size", "kernel", None)
    stride = _hw(layer, p, "stride", "stride", 1)
    pad = _hw(layer, p, "pad", "pad", 0)
    dilation = _hw(layer, p, "dilation", None, 1)
    channels, group, out = first[1], p.group, p.num_output
    if not out:
        raise layer.error("num_output is missing")
    if group < 1 or channels % group or out % group:
        raise layer.error(f"group {group} does not divide input channels {channels} and num_output {out}")
    size = []
    for n, k, s, q, d in zip(first[2:], kernel, stride, pad, dilation):
        size.append((n + 2 * q - (d * (k - 1) + 1)) // s + 1)
    if min(size) < 1:
        raise layer.error(f"the input {first[2]}x{first[3]} is too small for its kernel")
    conv = nn.Conv2d(channels, out, kernel, stride, pad, dilation, group, bias=p.bias_term)
    blobs: list[tuple[int, ...]] = [(out, channels // group, *kernel)] + ([(out,)] if p.bias_term else [])
    return BuiltLayer(conv, [(first[0], out, *size)], blobs)


def _pooling(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("pooling_param")
    first = _first(shapes)
    _needs_4d(layer, first)
    method = _enum_name(p, "pool")
    if method not in ("MAX", "AVE"):
        raise layer.error(f"pooling method {method} is not supported (MAX and AVE are)")
    ceil = p.round_mode == 0
    if p.global_pooling:
        pool = CaffePooling(method, (first[2], first[3]), (1, 1), (0, 0), global_pooling=True)
    else:
        kernel = _hw(layer, p, "kernel_size", "kernel", None)
        stride, pad = _hw(layer, p, "stride", "stride", 1), _hw(layer, p, "pad", "pad", 0)
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise layer.error(f"pad {pad} must be smaller than kernel {kernel}")
        pool = CaffePooling(method, kernel, stride, pad, ceil=ceil)
    oh, ow = pool.output_size(first[2], first[3])
    if min(oh, ow) < 1:
        raise layer.error(f"the input {first[2]}x{first[3]} is too small for its kernel")
    return BuiltLayer(pool, [(first[0], first[1], oh, ow)] * len(layer.tops))


def _relu(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    slope = layer.param("relu_param").negative_slope
    return BuiltLayer(nn.LeakyReLU(slope) if slope else nn.ReLU(), _same(layer, shapes))


def _lrn(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("lrn_param")
    _needs_4d(layer, _first(shapes))
    if p.local_size < 1 or (p.norm_region == 1 and p.local_size % 2 == 0):
        raise layer.error(f"local_size {p.local_size} is not valid")
    return BuiltLayer(CaffeLRN(p.local_size, p.alpha, p.beta, p.k, across=p.norm_region == 0), _same(layer, shapes))


def _inner_product(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("inner_product_param")
    first = _first(shapes)
    axis = _axis(layer, p.axis, len(first))
    features = math.prod(first[axis:])
    if not p.num_output:
        raise layer.error("num_output is missing")
    linear = InnerProduct(features, p.num_output, p.bias_term, axis, layer.name)
    weight = (features, p.num_output) if p.transpose else (p.num_output, features)
    blobs: list[tuple[int, ...]] = [weight] + ([(p.num_output,)] if p.bias_term else [])
    linear.caffe_transpose = p.transpose
    return BuiltLayer(linear, [tuple(first[:axis]) + (p.num_output,)], blobs)


def _dropout(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    return BuiltLayer(nn.Dropout(layer.param("dropout_param").dropout_ratio), _same(layer, shapes))


def _concat(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("concat_param")
    first = _first(shapes)
    axis = p.concat_dim if (p.HasField("concat_dim") and not p.HasField("axis")) else p.axis
    axis = _axis(layer, axis, len(first))
    for shape in shapes[1:]:
        if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
            raise layer.error(f"cannot concatenate shapes {first} and {shape} along axis {axis}")
    total = sum(s[axis] for s in shapes)
    return BuiltLayer(Concat(axis), [first[:axis] + (total,) + first[axis + 1 :]])


def _eltwise(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("eltwise_param")
    first = _first(shapes)
    operation = _enum_name(p, "operation")
    if any(s != first for s in shapes[1:]):
        raise layer.error(f"inputs have different shapes {shapes}")
    coeffs = tuple(p.coeff)
    if coeffs and (operation != "SUM" or len(coeffs) != len(shapes)):
        raise layer.error(f"needs one coeff per input for SUM ({len(coeffs)} for {len(shapes)} inputs)")
    return BuiltLayer(Eltwise(operation, coeffs), [first])


def _batch_norm(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("batch_norm_param")
    first = _first(shapes)
    if len(first) < 2:
        raise layer.error(f"needs an input with channels, got shape {first}")
    use_global = p.use_global_stats if p.HasField("use_global_stats") else True
    channels = first[1]
    return BuiltLayer(CaffeBatchNorm(channels, p.eps, use_global), [first], [(channels,), (channels,), (1,)])


def _scale(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("scale_param")
    first = _first(shapes)
    axis = _axis(layer, p.axis, len(first))
    if len(shapes) == 2:
        shape, learned = shapes[1], None
        if tuple(first[axis : axis + len(shape)]) != tuple(shape):
            raise layer.error(f"scale input {shape} does not fit input {first} at axis {axis}")
    else:
        end = len(first) if p.num_axes == -1 else axis + p.num_axes
        if p.num_axes < -1 or end > len(first):
            raise layer.error(f"num_axes {p.num_axes} is out of range")
        shape = learned = tuple(first[axis:end])
    bias = shape if p.bias_term else None
    blobs = ([learned] if learned is not None else []) + ([bias] if bias is not None else [])
    return BuiltLayer(Scale(learned, axis, bias), [first], blobs)


def _softmax(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    first = _first(shapes)
    axis = _axis(layer, layer.param("softmax_param").axis, len(first))
    return BuiltLayer(nn.Softmax(dim=axis), [first])


def _flatten(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    p = layer.param("flatten_param")
    first = _first(shapes)
    start, end = _axis(layer, p.axis, len(first)), _axis(layer, p.end_axis, len(first))
    if end < start:
        raise layer.error("end_axis is before axis")
    return BuiltLayer(nn.Flatten(start, end), [first[:start] + (math.prod(first[start : end + 1]),) + first[end + 1 :]])


def _module(make: Callable[[], nn.Module]) -> Callable[[CaffeLayer, list[tuple[int, ...]]], BuiltLayer]:
    """A builder for a parameterless element-wise layer."""
    return lambda layer, shapes: BuiltLayer(make(), _same(layer, shapes))


#: Layer type -> its builder, in the order the error message lists the supported types.
_BUILDERS: dict[str, Callable[[CaffeLayer, list[tuple[int, ...]]], BuiltLayer]] = {
    "Convolution": _convolution,
    "Pooling": _pooling,
    "ReLU": _relu,
    "LRN": _lrn,
    "InnerProduct": _inner_product,
    "Dropout": _dropout,
    "Concat": _concat,
    "Eltwise": _eltwise,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Softmax": _softmax,
    "Flatten": _flatten,
    "Split": _module(Split),
    "Sigmoid": _module(nn.Sigmoid),
    "TanH": _module(nn.Tanh),
}

#: Every layer type a prototxt may hold: Input and Silence are wired by :mod:`.caffe`, not built.
SUPPORTED_TYPES = ("Input", *_BUILDERS, "Silence")


def unsupported(layer: CaffeLayer) -> ModelError:
    """The error for a layer whose type is not in :data:`SUPPORTED_TYPES`."""
    return ModelError(
        f"Caffe layer {layer.name!r} has type {layer.type!r}, which netdissect cannot convert "
        f"(supported: {', '.join(SUPPORTED_TYPES)})"
    )


def build_layer(layer: CaffeLayer, shapes: list[tuple[int, ...]]) -> BuiltLayer:
    """The torch module of one layer and the shapes of its tops (and of its parameter blobs)."""
    builder = _BUILDERS.get(layer.type)
    if builder is None:
        raise unsupported(layer)
    return builder(layer, shapes)
