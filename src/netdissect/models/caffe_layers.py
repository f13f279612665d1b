"""The torch modules that stand in for Caffe layers whose semantics differ from PyTorch's
(ceil-rounded pooling, LRN, Eltwise, Scale, ...); :mod:`netdissect.models.caffe` builds nets from them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError


def module_name(caffe_name: str) -> str:
    """The PyTorch module name of a Caffe blob or layer name (``.`` becomes ``_``)."""
    return caffe_name.replace(".", "_")


class Blob(nn.Identity):
    """The final value of a Caffe blob (after in-place layers); hook it to read the blob."""


class CaffeLayers(nn.Module):
    """The container of a :class:`CaffeNet`'s layer modules (``layers.<caffe layer name>``)."""


class Split(nn.Identity):
    """Caffe's Split: every top is the bottom."""


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
    """Caffe's pooled size: ceil (or floor) rounding, and the last window must start inside
    the image plus its leading padding."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class CaffePooling(nn.Module):
    """Caffe's MAX and AVE pooling, with its output size and its AVE divisor.

    MAX takes the maximum over the window's pixels inside the image. AVE sums the pixels inside
    the image and divides by the window's area clipped to the padded image
    (``min(start + kernel, size + pad) - start`` per axis), as Caffe does.
    """

    def __init__(
        self,
        method: str,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        pad: tuple[int, int],
        global_pooling: bool = False,
        ceil: bool = True,
    ) -> None:
        super().__init__()
        self.method = method
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.global_pooling = global_pooling
        self.ceil = ceil

    def extra_repr(self) -> str:
        if self.global_pooling:
            return f"{self.method}, global"
        return f"{self.method}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}, ceil={self.ceil}"

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.global_pooling:
            return 1, 1
        return (
            pool_output_size(height, self.kernel[0], self.stride[0], self.pad[0], self.ceil),
            pool_output_size(width, self.kernel[1], self.stride[1], self.pad[1], self.ceil),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pooling:
            if self.method == "MAX":
                return x.amax(dim=(-2, -1), keepdim=True)
            return x.mean(dim=(-2, -1), keepdim=True)
        height, width = x.shape[-2:]
        oh, ow = self.output_size(height, width)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        extra_h = max(0, (oh - 1) * sh + kh - height - ph)
        extra_w = max(0, (ow - 1) * sw + kw - width - pw)
        if self.method == "MAX":
            padded = F.pad(x, (pw, extra_w, ph, extra_h), value=float("-inf"))
            return F.max_pool2d(padded, (kh, kw), (sh, sw))[..., :oh, :ow]
        padded = F.pad(x, (pw, extra_w, ph, extra_h))
        sums = F.avg_pool2d(padded, (kh, kw), (sh, sw), divisor_override=1)[..., :oh, :ow]
        return sums / self._divisor(oh, ow, height, width, x)

    def _divisor(self, oh: int, ow: int, height: int, width: int, x: torch.Tensor) -> torch.Tensor:
        counts = []
        for out, size, k, s, p in (
            (oh, height, self.kernel[0], self.stride[0], self.pad[0]),
            (ow, width, self.kernel[1], self.stride[1], self.pad[1]),
        ):
            start = torch.arange(out, device=x.device) * s - p
            end = torch.clamp(start + k, max=size + p)
            counts.append((end - start).to(x.dtype))
        return counts[0][:, None] * counts[1][None, :]


class CaffeLRN(nn.Module):
    """Caffe's local response normalisation.

    ACROSS_CHANNELS: ``x / (k + alpha / n * sum of x^2 over n channels) ^ beta``, the window
    running from ``c - (n - 1) // 2`` to ``c + n // 2`` (torch's ``LocalResponseNorm`` has the
    same formula for odd ``n`` but centres even windows the other way). WITHIN_CHANNEL:
    ``x / (1 + alpha * mean of x^2 over an n x n window, Caffe AVE pooling) ^ beta``.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, across: bool = True) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.across = size, alpha, beta, k, across
        pad = (size - 1) // 2
        self._pool: CaffePooling | None = None if across else CaffePooling("AVE", (size, size), (1, 1), (pad, pad))

    def extra_repr(self) -> str:
        region = "ACROSS_CHANNELS" if self.across else "WITHIN_CHANNEL"
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, {region}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square = x * x
        pool = self._pool  # None exactly when across
        if pool is None:
            front = (self.size - 1) // 2
            padded = F.pad(square, (0, 0, 0, 0, front, self.size - 1 - front))
            channels = x.shape[1]
            total = padded[:, 0:channels]
            for i in range(1, self.size):
                total = total + padded[:, i : i + channels]
            scale = self.k + (self.alpha / self.size) * total
        else:
            scale = 1.0 + self.alpha * pool(square)
        return x / scale.pow(self.beta)


