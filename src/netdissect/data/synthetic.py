"""A procedurally drawn concept dataset in the Broden format (``docs/design/broden-format.md``).

Every image shows one *scene* (kitchen, bedroom, beach, street, forest), chosen first; the scene
sets which objects are likely (each scene has a signature kind); background colours do not
depend on it. The background is a pair of
objects split at a random horizon: wall over floor indoors, sky over ground outdoors. Either half
may carry a pattern (striped, dotted, chequered, zigzagged or grid), drawn in a second colour.
On top lie 1-4 foreground objects at random positions and sizes, drawn in order so that later
ones occlude earlier ones: ball (disc), box (rectangle), tent (triangle), ring (annulus), star
(five points) and, in about 3% of images, the rare cross. Each object has a fill colour that
depends on its kind, a material rendered as a visible pattern (wood grain, metal sheen, fabric
weave, glossy plastic, see-through glass with highlights) and most kinds have one or two parts
drawn as sub-regions in another colour (box lid and handle, tent door and peak, ball spot, ring
gem, star core; the background has window, rug and cloud). Mild uniform noise is added.

Annotations, in Broden category order:

* ``color``: per pixel, the basic colour term (``red-c`` ...) of the pixel's fill colour;
* ``object``: per pixel, the visible object (background included);
* ``part``: per pixel, the visible parts. Glass objects are see-through, so the parts behind
  them stay visible; where two parts overlap the second goes into another part layer
  (``x_part_1.png;x_part_2.png``);
* ``material``: per pixel, the material of the foreground objects;
* ``scene``: one image-level label;
* ``texture``: image-level labels of the background patterns (none, one or two).

Label numbers come from the fixed table :data:`LABELS` (number = position + 1). Each image is
drawn from ``numpy.random.default_rng((seed, index))`` and the split from its own stream, so a
seed gives byte-identical files; image ``i`` does not depend on ``n`` (the split does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import OptionError
from ..memory import require_memory
from ..runs.outputs import DATASET, check_output
from .synthetic_scenes import (
    CATEGORIES,
    LABELS,
    NOISE_SIGMA,
    RARE_OBJECT,
    SCENE_STYLES,
    SCENES,
    VAL_FRACTION,
    Canvas,
    choose_objects,
    draw_background,
    draw_object,
    label_number,
    label_specs,
    label_table,
)
from .writer import BrodenWriter

__all__ = [
    "CATEGORIES",
    "LABELS",
    "RARE_OBJECT",
    "SyntheticImage",
    "draw_image",
    "label_number",
    "label_specs",
    "label_table",
    "make_synthetic_dataset",
]


# --------------------------------------------------------------------------- images and dataset

#: A lower bound of the memory drawing one image takes per pixel (float RGB canvas, masks, the JPEG).
DRAW_BYTES_PER_PIXEL = 32


@dataclass
class SyntheticImage:
    """One drawn image and its annotations (label numbers at the segmentation size)."""

    image: np.ndarray  # uint8 (size, size, 3)
    pixel_labels: dict[str, list[np.ndarray]]
    image_labels: dict[str, list[int]]


def _downsample(labels: np.ndarray, seg_size: int) -> np.ndarray:
    """Nearest-neighbour sampling of a label map at the centres of the segmentation pixels."""
    idx = ((np.arange(seg_size) + 0.5) * labels.shape[0] / seg_size).astype(np.int64)
    return labels[np.ix_(idx, idx)]


def draw_image(rng: np.random.Generator, size: int = 224, seg_size: int | None = None) -> SyntheticImage:
    """Draw one random scene with ``rng``; segmentation maps are ``seg_size`` (default size // 2)."""
    seg_size = seg_size or max(1, size // 2)
    scene_name = SCENES[int(rng.integers(len(SCENES)))]
    scene = SCENE_STYLES[scene_name]
    canvas = Canvas(size)
    textures = draw_background(canvas, rng, scene)
    for kind in choose_objects(rng, scene):
        draw_object(canvas, rng, kind)
    # Uniform noise of standard deviation NOISE_SIGMA (cheaper to draw than Gaussian noise).
    noise = rng.random(canvas.image.shape, dtype=np.float32) - np.float32(0.5)
    noisy = canvas.image + np.float32(NOISE_SIGMA * 12**0.5) * noise
    image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    part_layers = [_downsample(layer, seg_size) for layer in canvas.parts]
    pixel_labels = {
        "color": [_downsample(canvas.color, seg_size)],
        "object": [_downsample(canvas.object, seg_size)],
        "part": [layer for layer in part_layers if layer.any()],
        "material": [_downsample(canvas.material, seg_size)],
    }
    image_labels = {"scene": [label_number(scene_name)], "texture": textures}
    return SyntheticImage(image, pixel_labels, image_labels)


def _val_rows(n: int, seed: int) -> set[int]:
    """The image indices of the validation split: a seeded ~20% (at least one when n >= 2)."""
    count = int(round(VAL_FRACTION * n))
    if n >= 2:
        count = min(max(count, 1), n - 1)
    else:
        count = 0
    order = np.random.default_rng((seed, n, 0x5917)).permutation(n)
    return {int(i) for i in order[:count]}


def make_synthetic_dataset(
    directory: str | os.PathLike, n: int = 500, size: int = 224, seed: int = 0, progress: bool = False
) -> Path:
    """Write ``n`` synthetic ``size`` x ``size`` images as a Broden dataset into ``directory``.

    Segmentations are half the image size. The same ``seed`` gives byte-identical files.
    Returns the dataset directory.
    """
    if n < 1:
        raise OptionError(f"--n must be >= 1, got {n}")
    if size < 16:
        raise OptionError(f"--size must be >= 16, got {size}")
    if seed < 0:
        raise OptionError(f"--seed must be >= 0, got {seed}")
    require_memory(DRAW_BYTES_PER_PIXEL * size * size, f"--size {size}")
    check_output(directory, DATASET)
    writer = BrodenWriter(directory, CATEGORIES, label_specs())
    val = _val_rows(n, seed)
    seg_size = size // 2
    width = max(5, len(str(n - 1)))
    for i in tqdm(range(n), desc="synthetic dataset", unit="img", disable=not progress):
        drawn = draw_image(np.random.default_rng((seed, i)), size, seg_size)
        writer.add_image(
            f"synthetic/{i:0{width}d}",
            drawn.image,
            split="val" if i in val else "train",
            pixel_labels=drawn.pixel_labels,
            image_labels=drawn.image_labels,
            seg_size=(seg_size, seg_size),
        )
    return writer.close()
