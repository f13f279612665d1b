"""Image-level formulas of concepts (INVERT's compositional descriptions), scored by AUC.

A formula of up to N concepts joined by AND, OR and AND NOT, left-nested as in ``dissect
--formula-length`` (:mod:`netdissect.formulas.terms`: the same terms, text and operators), is a
boolean vector over the probe images: ``(water OR river) AND NOT blue`` holds on an image with
water or river and no blue. Its score for a unit is the AUC of the unit's values for the images
where the formula holds against the others. A beam search grows each unit's best formulas one
concept at a time; every formula, like every single concept, must hold on at least
``min_images`` images and at most ``max_fraction`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..formulas.terms import Terms


@dataclass
class FoundFormula:
    """One formula of a unit: its terms, AUC and Mann-Whitney statistic."""

    terms: Terms
    auc: float
    u_stat: float
    positives: int


def search_image_formulas(
    ranks: np.ndarray,
    present: np.ndarray,
    eligible: np.ndarray,
    length: int,
    beam: int,
    ops: Sequence[str],
    min_images: int,
    max_fraction: float,
    keep: int = 5,
) -> list[FoundFormula]:
    """The ``keep`` best formulas (by AUC) of up to ``length`` concepts for the unit whose values
    have the average ranks ``ranks`` (N,); ``present`` (N, K) holds the concepts' images, and only
    ``eligible`` concepts (K,) enter formulas."""
    n = len(ranks)
    columns = np.flatnonzero(eligible)
    if not len(columns):
        return []
    members = present[:, columns].T  # (k, N) bool
    low, high = min_images, max_fraction * n

    def score(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n1 = vectors.sum(axis=1).astype(np.float64)
        u = vectors.astype(np.float64) @ ranks - n1 * (n1 + 1) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = u / (n1 * (n - n1))
        ok = (n1 >= low) & (n1 <= high) & (n1 < n)
        return np.where(ok, auc, -np.inf), u, n1

    auc, u, n1 = score(members)
    found: dict[Terms, FoundFormula] = {}
    frontier: list[tuple[Terms, np.ndarray]] = []
    for j in np.argsort(-auc, kind="stable")[:beam]:
        if np.isfinite(auc[j]):
            terms: Terms = ((None, int(columns[j])),)
            found[terms] = FoundFormula(terms, float(auc[j]), float(u[j]), int(n1[j]))
            frontier.append((terms, members[j]))
    for _ in range(length - 1):
        candidates: list[tuple[float, Terms, np.ndarray, float, int]] = []
        for terms, vector in frontier:
            used = {label for _, label in terms}
            for op in ops:
                grown = _apply(vector[None, :], members, op)
                auc, u, n1 = score(grown)
                for j in np.argsort(-auc, kind="stable")[:beam]:
                    if np.isfinite(auc[j]) and int(columns[j]) not in used:
                        new: Terms = (*terms, (op, int(columns[j])))
                        candidates.append((float(auc[j]), new, grown[j], float(u[j]), int(n1[j])))
        candidates.sort(key=lambda c: -c[0])
        frontier = []
        for value, terms, vector, u_value, positives in candidates:
            if terms not in found and len(frontier) < beam:
                found[terms] = FoundFormula(terms, value, u_value, positives)
                frontier.append((terms, vector))
        if not frontier:
            break
    return sorted(found.values(), key=lambda f: -f.auc)[:keep]


def _apply(vector: np.ndarray, members: np.ndarray, op: str) -> np.ndarray:
    if op == "and":
        return vector & members
    if op == "or":
        return vector | members
    return vector & ~members
