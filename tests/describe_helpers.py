"""A planted model and images for the describe tests: unit k is the share of pixels of colour k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class ColourShares(nn.Module):
    """``maps``: (B, 4, H, W) indicators of red, green, blue pixels and a noise map; ``fc``: their
    spatial means (B, 4): units 1-3 the colours' pixel shares, unit 4 a pseudo-random value per
    image that has nothing to do with colour; ``head``: logits of classes red, green, blue."""

    def __init__(self) -> None:
        super().__init__()
        self.maps = nn.Identity()
        self.fc = nn.Identity()
        self.head = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        hi, lo = 0.5, 0.5
        red = (r > hi) & (g < lo) & (b < lo)
        green = (g > hi) & (r < lo) & (b < lo)
        blue = (b > hi) & (r < lo) & (g < lo)
        weights = torch.arange(1, x[0].numel() + 1, dtype=torch.float64).reshape(x.shape[1:])
        seed = (x.double() * weights).sum(dim=(1, 2, 3))
        noise = torch.frac(torch.sin(seed) * 43758.5453).float()
        indicators = torch.stack([red, green, blue], 1).float()
        maps = self.maps(torch.cat([indicators, noise[:, None, None, None].expand_as(indicators[:, :1])], 1))
        return self.head(self.fc(maps.mean(dim=(2, 3))))


def make() -> ColourShares:
    """The SPEC ``<module>:make`` of the command-line tests."""
    return ColourShares()


def write_images(root: Path, n: int = 60, size: int = 16, seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    """``n`` PNGs on a grey ground with random rectangles of red, green and blue, a labels CSV
    naming the colours present, and the (n, 3) pixel shares of the colours."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    shares = np.zeros((n, 3))
    lines = ["image,labels"]
    for i in range(n):
        pixels = np.full((size, size, 3), 128, dtype=np.uint8)
        for colour in COLOURS.values():
            if rng.random() < 0.4:
                y, x = rng.integers(0, size - 2, 2)
                h, w = rng.integers(2, size // 2 + 1, 2)
                pixels[y : y + h, x : x + w] = colour
        for c, colour in enumerate(COLOURS.values()):
            shares[i, c] = np.all(pixels == colour, axis=-1).mean()
        Image.fromarray(pixels).save(images / f"{i:03d}.png")
        present = [name for c, name in enumerate(COLOURS) if shares[i, c] > 0]
        lines.append(f"{i:03d}.png,{';'.join(present)}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return images, labels, shares


class ColourClip:
    """A planted CLIP: an image's embedding is its red, green and blue pixel shares (plus a small
    constant), a word's the one-hot of its colour (other words: the constant direction)."""

    image_size = 16

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        r, g, b = images[:, 0], images[:, 1], images[:, 2]
        shares = torch.stack(
            [
                ((r > 0.5) & (g < 0.5) & (b < 0.5)).float().mean(dim=(1, 2)),
                ((g > 0.5) & (r < 0.5) & (b < 0.5)).float().mean(dim=(1, 2)),
                ((b > 0.5) & (r < 0.5) & (g < 0.5)).float().mean(dim=(1, 2)),
            ],
            1,
        )
        return torch.cat([shares, torch.full_like(shares[:, :1], 0.01)], 1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            row = torch.zeros(4)
            row[list(COLOURS).index(text) if text in COLOURS else 3] = 1.0
            rows.append(row)
        return torch.stack(rows)


def colour_clip() -> ColourClip:
    """The CLIP SPEC ``describe_helpers:colour_clip``."""
    return ColourClip()
