"""The permutation null of unit scores: counts under shifted annotations, p-values, z-scores."""

import json
import math

import numpy as np
import pytest
import torch

from helpers import LABEL_CATEGORY, RAW, LookupNet, tiny_batch, tiny_maps, write_planted_dataset
from netdissect import BrodenDataset, DissectConfig, LayerResult, dissect
from netdissect.errors import OptionError
from netdissect.math.tally import (
    count_masks,
    count_masks_null,
    null_scores,
    null_shifts,
    null_summary,
    shift_annotations,
)

OPTIONS = dict(workers=0, progress=False, device="cpu")


@pytest.mark.parametrize("mode", ["paper", "lite"])
def test_null_counts_by_hand(mode):
    """Shift 1 on the two-image batch of test_tally: each image's masks meet the other's labels."""
    seg, scalars, present = tiny_batch()
    thresholds = torch.tensor([0.5, 0.5])
    inter, act, null_inter, null_act = count_masks_null(
        tiny_maps(), thresholds, seg, scalars, present, LABEL_CATEGORY, torch.tensor([1, 1]), mode
    )
    # the observed counts are those of count_masks
    i0, a0 = count_masks(tiny_maps(), thresholds, seg, scalars, present, LABEL_CATEGORY, mode)
    assert inter.tolist() == i0.tolist() and act.tolist() == a0.tolist()
    assert null_inter.shape == (2, 2, 6) and null_act.shape == (2, 2, 3)
    # unit 0: image 0's pixels (0,0),(0,1) land on image 1's cat at (0,0); image 1's pixel (3,3)
    # lands on nothing of image 0 but meets its image-level park-s. Unit 1: image 1's whole map
    # meets image 0's dog (4), leg (1), tail (2) and park-s (16 pixels).
    expected_inter = [[0, 0, 0, 0, 1, 1], [0, 4, 1, 2, 16, 0]]
    if mode == "paper":
        # image 0's masks count where image 1 is annotated (object only); image 1's everywhere
        expected_act = [[2 + 1, 1, 1], [16, 16, 16]]
    else:
        # lite: the cat under unit 0's image-0 mask (object); park-s image-level on image 1 (scene)
        expected_act = [[2, 0, 1], [16, 16, 16]]
    for k in range(2):
        assert null_inter[k].tolist() == expected_inter
        assert null_act[k].tolist() == expected_act


def test_shift_annotations_and_shifts():
    seg, scalars, present = tiny_batch()
    s, c, p = shift_annotations(seg, scalars, present, 1)
    assert torch.equal(s, seg[[1, 0]]) and torch.equal(c, scalars[[1, 0]]) and torch.equal(p, present[[1, 0]])
    g = torch.Generator().manual_seed(0)
    assert null_shifts(1, 8, g) is None  # a batch of one image cannot be shifted
    assert null_shifts(5, 0, g) is None
    shifts = null_shifts(5, 200, g)
    assert shifts.shape == (200,) and shifts.min() >= 1 and shifts.max() <= 4
    assert set(shifts.tolist()) == {1, 2, 3, 4}


def test_null_summary_values():
    score = torch.tensor([0.5, 0.1, 0.0, 0.3])
    null = torch.tensor([[0.1, 0.1, 0.0, 0.3], [0.2, 0.2, 0.0, 0.3], [0.3, 0.0, 0.0, 0.3]])
    s = null_summary(score, null)
    assert s["null_mean"].tolist() == pytest.approx([0.2, 0.1, 0.0, 0.3])
    assert s["null_std"][0].item() == pytest.approx(math.sqrt(2 / 300))
    assert s["z_score"][0].item() == pytest.approx(0.3 / math.sqrt(2 / 300))
    # p = (1 + #{null >= score}) / (K + 1)
    assert s["p_value"].tolist() == pytest.approx([1 / 4, 3 / 4, 1.0, 1.0])
    # std 0: equal to the null -> z 0; above it -> +inf
    assert s["z_score"][2].item() == 0.0 and s["z_score"][3].item() == 0.0
    s = null_summary(torch.tensor([0.5]), torch.tensor([[0.2], [0.2]]))
    assert s["z_score"].item() == math.inf and s["p_value"].item() == pytest.approx(1 / 3)


def test_null_scores_are_best_iou_per_sample():
    seg, scalars, present = tiny_batch()
    _, _, ni, na = count_masks_null(
        tiny_maps(), torch.tensor([0.5, 0.5]), seg, scalars, present, LABEL_CATEGORY, torch.tensor([1]), "paper"
    )
    truth = torch.tensor([0, 4, 1, 2, 16, 1])
    scores = null_scores(ni, na, truth, LABEL_CATEGORY)
    # unit 0: cat 1 / (3 + 1 - 1) = 1/3, park-s 1 / (1 + 16 - 1) = 1/16. unit 1: park-s 16/16 = 1
    assert scores[0].tolist() == pytest.approx([1 / 3, 1.0])


def planted_dataset(root, n=15, seed=0):
    """Units 0-2 fire exactly on concepts a, b, c; units 3-14 are random noise."""
    maps = write_planted_dataset(root, n, seed, scene_unit=False, random_units=12)
    return LookupNet(maps), BrodenDataset(root, preprocess=RAW)


