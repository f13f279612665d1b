"""Unit masks: bilinear upsampling (dense) and the sparse masked-pixel evaluation agree exactly."""

import pytest
import torch
import torch.nn.functional as F

from netdissect.math.masks import masked_pixels, upsample

SIZES = [
    ((7, 7), (112, 112)),
    ((16, 16), (64, 64)),
    ((7, 7), (113, 113)),
    ((13, 9), (56, 40)),
    ((3, 5), (8, 8)),
    ((6, 6), (7, 7)),
    ((1, 1), (4, 4)),
    ((8, 8), (8, 8)),
]


@pytest.mark.parametrize("src, dst", SIZES)
def test_upsample_is_half_pixel_bilinear(src, dst):
    torch.manual_seed(0)
    maps = torch.randn(20, *src)
    ref = F.interpolate(maps[:, None], size=dst, mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(upsample(maps, dst), ref, atol=5e-6, rtol=1e-6)  # float rounding only


def test_shrinking_is_antialiased():
    maps = torch.zeros(1, 8, 8)
    maps[0, ::2, ::2] = 1.0
    ref = F.interpolate(maps[:, None], size=(4, 4), mode="bilinear", align_corners=False, antialias=True)[:, 0]
    plain = F.interpolate(maps[:, None], size=(4, 4), mode="bilinear", align_corners=False)[:, 0]
    assert torch.equal(upsample(maps, (4, 4)), ref)
    assert not torch.allclose(ref, plain)


def dense_pixels(maps, t, size):
    keep = upsample(maps, size) > t[:, None, None]
    return {tuple(x) for x in torch.stack(keep.nonzero(as_tuple=True), 1).tolist()}


def sparse_pixels(maps, t, size):
    return {tuple(x) for x in torch.stack(masked_pixels(maps, t, size), 1).tolist()}


@pytest.mark.parametrize("src, dst", SIZES + [((16, 16), (8, 8))])
@pytest.mark.parametrize("kind", ["normal", "relu", "plateau", "negative"])
def test_sparse_masks_equal_dense_masks(src, dst, kind):
    torch.manual_seed(1)
    maps = torch.randn(30, *src)
    if kind == "relu":
        maps = maps.clamp(min=0)
    elif kind == "plateau":
        maps = maps.round()  # many values exactly at the threshold
    elif kind == "negative":
        maps = maps - 3
    flat = maps.flatten(1)
    t = flat.quantile(0.9, dim=1)
    if kind == "plateau":
        t = flat.max(dim=1).values - 1  # an attained value
    sparse = sparse_pixels(maps, t, dst)
    assert sparse == dense_pixels(maps, t, dst)
    if src[0] > 1 and src[0] <= dst[0]:
        assert len(sparse) > 0


def test_threshold_zero_on_relu_maps_keeps_positive_only():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 1] = 2.0
    ys_xs = sparse_pixels(maps, torch.zeros(1), (8, 8))
    assert ys_xs == dense_pixels(maps, torch.zeros(1), (8, 8))
    assert all(1 <= y <= 4 and 1 <= x <= 4 for _, y, x in ys_xs)  # near source pixel (1, 1) only


def test_empty_input():
    p, y, x = masked_pixels(torch.zeros(0, 4, 4), torch.zeros(0), (8, 8))
    assert len(p) == len(y) == len(x) == 0
