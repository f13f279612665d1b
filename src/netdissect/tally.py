"""The IoU counting kernels of Network Dissection (DESIGN §1): pure, device-agnostic tensor code.

For a batch of activation maps and thresholds, :func:`count_batch` returns the batch's
contribution to ``inter[u, l]``, ``act[u, c]`` and ``truth[l]``. Only (image, unit) pairs whose
map exceeds the threshold somewhere can have a mask (bilinear interpolation never exceeds the
largest input value); their masked pixels come from :func:`netdissect.masks.masked_pixels`,
and the labels under them are counted by one ``bincount`` over ``pair * L + label``. There is
no Python loop over units, images or pixels; pairs are processed in chunks to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masks import masked_pixels

IOU_MODES = ("paper", "lite")


def lite_quantile_level(quantile: float) -> float:
    """The quantile level NetDissect-Lite actually reads: ``(int(1000 * (1 - q) - 1)) / 999``.

    Lite reads 1000 evenly spaced quantiles (levels ``i / 999``) and takes index
    ``int(1000 * (1 - q) - 1)``: 994/999 instead of 0.995 for q = 0.005.
    """
    return int(1000 * (1 - quantile) - 1) / 999


def threshold_level(quantile: float, iou_mode: str) -> float:
    """The quantile level at which unit thresholds are read for a top fraction ``quantile``."""
    if iou_mode == "lite":
        return lite_quantile_level(quantile)
    return 1.0 - quantile


@dataclass
class Counts:
    """IoU counts over a dataset: intersections, mask areas per category and label areas."""

    inter: torch.Tensor  # (U, L) int64: masked pixels carrying label l
    act: torch.Tensor  # (U, C) int64: masked pixels in images counted for category c
    truth: torch.Tensor  # (L,) int64: pixels carrying label l

    @classmethod
    def zeros(cls, units: int, labels: int, categories: int, device: torch.device | str = "cpu") -> "Counts":
        z = lambda *s: torch.zeros(s, dtype=torch.int64, device=device)  # noqa: E731
        return cls(z(units, labels), z(units, categories), z(labels))

    def add(self, other: "Counts") -> None:
        """Accumulate another batch's or shard's counts."""
        self.inter += other.inter.to(self.inter.device)
        self.act += other.act.to(self.act.device)
        self.truth += other.truth.to(self.truth.device)

    def to(self, device: torch.device | str) -> "Counts":
        return Counts(self.inter.to(device), self.act.to(device), self.truth.to(device))


def category_onehot(label_category: torch.Tensor, categories: int) -> torch.Tensor:
    """(L, C) 0/1 matrix of each label's primary category (rows of -1 labels are zero)."""
    onehot = torch.zeros((len(label_category), categories), dtype=torch.int64, device=label_category.device)
    valid = label_category >= 0
    onehot[valid, label_category[valid]] = 1
    return onehot


def count_truth(seg: torch.Tensor, scalars: torch.Tensor, label_category: torch.Tensor) -> torch.Tensor:
    """``truth[l]`` of one batch: pixels carrying label l; an image-level label covers its image."""
    L = len(label_category)
    sh, sw = seg.shape[-2:]
    seg, scalars = seg.to(label_category.device), scalars.to(label_category.device)
    truth = torch.bincount(seg.flatten().long(), minlength=L) + torch.bincount(
        scalars.flatten().long(), minlength=L
    ) * (sh * sw)
    return truth * (label_category >= 0)


