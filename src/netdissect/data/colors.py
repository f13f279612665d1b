"""Colour labels: every pixel named by the nearest of the 11 basic colour terms in CIELAB.

The image is resized (bilinear, antialiased) to the segmentation size, converted from sRGB
(D65) to CIELAB, and every pixel gets the nearest (in Euclidean Lab distance, i.e. CIE76 ΔE)
of the 11 basic colour terms of Berlin & Kay, whose reference colours are the CSS/X11 colours
black, blue, brown (#8B4513), grey, green (#008000), orange, pink, purple (#800080), red, white,
yellow. This is a simple nearest-prototype approximation, not the learned colour-naming table
(van de Weijer et al. 2009) used by Broden 1. ``build-broden`` and ``annotate`` use it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: the 11 basic colour terms and their sRGB reference colours
COLOR_TERMS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "blue": (0, 0, 255),
    "brown": (139, 69, 19),
    "grey": (128, 128, 128),
    "green": (0, 128, 0),
    "orange": (255, 165, 0),
    "pink": (255, 192, 203),
    "purple": (128, 0, 128),
    "red": (255, 0, 0),
    "white": (255, 255, 255),
    "yellow": (255, 255, 0),
}

#: the colour terms in the order of :func:`color_names`' indices
COLOR_NAMES: list[str] = list(COLOR_TERMS)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 255], shape (..., 3) -> (..., 3) float64."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
    )
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_COLOR_LAB = srgb_to_lab(np.array([COLOR_TERMS[n] for n in COLOR_NAMES]))


def color_names(image: np.ndarray) -> np.ndarray:
    """Index into :data:`COLOR_NAMES` of every pixel of an RGB uint8 image (H, W, 3)."""
    lab = srgb_to_lab(image)
    d = ((lab[..., None, :] - _COLOR_LAB) ** 2).sum(-1)
    return d.argmin(-1)


def color_layer(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict[int, str]]:
    """The colour annotation of an RGB uint8 image at ``size`` (H, W).

    Returns codes (H, W) in 1..11 and ``{code: "<term>-c"}`` (the Broden names of colours).
    """
    small = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None))
    return color_names(small) + 1, {i + 1: n + "-c" for i, n in enumerate(COLOR_NAMES)}
