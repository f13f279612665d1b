"""Planted ground truth: units that fire on one colour paint exactly its pixels; the unit that feeds
the top class has the largest effect; the effects equal one forward pass per unit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_helpers import (
    ColourTokens,
    ColourUnits,
    Pooled,
    ReadsUnits,
    colour_masks,
    colour_run,
    naive_effects,
    write_image,
    write_run,
    write_sizes,
)
from PIL import Image

from netdissect import explain
from netdissect.capture.tokens import tokens_to_map
from netdissect.errors import ModelError
from netdissect.explain.result import read_segmentation
from netdissect.math.masks import masked_pixels

RECTS = {"red": (1, 6, 1, 7), "green": (9, 15, 2, 8), "blue": (2, 8, 9, 15), "yellow": (10, 14, 10, 15)}


def pixels_of(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (image == np.array(colour, dtype=np.uint8)).all(-1)


def test_each_detector_paints_exactly_its_colour(tmp_path):
    run = colour_run(tmp_path)
    image = write_image(tmp_path / "img.png", RECTS)
    result = explain(run, [tmp_path / "img.png"], tmp_path / "out", top_units=4, device="cpu")
    seg = result[0].segmentation
    legend = {concept: index for index, concept in result[0].legend.items()}
    # red pixels: units 1 (red, 2 / 1 -> 1.0 above) and 4 (warm, 0.9 / 0.5 -> 0.8 above): red wins
    assert set(legend) == {"red", "green", "warm"}
    assert np.array_equal(seg == legend["red"], pixels_of(image, (255, 0, 0)))
    assert np.array_equal(seg == legend["green"], pixels_of(image, (0, 255, 0)))
    assert np.array_equal(seg == legend["warm"], pixels_of(image, (255, 255, 0)))
    # blue's unit is no detector (IoU 0.01 < 0.04): blue and grey pixels stay unlabelled
    assert np.array_equal(seg == 0, pixels_of(image, (0, 0, 255)) | pixels_of(image, (128, 128, 128)))
    # the legend is ordered by area: green 36 px > red 30 px > yellow 20 px
    assert result[0].legend == {1: "green", 2: "red", 3: "warm"}
    assert result[0].coverage[2] == pytest.approx(30 / 256)
    # the written PNG holds the same indices, the JSON the same legend
    assert np.array_equal(read_segmentation(tmp_path / "out" / "seg-0.png"), seg)
    record = result.to_json()["images"][0]
    assert record["legend"] == {"1": "green", "2": "red", "3": "warm"} and record["segmentation"] == "seg-0.png"


def test_a_lower_iou_threshold_makes_more_detectors(tmp_path):
    run = colour_run(tmp_path)
    image = write_image(tmp_path / "img.png", RECTS)
    result = explain(run, tmp_path / "img.png", iou_threshold=0.005, device="cpu")
    legend = {concept: index for index, concept in result[0].legend.items()}
    assert np.array_equal(result[0].segmentation == legend["blue"], pixels_of(image, (0, 0, 255)))
    assert result.metadata["detectors"] == 4


def test_masks_are_the_dissection_masks_when_upsampled(tmp_path):
    """Maps 16 x 16 compared at a 40 x 40 segmentation: each unit's mask is exactly the pixels
    masked_pixels (the dissection's counting) keeps, and the segmentation uses the same masks."""
    run = colour_run(tmp_path, seg=40)
    write_image(tmp_path / "img.png", RECTS)
    result = explain(run, [tmp_path / "img.png"], top_units=4, device="cpu")
    x = torch.from_numpy(np.asarray(Image.open(tmp_path / "img.png"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    m = {k: v[0] for k, v in colour_masks(x).items()}  # the layer's maps, by hand
    maps = torch.stack([2.0 * m["red"], 2.0 * m["green"], 2.0 * m["blue"], 0.9 * (m["red"] | m["yellow"])]).float()
    thresholds = torch.tensor([1.0, 1.0, 1.0, 0.5])
    p, y, xx = masked_pixels(maps, thresholds, (40, 40))
    expected = torch.zeros(4, 40, 40, dtype=torch.bool)
    expected[p, y, xx] = True
    for u in range(1, 5):
        assert np.array_equal(result[0].masks[u], expected[u - 1].numpy()), u
    seg = result[0].segmentation
    painted = seg > 0
    assert np.array_equal(painted, (expected[0] | expected[1] | expected[3]).numpy())
    legend = {concept: index for index, concept in result[0].legend.items()}
    assert np.array_equal(seg == legend["red"], expected[0].numpy())  # red wins wherever it fires


def test_the_unit_feeding_the_top_class_has_the_largest_effect(tmp_path):
    """Output k reads only unit k: on every image, the unit with the largest effect on the top class is that class's."""
    torch.manual_seed(0)
    model = ReadsUnits()
    data = write_sizes(tmp_path / "data", (24, 24), (12, 12))
    run = write_run(tmp_path / "run", model, "ReadsUnits", "relu", [0.3] * 6, [f"c{k}" for k in range(6)], [0.1] * 6, data)  # fmt: skip
    rng = np.random.default_rng(0)
    paths = []
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (90, 90, 90)]
    for i, colour in enumerate(colours):
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        pixels[1:23, 1:23] = colour  # a dominant colour, a frame of noise
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    result = explain(run, paths, model=model, top_units=3, device="cpu", batch_size=4)
    tops = set()
    for i, explained in enumerate(result.images):
        top = explained.top_class["output"]
        tops.add(top)
        assert explained.units[0]["unit"] == top + 1
        assert explained.effects[top] > 0 and np.all(np.delete(explained.effects, top) <= 1e-12)
        # exact: the same as one forward pass per unit with a hook zeroing the unit
        x = torch.from_numpy(np.asarray(Image.open(paths[i]), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        np.testing.assert_allclose(explained.effects, naive_effects(model, model.relu, x), atol=1e-6)
        assert explained.top_class["class"] == top  # no class names: the output index
    assert tops == set(range(6))  # each unit's colour makes its class the top one


def test_colour_model_effects_and_names(tmp_path):
    run = colour_run(tmp_path)
    write_image(tmp_path / "img.png", {"red": (0, 10, 0, 10), "green": (12, 16, 0, 4)})
    result = explain(run, [tmp_path / "img.png"], classes=["red", "green", "blue"], device="cpu", top_units=2)
    explained = result[0]
    assert [p["class"] for p in explained.predictions] == ["red", "green", "blue"]
    assert explained.units[0]["unit"] == 1 and explained.units[0]["label"] == "red"
    assert explained.units[0]["iou"] == pytest.approx(0.2) and explained.units[0]["detector"]
    assert sum(p["probability"] for p in explained.predictions) == pytest.approx(1.0)


def test_channels_last_layers_give_the_same_explanation(tmp_path):
    first = colour_run(tmp_path / "a")
    last = colour_run(tmp_path / "b", channels_last=True)
    write_image(tmp_path / "img.png", RECTS)
    a = explain(first, tmp_path / "img.png", model=ColourUnits(), device="cpu", top_units=4)[0]
    b = explain(last, tmp_path / "img.png", model=ColourUnits(channels_last=True), device="cpu", top_units=4)[0]
    assert np.array_equal(a.segmentation, b.segmentation) and a.legend == b.legend
    np.testing.assert_allclose(a.effects, b.effects, atol=1e-7)
    assert [u["unit"] for u in a.units] == [u["unit"] for u in b.units]


def test_token_layers(tmp_path):
    """ViT-like tokens (a class token and 4 x 4 patches): the patch tokens are the maps, units are channels."""
    model = ColourTokens()
    data = write_sizes(tmp_path / "data", (16, 16), (16, 16))
    labels = ["red", "green", "blue", "yellow"]
    run = write_run(tmp_path / "run", model, "ColourTokens", "blocks", [0.5, 0.5, 0.5, 0.25], labels, [0.2] * 4, data)
    # patch-aligned colours: red fills patches (0..1, 0..1), green patch (3, 3), yellow patch (2, 0)
    image = write_image(tmp_path / "img.png", {"red": (0, 8, 0, 8), "green": (12, 16, 12, 16), "yellow": (8, 12, 0, 4)})
    result = explain(run, tmp_path / "img.png", model=model, device="cpu", top_units=4)
    explained = result[0]
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    captured = []
    handle = model.blocks.register_forward_hook(lambda m, i, o: captured.append(o))
    model(x)
    handle.remove()
    maps = tokens_to_map("blocks", captured[0], "auto", (16, 16), 1)[0]
    assert maps.shape == (4, 4, 4)
    p, y, xx = masked_pixels(maps, torch.tensor([0.5, 0.5, 0.5, 0.25]), (16, 16))
    expected = torch.zeros(4, 16, 16, dtype=torch.bool)
    expected[p, y, xx] = True
    for u in range(1, 5):
        assert np.array_equal(explained.masks[u], expected[u - 1].numpy()), u
    legend = {concept: index for index, concept in explained.legend.items()}
    assert explained.segmentation[2, 2] == legend["red"] and explained.segmentation[15, 15] == legend["green"]
    assert "blue" not in legend
    # output 0 (red) reads channel 0 of the patch tokens only
    assert explained.top_class["output"] == 0 and explained.units[0]["unit"] == 1
    zeroed = naive_effects(model, model.blocks, x, axis=2)  # zero the channel in every token
    np.testing.assert_allclose(explained.effects, zeroed, atol=1e-6)


def test_torchvision_vision_transformer(tmp_path):
    """A real (tiny, random) torchvision ViT: an encoder block's tokens, exact effects."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    layer = "encoder.layers.encoder_layer_0"
    data = write_sizes(tmp_path / "data", (32, 32), (16, 16))
    run = write_run(tmp_path / "run", model, "vit", layer, [0.0] * 16, [f"c{k % 3}" for k in range(16)], [0.1] * 16, data)  # fmt: skip
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    result = explain(run, tmp_path / "img.png", model=model, device="cpu", top_units=16)
    assert result.metadata["split"] == "fx"
    explained = result[0]
    image = np.asarray(Image.open(tmp_path / "img.png"), dtype=np.float32) / 255
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] - 0.0) / 1.0
    module = dict(model.named_modules())[layer]
    np.testing.assert_allclose(explained.effects, naive_effects(model, module, x, axis=2), atol=1e-6)
    assert sorted(u["unit"] for u in explained.units) == list(range(1, 17))
    assert explained.segmentation.shape == (16, 16) and explained.segmentation.max() <= 3


def test_a_layer_without_maps_is_refused(tmp_path):
    model = Pooled()
    data = write_sizes(tmp_path / "data", (8, 8), (8, 8))
    run = write_run(tmp_path / "run", model, "Pooled", "pooled", [0.1] * 3, ["a", "b", "c"], [0.1] * 3, data)
    write_image(tmp_path / "img.png", {}, size=8)
    with pytest.raises(ModelError, match=r"layer 'pooled' output is not a \(B, C, H, W\) map"):
        explain(run, tmp_path / "img.png", tmp_path / "out", model=model, device="cpu")
    assert not (tmp_path / "out").exists()  # refused before anything was written


class Branchy(ColourUnits):
    """ColourUnits with data-dependent control flow: torch.fx cannot trace it (the hook path runs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() < 0:  # never true for images in [0, 1]
            return torch.zeros(x.shape[0], 3)
        return super().forward(x)


def test_untraceable_models_take_the_hook_path_with_the_same_results(tmp_path):
    run = colour_run(tmp_path)
    data = write_sizes(tmp_path / "data2", (16, 16), (16, 16))
    labels, ious = ["red", "green", "blue", "warm"], [0.2, 0.2, 0.01, 0.1]
    branchy = write_run(
        tmp_path / "branchy", Branchy(), "Branchy", "features", [1.0, 1.0, 1.0, 0.5], labels, ious, data
    )
    write_image(tmp_path / "img.png", RECTS)
    traced = explain(run, tmp_path / "img.png", model=ColourUnits(), device="cpu", top_units=4)
    hooked = explain(branchy, tmp_path / "img.png", model=Branchy(), device="cpu", top_units=4)
    assert traced.metadata["split"] == "fx" and hooked.metadata["split"] == "hook"
    assert hooked.metadata["split_fallback_reason"]
    np.testing.assert_allclose(hooked[0].effects, traced[0].effects, atol=1e-7)
    assert np.array_equal(hooked[0].segmentation, traced[0].segmentation)