def count_masks(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    seg: torch.Tensor,
    scalars: torch.Tensor,
    present: torch.Tensor,
    label_category: torch.Tensor,
    iou_mode: str = "paper",
    chunk_pixels: int = 1 << 23,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``inter[u, l]`` and ``act[u, c]`` of one batch (see :func:`count_batch`)."""
    if iou_mode not in IOU_MODES:
        raise ValueError(f"iou_mode must be one of {IOU_MODES}, got {iou_mode!r}")
    device = acts.device
    U = acts.shape[1]
    sh, sw = seg.shape[-2:]
    L, C = len(label_category), present.shape[1]
    seg = seg.to(device)
    scalars = scalars.to(device, torch.int64)
    present = present.to(device)
    label_category = label_category.to(device)
    valid = (label_category >= 0).to(torch.int64)
    inter = torch.zeros((U, L), dtype=torch.int64, device=device)
    act = torch.zeros((U, C), dtype=torch.int64, device=device)
    thresholds = thresholds.to(device, torch.float32)
    # bilinear values never exceed a map's maximum: only these (image, unit) pairs can have masks
    candidates = (acts.amax(dim=(2, 3)).float() > thresholds).nonzero()
    onehot = category_onehot(label_category, C) if iou_mode == "lite" else None
    step = max(1, chunk_pixels // (sh * sw))
    for start in range(0, len(candidates), step):
        b, u = candidates[start : start + step].unbind(1)
        P = len(b)
        pair, ys, xs = masked_pixels(acts[b, u], thresholds[u], (sh, sw))
        size = torch.bincount(pair, minlength=P)
        # labels under the masked pixels, one bincount over pair * L + label
        under = seg[b[pair], :, ys, xs].long()  # (masked pixels, layers)
        hist = torch.bincount((pair.unsqueeze(1) * L + under).flatten(), minlength=P * L).view(P, L)
        # an image-level label meets every masked pixel of its image
        hist.scatter_add_(1, scalars[b], size.unsqueeze(1).expand(-1, scalars.shape[1]).contiguous())
        hist *= valid
        inter.index_add_(0, u, hist)
        if iou_mode == "paper":
            counted = present[b].to(torch.int64)
        else:
            counted = ((hist > 0).to(torch.int64) @ onehot > 0).to(torch.int64)
        act.index_add_(0, u, size.unsqueeze(1) * counted)
    return inter, act


def count_batch(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    seg: torch.Tensor,
    scalars: torch.Tensor,
    present: torch.Tensor,
    label_category: torch.Tensor,
    iou_mode: str = "paper",
    chunk_pixels: int = 1 << 23,
) -> Counts:
    """Count one batch.

    Args:
        acts: activations ``(B, U, h, w)``.
        thresholds: ``(U,)`` per-unit thresholds T_u; a mask keeps values strictly above.
        seg: ``(B, layers, sh, sw)`` label numbers of the pixel annotation layers (0: none).
        scalars: ``(B, k)`` image-level label numbers (0: padding).
        present: ``(B, C)`` bool, category c annotated in the image (paper rule).
        label_category: ``(L,)`` primary category per label number, -1 for none.
        iou_mode: ``"paper"`` (act counts images where the category is annotated) or
            ``"lite"`` (act counts a mask only where the category occurs under it).
        chunk_pixels: bound on the upsampled pixels (image-unit pairs x sh x sw) handled at once.

    Returns:
        The batch's :class:`Counts`.
    """
    label_category = label_category.to(acts.device)
    inter, act = count_masks(acts, thresholds, seg, scalars, present, label_category, iou_mode, chunk_pixels)
    return Counts(inter, act, count_truth(seg, scalars, label_category))


def iou_from_counts(counts: Counts, label_category: torch.Tensor) -> torch.Tensor:
    """``iou[u, l] = inter / (act[u, cat(l)] + truth[l] - inter)``, 0 where undefined (float64)."""
    label_category = label_category.to(counts.inter.device)
    valid = label_category >= 0
    act = counts.act[:, label_category.clamp(min=0)]
    denom = (act + counts.truth.unsqueeze(0) - counts.inter).double()
    iou = torch.where(denom > 0, counts.inter.double() / denom.clamp(min=1), torch.zeros_like(denom))
    return iou * valid


def best_labels(iou: torch.Tensor, label_category: torch.Tensor, categories: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit and category, the best label number and its IoU: two ``(U, C)`` tensors.

    A category with no labels gets label 0 and IoU 0. Ties go to the smaller label number.
    """
    U = iou.shape[0]
    label_category = label_category.to(iou.device)
    labels = torch.zeros((U, categories), dtype=torch.int64, device=iou.device)
    scores = torch.zeros((U, categories), dtype=iou.dtype, device=iou.device)
    for c in range(categories):  # a handful of categories; units and labels stay vectorised
        members = (label_category == c).nonzero().squeeze(1)
        if len(members):
            value, pos = iou[:, members].max(dim=1)
            labels[:, c], scores[:, c] = members[pos], value
    return labels, scores
