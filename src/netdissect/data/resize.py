"""A Broden-format copy of a dataset at another resolution (e.g. 32 px for CIFAR-size models).

Images are resized with bilinear filtering (antialiased when shrinking) so that their longer
side is ``size``; every annotation layer is resized with nearest-neighbour sampling to half
that (Broden's convention), so label numbers are never blended. Image-level labels, splits and
label names are kept; frequencies and coverages are recomputed for the new masks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DatasetError
from ..runs.outputs import DATASET, check_output
from .broden import BrodenMeta, decode_label_png
from .writer import BrodenWriter, LabelSpec


def resize_dataset(source: str | os.PathLike, size: int, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write ``source`` resized so that images' longer side is ``size`` into ``out``; returns ``out``."""
    if size < 2:
        raise DatasetError(f"--size must be >= 2, got {size}")
    check_output(out, DATASET)
    meta = BrodenMeta.load(source)
    if Path(out).resolve() == meta.directory.resolve():
        raise DatasetError("--out must differ from the source dataset")
    labels = [LabelSpec(n, name) for n, name in enumerate(meta.label_names) if n and meta.known[n]]
    writer = BrodenWriter(out, meta.categories, labels)
    images = meta.directory / "images"
    for row in tqdm(meta.rows, desc="resize", unit="img", disable=not progress):
        scale = size / max(row.ih, row.iw)
        ih, iw = max(1, round(row.ih * scale)), max(1, round(row.iw * scale))
        sh, sw = max(1, ih // 2), max(1, iw // 2)
        try:
            with Image.open(images / row.image) as im:
                picture = np.asarray(im.convert("RGB").resize((iw, ih), Image.Resampling.BILINEAR))
        except OSError as exc:
            raise DatasetError(f"cannot read image {images / row.image} (index.csv row {row.row}): {exc}") from None
        pixel = {}
        for category, paths in zip(meta.categories, row.pngs):
            layers = []
            for rel in paths:
                labels_map = decode_label_png(images / rel)
                resized = Image.fromarray(labels_map.astype(np.int32), mode="I").resize(
                    (sw, sh), Image.Resampling.NEAREST
                )
                layers.append(np.asarray(resized, dtype=np.int64))
            pixel[category] = layers
        image_labels = {c: list(numbers) for c, numbers in zip(meta.categories, row.scalars)}
        name = str(Path(row.image).with_suffix(""))
        writer.add_image(name, picture, row.split, pixel, image_labels, seg_size=(sh, sw))
    return writer.close()
