"""Toy models with known answers for ``annotate`` and ``dissect-generator`` (offline examples, tests).

* ``netdissect.models.toy:color_segmenter``: a segmenter whose classes follow a colour rule: a
  pixel is ``red``, ``green`` or ``blue`` when that channel exceeds both others by more than
  51 (of 255), else background.
* ``netdissect.models.toy:toy_generator``: a generator of grey images with a small red and a
  small green square; unit 0 of its layer ``features`` draws the red square, unit 1 the green
  one, units 2-7 a faint shading: zeroing unit 0 removes the red square.
"""

from __future__ import annotations

import torch
from torch import nn

from .preprocess import IMAGENET_MEAN, IMAGENET_STD

#: the colour rule's margin: a channel must exceed the others by more than 51/255 (half a level more,
#: so that no 8-bit pixel lies on the boundary)
COLOR_MARGIN = 51.5 / 255


class ColorSegmenter(nn.Module):
    """Logits (B, 4, H, W) of ImageNet-normalised RGB images: background, red, green, blue.

    Class k's logit is its channel minus the largest other channel; the background's is
    :data:`COLOR_MARGIN`, so the argmax is the dominant channel when it leads by more than that.
    """

    classes = ("background", "red", "green", "blue")

    def __init__(self) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x * self.std + self.mean
        lead = [rgb[:, c] - torch.maximum(rgb[:, (c + 1) % 3], rgb[:, (c + 2) % 3]) for c in range(3)]
        background = lead[0] * 0 + COLOR_MARGIN  # (not full_like: this exports to ONNX as Mul, Add)
        return torch.stack([background, *lead], dim=1)


def color_segmenter() -> ColorSegmenter:
    """Segmenter SPEC ``netdissect.models.toy:color_segmenter``."""
    return ColorSegmenter()


class ToyFeatures(nn.Module):
    """Latents (B, z_dim) -> 8 unit maps (B, 8, g, g), g = size / 2.

    Unit 0: 1 on a square of side g/8 when ``z[0] > 1`` (placed by ``z[1]``, ``z[2]``), else 0;
    unit 1: the same with ``z[3]``, ``z[4]``, ``z[5]``; units 2-7: faint waves shifted by the latent.
    """

    def __init__(self, size: int, z_dim: int) -> None:
        super().__init__()
        self.grid, self.side = size // 2, max(1, size // 16)
        self.register_buffer("config", torch.tensor([size, z_dim]))

    def _square(self, present: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        g, s = self.grid, self.side
        top = (torch.sigmoid(row) * (g - s + 1)).floor().clamp(max=g - s).long()
        left = (torch.sigmoid(col) * (g - s + 1)).floor().clamp(max=g - s).long()
        ys = torch.arange(g, device=row.device).view(1, g, 1)
        xs = torch.arange(g, device=row.device).view(1, 1, g)
        rows = (ys >= top.view(-1, 1, 1)) & (ys < top.view(-1, 1, 1) + s)
        cols = (xs >= left.view(-1, 1, 1)) & (xs < left.view(-1, 1, 1) + s)
        return (rows & cols & present.view(-1, 1, 1)).float()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flatten(1)
        g = self.grid
        red = self._square(z[:, 0] > 1, z[:, 1], z[:, 2])
        green = self._square(z[:, 3] > 1, z[:, 4], z[:, 5])
        ys = torch.linspace(0, 3.0, g, device=z.device).view(1, g, 1)
        xs = torch.linspace(0, 3.0, g, device=z.device).view(1, 1, g)
        waves = [0.05 * torch.sin(ys * (k % 3) + xs * (k // 3 + 1) + z[:, 6 + k % 2, None, None]) for k in range(6)]
        return torch.stack([red, green, *waves], dim=1)


class ToyRender(nn.Module):
    """Unit maps (B, 8, g, g) -> images (B, 3, 2g, 2g) in [-1, 1]: grey, shaded by units 2-7,
    painted red where unit 0 is on and green where unit 1 is on."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        up = features.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        red, green = up[:, 0:1], up[:, 1:2]
        image = up[:, 2:].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        red_rgb = torch.tensor([0.9, -0.8, -0.8], device=up.device).view(1, 3, 1, 1)
        green_rgb = torch.tensor([-0.8, 0.7, -0.8], device=up.device).view(1, 3, 1, 1)
        image = image * (1 - red) + red_rgb * red
        image = image * (1 - green) + green_rgb * green
        return image.clamp(-1, 1)


class ToyGenerator(nn.Module):
    """Latents (B, z_dim) or (B, z_dim, 1, 1) -> images (B, 3, size, size) in [-1, 1]; see the module docstring."""

    def __init__(self, size: int = 32, z_dim: int = 8) -> None:
        super().__init__()
        if size < 16 or size % 2 or z_dim < 8:
            raise ValueError(f"the toy generator needs an even size >= 16 and z_dim >= 8, got {size}, {z_dim}")
        self.features = ToyFeatures(size, z_dim)
        self.render = ToyRender()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.render(self.features(z))


def toy_generator(size: int = 32, z_dim: int = 8) -> ToyGenerator:
    """Generator SPEC ``netdissect.models.toy:toy_generator`` (``--model-args '{"size": 64}'``)."""
    return ToyGenerator(size, z_dim)
