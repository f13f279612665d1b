"""netdissect.labels: best labels per unit and category (numpy), as torch's first-maximum rule gives them."""

import numpy as np
import torch

from netdissect.labels import best_labels, display_name


def _torch_best_labels(iou, label_category, categories):
    """The torch computation LayerResult used before (first maximum of each category's labels)."""
    iou, label_category = torch.from_numpy(iou), torch.from_numpy(label_category)
    labels = torch.zeros((iou.shape[0], categories), dtype=torch.int64)
    scores = torch.zeros((iou.shape[0], categories), dtype=iou.dtype)
    for c in range(categories):
        members = (label_category == c).nonzero().squeeze(1)
        if len(members):
            value, pos = iou[:, members].max(dim=1)
            labels[:, c], scores[:, c] = members[pos], value
    return labels.numpy(), scores.numpy()


def test_best_labels_equal_the_torch_computation_with_many_ties():
    rng = np.random.default_rng(0)
    iou = rng.integers(0, 4, size=(300, 40)).astype(np.float64) / 4  # few values: ties everywhere
    label_category = rng.integers(-1, 5, size=40)
    label_category[label_category == 3] = -1  # category 3 has no labels
    labels, scores = best_labels(iou, label_category, 5)
    expected_labels, expected_scores = _torch_best_labels(iou, label_category, 5)
    assert np.array_equal(labels, expected_labels) and np.array_equal(scores, expected_scores)
    assert (labels[:, 3] == 0).all() and (scores[:, 3] == 0).all()


def test_ties_go_to_the_smaller_label_and_names_drop_broden_suffixes():
    labels, scores = best_labels(np.array([[0.0, 0.5, 0.5, 0.2]]), np.array([-1, 0, 0, 1]), 2)
    assert labels.tolist() == [[1, 3]] and scores.tolist() == [[0.5, 0.2]]
    assert [display_name(n) for n in ("park-s", "red-c", "dog", "sky-scraper")] == ["park", "red", "dog", "sky-scraper"]
