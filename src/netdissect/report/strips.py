"""Unit image strips: a unit's top images with its mask shown by dimming the rest and outlining it.

Masks come from the unit's activation maps on its top images, kept by the dissection
(``top_maps.npz``), upsampled to the image size (DESIGN §1.2) and thresholded: making strips
never runs the model or reads the rest of the dataset.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.broden import BrodenDataset
from ..masks import upsample
from ..results import LayerResult, atomic_write_bytes

GAP = 4  # pixels between tiles
DIM = 0.3  # brightness kept outside the mask
OUTLINE = (255, 215, 0)  # mask border colour
CONCEPT = (0, 200, 255)  # tint of a ground-truth concept


def unit_masks(maps: np.ndarray, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """Boolean masks ``(m, H, W)``: maps ``(m, h, w)`` upsampled to ``size`` and kept above ``threshold``."""
    up = upsample(torch.as_tensor(np.asarray(maps, dtype=np.float32)), size)
    return (up > float(threshold)).numpy()


def mask_border(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the image edge does not count as outside)."""
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def highlight(image: np.ndarray, mask: np.ndarray, dim: float = DIM, outline=OUTLINE) -> np.ndarray:
    """The image with everything outside ``mask`` dimmed and the mask's border drawn."""
    out = image.astype(np.float32)
    out[~mask] *= dim
    out = out.round().astype(np.uint8)
    out[mask_border(mask)] = outline
    return out


def tint(image: np.ndarray, mask: np.ndarray, colour=CONCEPT, strength: float = 0.55) -> np.ndarray:
    """The image with ``mask`` tinted (ground-truth concept overlay)."""
    out = image.astype(np.float32)
    out[mask] = out[mask] * (1 - strength) + np.asarray(colour, np.float32) * strength
    out = out.round().astype(np.uint8)
    out[mask_border(mask)] = colour
    return out


def join_tiles(tiles: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Tiles of equal height side by side, separated by white gaps."""
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for t in tiles:
        strip[: t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    return strip


def concept_mask(seg: np.ndarray, scalars: np.ndarray, label: int) -> np.ndarray:
    """Where label number ``label`` is annotated: ``seg`` (layers, sh, sw), image-level ``scalars``."""
    if label in scalars:
        return np.ones(seg.shape[1:], dtype=bool)
    return (seg == label).any(axis=0)


def write_strips(
    result: LayerResult, dataset: BrodenDataset, directory: str | os.PathLike, examples: int = 10
) -> dict[int, tuple[str, str]]:
    """Write, per unit, ``unit_0001.jpg`` (its mask on its top images) and ``unit_0001_concept.jpg``
    (the same images with its label's ground truth) into ``directory``.

    Returns ``{unit (1-based): (strip file name, concept strip file name)}``.
    """
    if result.top_maps is None:
        raise ValueError(f"layer {result.layer!r} has no top_maps: dissect it again to make strips")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images: dict[int, np.ndarray] = {}
    labels: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    annotations = dataset.with_options(load_images=False, load_segmentations=True)

    def image(index: int) -> np.ndarray:
        if index not in images:
            with Image.open(dataset.directory / "images" / dataset.meta.rows[index].image) as im:
                images[index] = np.asarray(im.convert("RGB"))
        return images[index]

    def annotation(index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in labels:
            item = annotations[index]
            labels[index] = (item["seg"].numpy(), item["scalars"].numpy())
        return labels[index]

    files = {}
    m = min(examples, result.top_indices.shape[1])
    for u in range(result.units):
        indices = [int(i) for i in result.top_indices[u, :m]]
        tiles, concept_tiles = [], []
        label = int(result.label[u])
        for rank, index in enumerate(indices):
            picture = image(index)
            size = picture.shape[:2]
            mask = unit_masks(result.top_maps[u, rank : rank + 1], result.thresholds[u], size)[0]
            tiles.append(highlight(picture, mask))
            truth = concept_mask(*annotation(index), label)
            truth = np.asarray(Image.fromarray(truth).resize(size[::-1], Image.NEAREST))
            concept_tiles.append(tint(picture, truth))
        name = f"unit_{u + 1:04d}"
        for suffix, parts in (("", tiles), ("_concept", concept_tiles)):
            buffer = io.BytesIO()
            Image.fromarray(join_tiles(parts)).save(buffer, format="JPEG", quality=85)
            atomic_write_bytes(directory / f"{name}{suffix}.jpg", buffer.getvalue())
        files[u + 1] = (f"{name}.jpg", f"{name}_concept.jpg")
    return files
