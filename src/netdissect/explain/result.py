"""The explanation of images and its files (``explain.json``, ``explain.npz`` and the PNGs).

In the output folder, per image ``i`` (0-based, in the order given):

* ``image-<i>.png``: the image as the model saw it (resized to the run's input size);
* ``seg-<i>.png``: its unit segmentation at the run's segmentation size, pixel value = an index
  into the image's legend (0: no detector unit fires there); an 8-bit palette PNG whose colours
  are the page's legend colours (index 0 transparent), 16-bit grey beyond 255 concepts;
* ``mask-<i>-<unit>.png``: the mask of each listed unit (0 or 255), also at the segmentation size.

``explain.json`` lists the images, ``explain.npz`` holds ``effects`` (images x units: the drop
of each image's top-class probability with the unit zeroed) and ``probabilities`` (images x
outputs).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_write_bytes, atomic_write_json

JSON_FILE = "explain.json"
NPZ_FILE = "explain.npz"


@dataclass
class ImageExplanation:
    """One image explained by one layer.

    Attributes:
        image: the image file, as given.
        layer: the layer.
        pixels: uint8 (H, W, 3), the image as the model saw it.
        probabilities: float64 (outputs,), the model's softmax.
        predictions: the top predictions, ``{"class", "output", "probability"}`` each (``class``
            the class name, or the output index without names).
        effects: float64 (units,): per unit (row u = unit u + 1) the drop of the top class's
            probability when the unit alone is zeroed.
        segmentation: int (sh, sw): legend indices, 0 where no detector unit fires.
        legend: ``{index: concept}`` (indices from 1, by decreasing area).
        coverage: ``{index: share of the image's pixels}``.
        units: the units with the largest effects: ``{"unit", "label", "category", "iou",
            "detector", "effect", "area"}`` (units numbered from 1; ``area``: the share of the
            image's pixels in the unit's mask).
        masks: unit number -> bool (sh, sw) mask of each listed unit.
    """

    image: str
    layer: str
    pixels: np.ndarray
    probabilities: np.ndarray
    predictions: list[dict]
    effects: np.ndarray
    segmentation: np.ndarray
    legend: dict[int, str]
    coverage: dict[int, float]
    units: list[dict]
    masks: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def top_class(self) -> dict:
        """The top prediction (``{"class", "output", "probability"}``)."""
        return self.predictions[0]

    def record(self, i: int) -> dict:
        """The image's entry of ``explain.json`` (its files named for position ``i``)."""
        return {
            "image": self.image,
            "layer": self.layer,
            "input": f"image-{i}.png",
            "predictions": self.predictions,
            "segmentation": f"seg-{i}.png",
            "legend": {str(k): v for k, v in self.legend.items()},
            "coverage": {str(k): round(v, 6) for k, v in self.coverage.items()},
            "units": [{**u, "mask": f"mask-{i}-{u['unit']}.png"} for u in self.units],
        }


@dataclass
class ExplainResult:
    """Images explained by a dissected layer: ``result[i]`` is the :class:`ImageExplanation` of image ``i``."""

    images: list[ImageExplanation]
    metadata: dict = field(default_factory=dict)
    directory: Path | None = None

    def __getitem__(self, i: int) -> ImageExplanation:
        return self.images[i]

    def __len__(self) -> int:
        return len(self.images)

    def to_json(self) -> dict:
        """The contents of ``explain.json``."""
        return {"images": [image.record(i) for i, image in enumerate(self.images)], "metadata": self.metadata}

    def save(self, directory: str | Path) -> Path:
        """Write the PNGs, ``explain.npz`` and (last) ``explain.json`` into ``directory``."""
        from ..report.explain_page import legend_colour

        directory = Path(directory)
        for i, image in enumerate(self.images):
            atomic_write_bytes(directory / f"image-{i}.png", _png(Image.fromarray(image.pixels)))
            atomic_write_bytes(directory / f"seg-{i}.png", segmentation_png(image.segmentation, legend_colour))
            for unit, mask in image.masks.items():
                grey = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L")
                atomic_write_bytes(directory / f"mask-{i}-{unit}.png", _png(grey))
        arrays = io.BytesIO()
        effects = np.stack([im.effects for im in self.images]) if self.images else np.zeros((0, 0))
        probabilities = np.stack([im.probabilities for im in self.images]) if self.images else np.zeros((0, 0))
        np.savez_compressed(arrays, effects=effects, probabilities=probabilities)
        atomic_write_bytes(directory / NPZ_FILE, arrays.getvalue())
        atomic_write_json(directory / JSON_FILE, self.to_json())
        return directory


def segmentation_png(segmentation: np.ndarray, colour) -> bytes:
    """The PNG of legend indices: 8-bit palette (``colour(index)`` as ``#rrggbb``; 0 transparent)
    when the indices fit, else 16-bit grey."""
    top = int(segmentation.max(initial=0))
    if top > 255:
        return _png(Image.fromarray(segmentation.astype(np.uint16)))
    image = Image.fromarray(segmentation.astype(np.uint8), "P")
    palette = [0, 0, 0]
    for index in range(1, top + 1):
        hex_colour = colour(index).lstrip("#")
        palette += [int(hex_colour[k : k + 2], 16) for k in (0, 2, 4)]
    image.putpalette(palette)
    return _png(image, transparency=0)


def read_segmentation(path: str | Path) -> np.ndarray:
    """The legend indices of a ``seg-<i>.png`` (int64 (sh, sw))."""
    with Image.open(path) as im:
        return np.asarray(im).astype(np.int64)


def read_explanation(directory: str | Path) -> dict:
    """The contents of ``<directory>/explain.json``."""
    return json.loads((Path(directory) / JSON_FILE).read_text(encoding="utf-8"))


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, **options)
    return buffer.getvalue()