@pytest.mark.parametrize("mode", ["paper", "lite"])
def test_planted_detector_significant_random_unit_not(tmp_path, mode):
    K = 19
    model, data = planted_dataset(tmp_path / "ds")
    result = dissect(
        model, data, ["layer"], tmp_path / "run", iou_mode=mode, quantile=0.2, batch_size=5, null_samples=K, **OPTIONS
    )
    layer = result["layer"]
    assert layer.null_samples == K and layer.null_score.shape == (K, 15)
    assert layer.score[:3].tolist() == [1.0, 1.0, 1.0]
    # planted detectors: every null sample is below 1 -> the smallest p-value, a large z
    assert layer.p_value[:3].tolist() == pytest.approx([1 / (K + 1)] * 3)
    assert (layer.z_score[:3] > 4).all()
    assert (layer.null_mean[:3] < 0.6).all()
    # random units: chance-level scores (p-values spread over (0, 1], |z| small)
    p, z = layer.p_value[3:], layer.z_score[3:]
    assert np.median(p) > 0.3, p
    assert (p <= 0.05).sum() <= 2, p
    assert np.median(np.abs(z)) < 1.5 and (np.abs(z) < 3).all(), z
    assert layer.metadata["null"] == {"samples": K, "unshuffled_images": 0}
    assert layer.metadata["options"]["null_samples"] == K

    # units.json and iou.npz carry the null; the results round-trip through save/load
    units = json.loads((tmp_path / "run" / "layer" / "units.json").read_text())["units"]
    assert units[0]["p_value"] == pytest.approx(1 / (K + 1))
    assert set(units[0]) >= {"p_value", "z_score", "null_mean", "null_std"}
    with np.load(tmp_path / "run" / "layer" / "iou.npz") as z:
        assert z["null_score"].shape == (K, 15)
        assert np.array_equal(z["p_value"], layer.p_value)
    loaded = LayerResult.load(tmp_path / "run" / "layer")
    for name in ("null_score", "null_mean", "null_std", "z_score", "p_value"):
        assert np.array_equal(getattr(loaded, name), getattr(layer, name)), name


def test_null_is_reproducible_and_independent_of_layers_order(tmp_path):
    model, data = planted_dataset(tmp_path / "ds", n=12)
    a = dissect(model, data, ["layer"], quantile=0.2, batch_size=4, null_samples=5, **OPTIONS)["layer"]
    b = dissect(model, data, ["layer"], quantile=0.2, batch_size=4, null_samples=5, **OPTIONS)["layer"]
    assert np.array_equal(a.null_score, b.null_score)
    plain = dissect(model, data, ["layer"], quantile=0.2, batch_size=4, **OPTIONS)["layer"]
    assert np.array_equal(plain.inter, a.inter) and np.array_equal(plain.act, a.act)


def test_single_image_batches_keep_their_labels(tmp_path):
    """A last batch of one image cannot be shifted: it keeps its annotations in every sample."""
    model, data = planted_dataset(tmp_path / "ds", n=13)
    layer = dissect(model, data, ["layer"], quantile=0.2, batch_size=4, null_samples=3, **OPTIONS)["layer"]
    assert layer.metadata["null"]["unshuffled_images"] == 1
    ones = dissect(model, data, ["layer"], quantile=0.2, batch_size=1, null_samples=3, **OPTIONS)["layer"]
    assert ones.metadata["null"]["unshuffled_images"] == 13
    # with no image shifted, the null is the observation itself: nothing is significant
    assert np.allclose(ones.null_score, ones.score[None])
    assert (ones.p_value == 1.0).all()


def test_no_null_samples_leaves_outputs_unchanged(tmp_path):
    model, data = planted_dataset(tmp_path / "ds", n=12)
    layer = dissect(model, data, ["layer"], tmp_path / "run", quantile=0.2, batch_size=4, **OPTIONS)["layer"]
    assert layer.null_score is None and layer.p_value is None and layer.null_samples == 0
    assert "null" not in layer.metadata
    units = json.loads((tmp_path / "run" / "layer" / "units.json").read_text())["units"]
    assert not set(units[0]) & {"p_value", "z_score", "null_mean", "null_std"}
    with np.load(tmp_path / "run" / "layer" / "iou.npz") as z:
        assert not set(z.files) & {"null_score", "p_value", "z_score"}
    assert LayerResult.load(tmp_path / "run" / "layer").p_value is None


def test_null_samples_option():
    assert DissectConfig(null_samples=8).result_options()["null_samples"] == 8
    assert DissectConfig().result_options()["null_samples"] == DissectConfig().null_samples
    with pytest.raises(OptionError, match="--null-samples"):
        DissectConfig(null_samples=-1)


def test_report_cards_show_significance(tmp_path):
    from netdissect.report.pages import layer_context, render_layer_page

    model, data = planted_dataset(tmp_path / "ds")
    layer = dissect(model, data, ["layer"], quantile=0.2, batch_size=5, null_samples=19, **OPTIONS)["layer"]
    context = layer_context(layer, {})
    card = next(u for u in context["units"] if u["unit"] == 1)
    assert card["significant"] and card["significance_text"].startswith("p = 0.05, z ")
    html = render_layer_page(context)
    assert 'class="badge significant"' in html and "permutation null of 19 samples" in html
    plain = dissect(model, data, ["layer"], quantile=0.2, batch_size=5, **OPTIONS)["layer"]
    assert "permutation null" not in render_layer_page(layer_context(plain, {}))
