"""Batched ablation against a brute-force loop (one full forward pass per ablated unit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ablation_helpers import write_folders
from helpers import RAW, SmallCNN
from netdissect import ablate
from netdissect.ablation.images import ImageDataset, collate_images, labelled_images
from netdissect.models.base import LoadedModel


class TinyResNet(nn.Module):
    """A stem and one residual block: the rest after ``block.conv1`` needs the block's input too."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Module()
        self.block.conv1 = nn.Conv2d(6, 6, 3, padding=1)
        self.block.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(self.block.conv2(torch.relu(self.block.conv1(h))) + h)
        return self.fc(h.mean(dim=(2, 3)))


def brute_force(module: nn.Module, images, layer: str, fill: torch.Tensor | None = None):
    """Per unit (row 0: nothing removed): per-class accuracy and mean true-class probability."""
    x, targets, _ = collate_images([ImageDataset(images, RAW)[i] for i in range(len(images.paths))])
    outputs = torch.tensor(images.class_outputs)[targets]
    target_layer = dict(module.named_modules())[layer]
    width = None
    with torch.no_grad():
        captured = []
        handle = target_layer.register_forward_hook(lambda m, i, o: captured.append(o))
        module(x)
        handle.remove()
        width = captured[0].shape[1]
    fill = torch.zeros(width) if fill is None else fill
    acc, prob = [], []
    for u in [None, *range(width)]:

        def hook(m, i, o, u=u):
            if u is not None:
                o = o.clone()
                o[:, u] = fill[u]
            return o

        handle = target_layer.register_forward_hook(hook)
        with torch.no_grad():
            logits = module(x)
        handle.remove()
        hit = (logits.argmax(1) == outputs).double()
        p = torch.softmax(logits, 1).gather(1, outputs[:, None])[:, 0].double()
        counts = torch.bincount(targets, minlength=len(images.class_names)).double()
        acc.append((torch.zeros(len(counts), dtype=torch.float64).index_add_(0, targets, hit) / counts).numpy())
        prob.append((torch.zeros(len(counts), dtype=torch.float64).index_add_(0, targets, p) / counts).numpy())
    return np.array(acc), np.array(prob)


@pytest.mark.parametrize("split", ["auto", "hook"])
@pytest.mark.parametrize(
    "make, layer, outputs", [(SmallCNN, "conv1", 2), (SmallCNN, "conv2", 2), (TinyResNet, "block.conv1", 3)]
)
def test_equals_brute_force(tmp_path, split, make, layer, outputs):
    root = write_folders(tmp_path / "images", {str(i): 5 + i for i in range(outputs)}, size=12)
    module = make().eval()
    images = labelled_images(root)
    result = ablate(
        LoadedModel(module, RAW, "m"),
        images,
        layer,
        top_k=3,
        batch_size=4,
        ablation_batch=9,
        progress=False,
        split=split,
    )
    assert result.metadata["split"] == ("hook" if split == "hook" else "fx")
    acc, prob = brute_force(module, images, layer)
    np.testing.assert_array_equal(result.base_accuracy, acc[0])
    np.testing.assert_array_equal(result.accuracy, acc[1:])
    np.testing.assert_array_equal(result.importance, acc[0] - acc[1:])
    np.testing.assert_allclose(result.prob_drop, prob[0] - prob[1:], rtol=0, atol=1e-6)


def test_mean_method_equals_brute_force(tmp_path):
    root = write_folders(tmp_path / "images", {"0": 6, "1": 5}, size=12)
    module = SmallCNN().eval()
    images = labelled_images(root)
    result = ablate(LoadedModel(module, RAW, "m"), images, "conv2", method="mean", top_k=2, progress=False)
    x, _, _ = collate_images([ImageDataset(images, RAW)[i] for i in range(len(images.paths))])
    with torch.no_grad():
        mean = module.conv2(torch.relu(module.conv1(x))).mean(dim=(0, 2, 3))
    acc, prob = brute_force(module, images, "conv2", fill=mean)
    np.testing.assert_array_equal(result.accuracy, acc[1:])
    np.testing.assert_allclose(result.prob_drop, prob[0] - prob[1:], rtol=0, atol=1e-6)


def test_group_curves_equal_brute_force(tmp_path):
    root = write_folders(tmp_path / "images", {"0": 6, "1": 6, "2": 6}, size=12)
    module = TinyResNet().eval()
    images = labelled_images(root)
    r = ablate(LoadedModel(module, RAW, "m"), images, "block.conv1", top_k=3, progress=False)
    x, targets, _ = collate_images([ImageDataset(images, RAW)[i] for i in range(len(images.paths))])
    conv = module.block.conv1
    for c in range(3):
        top = [u - 1 for u, _ in r.top_units(str(c), 3)]
        for k in range(1, 4):
            for kept, curve, others in (
                (False, r.group_removed, r.group_removed_others),
                (True, r.group_kept, r.group_kept_others),
            ):
                removed = [u for u in range(6) if u not in top[:k]] if kept else top[:k]

                def hook(m, i, o, removed=removed):
                    o = o.clone()
                    o[:, removed] = 0
                    return o

                handle = conv.register_forward_hook(hook)
                with torch.no_grad():
                    hit = (module(x).argmax(1) == targets).double()
                handle.remove()
                acc = [float(hit[targets == j].mean()) for j in range(3)]
                assert curve[c, k - 1] == acc[c]
                assert others[c, k - 1] == pytest.approx(np.mean([a for j, a in enumerate(acc) if j != c]), abs=1e-12)
