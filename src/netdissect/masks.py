"""Unit masks: activation maps upsampled to the segmentation size and thresholded (DESIGN §1.2).

Upsampling is bilinear with half-pixel centres (``align_corners=False`` semantics). When a map
is enlarged, :func:`masked_pixels` evaluates the interpolation only in the cells of the source
grid where some corner value can exceed the threshold: a bilinear value is a convex
combination of its four source neighbours, so elsewhere it stays at or below the threshold.
Only a few percent of the upsampled pixels lie near the top 0.5 % of a unit's values, so
this skips most of the work. The sparse evaluation uses exactly the same float32 operations,
in the same order, as the dense :func:`upsample`, so both give bit-identical masks on any
device. (They agree with ``torch.nn.functional.interpolate`` up to float rounding: a few
float32 ulps.) When a map is shrunk, :func:`upsample` uses ``interpolate(antialias=True)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Values this far (relative) below a threshold cannot round up above it in a bilinear sum.
_SLACK = 2.0**-20


@dataclass(frozen=True)
class _Axis:
    """Interpolation along one axis from ``n_in`` source to ``n_out`` output positions."""

    lo: torch.Tensor  # (n_out,) lower source index
    hi: torch.Tensor  # (n_out,) upper source index (lo + 1, clamped)
    w_lo: torch.Tensor  # (n_out + 1,) float32 weight of lo (last entry 0: padding)
    w_hi: torch.Tensor  # (n_out + 1,) float32 weight of hi
    next: torch.Tensor  # (n_in,) the upper neighbour of each source index
    cells: torch.Tensor  # (n_in, B) output positions whose lower index is i, padded with n_out


@functools.lru_cache(maxsize=64)
def _axis(n_in: int, n_out: int, device: str) -> _Axis:
    # float32 source positions, as interpolate computes them: scale * (out + 0.5) - 0.5
    out = torch.arange(n_out, dtype=torch.float32)
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    src = (scale * (out + 0.5) - 0.5).clamp(min=0.0)
    lo = src.floor().long().clamp(max=n_in - 1)
    lam = (src - lo.float()).clamp(0.0, 1.0)
    nxt = (torch.arange(n_in) + 1).clamp(max=n_in - 1)
    hi = nxt[lo]
    w_lo = torch.cat([1.0 - lam, torch.zeros(1)])
    w_hi = torch.cat([lam, torch.zeros(1)])
    counts = torch.bincount(lo, minlength=n_in)
    width = int(counts.max())
    cells = torch.full((n_in, width), n_out, dtype=torch.long)
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(n_out) - start[lo]
    cells[lo, pos] = torch.arange(n_out)
    return _Axis(*(t.to(device) for t in (lo, hi, w_lo, w_hi, nxt, cells)))


def _bilinear(v00, v01, v10, v11, wx_lo, wx_hi, wy_lo, wy_hi):
    """The one formula both the dense and the sparse paths evaluate (same operations, same order)."""
    top = v00 * wx_lo + v01 * wx_hi
    bottom = v10 * wx_lo + v11 * wx_hi
    return top * wy_lo + bottom * wy_hi


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
    return _bilinear(
        rows_lo[:, :, ax.lo], rows_lo[:, :, ax.hi], rows_hi[:, :, ax.lo], rows_hi[:, :, ax.hi],
        ax.w_lo[:sw], ax.w_hi[:sw], ay.w_lo[:sh, None], ay.w_hi[:sh, None],
    )


def masked_pixels(
    maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels where the upsampled map exceeds its threshold.

    Args:
        maps: ``(P, h, w)`` activation maps.
        thresholds: ``(P,)`` the threshold of each map; kept pixels are strictly above it.
        size: the segmentation size ``(sh, sw)``.

    Returns:
        ``(map index, y, x)`` of every kept pixel, as three int64 tensors.
    """
    maps = maps.float()
    thresholds = thresholds.float()
    h, w = maps.shape[-2:]
    sh, sw = size
    if h > sh or w > sw or (h, w) == (sh, sw):
        keep = upsample(maps, size) > thresholds[:, None, None]
        return keep.nonzero(as_tuple=True)
    ay, ax = _axis(h, sh, str(maps.device)), _axis(w, sw, str(maps.device))
    # a cell (a, b) spans source rows a, next(a) and columns b, next(b): hot if a corner can pass
    corner = torch.maximum(maps, maps[:, ay.next])
    corner = torch.maximum(corner, corner[:, :, ax.next])
    floor = thresholds - thresholds.abs() * _SLACK
    p, a, b = (corner > floor[:, None, None]).nonzero(as_tuple=True)
    a1, b1 = ay.next[a], ax.next[b]
    rows, cols = ay.cells[a], ax.cells[b]  # (cells, By), (cells, Bx); padding = sh / sw
    value = _bilinear(
        maps[p, a, b][:, None, None], maps[p, a, b1][:, None, None],
        maps[p, a1, b][:, None, None], maps[p, a1, b1][:, None, None],
        ax.w_lo[cols][:, None, :], ax.w_hi[cols][:, None, :],
        ay.w_lo[rows][:, :, None], ay.w_hi[rows][:, :, None],
    )
    keep = (value > thresholds[p][:, None, None]) & (rows < sh)[:, :, None] & (cols < sw)[:, None, :]
    n, r, c = keep.nonzero(as_tuple=True)
    return p[n], rows[n, r], cols[n, c]
