"""A unit's image-level value for every kind of layer output."""

from __future__ import annotations

import pytest
import torch

from netdissect.describe.values import image_level
from netdissect.errors import ModelError


def test_fully_connected_maps_and_tokens():
    fc = torch.randn(2, 5)
    assert torch.equal(image_level("fc", fc), fc)
    maps = torch.randn(2, 3, 4, 6)
    assert torch.allclose(image_level("conv", maps), maps.mean(dim=(2, 3)))
    assert torch.allclose(image_level("conv", (maps, "extra")), maps.mean(dim=(2, 3)))  # a tuple's first tensor
    assert torch.allclose(image_level("swin", maps.permute(0, 2, 3, 1), channels_last=True), maps.mean(dim=(2, 3)))


def test_tokens_average_the_patch_tokens_only():
    patches = torch.randn(2, 16, 8)  # a 4 x 4 grid of patch tokens with 8 channels
    cls = torch.full((2, 1, 8), 1000.0)  # a class token that must not count
    value = image_level("blocks.11", torch.cat([cls, patches], 1), tokens="auto", input_hw=(64, 64))
    assert torch.allclose(value, patches.mean(dim=1), atol=1e-6)
    with pytest.raises(ModelError, match="--tokens off"):
        image_level("blocks.11", torch.cat([cls, patches], 1), tokens="off", input_hw=(64, 64))


def test_other_outputs_are_one_line_errors():
    with pytest.raises(ModelError, match="not \\(B, C\\)"):
        image_level("odd", torch.randn(2, 3, 4, 5, 6))
    with pytest.raises(ModelError, match="not a tensor"):
        image_level("odd", {"a": 1})