class InnerProduct(nn.Linear):
    """Caffe's InnerProduct: flattens axes ``axis..`` and applies a linear map."""

    def __init__(self, in_features: int, out_features: int, bias: bool, axis: int, layer: str) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.axis = axis
        self.layer = layer
        self.caffe_transpose = False  # the .caffemodel stores the weight as (in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(self.axis)
        if x.shape[-1] != self.in_features:
            raise ModelError(
                f"Caffe layer {self.layer!r} (InnerProduct) takes {self.in_features} inputs but got "
                f"{x.shape[-1]}: the image size differs from the prototxt's input size (use --input-size)"
            )
        return super().forward(x)


class Concat(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


class Eltwise(nn.Module):
    """Caffe's Eltwise: SUM (with per-input coefficients), PROD or MAX."""

    def __init__(self, operation: str, coeffs: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.operation = operation
        self.coeffs = tuple(coeffs)

    def extra_repr(self) -> str:
        return self.operation + (f", coeffs={self.coeffs}" if self.coeffs else "")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.operation == "SUM":
            coeffs = self.coeffs or (1.0,) * len(xs)
            out = xs[0] if coeffs[0] == 1 else xs[0] * coeffs[0]
            for x, c in zip(xs[1:], coeffs[1:]):
                out = out + (x if c == 1 else x * c)
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.operation == "PROD" else torch.maximum(out, x)
        return out


class CaffeBatchNorm(nn.Module):
    """Caffe's BatchNorm (no affine part: Caffe puts that in a Scale layer).

    The stored mean and variance are already divided by Caffe's scale factor. With
    ``use_global_stats`` false the batch's own statistics are used, as Caffe does.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, eps: float, use_global_stats: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.use_global_stats = use_global_stats
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, eps={self.eps}, use_global_stats={self.use_global_stats}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_global_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return F.batch_norm(x, None, None, training=True, eps=self.eps)


class Scale(nn.Module):
    """Caffe's Scale: multiplies by a learned (or second-input) tensor over axes
    ``axis..axis+k`` and optionally adds a learned bias."""

    weight: nn.Parameter | None
    bias: nn.Parameter | None

    def __init__(self, shape: tuple[int, ...] | None, axis: int, bias_shape: tuple[int, ...] | None) -> None:
        super().__init__()
        self.axis = axis
        self.weight = nn.Parameter(torch.ones(shape)) if shape is not None else None
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if bias_shape is not None else None

    def extra_repr(self) -> str:
        return f"axis={self.axis}, bias={self.bias is not None}"

    def _view(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return t.reshape((1,) * self.axis + tuple(t.shape) + (1,) * (ndim - self.axis - t.dim()))

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        factor = self.weight if scale is None else scale
        if factor is None:
            raise ModelError("a Scale layer without a learned scale needs a second input")
        out = x * self._view(factor, x.dim())
        if self.bias is not None:
            out = out + self._view(self.bias, x.dim())
        return out
