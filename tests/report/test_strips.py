"""Unit strips: mask geometry, dimming, outlines and strip sizes."""

import numpy as np
import torch
from PIL import Image

from helpers import RAW, LookupNet, gray_image
from netdissect import dissect
from netdissect.data import BrodenDataset
from netdissect.data.writer import BrodenWriter, LabelSpec
from netdissect.report.strips import (
    DIM,
    GAP,
    OUTLINE,
    highlight,
    join_tiles,
    mask_border,
    unit_masks,
    write_strips,
)


def test_mask_follows_the_hot_source_pixel():
    maps = np.zeros((1, 4, 4), np.float32)
    maps[0, 1, 2] = 1.0
    mask = unit_masks(maps, 0.5, (16, 16))[0]
    ys, xs = np.nonzero(mask)
    # source pixel (1, 2) has its centre at ((1 + .5) * 4, (2 + .5) * 4) = (6, 10) in the image
    assert abs(ys.mean() + 0.5 - 6) < 0.6 and abs(xs.mean() + 0.5 - 10) < 0.6
    assert 4 <= mask.sum() <= 16  # the bilinear bump above half its height: about one source pixel
    assert not mask[:2].any() and not mask[:, :6].any()


def test_border_is_the_ring_of_a_square():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    border = mask_border(mask)
    assert border.sum() == 12  # 4x4 square: 16 - 4 inner pixels
    assert not border[3:5, 3:5].any()
    full = np.ones((5, 5), bool)
    assert not mask_border(full).any()  # the image edge is not a border


def test_highlight_dims_outside_and_outlines():
    image = np.full((8, 8, 3), 200, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    out = highlight(image, mask)
    assert (out[0, 0] == round(200 * DIM)).all()
    assert (out[3, 3] == 200).all()  # inside, not on the border: untouched
    assert tuple(out[2, 2]) == OUTLINE


def test_join_tiles_sizes():
    tiles = [np.zeros((10, 7, 3), np.uint8), np.zeros((10, 5, 3), np.uint8)]
    strip = join_tiles(tiles)
    assert strip.shape == (10, 7 + GAP + 5, 3)
    assert (strip[:, 7 : 7 + GAP] == 255).all()


def test_write_strips_from_a_run(tmp_path):
    """Strips are made from the saved top maps: one strip and one concept strip per unit."""
    n, size = 6, 16
    w = BrodenWriter(tmp_path / "ds", ["object"], [LabelSpec(1, "thing")])
    maps = torch.zeros(n, 2, 8, 8)
    for i in range(n):
        seg = np.zeros((8, 8), int)
        seg[i % 4 : i % 4 + 3, 2:5] = 1
        maps[i, 0] = torch.from_numpy(seg == 1).float() * (i + 1)
        maps[i, 1, 0, 0] = float(i)
        w.add_image(f"im{i}", gray_image(i, size), pixel_labels={"object": [seg]})
    w.close()
    data = BrodenDataset(tmp_path / "ds", preprocess=RAW)
    result = dissect(
        LookupNet(maps), data, ["layer"], workers=0, progress=False, device="cpu", quantile=0.1, top_images=3
    )["layer"]
    files = write_strips(result, data, tmp_path / "strips", examples=3)
    assert set(files) == {1, 2}
    for _unit, (strip, concept) in files.items():
        for name in (strip, concept):
            with Image.open(tmp_path / "strips" / name) as im:
                assert im.size == (3 * size + 2 * GAP, size)
    assert result.top_indices[0].tolist() == [5, 4, 3]  # unit 1 fires hardest on the last images
