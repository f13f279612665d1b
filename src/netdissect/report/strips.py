"""Unit tiles: each top image stored once per run, each unit's masks packed as bits for the page.

The page draws the tiles (image, dimming outside the unit's mask, outline; or the ground truth
tinted) in the browser, so Python only

* copies each distinct top image of the run once into ``report-images/`` (a JPEG of at most
  :data:`MAX_SIDE` pixels is copied byte for byte; other images are re-encoded),
* computes every unit mask of a layer in batched numpy passes: the unit's saved activation maps
  on its top images (``top_maps.npz``) upsampled to the image size exactly as the dissection
  does (:func:`netdissect.masks.upsample`, bit-identical float32 operations) and thresholded,
* computes the ground truth of each unit's label on those images (at the segmentation size),
* and packs the masks of a unit as 1-bit rows (``numpy.packbits``), zlib-compressed, base64.

Nothing here imports torch unless maps must be shrunk (maps larger than their image).
"""

from __future__ import annotations

import base64
import os
import shutil
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .datarows import Rows

IMAGES_DIR = "report-images"
MAX_SIDE = 512  # larger images are stored downscaled (the page scales masks to the image shown)
JPEG_QUALITY = 85
_SLACK = 2.0**-20  # as netdissect.masks: values this far below a threshold cannot round above it
CHUNK_VALUES = 1 << 24  # upsampled values evaluated at once (memory bound)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# masks


@lru_cache(maxsize=64)
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, w_lo, w_hi)`` of bilinear resizing with half-pixel centres, in float32 as
    :func:`netdissect.masks.upsample` computes them."""
    out = np.arange(n_out, dtype=np.float32)
    scale = np.float32(n_in / n_out)
    raw = scale * (out + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(raw, np.float32(0.0))
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - lo.astype(np.float32), np.float32(0.0), np.float32(1.0))
    nxt = np.minimum(np.arange(n_in) + 1, n_in - 1)
    return lo, nxt[lo], np.float32(1.0) - lam, lam


def unit_masks(maps: np.ndarray, thresholds: np.ndarray | float, size: tuple[int, int]) -> np.ndarray:
    """Boolean masks ``(P, H, W)``: maps ``(P, h, w)`` upsampled to ``size`` and kept above their threshold.

    The same values as ``netdissect.masks.upsample(maps, size) > thresholds``: enlarging evaluates
    the same float32 formula (first along x on the source rows, then along y), only on output
    rows where a source row can exceed the threshold; shrinking calls ``masks.upsample``.
    """
    maps = np.asarray(maps, dtype=np.float32)
    P, h, w = maps.shape
    sh, sw = size
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (P,))
    if (h, w) == (sh, sw):
        return maps > thr[:, None, None]
    if h > sh or w > sw:
        import torch

        from ..masks import upsample

        limits = torch.from_numpy(np.array(thr))[:, None, None]
        return (upsample(torch.from_numpy(np.array(maps)), size) > limits).numpy()
    ylo, yhi, wy_lo, wy_hi = _axis(h, sh)
    xlo, xhi, wx_lo, wx_hi = _axis(w, sw)
    rows = maps[:, :, xlo] * wx_lo + maps[:, :, xhi] * wx_hi  # (P, h, sw): each source row along x
    floor = thr - np.abs(thr) * np.float32(_SLACK)
    peak = rows.max(axis=2)  # (P, h)
    hot = np.maximum(peak[:, ylo], peak[:, yhi]) > floor[:, None]  # (P, sh): rows that can hold a pixel
    out = np.zeros((P, sh, sw), dtype=bool)
    p, r = np.nonzero(hot)
    step = max(1, CHUNK_VALUES // sw)
    for s in range(0, len(p), step):
        pp, rr = p[s : s + step], r[s : s + step]
        value = rows[pp, ylo[rr]] * wy_lo[rr, None] + rows[pp, yhi[rr]] * wy_hi[rr, None]
        out[pp, rr] = value > thr[pp, None]
    return out


def pack_masks(masks: Iterable[np.ndarray]) -> str:
    """Masks as the page reads them: each mask's rows as bits (``packbits``, a mask starts on a
    byte), concatenated, zlib-compressed, base64."""
    data = b"".join(np.packbits(np.asarray(m, dtype=bool).ravel()).tobytes() for m in masks)
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def unpack_masks(text: str, sizes: Iterable[tuple[int, int]]) -> list[np.ndarray]:
    """The inverse of :func:`pack_masks` given each mask's ``(height, width)``."""
    data = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8)
    out, offset = [], 0
    for h, w in sizes:
        n = (h * w + 7) // 8
        out.append(np.unpackbits(data[offset : offset + n])[: h * w].reshape(h, w).astype(bool))
        offset += n
    return out


