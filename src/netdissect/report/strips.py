"""Unit tiles: each top image stored once per run, each unit's masks packed as bits for the page.

The page draws the tiles (image, dimming outside the unit's mask, outline; or the ground truth
tinted) in the browser, so Python only

* stores each distinct top image of the run once in ``report-images/`` (a small JPEG, at most
  :data:`COPY_BYTES_PER_PIXEL` bytes per pixel and :data:`MAX_SIDE` pixels, is copied byte for
  byte; other images are re-encoded as JPEG at quality :data:`JPEG_QUALITY`),
* computes every unit mask of a layer in batched numpy passes: the unit's saved activation maps
  on its top images (``top_maps.npz``) upsampled to the image size exactly as the dissection
  does (:func:`netdissect.math.masks.upsample`, bit-identical float32 operations) and thresholded,
* computes the ground truth of each unit's label on those images (at the segmentation size),
* and packs the masks of a unit as 1-bit rows (``numpy.packbits``), zlib-compressed, base64.

Nothing here imports torch unless maps must be shrunk (maps larger than their image).
"""

from __future__ import annotations

import base64
import json
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

from ..files import atomic_write_json
from ..formulas.terms import Terms, evaluate_formula
from ..math.bilinear import SLACK, axis_table, bilinear
from .datarows import Rows

IMAGES_DIR = "report-images"
MAX_SIDE = 512  # larger images are stored downscaled (the page scales masks to the image shown)
JPEG_QUALITY = 75  # re-encoded images: about 10 KB at 224 px
COPY_BYTES_PER_PIXEL = 0.25  # a JPEG at most this large (and MAX_SIDE) is copied as it is
CHUNK_VALUES = 1 << 24  # upsampled values evaluated at once (memory bound)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# masks


@lru_cache(maxsize=64)
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
    """The bilinear table of :func:`netdissect.math.bilinear.axis_table`, laid out for whole-cell blocks.

    Returns ``(cell_lo, cell_hi, positions, w_lo, w_hi)``: cell ``c`` (0 .. n_in) holds the output
    positions ``positions[c]`` (padded with ``n_out``) between its source positions ``cell_lo[c]``
    and ``cell_hi[c]``, with those positions' weights ``w_lo[c]``, ``w_hi[c]`` (NaN for padding).
    The first cell is right-aligned (its padding first), so that the cells laid end to end put
    the output positions in order.
    """
    table = axis_table(n_in, n_out)
    positions = table.cells.copy()
    filled = int(np.count_nonzero(positions[0] < n_out))
    positions[0] = np.roll(positions[0], positions.shape[1] - filled)
    return table.cell_lo, table.cell_hi, positions, table.w_lo[positions], table.w_hi[positions]


