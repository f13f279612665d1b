"""Hand-computed IoU counts (DESIGN §1) on the tiny dataset of conftest.py.

Masks (thresholds 0.5): unit 0 covers image 0's pixels (0,0),(0,1) and image 1's (3,3);
unit 1 covers all 16 pixels of image 1. Labels: 1 dog, 5 cat (object); 2 leg, 3 tail (part);
4 park-s (scene, image-level).
"""

import pytest
import torch
import torch.nn.functional as F

from helpers import LABEL_CATEGORY, tiny_batch, tiny_maps
from netdissect.labels import best_labels
from netdissect.math.masks import upsample
from netdissect.math.tally import (
    Counts,
    count_batch,
    iou_from_counts,
    lite_quantile_level,
    threshold_level,
)


@pytest.mark.parametrize("mode", ["paper", "lite"])
def test_counts_by_hand(mode):
    seg, scalars, present = tiny_batch()
    c = count_batch(tiny_maps(), torch.tensor([0.5, 0.5]), seg, scalars, present, LABEL_CATEGORY, mode)
    assert c.truth.tolist() == [0, 4, 1, 2, 16, 1]
    assert c.inter.tolist() == [[0, 2, 1, 1, 2, 0], [0, 0, 0, 0, 0, 1]]
    if mode == "paper":
        # unit 0's pixel on image 1 counts for object (annotated there), not part/scene
        assert c.act.tolist() == [[3, 2, 2], [16, 0, 0]]
    else:
        # lite: image 1's mask of unit 0 covers no object label, so it does not count
        assert c.act.tolist() == [[2, 2, 2], [16, 0, 0]]
    iou = iou_from_counts(c, LABEL_CATEGORY)
    dog = 2 / 5 if mode == "paper" else 2 / 4
    expected = [[0, dog, 1 / 2, 1 / 3, 2 / 16, 0], [0, 0, 0, 0, 0, 1 / 16]]
    assert torch.allclose(iou, torch.tensor(expected, dtype=torch.float64))
    labels, scores = best_labels(iou.numpy(), LABEL_CATEGORY.numpy(), 3)
    assert labels[0].tolist() == [1, 2, 4]
    assert labels[1, 0] == 5
    assert scores[0].tolist() == pytest.approx([dog, 0.5, 0.125])


def test_label_zero_and_padding_never_count():
    seg, scalars, present = tiny_batch()
    maps = torch.ones(2, 1, 4, 4)
    c = count_batch(maps, torch.tensor([0.0]), seg, scalars, present, LABEL_CATEGORY)
    assert c.truth[0] == 0 and c.inter[0, 0] == 0


def test_chunking_does_not_change_counts():
    torch.manual_seed(0)
    acts = torch.rand(3, 5, 3, 3)
    seg = torch.randint(0, 6, (3, 2, 7, 7))
    scalars = torch.tensor([[4], [0], [4]])
    present = torch.rand(3, 3) > 0.3
    t = torch.full((5,), 0.6)
    whole = count_batch(acts, t, seg, scalars, present, LABEL_CATEGORY, "lite")
    chunked = count_batch(acts, t, seg, scalars, present, LABEL_CATEGORY, "lite", chunk_pixels=49)
    for a, b in zip((whole.inter, whole.act, whole.truth), (chunked.inter, chunked.act, chunked.truth)):
        assert torch.equal(a, b)


def test_upsampled_masks_match_reference_interpolation():
    """Counts use bilinear, half-pixel upsampling of each map (DESIGN §1 step 2)."""
    torch.manual_seed(1)
    acts = torch.rand(2, 3, 3, 3)
    seg = torch.randint(0, 3, (2, 1, 8, 8))
    label_category = torch.tensor([-1, 0, 0])
    t = torch.tensor([0.5, 0.7, 0.9])
    c = count_batch(
        acts, t, seg, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool), label_category
    )
    up = upsample(acts.flatten(0, 1), (8, 8)).view(2, 3, 8, 8)
    assert torch.allclose(up, F.interpolate(acts, size=(8, 8), mode="bilinear", align_corners=False), atol=1e-6)
    mask = up > t.view(1, 3, 1, 1)
    for u in range(3):
        for lab in (1, 2):
            assert c.inter[u, lab] == (mask[:, u] & (seg[:, 0] == lab)).sum()
        assert c.act[u, 0] == mask[:, u].sum()


def test_threshold_levels():
    assert threshold_level(0.005, "paper") == pytest.approx(0.995)
    assert lite_quantile_level(0.005) == 994 / 999
    assert threshold_level(0.005, "lite") == 994 / 999


def test_counts_accumulate():
    a = Counts.zeros(2, 3, 1)
    b = Counts(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 1, dtype=torch.long), torch.ones(3, dtype=torch.long))
    a.add(b)
    a.add(b)
    assert a.inter.sum() == 12 and a.truth.tolist() == [2, 2, 2]


def test_shard_counts_sum_to_whole_batch():
    seg, scalars, present = tiny_batch()
    t = torch.tensor([0.5, 0.5])
    whole = count_batch(tiny_maps(), t, seg, scalars, present, LABEL_CATEGORY)
    merged = Counts.zeros(2, 6, 3)
    for i in range(2):
        merged.add(
            count_batch(
                tiny_maps()[i : i + 1], t, seg[i : i + 1], scalars[i : i + 1], present[i : i + 1], LABEL_CATEGORY
            )
        )
    assert torch.equal(merged.inter, whole.inter) and torch.equal(merged.act, whole.act)
    assert torch.equal(merged.truth, whole.truth)