def layer_tiles(result: Any, rows: Rows, examples: int, workers: int | None = None) -> dict[int, tuple[str, str]]:
    """Per unit (1-based): ``(packed unit masks, packed ground-truth masks)`` on its first
    ``examples`` top images (see :func:`pack_masks`; unit masks at the image size, ground truth
    of the unit's label at the segmentation size)."""
    if result.top_maps is None:
        raise ValueError(f"layer {result.layer!r} has no top_maps: dissect it again to make tiles")
    m = min(examples, result.top_indices.shape[1])
    units = result.units
    index = np.asarray(result.top_indices[:, :m], dtype=np.int64)
    labels = np.asarray(result.label, dtype=np.int64)
    # unit masks, grouped by image size, in chunks of units
    sizes = np.array([(rows.rows[i].ih, rows.rows[i].iw) for i in range(len(rows.rows))], dtype=np.int64)
    unit_parts: list[list[np.ndarray]] = [[None] * m for _ in range(units)]  # type: ignore[list-item]
    tile_size = sizes[index]  # (U, m, 2)

    def masks_for(group: tuple[np.ndarray, np.ndarray, tuple[int, int]]) -> None:
        uu, rr, size = group
        masks = unit_masks(result.top_maps[uu, rr], result.thresholds[uu], size)
        for k in range(len(uu)):
            unit_parts[uu[k]][rr[k]] = np.packbits(masks[k].ravel())

    groups = []
    flat = tile_size.reshape(-1, 2)
    for size in {tuple(s) for s in flat.tolist()}:
        uu, rr = np.nonzero((tile_size == np.array(size)).all(axis=2))
        step = max(1, CHUNK_VALUES // (size[0] * size[1]))
        for s in range(0, len(uu), step):
            groups.append((uu[s : s + step], rr[s : s + step], size))
    # ground truth: each image decoded once, for every (unit, rank) that shows it
    by_image: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for u in range(units):
        for r in range(m):
            by_image[int(index[u, r])].append((u, r))
    truth_parts: list[list[np.ndarray]] = [[None] * m for _ in range(units)]  # type: ignore[list-item]

    def truth_for(image: int) -> None:
        decoded: dict[int, np.ndarray] = {}
        for u, r in by_image[image]:
            truth_parts[u][r] = np.packbits(rows.concept_mask(image, int(labels[u]), decoded).ravel())

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        list(pool.map(masks_for, groups))
        list(pool.map(truth_for, list(by_image)))

        def pack(u: int) -> tuple[str, str]:
            return tuple(  # type: ignore[return-value]
                base64.b64encode(zlib.compress(b"".join(p.tobytes() for p in parts), 6)).decode("ascii")
                for parts in (unit_parts[u], truth_parts[u])
            )

        packed = list(pool.map(pack, range(units)))
    return {u + 1: packed[u] for u in range(units)}


# ---------------------------------------------------------------------------------------------
# images


def image_name(index: int) -> str:
    """The stored file of dataset position ``index`` under ``report-images/``."""
    return f"{index:06d}.jpg"


def _store_one(rows: Rows, index: int, directory: Path) -> int:
    source = rows.image_path(index)
    target = directory / image_name(index)
    row = rows.rows[index]
    with open(source, "rb") as f:
        jpeg = f.read(3) == b"\xff\xd8\xff"
    if jpeg and max(row.ih, row.iw) <= MAX_SIDE:
        shutil.copyfile(source, target)
    else:
        with Image.open(source) as im:
            im = im.convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.BILINEAR)
            im.save(target, format="JPEG", quality=JPEG_QUALITY)
    return target.stat().st_size


def store_images(rows: Rows, indices: Iterable[int], directory: str | os.PathLike, workers: int | None = None) -> int:
    """Write each dataset position of ``indices`` once into ``directory``; return the bytes written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    todo = sorted(set(int(i) for i in indices))
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        return sum(pool.map(lambda i: _store_one(rows, i, directory), todo))


def image_table(rows: Rows, indices: Iterable[int]) -> Mapping[str, list[int]]:
    """``{position: [ih, iw, sh, sw]}`` of the shown images (the page's mask geometry)."""
    out = {}
    for i in sorted(set(int(i) for i in indices)):
        r = rows.rows[i]
        out[str(i)] = [r.ih, r.iw, r.sh, r.sw]
    return out
