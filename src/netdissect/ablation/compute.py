"""Unit ablation: per-class accuracy of a classifier with units of one layer removed.

Per batch the part of the network before the layer runs once (:mod:`.split`); the ablated copies
of the layer's output ("configurations": which units keep their value, the others take the fill
value) are stacked along the batch axis, at most ``ablation_batch`` rows per forward pass, and go
through the rest of the network. Sums of correct predictions and true-class probabilities are
kept per configuration and class.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionError
from .split import Split


def parse_units(spec: str | list[int] | None, width: int) -> list[int]:
    """Unit numbers (1-based) from ``all``, ``1,5,9-20`` or a list, checked against the layer's ``width``."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(1, width + 1))
    numbers: list[int] = []
    if isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            lo, sep, hi = part.partition("-")
            try:
                numbers += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
            except ValueError:
                raise OptionError(f"--units takes all or numbers and ranges like 1,5,9-20, got {spec!r}") from None
    else:
        numbers = [int(u) for u in spec]
    bad = [u for u in numbers if not 1 <= u <= width]
    if bad:
        raise OptionError(f"--units: unit {bad[0]} is outside the layer's units 1..{width}")
    if not numbers:
        raise OptionError(f"--units selects no unit: {spec!r}")
    return list(dict.fromkeys(numbers))


def single_unit_configs(units: list[int], width: int) -> torch.Tensor:
    """Keep masks (1 + U, width): row 0 keeps every unit, row i removes unit ``units[i - 1]`` (1-based)."""
    keep = torch.ones(1 + len(units), width, dtype=torch.bool)
    for i, u in enumerate(units, 1):
        keep[i, u - 1] = False
    return keep


def group_configs(rankings: list[list[int]], k: int, width: int) -> torch.Tensor:
    """Keep masks (2 * C * k, width): per class c and j = 1..k, its first j ranked units
    (1-based) removed (rows ``c * k + j - 1``), then the same with only them kept (after C * k rows)."""
    classes = len(rankings)
    keep = torch.ones(2 * classes * k, width, dtype=torch.bool)
    keep[classes * k :] = False
    for c, ranked in enumerate(rankings):
        for j in range(1, k + 1):
            chosen = torch.tensor([u - 1 for u in ranked[:j]], dtype=torch.long)
            keep[c * k + j - 1, chosen] = False
            keep[classes * k + c * k + j - 1, chosen] = True
    return keep


def ablated_copies(layer_out: torch.Tensor, fill: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The layer output (B, width, ...) once per keep mask (m, width), removed units set to ``fill``
    (width,): (m * B, width, ...)."""
    extra = [1] * (layer_out.dim() - 2)
    mask = keep.to(layer_out.device).view(keep.shape[0], 1, keep.shape[1], *extra)
    value = fill.to(layer_out.device, layer_out.dtype).view(1, 1, -1, *extra)
    stacked = torch.where(mask, layer_out.unsqueeze(0), value)
    return stacked.reshape(keep.shape[0] * layer_out.shape[0], *layer_out.shape[1:])


@torch.no_grad()
def score_configs(
    split: Split,
    state,
    layer_out: torch.Tensor,
    fill: torch.Tensor,
    keep: torch.Tensor,
    outputs: torch.Tensor,
    classes: torch.Tensor,
    num_classes: int,
    max_rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per configuration and class: sums of correct top-1 predictions and of true-class probabilities.

    Args:
        outputs: (B,) the model output index of each image's true class.
        classes: (B,) each image's class position (0..num_classes-1).
        max_rows: at most this many images (copies x batch) per forward pass of the suffix.

    Returns: two float64 tensors (N, num_classes) on the CPU.
    """
    batch = layer_out.shape[0]
    step = max(1, max_rows // max(batch, 1))
    correct = torch.zeros(keep.shape[0], num_classes, dtype=torch.float64)
    prob = torch.zeros(keep.shape[0], num_classes, dtype=torch.float64)
    outputs = outputs.to(layer_out.device)
    for start in range(0, keep.shape[0], step):
        chunk = keep[start : start + step]
        m = chunk.shape[0]
        logits = split.suffix(state, ablated_copies(layer_out, fill, chunk), m).view(m, batch, -1)
        hit = (logits.argmax(-1) == outputs).double().cpu()
        p = torch.softmax(logits.float(), -1).gather(2, outputs.view(1, batch, 1).expand(m, batch, 1))[..., 0]
        correct[start : start + m].index_add_(1, classes, hit)
        prob[start : start + m].index_add_(1, classes, p.double().cpu())
    return correct, prob


def estimate_drops(
    split: Split,
    state,
    layer_out: torch.Tensor,
    fill: torch.Tensor,
    outputs: torch.Tensor,
    classes: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """First-order estimate, per unit and class, of the summed drop of the true-class
    log-probability when a unit is set to ``fill``: ``sum over positions of grad * (a - fill)``,
    one backward pass per batch. Returns float64 (width, num_classes) on the CPU."""
    with torch.enable_grad():
        a = layer_out.detach().requires_grad_()
        logits = split.suffix(state, a, 1)
        logp = torch.log_softmax(logits.float(), -1).gather(1, outputs.to(a.device).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(logp, a)
    extra = [1] * (a.dim() - 2)
    delta = a.detach() - fill.to(a.device, a.dtype).view(1, -1, *extra)
    per_image = (grad * delta).flatten(2).sum(2) if a.dim() > 2 else grad * delta  # (B, width)
    sums = torch.zeros(a.shape[1], num_classes, dtype=torch.float64)
    return sums.index_add_(1, classes, per_image.double().cpu().T)


def channel_sums(layer_out: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per unit, the sum of its values over the batch and positions, and the count summed (float64)."""
    flat = layer_out.detach().transpose(0, 1).reshape(layer_out.shape[1], -1)
    return flat.double().sum(1).cpu(), flat.shape[1]


def per_class(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``sums / counts`` along the last axis, NaN where a class has no images."""
    counts = np.asarray(counts, dtype=np.float64)
    out = np.full(np.broadcast_shapes(sums.shape, counts.shape), np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def others_mean(accuracy: np.ndarray, c: int) -> np.ndarray:
    """Mean accuracy over the classes other than ``c`` (with images) along the last axis."""
    others = np.delete(accuracy, c, axis=-1)
    valid = np.isfinite(others)
    n = valid.sum(-1)
    total = np.where(valid, others, 0.0).sum(-1)
    out = np.full(total.shape, np.nan)
    np.divide(total, n, out=out, where=n > 0)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equal-length vectors (average ranks for ties; NaNs dropped)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    return pearson(_ranks(a[ok]), _ranks(b[ok]))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (NaN when either side is constant or has fewer than 2 values)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _values, inverse = np.unique(x, return_inverse=True)
    return np.bincount(inverse, weights=ranks)[inverse] / np.bincount(inverse)[inverse]