def unit_masks(maps: np.ndarray, thresholds: np.ndarray | float, size: tuple[int, int]) -> np.ndarray:
    """Boolean masks ``(P, H, W)``: maps ``(P, h, w)`` upsampled to ``size`` and kept above their threshold.

    The same values as ``netdissect.math.masks.upsample(maps, size) > thresholds``: enlarging
    evaluates the same float32 formula, only in the cells of the source grid where a corner
    can exceed the threshold (as ``masks.masked_pixels``); shrinking calls ``masks.upsample``.
    """
    maps = np.asarray(maps, dtype=np.float32)
    P, h, w = maps.shape
    sh, sw = size
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float32), (P,))
    if (h, w) == (sh, sw):
        return maps > thr[:, None, None]
    if h > sh or w > sw:
        import torch

        from ..math.masks import upsample

        limits = torch.from_numpy(np.array(thr))[:, None, None]
        return (upsample(torch.from_numpy(np.array(maps)), size) > limits).numpy()
    ylo, yhi, ypos, wy_lo, wy_hi = _axis(h, sh)
    xlo, xhi, xpos, wx_lo, wx_hi = _axis(w, sw)
    wy, wx = ypos.shape[1], xpos.shape[1]
    floor = thr - np.abs(thr) * np.float32(SLACK)
    corners = np.maximum(
        np.maximum(maps[:, ylo][:, :, xlo], maps[:, ylo][:, :, xhi]),
        np.maximum(maps[:, yhi][:, :, xlo], maps[:, yhi][:, :, xhi]),
    )  # (P, h + 1, w + 1): the largest corner of each cell
    p, cy, cx = np.nonzero(corners > floor[:, None, None])  # hot cells, by map
    # cells are written as whole (padded) blocks into a cell-major array, then gathered into place
    rows, cols = _block_index(ypos, sh), _block_index(xpos, sw)
    out = np.zeros((P, sh, sw), dtype=bool)
    per_chunk = max(1, CHUNK_VALUES // ((h + 1) * wy * (w + 1) * wx))
    for first in range(0, P, per_chunk):
        last = min(P, first + per_chunk)
        a, b = np.searchsorted(p, [first, last])
        if a == b:
            continue
        blocks = np.zeros((last - first, h + 1, wy, w + 1, wx), dtype=bool)
        pp, yy, xx = p[a:b], cy[a:b], cx[a:b]
        v00, v01 = maps[pp, ylo[yy], xlo[xx]][:, None, None], maps[pp, ylo[yy], xhi[xx]][:, None, None]
        v10, v11 = maps[pp, yhi[yy], xlo[xx]][:, None, None], maps[pp, yhi[yy], xhi[xx]][:, None, None]
        value = bilinear(  # (n, wy, wx): the formula of masks.upsample
            v00,
            v01,
            v10,
            v11,
            wx_lo[xx][:, None, :],
            wx_hi[xx][:, None, :],
            wy_lo[yy][:, :, None],
            wy_hi[yy][:, :, None],
        )
        blocks[pp - first, yy, :, xx, :] = value > thr[pp, None, None]  # NaN (padding) is never kept
        flat = blocks.reshape(last - first, (h + 1) * wy, (w + 1) * wx)
        if isinstance(rows, slice) and isinstance(cols, slice):  # whole cells: a plain crop
            out[first:last] = flat[:, rows, cols]
        else:
            out[first:last] = flat[:, rows][:, :, cols]
    return out


def _block_index(positions: np.ndarray, n_out: int) -> np.ndarray | slice:
    """For each output position, its index in the cell-major padded layout (cell * width + slot);
    a slice when that is a plain shift (every inner cell full: integer scale factors)."""
    index = np.zeros(n_out, dtype=np.int64)
    cell, slot = np.nonzero(positions < n_out)
    index[positions[cell, slot]] = cell * positions.shape[1] + slot
    if np.array_equal(index, index[0] + np.arange(n_out)):
        return slice(int(index[0]), int(index[0]) + n_out)
    return index


def pack_masks(masks: Iterable[np.ndarray]) -> str:
    """Masks as the page reads them: each mask's rows as bits (``packbits``, a mask starts on a
    byte), concatenated, zlib-compressed, base64."""
    return _encode(b"".join(np.packbits(np.asarray(m, dtype=bool).ravel()).tobytes() for m in masks))


def unpack_masks(text: str, sizes: Iterable[tuple[int, int]]) -> list[np.ndarray]:
    """The inverse of :func:`pack_masks` given each mask's ``(height, width)``."""
    data = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8)
    out, offset = [], 0
    for h, w in sizes:
        n = (h * w + 7) // 8
        out.append(np.unpackbits(data[offset : offset + n])[: h * w].reshape(h, w).astype(bool))
        offset += n
    return out


def truth_masks(
    rows: Rows, wanted: Mapping[int, Iterable[int]], workers: int | None = None
) -> dict[tuple[int, int], np.ndarray]:
    """``{(position, label): packed bits}`` of where each label of ``wanted[position]`` is
    annotated on that image (segmentation size); each image's label PNGs are decoded once."""

    def one(index: int) -> list[tuple[tuple[int, int], np.ndarray]]:
        decoded: dict[int, np.ndarray] = {}
        return [
            ((index, label), np.packbits(rows.concept_mask(index, label, decoded).ravel())) for label in wanted[index]
        ]

    out: dict[tuple[int, int], np.ndarray] = {}
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        for part in pool.map(one, list(wanted)):
            out.update(part)
    return out


