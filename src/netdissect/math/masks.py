"""Unit masks: activation maps upsampled to the segmentation size and thresholded (``docs/method.md``).

Upsampling is bilinear with half-pixel centres (``align_corners=False`` semantics). When a map
is enlarged, :func:`masked_pixels` evaluates the interpolation only in the cells of the source
grid where some corner value can exceed the threshold: a bilinear value is a convex
combination of its four source neighbours, so elsewhere it stays at or below the threshold.
Only a few percent of the upsampled pixels lie near the top 0.5 % of a unit's values, so
this skips most of the work. The sparse evaluation uses exactly the same float32 operations,
in the same order, as the dense :func:`upsample`, so both give bit-identical masks on any
device. (They agree with ``torch.nn.functional.interpolate`` up to float rounding: a few
float32 ulps.) When a map is shrunk, :func:`upsample` uses ``interpolate(antialias=True)``.
The interpolation table and formula live in :mod:`netdissect.math.bilinear`, shared with the report.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .bilinear import SLACK, axis_table, bilinear


@dataclass(frozen=True)
class _Axis:
    """:class:`netdissect.math.bilinear.AxisTable` as tensors on one device (the same fields)."""

    lo: torch.Tensor
    hi: torch.Tensor
    w_lo: torch.Tensor
    w_hi: torch.Tensor
    cell_lo: torch.Tensor
    cell_hi: torch.Tensor
    cells: torch.Tensor
    cell_w_lo: torch.Tensor
    cell_w_hi: torch.Tensor


@functools.lru_cache(maxsize=64)
def _axis(n_in: int, n_out: int, device: str) -> _Axis:
    return _Axis(*(torch.tensor(t, device=device) for t in axis_table(n_in, n_out).arrays()))


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize maps ``(P, h, w)`` to ``size``: bilinear with half-pixel centres (float32).

    Enlarging uses the formula of :func:`masked_pixels` (bit-identical masks); shrinking uses
    ``interpolate(..., antialias=True)``.
    """
    h, w = maps.shape[-2:]
    sh, sw = size
    if (h, w) == (sh, sw):
        return maps.float()
    if h > sh or w > sw:
        return F.interpolate(
            maps.float().unsqueeze(1), size=size, mode="bilinear", align_corners=False, antialias=True
        ).squeeze(1)
    ay, ax = _axis(h, sh, str(maps.device)), _axis(w, sw, str(maps.device))
    maps = maps.float()
    rows_lo, rows_hi = maps[:, ay.lo], maps[:, ay.hi]  # (P, sh, w)
    return bilinear(
        rows_lo[:, :, ax.lo],
        rows_lo[:, :, ax.hi],
        rows_hi[:, :, ax.lo],
        rows_hi[:, :, ax.hi],
        ax.w_lo[:sw],
        ax.w_hi[:sw],
        ay.w_lo[:sh, None],
        ay.w_hi[:sh, None],
    )


def _above(maps: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(p, i, j)`` of the values with ``maps[p, i, j] > floor[p]``, found through row maxima.

    A few per mille of the values pass: a max over each row (a fast reduction) finds the rows
    that hold one, and only those rows are compared value by value.
    """
    p, i = (maps.amax(dim=2) > floor[:, None]).nonzero(as_tuple=True)
    k, j = (maps[p, i] > floor[p, None]).nonzero(as_tuple=True)
    return p[k], i[k], j


def _hot_cells(maps: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """``(cells, 3)``: map index, row cell and column cell of every cell with a corner above ``floor``.

    A source value at (i, j) is a corner of the cells (i, j), (i, j + 1), (i + 1, j) and
    (i + 1, j + 1) (see :class:`~netdissect.math.bilinear.AxisTable`). Only the few values above the floor are expanded;
    duplicates are merged.
    """
    _P, h, w = maps.shape
    p, i, j = _above(maps, floor)
    rows = torch.stack([i, i + 1], 1)  # (n, 2) row cells
    cols = torch.stack([j, j + 1], 1)
    linear = ((p[:, None, None] * (h + 1) + rows[:, :, None]) * (w + 1) + cols[:, None, :]).flatten().unique()
    return torch.stack([linear // ((h + 1) * (w + 1)), linear // (w + 1) % (h + 1), linear % (w + 1)], 1)


def masked_pixels(
    maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], chunk_pixels: int = 1 << 22
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels where the upsampled map exceeds its threshold.

    Args:
        maps: ``(P, h, w)`` activation maps.
        thresholds: ``(P,)`` the threshold of each map; kept pixels are strictly above it.
        size: the segmentation size ``(sh, sw)``.
        chunk_pixels: bound on the upsampled values evaluated at once (memory).

    Returns:
        ``(map index, y, x)`` of every kept pixel, as three int64 tensors.
    """
    maps = maps.float()
    thresholds = thresholds.float()
    h, w = maps.shape[-2:]
    sh, sw = size
    if (h, w) == (sh, sw):
        return _above(maps, thresholds)
    if h > sh or w > sw:
        # shrinking: dense antialiased resize of the maps that exceed their threshold somewhere
        index = (maps.amax(dim=(1, 2)) > thresholds).nonzero().squeeze(1)
        found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for chunk in index.split(max(1, chunk_pixels // (sh * sw))):
            p, y, x = (upsample(maps[chunk], size) > thresholds[chunk, None, None]).nonzero(as_tuple=True)
            found.append((chunk[p], y, x))
        return _concat(found, maps.device)
    ay, ax = _axis(h, sh, str(maps.device)), _axis(w, sw, str(maps.device))
    cells = _hot_cells(maps, thresholds - thresholds.abs() * SLACK)
    flat = maps.reshape(-1)
    found = []
    block = ay.cells.shape[1] * ax.cells.shape[1]
    for chunk in cells.split(max(1, chunk_pixels // block)):
        p, row_cell, col_cell = chunk.unbind(1)
        top = p * (h * w) + ay.cell_lo[row_cell] * w  # flat offsets of the cell's two source rows
        bottom = p * (h * w) + ay.cell_hi[row_cell] * w
        left, right = ax.cell_lo[col_cell], ax.cell_hi[col_cell]
        value = bilinear(
            flat[top + left][:, None, None],
            flat[top + right][:, None, None],
            flat[bottom + left][:, None, None],
            flat[bottom + right][:, None, None],
            ax.cell_w_lo[col_cell][:, None, :],
            ax.cell_w_hi[col_cell][:, None, :],
            ay.cell_w_lo[row_cell][:, :, None],
            ay.cell_w_hi[row_cell][:, :, None],
        )
        n, r, c = (value > thresholds[p][:, None, None]).nonzero(as_tuple=True)
        found.append((p[n], ay.cells[row_cell[n], r], ax.cells[col_cell[n], c]))
    return _concat(found, maps.device)


def batch_masked_pixels(
    acts: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], chunk_pixels: int = 1 << 22
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`masked_pixels` of a batch's maps ``(B, U, h, w)`` with per-unit ``thresholds``
    ``(U,)``: ``(pair, y, x)`` with ``pair = image * U + unit``."""
    B = acts.shape[0]
    return masked_pixels(acts.flatten(0, 1), thresholds.to(acts.device).repeat(B), size, chunk_pixels)


def _concat(
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``(map index, y, x)`` parts of ``found`` joined (three empty int64 tensors if none)."""
    if not found:
        e = torch.zeros(0, dtype=torch.int64, device=device)
        return e, e, e
    index, y, x = zip(*found)
    return torch.cat(index), torch.cat(y), torch.cat(x)
