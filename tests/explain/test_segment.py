"""The unit segmentation's pure functions, against hand-computed cases."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from netdissect.explain import segment
from netdissect.explain.result import read_segmentation, segmentation_png
from netdissect.explain.segment import relative_activation, segment_by_units, unit_masks, winning_units
from netdissect.math.masks import masked_pixels
from netdissect.report.explain_page import legend_colour


def test_relative_activation_by_hand():
    values = torch.tensor([[3.0], [-1.0], [0.5]])
    thresholds = torch.tensor([2.0, -2.0, 0.0])
    # (3 - 2) / 2, (-1 + 2) / 2, (0.5 - 0) / 1
    assert relative_activation(values, thresholds)[:, 0].tolist() == [0.5, 0.5, 0.5]


def test_the_unit_most_above_its_threshold_wins():
    maps = torch.tensor(
        [
            [[2.0, 2.0], [0.0, 9.0]],  # t 1: relative 1, 1, -, 8
            [[1.8, 4.0], [0.0, 0.0]],  # t 0.5: relative 2.6, 7, -, -
            [[0.0, 0.0], [5.0, 0.0]],  # t 10: fires nowhere
        ]
    )
    winner = winning_units(maps, torch.tensor([1.0, 0.5, 10.0]), (2, 2))
    assert winner.tolist() == [[1, 1], [-1, 0]]


def test_ties_go_to_the_lower_unit_across_chunks(monkeypatch):
    monkeypatch.setattr(segment, "UNIT_CHUNK", 2)
    maps = torch.full((5, 1, 3), 2.0)  # five units, all 1.0 above a threshold of 1
    maps[4, 0, 2] = 3.0  # unit 5 ahead at the last pixel
    winner = winning_units(maps, torch.ones(5), (1, 3))
    assert winner.tolist() == [[0, 0, 4]]


def test_masks_equal_masked_pixels_enlarged_and_shrunk():
    rng = torch.Generator().manual_seed(0)
    for h, size in ((7, (50, 37)), (20, (9, 11))):
        maps = torch.randn(6, h, h + 3, generator=rng)
        thresholds = torch.quantile(maps.flatten(1), 0.9, dim=1)
        p, y, x = masked_pixels(maps, thresholds, size)
        expected = torch.zeros(6, *size, dtype=torch.bool)
        expected[p, y, x] = True
        assert torch.equal(unit_masks(maps, thresholds, size), expected)


def test_segment_by_units_labels_legend_and_coverage():
    maps = torch.zeros(3, 4, 4)
    maps[0, :2] = 2.0  # top half: "sky"
    maps[1, 3, :3] = 2.0  # three pixels: "road"
    maps[2, :, 3] = 3.0  # right column: also "sky" (a second sky unit), 2.0 above: wins the top right
    seg, legend, coverage = segment_by_units(maps, torch.ones(3), ["sky", "road", "sky"], (4, 4))
    assert legend == {1: "sky", 2: "road"}
    assert seg.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1], [2, 2, 2, 1]]
    assert coverage == {1: 10 / 16, 2: 3 / 16}
    empty, none, nothing = segment_by_units(torch.zeros(0, 4, 4), torch.zeros(0), [], (4, 4))
    assert (empty == 0).all() and none == {} and nothing == {}


def test_the_png_holds_the_indices_in_the_legend_colours():
    seg = np.array([[0, 1, 2], [3, 3, 0]])
    data = segmentation_png(seg, legend_colour)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P" and im.info.get("transparency") == 0
        palette = im.getpalette()[: 3 * 4]
        rgba = np.asarray(im.convert("RGBA"))
    for index in (1, 2, 3):
        assert "#" + "".join(f"{v:02x}" for v in palette[3 * index : 3 * index + 3]) == legend_colour(index)
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 255  # index 0 transparent
    path = io.BytesIO(data)
    assert np.array_equal(read_segmentation(path), seg)


def test_more_than_255_concepts_are_16_bit():
    seg = np.arange(300).reshape(15, 20)
    with Image.open(io.BytesIO(segmentation_png(seg, legend_colour))) as im:
        assert np.array_equal(np.asarray(im).astype(np.int64), seg)


def test_legend_colours_are_distinct():
    colours = [legend_colour(i) for i in range(1, 61)]
    assert len(set(colours)) == 60 and all(len(c) == 7 and c.startswith("#") for c in colours)
