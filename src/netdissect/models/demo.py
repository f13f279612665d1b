"""The demo model: a small CNN trained on the synthetic dataset's scene labels.

Its weights ship with the package (``demo_weights.pt``, made by ``scripts/train_demo_model.py``)
so ``netdissect demo`` runs offline. Its convolutional layers are ``conv1`` ... ``conv4``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).with_name("demo_weights.pt")
#: The demo's input resolution: the synthetic demo dataset is drawn at this size.
DEMO_IMAGE_SIZE = 128
DEMO_LAYERS = ("conv1", "conv2", "conv3", "conv4")


class DemoNet(nn.Module):
    """Four 3x3 conv blocks (32, 64, 128, 128 units), global average pooling, a linear classifier."""

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.pool(self.relu(self.conv3(x)))
        x = self.relu(self.conv4(x))
        return self.fc(self.gap(x).flatten(1))


def demo_model(weights: str | Path | None = WEIGHTS) -> DemoNet:
    """The demo model with its shipped weights (random init when ``weights`` is None)."""
    if weights is None:
        return DemoNet().eval()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = DemoNet(num_classes=state["fc.weight"].shape[0])
    model.load_state_dict(state)
    return model.eval()
