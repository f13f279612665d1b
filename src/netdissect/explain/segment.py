"""Segmentation of one image by a layer's detector units (NetDissect TPAMI, "segmentation by units").

Pure tensor functions. A unit's mask on an image is exactly its dissection mask: the activation
map upsampled to the segmentation size by :func:`netdissect.math.masks.upsample` (bit-identical to
the masks :func:`netdissect.math.masks.masked_pixels` counts) and kept where it exceeds the unit's
threshold. A pixel where several detector units fire takes the unit whose activation is the
largest *relative to its threshold*, ``(a - t) / |t|`` (``a / t - 1`` for the usual positive
thresholds; ties: the lower unit number); pixels where none fires stay unlabelled.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from ..math.masks import upsample

#: Detector maps upsampled at once (bounds memory: units x segmentation pixels x 4 bytes).
UNIT_CHUNK = 64


def unit_masks(maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bool ``(U, sh, sw)``: where each map ``(U, h, w)``, upsampled to ``size``, exceeds its threshold ``(U,)``."""
    if maps.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool)
    return upsample(maps, size) > thresholds.float().to(maps.device)[:, None, None]


def relative_activation(values: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``(values - t) / |t|`` per unit (axis 0), with ``|t|`` taken as 1 for a zero threshold."""
    t = thresholds.float().to(values.device).view(-1, *([1] * (values.dim() - 1)))
    scale = torch.where(t == 0, torch.ones_like(t), t.abs())
    return (values - t) / scale


def winning_units(maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per pixel of ``size``, the index (into ``maps``) of the unit above its threshold with the
    largest relative activation, or -1 where no unit exceeds its threshold: int64 ``(sh, sw)``."""
    best = torch.full(size, float("-inf"), device=maps.device)
    winner = torch.full(size, -1, dtype=torch.int64, device=maps.device)
    for start in range(0, maps.shape[0], UNIT_CHUNK):
        chunk = maps[start : start + UNIT_CHUNK]
        t = thresholds[start : start + UNIT_CHUNK]
        values = upsample(chunk, size)
        rel = relative_activation(values, t)
        rel = torch.where(values > t.float().to(values.device)[:, None, None], rel, float("-inf"))
        top, index = rel.max(dim=0)  # ties: the first (lowest) unit of the chunk
        better = top > best  # strictly: earlier chunks (lower units) win ties
        best = torch.where(better, top, best)
        winner = torch.where(better, index + start, winner)
    return winner


def segment_by_units(
    maps: torch.Tensor, thresholds: torch.Tensor, labels: list[str], size: tuple[int, int]
) -> tuple[np.ndarray, dict[int, str], dict[int, float]]:
    """The unit segmentation of one image.

    Args:
        maps: ``(D, h, w)`` the detector units' activation maps on the image.
        thresholds: ``(D,)`` their thresholds.
        labels: ``D`` concept names, one per detector unit.
        size: the segmentation size ``(sh, sw)``.

    Returns:
        ``(segmentation, legend, coverage)``: int ``(sh, sw)`` legend indices (0: no unit fires),
        ``{index: concept}`` numbered from 1 by decreasing area (ties by name), and
        ``{index: share of the pixels}``.
    """
    if maps.shape[0] == 0:
        return np.zeros(size, dtype=np.int64), {}, {}
    winner = winning_units(maps, thresholds, size).cpu().numpy()
    fired = winner >= 0
    concepts = np.asarray(labels, dtype=object)[winner[fired]]
    areas = Counter(concepts.tolist())
    order = sorted(areas, key=lambda c: (-areas[c], c))
    index = {c: i for i, c in enumerate(order, 1)}
    lookup = np.array([index.get(c, 0) for c in labels], dtype=np.int64)  # units that win no pixel: 0
    segmentation = np.zeros(size, dtype=np.int64)
    segmentation[fired] = lookup[winner[fired]]
    pixels = size[0] * size[1]
    return segmentation, {i: c for c, i in index.items()}, {index[c]: areas[c] / pixels for c in order}
