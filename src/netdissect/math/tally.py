"""The IoU counting kernels of Network Dissection (``docs/method.md``): pure, device-agnostic tensor code.

For a batch of activation maps and thresholds, :func:`count_batch` returns the batch's
contribution to ``inter[u, l]``, ``act[u, c]`` and ``truth[l]``. The masked pixels of all
(image, unit) pairs come from :func:`netdissect.math.masks.masked_pixels`, which interpolates only
near values above the threshold, and the labels under them are counted by one ``bincount`` over ``unit * L + label``. There is
no Python loop over units, images or pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import IOU_MODES
from .masks import batch_masked_pixels


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
    def zeros(cls, units: int, labels: int, categories: int, device: torch.device | str = "cpu") -> Counts:
        z = lambda *s: torch.zeros(s, dtype=torch.int64, device=device)  # noqa: E731
        return cls(z(units, labels), z(units, categories), z(labels))

    def add(self, other: Counts) -> None:
        """Accumulate another batch's or shard's counts."""
        self.inter += other.inter.to(self.inter.device)
        self.act += other.act.to(self.act.device)
        self.truth += other.truth.to(self.truth.device)


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
    chunk_pixels: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``inter[u, l]`` and ``act[u, c]`` of one batch (see :func:`count_batch`)."""
    inter, act, _, _ = count_masks_null(
        acts, thresholds, seg, scalars, present, label_category, None, iou_mode, chunk_pixels
    )
    return inter, act


