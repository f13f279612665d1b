"""The demo model: a small CNN trained on the synthetic dataset's scene labels.

Its weights ship with the package (``demo_weights.pt``, made by ``scripts/train_demo_model.py``)
so ``netdissect demo`` runs offline. Its convolutional layers are ``conv1`` ... ``conv4``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import checkpoint_state, load_state

WEIGHTS = Path(__file__).with_name("demo_weights.pt")
#: The demo's input resolution: the synthetic demo dataset is drawn at this size.
DEMO_IMAGE_SIZE = 128
DEMO_LAYERS = ("conv1", "conv2", "conv3", "conv4")


class DemoNet(nn.Module):
    """Four 3x3 conv blocks (32, 64, 128, 128 units, each conv -> batch norm -> ReLU), max
    pooling between them, global max pooling and a linear classifier."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        widths = [3, 32, 64, 128, 128]
        for i in range(1, 5):
            stride = 2 if i == 1 else 1
            setattr(self, f"conv{i}", nn.Conv2d(widths[i - 1], widths[i], 3, stride=stride, padding=1))
            setattr(self, f"bn{i}", nn.BatchNorm2d(widths[i]))
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.gmp = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i < 4:
                x = self.pool(x)
        return self.fc(self.gmp(x).flatten(1))


def demo_model(weights: str | Path | None = WEIGHTS, trust_pickle: bool = False) -> DemoNet:
    """The demo model with its shipped weights, or those of a checkpoint (random init when ``weights`` is None).

    The number of classes is the checkpoint's (``fc.weight``); a file that is missing, unreadable
    or does not fit stops with one :class:`~netdissect.errors.ModelError` line naming it.
    """
    if weights is None:
        return DemoNet().eval()
    state = checkpoint_state(weights, trust_pickle)
    fc = state.get("fc.weight")
    model = DemoNet(num_classes=fc.shape[0] if fc is not None and fc.dim() == 2 else 5)
    load_state(model, state, weights)
    return model.eval()
