"""Image-level scores of units against concepts: AUC, the Mann-Whitney U test and Benjamini-Hochberg.

INVERT's score (Bykov et al., NeurIPS 2023): a unit describes a concept as well as its values
separate the images that have the concept from those that do not. For unit u with values
``v_u`` on N images and concept k present on ``n1`` of them (``n2 = N - n1`` absent)::

    U_uk   = R_uk - n1 (n1 + 1) / 2          R_uk: the sum of the positives' ranks of v_u (ties averaged)
    AUC_uk = U_uk / (n1 n2)                  the chance a positive image outranks a negative one, ties 1/2

and the one-sided p-value of "positives rank higher" is Mann-Whitney's: exact (the null
distribution of U counted) when N <= :data:`EXACT_MAX_IMAGES` and the unit has no tied values,
else the normal approximation with continuity and tie correction::

    z = (U - n1 n2 / 2 - 1/2) / sqrt(n1 n2 / 12 * ((N + 1) - sum_t (t^3 - t) / (N (N - 1))))

Vectorised: one sort per unit (:func:`average_ranks`) and one matrix product of the concept
indicators with the ranks give every (unit, concept) pair. Pure numpy and torch on the CPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ActivationError, OptionError

#: Exact p-values up to this many images (the null distribution of U is counted); above, the normal approximation.
EXACT_MAX_IMAGES = 60
#: Units ranked at once (bounds the (N, units) rank table's memory).
UNIT_CHUNK = 256


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..N of each column of ``values`` (N, U), ties given their average rank, and per
    column the tie term ``sum_t (t^3 - t)`` over groups of t equal values. One sort per column."""
    values = np.asarray(values)
    n, u = values.shape
    order = np.argsort(values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, axis=0)
    position = np.broadcast_to(np.arange(n)[:, None], (n, u))
    starts = np.ones((n, u), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    ends = np.ones((n, u), dtype=bool)
    ends[:-1] = ordered[:-1] != ordered[1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[::-1], axis=0)[::-1]
    size = (last - first + 1).astype(np.float64)
    ranks = np.empty((n, u), dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=0)
    return ranks, (size * size - 1.0).sum(axis=0)  # each of a group's t members adds t^2 - 1: t^3 - t in all


def eligible_concepts(labels: np.ndarray, min_images: int, max_fraction: float) -> np.ndarray:
    """Concepts (columns of the (N, K) presence table) on at least ``min_images`` images and at most
    ``max_fraction`` of them."""
    positives = np.asarray(labels, dtype=bool).sum(axis=0)
    return (positives >= min_images) & (positives <= max_fraction * labels.shape[0]) & (positives < labels.shape[0])


@dataclass
class AucTable:
    """Per (unit, concept): AUC, Mann-Whitney U and the one-sided p-value; NaN for concepts not tested."""

    auc: np.ndarray  # (U, K) float64
    u_stat: np.ndarray  # (U, K) float64
    p_value: np.ndarray  # (U, K) float64
    positives: np.ndarray  # (K,) images with the concept
    tested: np.ndarray  # (K,) bool: eligible concepts


def auc_table(values: np.ndarray, labels: np.ndarray, tested: np.ndarray | None = None) -> AucTable:
    """AUCs and p-values of every unit (columns of ``values`` (N, U)) against every concept
    (columns of the boolean ``labels`` (N, K)); concepts outside ``tested`` get NaN."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n, units = values.shape
    if labels.shape[0] != n:
        raise ValueError(f"{n} images of values, {labels.shape[0]} of labels")
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0][1])
        raise ActivationError(f"unit {bad + 1} has NaN or infinite values: no concept can be scored")
    tested = np.ones(labels.shape[1], dtype=bool) if tested is None else np.asarray(tested, dtype=bool)
    columns = np.flatnonzero(tested)
    n1 = labels[:, columns].sum(axis=0).astype(np.float64)
    n2 = n - n1
    indicators = labels[:, columns].T.astype(np.float64)  # (k, N)
    shape = (units, labels.shape[1])
    auc, u_stat, p_value = (np.full(shape, np.nan) for _ in range(3))
    for start in range(0, units, UNIT_CHUNK):
        stop = min(start + UNIT_CHUNK, units)
        ranks, ties = average_ranks(values[:, start:stop])
        u = (indicators @ ranks).T - n1 * (n1 + 1) / 2  # (chunk, k)
        u_stat[start:stop, columns] = u
        auc[start:stop, columns] = u / (n1 * n2)
        p_value[start:stop, columns] = mann_whitney_p(u, n1, n2, ties, n)
    return AucTable(auc, u_stat, p_value, labels.sum(axis=0), tested)


def mann_whitney_p(u: np.ndarray, n1: np.ndarray, n2: np.ndarray, ties: np.ndarray, n: int) -> np.ndarray:
    """One-sided p-values P(U >= u) for a (units, concepts) table of U statistics, the concepts'
    positives ``n1`` and negatives ``n2``, the units' tie terms and N images; exact where cheap."""
    mean = n1 * n2 / 2
    spread = n1 * n2 / 12 * ((n + 1) - ties[:, None] / max(n * (n - 1), 1))
    sigma = np.sqrt(np.maximum(spread, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0, (u - mean - 0.5) / sigma, -np.inf)
    p = 0.5 * torch.special.erfc(torch.from_numpy(z / np.sqrt(2.0))).numpy()
    if n <= EXACT_MAX_IMAGES:
        untied = ties == 0
        for k, size in enumerate(n1.astype(int)):
            tail = upper_tail(int(size), n - int(size))
            p[untied, k] = tail[np.clip(np.round(u[untied, k]).astype(int), 0, len(tail) - 1)]
    return p


@functools.lru_cache(maxsize=256)
def upper_tail(n1: int, n2: int) -> np.ndarray:
    """``P(U >= u)`` for u = 0..n1*n2 under the null (no ties): the count of arrangements of n1
    positives among n1 + n2 ranks whose U is u, over all arrangements (a Gaussian binomial's
    coefficients, counted by dynamic programming)."""
    # counts[j][u]: arrangements of j positives among the items seen so far with statistic u
    counts = [np.zeros(n1 * n2 + 1) for _ in range(n1 + 1)]
    counts[0][0] = 1.0
    for item in range(n1 + n2):
        for j in range(min(item + 1, n1), 0, -1):
            # the new item (larger than all before) is positive: it outranks the negatives seen so far
            negatives = item - (j - 1)
            if negatives <= n2:
                shifted = np.zeros_like(counts[j])
                shifted[negatives:] = counts[j - 1][: len(shifted) - negatives]
                counts[j] = counts[j] + shifted
    pmf = counts[n1] / counts[n1].sum()
    return np.cumsum(pmf[::-1])[::-1]


def benjamini_hochberg(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Which p-values are significant at false discovery rate ``alpha`` (Benjamini-Hochberg over
    all finite entries; NaN entries are not tests and are never significant)."""
    if not 0 < alpha < 1:
        raise OptionError(f"--alpha must lie in (0, 1), got {alpha}")
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    tests = np.flatnonzero(np.isfinite(flat))
    significant = np.zeros(flat.shape, dtype=bool)
    if len(tests):
        order = tests[np.argsort(flat[tests], kind="stable")]
        m = len(order)
        passing = np.flatnonzero(flat[order] <= alpha * np.arange(1, m + 1) / m)
        if len(passing):
            significant[order[: passing[-1] + 1]] = True
    return significant.reshape(p.shape)
