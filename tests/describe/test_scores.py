"""AUC, Mann-Whitney p-values and Benjamini-Hochberg against brute force and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from netdissect.describe.scores import (
    auc_table,
    average_ranks,
    benjamini_hochberg,
    eligible_concepts,
    upper_tail,
)
from netdissect.errors import ActivationError, OptionError


def brute_auc(v: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive's value > a negative's), ties counted one half, by comparing every pair."""
    pos, neg = v[positive], v[~positive]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_average_ranks_and_tie_term():
    ranks, ties = average_ranks(np.array([[3.0, 1.0], [1.0, 1.0], [3.0, 1.0], [2.0, 5.0]]))
    assert ranks[:, 0].tolist() == [3.5, 1.0, 3.5, 2.0]
    assert ranks[:, 1].tolist() == [2.0, 2.0, 2.0, 4.0]
    assert ties.tolist() == [2**3 - 2, 3**3 - 3]


def test_auc_equals_brute_force_with_ties():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, size=(40, 7)).astype(float)  # many ties
    labels = rng.random((40, 6)) < 0.3
    table = auc_table(values, labels)
    for u in range(7):
        for k in range(6):
            assert table.auc[u, k] == pytest.approx(brute_auc(values[:, u], labels[:, k]), abs=1e-12)


def test_exact_p_value_is_the_share_of_arrangements():
    # 3 positives among 7 untied values: enumerate every arrangement of the ranks
    values = np.array([[0.1], [0.5], [0.9], [0.3], [0.7], [0.2], [0.8]])
    labels = np.zeros((7, 1), dtype=bool)
    labels[[2, 4, 6], 0] = True  # the three largest values but one
    table = auc_table(values, labels)
    ranks = average_ranks(values)[0][:, 0]
    observed = ranks[labels[:, 0]].sum()
    sums = [sum(c) for c in itertools.combinations(range(1, 8), 3)]
    assert table.p_value[0, 0] == pytest.approx(np.mean([s >= observed for s in sums]), abs=1e-12)
    assert upper_tail(3, 4)[0] == pytest.approx(1.0)


def test_normal_approximation_with_tie_correction():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 20, size=(300, 1)).astype(float)
    labels = rng.random((300, 1)) < 0.4
    table = auc_table(values, labels)
    n1 = labels.sum()
    n2 = 300 - n1
    _, counts = np.unique(values, return_counts=True)
    tie = ((counts**3) - counts).sum()
    sigma = math.sqrt(n1 * n2 / 12 * ((301) - tie / (300 * 299)))
    z = (table.u_stat[0, 0] - n1 * n2 / 2 - 0.5) / sigma
    assert table.p_value[0, 0] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9)


def test_constant_unit_is_never_significant_and_nan_refused():
    labels = np.zeros((100, 1), dtype=bool)
    labels[:30] = True
    table = auc_table(np.ones((100, 1)), labels)
    assert table.auc[0, 0] == 0.5 and table.p_value[0, 0] == 1.0
    with pytest.raises(ActivationError, match="unit 2"):
        auc_table(np.array([[1.0, np.nan]] * 4), labels[:4])


def test_untested_concepts_are_nan():
    labels = np.zeros((20, 3), dtype=bool)
    labels[:2, 0] = True  # too rare
    labels[:10, 1] = True
    labels[:19, 2] = True  # too common
    tested = eligible_concepts(labels, min_images=3, max_fraction=0.5)
    assert tested.tolist() == [False, True, False]
    table = auc_table(np.arange(20.0)[:, None], labels, tested)
    assert np.isnan(table.auc[0, [0, 2]]).all() and table.auc[0, 1] == 0.0


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.2 against 0.05 * k / 4 = 0.0125, 0.025, 0.0375, 0.05: only 0.01 passes
    assert benjamini_hochberg(p, 0.05).tolist() == [True, False, False, False, False]
    # at 0.2: thresholds 0.05, 0.1, 0.15, 0.2: all four pass (the largest k with p_(k) <= k/m alpha)
    assert benjamini_hochberg(p, 0.2).tolist() == [True, True, True, True, False]
    with pytest.raises(OptionError, match="--alpha"):
        benjamini_hochberg(p, 1.5)
