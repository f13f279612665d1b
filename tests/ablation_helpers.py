"""Helpers of the ablation tests: a planted classifier and image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
EVIL = "<script>alert(1)</script>"
PLANTED_CLASSES = ["red", "green", "blue", "background"]


class PlantedNet(nn.Module):
    """Units 1-3 of ``layer`` are the image's mean red, green and blue; unit 4 is constant 1.
    Class c < 3 has logit 10 * unit c+1 alone; "background" has logit unit 4 (= 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.head = nn.Linear(4, 4, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.diag(torch.tensor([10.0, 10.0, 10.0, 1.0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        features = torch.cat([mean, torch.ones_like(mean[:, :1])], 1)[:, :, None, None]
        return self.head(self.layer(features).flatten(1))


def write_folders(root: Path, counts: dict[str, int], size: int = 8, colours=None, seed: int = 0) -> Path:
    """An ImageFolder: ``counts[name]`` PNGs per folder, uniform colours (or noise when no colour)."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            colour = (colours or {}).get(name)
            if colour is None:
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            else:
                pixels = np.broadcast_to(np.array(colour, dtype=np.uint8), (size, size, 3))
            Image.fromarray(np.ascontiguousarray(pixels)).save(root / name / f"{i:03d}.png")
    return root
