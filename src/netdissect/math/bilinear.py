"""The bilinear interpolation table (half-pixel centres) and formula, shared by the engine's
masks (:mod:`netdissect.math.masks`, torch) and the report's (:mod:`netdissect.report.strips`, numpy).

Torch-free, so that the report computes its masks without importing torch; ``masks`` converts
the table to tensors. Keeping the one table and the one formula here is what makes the report's
masks bit-identical to the dissection's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

#: Values this far (relative) below a threshold cannot round up above it in a bilinear sum.
SLACK = 2.0**-20


@dataclass(frozen=True)
class AxisTable:
    """Interpolation along one axis from ``n_in`` source to ``n_out`` output positions (read-only arrays).

    Output positions are grouped into ``n_in + 1`` cells: cell 0 holds the positions before the
    first source centre (clamped to source 0), cell ``a + 1`` those between source centres
    ``a`` and ``a + 1``. A cell's values depend on its two source positions only.
    """

    lo: np.ndarray  # (n_out,) int64 lower source index
    hi: np.ndarray  # (n_out,) int64 upper source index (lo + 1, clamped)
    w_lo: np.ndarray  # (n_out + 1,) float32 weight of lo (last entry NaN: padding, never kept)
    w_hi: np.ndarray  # (n_out + 1,) float32 weight of hi
    cell_lo: np.ndarray  # (n_in + 1,) lower source index of each cell
    cell_hi: np.ndarray  # (n_in + 1,) upper source index of each cell
    cells: np.ndarray  # (n_in + 1, width) output positions of each cell (ascending), padded with n_out
    cell_w_lo: np.ndarray  # (n_in + 1, width) w_lo of those positions (NaN for padding)
    cell_w_hi: np.ndarray  # (n_in + 1, width) w_hi of those positions

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The tables in field order."""
        return tuple(getattr(self, f.name) for f in fields(self))


@lru_cache(maxsize=64)
def axis_table(n_in: int, n_out: int) -> AxisTable:
    """The table of resizing ``n_in`` positions to ``n_out`` in float32, as ``torch.nn.functional.interpolate``
    (bilinear, ``align_corners=False``) computes the source positions: ``scale * (out + 0.5) - 0.5``."""
    out = np.arange(n_out, dtype=np.float32)
    scale = np.float32(n_in / n_out)
    raw = scale * (out + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(raw, np.float32(0.0))
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - lo.astype(np.float32), np.float32(0.0), np.float32(1.0))
    nxt = np.minimum(np.arange(n_in, dtype=np.int64) + 1, n_in - 1)
    # padding weight NaN: a padded position's value is NaN, and NaN > threshold is False
    w_lo = np.append(np.float32(1.0) - lam, np.float32(np.nan))
    w_hi = np.append(lam, np.float32(np.nan))
    cell = np.where(raw < 0, 0, lo + 1)
    counts = np.bincount(cell, minlength=n_in + 1)
    cells = np.full((n_in + 1, int(counts.max())), n_out, dtype=np.int64)
    start = np.cumsum(counts) - counts
    cells[cell, np.arange(n_out) - start[cell]] = np.arange(n_out)
    cell_lo = np.maximum(np.arange(n_in + 1, dtype=np.int64) - 1, 0)
    table = AxisTable(lo, nxt[lo], w_lo, w_hi, cell_lo, nxt[cell_lo], cells, w_lo[cells], w_hi[cells])
    for array in table.arrays():
        array.flags.writeable = False  # cached and shared
    return table


def bilinear(v00, v01, v10, v11, wx_lo, wx_hi, wy_lo, wy_hi):
    """The one formula every path evaluates (torch tensors or numpy arrays; same operations, same order):
    the values of the corners (row, column) ``00``, ``01``, ``10``, ``11`` weighted along x, then y."""
    top = v00 * wx_lo + v01 * wx_hi
    bottom = v10 * wx_lo + v11 * wx_hi
    return top * wy_lo + bottom * wy_hi