def layer_tiles(
    result: Any,
    rows: Rows,
    examples: int,
    truth: Mapping[tuple[int, int], np.ndarray] | None = None,
    workers: int | None = None,
) -> dict[int, tuple[str, ...]]:
    """Per unit (1-based): ``(packed unit masks, packed ground-truth masks)`` on its first
    ``examples`` top images (see :func:`pack_masks`; unit masks at the image size, ground truth
    of the unit's label at the segmentation size, from ``truth`` (:func:`truth_masks`) when given),
    and a third entry, the packed masks of the unit's formula (segmentation size), for a unit
    that has one (runs with ``--formula-length`` > 1)."""
    if result.top_maps is None:
        raise ValueError(f"layer {result.layer!r} has no top_maps: dissect it again to make tiles")
    m = min(examples, result.top_indices.shape[1])
    units = result.units
    index = np.asarray(result.top_indices[:, :m], dtype=np.int64)
    labels = np.asarray(result.label, dtype=np.int64)
    if truth is None:
        truth = truth_masks(rows, tile_labels(result, examples), workers)
    sizes = np.array([(rows.rows[i].ih, rows.rows[i].iw) for i in range(len(rows.rows))], dtype=np.int64)
    tile_size = sizes[index]  # (U, m, 2)
    parts: list[list[Any]] = [[None] * m for _ in range(units)]

    def masks_for(group: tuple[np.ndarray, np.ndarray, tuple[int, int]]) -> None:
        uu, rr, size = group
        packed = np.packbits(
            unit_masks(result.top_maps[uu, rr], result.thresholds[uu], size).reshape(len(uu), -1), axis=1
        )
        for k in range(len(uu)):
            parts[uu[k]][rr[k]] = packed[k]

    groups = []
    for size in sorted({tuple(s) for s in tile_size.reshape(-1, 2).tolist()}):
        uu, rr = np.nonzero((tile_size == np.array(size)).all(axis=2))
        step = max(1, CHUNK_VALUES // (16 * size[0] * size[1]))  # a few hundred maps per task
        for s in range(0, len(uu), step):
            groups.append((uu[s : s + step], rr[s : s + step], size))

    formulas = _formula_terms(result)

    def pack(u: int) -> tuple[str, ...]:
        mine = b"".join(p.tobytes() for p in parts[u])
        theirs = b"".join(truth[(int(i), int(labels[u]))].tobytes() for i in index[u])
        if formulas is None or not formulas[u]:
            return _encode(mine), _encode(theirs)
        terms = formulas[u]
        formula = b"".join(  # packed bits combine bytewise: AND, OR and AND NOT keep the padding 0
            evaluate_formula(terms, {label: truth[(int(i), label)] for _, label in terms}).tobytes() for i in index[u]
        )
        return _encode(mine), _encode(theirs), _encode(formula)

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        list(pool.map(masks_for, groups))
        packed = list(pool.map(pack, range(units)))
    return {u + 1: packed[u] for u in range(units)}


def tile_labels(result: Any, examples: int) -> dict[int, set[int]]:
    """``{position: labels}``: the labels whose ground truth a layer's tiles show on each image
    (each unit's label and the labels of its formula)."""
    wanted: dict[int, set[int]] = defaultdict(set)
    formulas = _formula_terms(result)
    for u in range(result.units):
        labels = {int(result.label[u])}
        if formulas is not None:
            labels.update(label for _, label in formulas[u])
        for i in result.top_indices[u, :examples]:
            wanted[int(i)].update(labels)
    return wanted


def _formula_terms(result: Any) -> list[Terms] | None:
    """Each unit's formula terms (label numbers), or None for a run without formulas."""
    formulas = getattr(result, "formulas", None)
    return None if formulas is None else list(formulas.terms)


def _encode(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


# ---------------------------------------------------------------------------------------------
# images


def image_name(index: int) -> str:
    """The stored file of dataset position ``index`` under ``report-images/``."""
    return f"{index:06d}.jpg"


#: In ``report-images/``: each stored image's source size and modification time (``[bytes, ns]``),
#: so that a rebuild keeps the images whose source did not change.
SOURCES_FILE = ".sources.json"


def _source_stamp(rows: Rows, index: int) -> list[int]:
    st = rows.image_path(index).stat()
    return [st.st_size, st.st_mtime_ns]


def _store_one(rows: Rows, index: int, directory: Path, known: list[int] | None) -> tuple[int, list[int]]:
    """Store one image unless ``known`` (its source's stamp when it was stored) still holds;
    return its stored size and its source's stamp."""
    source = rows.image_path(index)
    target = directory / image_name(index)
    stamp = _source_stamp(rows, index)
    if known == stamp and target.is_file():
        return target.stat().st_size, stamp
    row = rows.rows[index]
    with open(source, "rb") as f:
        jpeg = f.read(3) == b"\xff\xd8\xff"
    small = stamp[0] <= COPY_BYTES_PER_PIXEL * row.ih * row.iw
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    if jpeg and small and max(row.ih, row.iw) <= MAX_SIDE:
        shutil.copyfile(source, tmp)
    else:
        with Image.open(source) as im:
            im = im.convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
            im.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, target)
    return target.stat().st_size, stamp


def store_images(rows: Rows, indices: Iterable[int], directory: str | os.PathLike, workers: int | None = None) -> int:
    """Write each dataset position of ``indices`` once into ``directory``, which then holds exactly
    those images and :data:`SOURCES_FILE`; return the bytes the images take.

    An image stored by an earlier call whose source has the same size and modification time is
    kept; any other file is removed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        known = json.loads((directory / SOURCES_FILE).read_text())
    except (OSError, ValueError):
        known = {}
    todo = sorted(set(int(i) for i in indices))
    names = {image_name(i) for i in todo} | {SOURCES_FILE}
    for old in directory.iterdir():
        if old.name in names:
            continue
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        stored = list(pool.map(lambda i: _store_one(rows, i, directory, known.get(image_name(i))), todo))
    atomic_write_json(directory / SOURCES_FILE, {image_name(i): stamp for i, (_, stamp) in zip(todo, stored)})
    return sum(size for size, _ in stored)


def image_table(rows: Rows, indices: Iterable[int]) -> Mapping[str, list[int]]:
    """``{position: [ih, iw, sh, sw]}`` of the shown images (the page's mask geometry)."""
    out = {}
    for i in sorted(set(int(i) for i in indices)):
        r = rows.rows[i]
        out[str(i)] = [r.ih, r.iw, r.sh, r.sw]
    return out