def count_masks_null(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    seg: torch.Tensor,
    scalars: torch.Tensor,
    present: torch.Tensor,
    label_category: torch.Tensor,
    shifts: torch.Tensor | None,
    iou_mode: str = "paper",
    chunk_pixels: int = 1 << 22,
    masked: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`count_masks` plus the permutation-null counts of the same batch.

    ``shifts`` ``(K,)`` holds one cyclic shift per null sample: sample k pairs the masks of
    image b with the annotations of image ``(b + shifts[k]) % B`` (see :func:`shift_annotations`),
    reusing the masked pixels computed once. Returns ``(inter, act, null_inter, null_act)`` with
    ``null_inter`` ``(K, U, L)`` and ``null_act`` ``(K, U, C)``; both ``None`` when ``shifts``
    is ``None``. ``truth`` does not change under a permutation. ``masked``: the batch's masked
    pixels when the caller has them already (:func:`netdissect.math.masks.batch_masked_pixels`).
    """
    if iou_mode not in IOU_MODES:
        raise ValueError(f"iou_mode must be one of {IOU_MODES}, got {iou_mode!r}")
    device = acts.device
    B, U = acts.shape[:2]
    seg = seg.to(device)
    scalars = scalars.to(device, torch.int64)
    present = present.to(device)
    label_category = label_category.to(device)
    thresholds = thresholds.to(device, torch.float32)

    # every masked pixel of every (image, unit) pair: pair = image * U + unit
    if masked is None:
        masked = batch_masked_pixels(acts, thresholds, (seg.shape[-2], seg.shape[-1]), chunk_pixels)
    pair, ys, xs = masked
    pixels = (pair, ys, xs, torch.bincount(pair, minlength=B * U).view(B, U))
    inter, act = count_masked(pixels, seg, scalars, present, label_category, iou_mode)
    if shifts is None:
        return inter, act, None, None
    null = [
        count_masked(pixels, *shift_annotations(seg, scalars, present, int(s)), label_category, iou_mode)
        for s in shifts.tolist()
    ]
    return inter, act, torch.stack([i for i, _ in null]), torch.stack([c for _, c in null])


def shift_annotations(
    seg: torch.Tensor, scalars: torch.Tensor, present: torch.Tensor, shift: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's annotations cyclically shifted: image b gets those of image ``(b + shift) % B``."""
    B = seg.shape[0]
    order = (torch.arange(B, device=seg.device) + shift) % B
    return seg[order], scalars[order.to(scalars.device)], present[order.to(present.device)]


def count_masked(
    pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    seg: torch.Tensor,
    scalars: torch.Tensor,
    present: torch.Tensor,
    label_category: torch.Tensor,
    iou_mode: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``inter[u, l]`` and ``act[u, c]`` from given masked pixels and a batch's annotations.

    Args:
        pixels: ``(pair, ys, xs, size)``: the masked pixels (``pair = image * U + unit``, their
            row and column at segmentation size) and the mask areas ``size`` ``(B, U)``.
        seg, scalars, present, label_category, iou_mode: as in :func:`count_batch`; the
            annotations may belong to other images than the masks (the permutation null).
    """
    pair, ys, xs, size = pixels
    device = size.device
    B, U = size.shape
    L, C = len(label_category), present.shape[1]
    scalars = scalars.to(device, torch.int64)
    unit = pair % U

    # labels under the masked pixels (every layer): one bincount over unit * L + label
    under = seg[pair // U, :, ys, xs].long()  # (masked pixels, layers)
    inter = torch.bincount((unit.unsqueeze(1) * L + under).flatten(), minlength=U * L).view(U, L)
    # an image-level label meets every masked pixel of its image
    keys = torch.arange(U, device=device).view(1, U, 1) * L + scalars.unsqueeze(1)  # (B, U, k)
    inter.view(-1).index_add_(0, keys.flatten(), size.unsqueeze(2).expand_as(keys).flatten())
    inter *= label_category >= 0  # label 0 and labels outside the categories never count

    if iou_mode == "paper":
        counted = present.to(device).unsqueeze(1)  # category annotated anywhere in the image
    else:
        # lite: a category counts where one of its labels lies under the mask (or is image-level)
        cat = label_category[under]
        hit = cat >= 0
        key = (pair.unsqueeze(1) * C + cat)[hit]
        under_mask = torch.bincount(key, minlength=B * U * C).view(B, U, C) > 0
        image_level = torch.zeros((B, C), dtype=torch.bool, device=device)
        scalar_cat = label_category[scalars]
        rows = torch.arange(B, device=device).unsqueeze(1).expand_as(scalars)
        image_level[rows[scalar_cat >= 0], scalar_cat[scalar_cat >= 0]] = True
        counted = under_mask | image_level.unsqueeze(1)
    act = (size.unsqueeze(2) * counted).sum(dim=0)  # (U, C)
    return inter, act


def null_shifts(batch_images: int, samples: int, generator: torch.Generator) -> torch.Tensor | None:
    """K cyclic shifts in ``1..B-1`` for one batch's null samples; ``None`` for a batch of one image."""
    if samples <= 0 or batch_images < 2:
        return None
    return torch.randint(1, batch_images, (samples,), generator=generator)


def null_scores(
    null_inter: torch.Tensor, null_act: torch.Tensor, truth: torch.Tensor, label_category: torch.Tensor
) -> torch.Tensor:
    """``(K, U)`` float64: each unit's null score per null sample, from the null counts.

    The null statistic of sample k is the unit's best IoU over all labels under that
    permutation: the same maximum the observed score is, so the choice of the best label is
    accounted for (a fixed label's null would make chance maxima look significant).
    """
    K, U, L = null_inter.shape
    if L == 0:
        return torch.zeros((K, U), dtype=torch.float64, device=null_inter.device)
    label_category = label_category.to(null_inter.device)
    truth = truth.to(null_inter.device)
    samples = [iou_from_counts(Counts(null_inter[k], null_act[k], truth), label_category).amax(dim=1) for k in range(K)]
    return torch.stack(samples) if samples else torch.zeros((0, U), dtype=torch.float64, device=null_inter.device)


def null_summary(score: torch.Tensor, null: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores ``(U,)`` against their null samples ``(K, U)`` (float64 results, ``(U,)`` each).

    ``null_mean``, ``null_std`` (population std over the K samples), ``z_score``
    (``(score - mean) / std``; where std is 0: +-inf when the score differs from the mean, 0
    when it equals it) and ``p_value``: ``(1 + #{null >= score}) / (K + 1)``, the empirical
    permutation p-value (never below ``1 / (K + 1)``).
    """
    score, null = score.double(), null.double().to(score.device)
    K = null.shape[0]
    mean = null.mean(dim=0)
    std = null.std(dim=0, correction=0) if K else torch.zeros_like(score)
    diff = score - mean
    # a tiny tolerance: IoUs that are equal in exact arithmetic may differ in the last bit
    eps = 1e-12
    z = torch.where(std > eps, diff / std.clamp(min=eps), torch.sign(diff) * torch.inf)
    z = torch.where((std <= eps) & (diff.abs() <= eps), torch.zeros_like(z), z)
    exceed = (null >= score - eps).sum(dim=0)
    p = (1 + exceed).double() / (K + 1)
    return {"null_mean": mean, "null_std": std, "z_score": z, "p_value": p}


def count_batch(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    seg: torch.Tensor,
    scalars: torch.Tensor,
    present: torch.Tensor,
    label_category: torch.Tensor,
    iou_mode: str = "paper",
    chunk_pixels: int = 1 << 22,
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
        chunk_pixels: bound on the upsampled values evaluated at once (memory).

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
