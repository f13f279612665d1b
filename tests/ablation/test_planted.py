"""Planted ground truth: a classifier whose class c depends on one unit alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netdissect import AblationResult, ablate
from netdissect.ablation.result import NPZ_ARRAYS


def test_importance_is_one_for_the_planted_unit_and_zero_elsewhere(planted, tmp_path):
    model, images, classes = planted
    result = ablate(model, images, "layer", out=tmp_path / "out", classes=classes, top_k=2, progress=False)
    assert result.class_names == ["red", "green", "blue"]  # folders in output order; background has none
    assert result.class_counts.tolist() == [3, 2, 4]
    assert result.units.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(result.base_accuracy, [1, 1, 1])
    expected = np.zeros((4, 3))
    expected[[0, 1, 2], [0, 1, 2]] = 1.0
    np.testing.assert_array_equal(result.importance, expected)
    np.testing.assert_array_equal(result.accuracy, 1 - expected)
    # probability drop by hand: a red image has logits (10, 0, 0, 1); without unit 1, (0, 0, 0, 1)
    p = torch.softmax(torch.tensor([10.0, 0, 0, 1]), 0)[0]
    q = torch.softmax(torch.tensor([0.0, 0, 0, 1]), 0)[0]
    assert result.prob_drop[0, 0] == pytest.approx(float(p - q), abs=1e-6)
    assert result.prob_drop[3, 0] < 0  # without the background unit the true class gains
    assert result.top_units("green", 1) == [(2, 1.0)]
    # the files: exactly the listed arrays, and the readable JSON
    with np.load(tmp_path / "out" / "ablation.npz") as z:
        assert sorted(z.files) == sorted(NPZ_ARRAYS)
        np.testing.assert_array_equal(z["importance"], expected)
        assert z["group_removed"].shape == (3, 2)
    meta = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert meta["metadata"]["layer"] == "layer" and meta["metadata"]["split"] == "fx"
    assert meta["metadata"]["model_fingerprint"]
    assert meta["classes"][2]["top_units"][0] == 3
    loaded = AblationResult.load(tmp_path / "out")
    np.testing.assert_array_equal(loaded.group_kept_others, result.group_kept_others)
    assert loaded.class_names == result.class_names


def test_group_curves_by_hand(planted):
    model, images, classes = planted
    r = ablate(model, images, "layer", classes=classes, top_k=2, progress=False)
    # red's ranking: unit 1 (importance 1), then unit 2 (first of the units with no effect)
    assert [u for u, _ in r.top_units("red", 2)] == [1, 2]
    # remove {1}: red 0, green and blue intact; remove {1, 2}: green fails too
    np.testing.assert_array_equal(r.group_removed[0], [0, 0])
    np.testing.assert_array_equal(r.group_removed_others[0], [1, 0.5])
    # keep only {1}: red is right, green and blue images have all-zero logits -> class 0 (red): wrong
    np.testing.assert_array_equal(r.group_kept[0], [1, 1])
    np.testing.assert_array_equal(r.group_kept_others[0], [0, 0.5])


def test_mean_method_fills_with_the_unit_mean(planted):
    model, images, classes = planted
    r = ablate(model, images, "layer", classes=classes, method="mean", top_k=1, progress=False)
    # red's mean over the 9 images is 3/9: a red image keeps logit 10/3 > 1, so it stays right
    np.testing.assert_array_equal(r.importance, np.zeros((4, 3)))
    p = torch.softmax(torch.tensor([10.0, 0, 0, 1]), 0)[0]
    q = torch.softmax(torch.tensor([10.0 / 3, 0, 0, 1]), 0)[0]
    assert r.prob_drop[0, 0] == pytest.approx(float(p - q), abs=1e-6)
    # the constant unit's mean is 1: replacing it changes nothing
    np.testing.assert_allclose(r.prob_drop[3], 0, atol=1e-7)


def test_units_subset_gives_the_same_rows(planted):
    model, images, classes = planted
    full = ablate(model, images, "layer", classes=classes, top_k=1, progress=False)
    part = ablate(model, images, "layer", classes=classes, units="3,1-2", top_k=1, progress=False)
    assert part.units.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(part.importance, full.importance[[2, 0, 1]])
    np.testing.assert_array_equal(part.prob_drop, full.prob_drop[[2, 0, 1]])


def test_estimate_ranks_the_planted_unit_first(planted):
    model, images, classes = planted
    r = ablate(model, images, "layer", classes=classes, estimate=True, top_k=1, progress=False)
    assert np.isnan(r.accuracy).all() and r.metadata["estimate"]
    for c, name in enumerate(r.class_names):
        assert r.top_units(name, 1)[0][0] == c + 1
    # a red image: d log p_red / d unit1 = 10 (1 - p_red); unit 1 = 1, so the estimate is that product
    p = float(torch.softmax(torch.tensor([10.0, 0, 0, 1]), 0)[0])
    assert r.importance[0, 0] == pytest.approx(10 * (1 - p), rel=1e-5)
    np.testing.assert_array_equal(r.group_removed[:, 0], [0, 0, 0])  # the groups are still exact ablations
