"""Segmenters: loading with class names, labelling by argmax and confidence, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netdissect import load_segmenter
from netdissect.errors import ModelError, OptionError
from netdissect.models.toy import ColorSegmenter
from netdissect.segmenters.model import label_map, read_classes, segment

TOY = "netdissect.models.toy:color_segmenter"


def color_rule(images: np.ndarray) -> np.ndarray:
    """The toy segmenter's rule in integers: channel c (class c + 1) when it leads both others by more than 51."""
    x = images.astype(np.int64)
    labels = np.zeros(x.shape[:-1], dtype=np.int64)
    for c in range(3):
        lead = x[..., c] - np.maximum(x[..., (c + 1) % 3], x[..., (c + 2) % 3])
        labels[lead > 51] = c + 1
    return labels


def random_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random pixels; in about 30 % of them a channel leads the others by exactly 51 or 52 (the rule's edge)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, 3))
    c = rng.integers(0, 3, (n, h, w))[..., None]
    others = np.maximum(np.take_along_axis(images, (c + 1) % 3, -1), np.take_along_axis(images, (c + 2) % 3, -1))
    lead = others + 51 + rng.integers(0, 2, c.shape)
    near = (rng.random(c.shape) < 0.3) & (lead <= 255)
    np.put_along_axis(images, c, np.where(near, lead, np.take_along_axis(images, c, -1)), -1)
    return images.astype(np.uint8)


def test_color_segmenter_equals_the_rule_on_every_pixel():
    images = random_images(3, 19, 23)
    segmenter = load_segmenter(TOY)
    assert segmenter.classes == ["background", "red", "green", "blue"]
    labels = segment(segmenter, images)
    expected = color_rule(images)
    assert labels.shape == (3, 19, 23)
    assert np.array_equal(labels, expected)
    assert set(np.unique(expected)) == {0, 1, 2, 3}  # every class occurs


def test_label_map_argmax_and_min_confidence():
    # pixel 0: class 1 wins with p = e^2 / (e^2 + 2) = 0.787; pixel 1: class 2 with p = 1/3 (a tie goes to the first)
    logits = torch.tensor([[[[0.0, 0.0]], [[2.0, 0.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    assert label_map(logits).tolist() == [[[1, 0]]]
    assert label_map(logits, 0.78).tolist() == [[[1, 0]]]
    assert label_map(logits, 0.79).tolist() == [[[0, 0]]]
    logits[0, 2, 0, 1] = 1.0  # class 2 now wins pixel 1 with p = e / (e + 2) = 0.576
    assert label_map(logits, 0.5).tolist() == [[[1, 2]]]
    assert label_map(logits, 0.6).tolist() == [[[1, 0]]]


class HalfResolution(nn.Module):
    """Logits at half the input's resolution, in a dict as torchvision's models return them."""

    classes = ("background", "left", "right")

    def forward(self, x):
        b, _, h, w = x.shape
        logits = torch.zeros(b, 3, h // 2, w // 2)
        logits[:, 1, :, : w // 4] = 1.0
        logits[:, 2, :, w // 4 :] = 1.0
        return {"out": logits, "aux": logits}


def test_dict_output_and_logits_resized_to_the_image():
    labels = segment(load_segmenter(HalfResolution()), np.zeros((2, 8, 8, 3), np.uint8))
    assert labels.shape == (2, 8, 8)
    assert (labels[:, :, :4] == 1).all() and (labels[:, :, 4:] == 2).all()


@pytest.mark.parametrize("name", ["deeplabv3_resnet50", "fcn_resnet50", "lraspp_mobilenet_v3_large"])
def test_torchvision_segmenters_load_offline_with_their_class_names(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: any download would show
    segmenter = load_segmenter(f"torchvision:{name}")
    assert len(segmenter.classes) == 21
    assert segmenter.classes[:3] == ["__background__", "aeroplane", "bicycle"]
    assert segmenter.classes[15] == "person" and segmenter.classes[-1] == "tvmonitor"
    assert not (tmp_path / "torch").exists()
    if name == "lraspp_mobilenet_v3_large":  # the lightest: label a small image end to end
        assert segment(segmenter, np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 32, 32)


def test_class_names_from_a_file_or_a_list(tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("nothing\n\nwarm\ngrassy\ncold\n")
    assert read_classes(names) == ["nothing", "warm", "grassy", "cold"]
    assert load_segmenter(TOY, names).classes == ["nothing", "warm", "grassy", "cold"]
    assert load_segmenter(ColorSegmenter(), ["bg", "r", "g", "b"]).classes == ["bg", "r", "g", "b"]


def test_bad_specs_and_shapes_give_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown torchvision model 'deeplab_resnet50'"):
        load_segmenter("torchvision:deeplab_resnet50")
    with pytest.raises(OptionError, match="does not name its classes: pass --classes FILE"):
        load_segmenter(nn.Identity())
    (tmp_path / "two.txt").write_text("background\nthing\n")
    with pytest.raises(ModelError, match="gives 4 classes but has 2 class names"):
        segment(load_segmenter(TOY, tmp_path / "two.txt"), np.zeros((1, 4, 4, 3), np.uint8))
    (tmp_path / "twice.txt").write_text("background\nthing\nthing\n")
    with pytest.raises(OptionError, match="class name 'thing' appears twice"):
        read_classes(tmp_path / "twice.txt")
    with pytest.raises(OptionError, match="at least 2 classes"):
        load_segmenter(TOY, ["background"])
    with pytest.raises(OptionError, match=r"^--classes .*missing\.txt: not found$"):
        read_classes(tmp_path / "missing.txt")

    class Flat(nn.Module):
        classes = ("background", "thing")

        def forward(self, x):
            return x.mean(1)

    with pytest.raises(
        ModelError, match=r"returned shape \(1, 4, 4\) for 1 image\(s\): expected class logits \(1, 2, H, W\)"
    ):
        segment(load_segmenter(Flat()), np.zeros((1, 4, 4, 3), np.uint8))

    class NoOut(Flat):
        def forward(self, x):
            return {"logits": x}

    with pytest.raises(ModelError, match="returned a dict without 'out'"):
        segment(load_segmenter(NoOut()), np.zeros((1, 4, 4, 3), np.uint8))


def test_onnx_segmenter_with_a_classes_file(tmp_path):
    pytest.importorskip("onnx2torch", reason="ONNX support needs the optional packages onnx and onnx2torch")
    import warnings

    path = tmp_path / "colors.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ColorSegmenter(),
            (torch.zeros(1, 3, 8, 8),),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}},
            dynamo=False,
        )
    (tmp_path / "classes.txt").write_text("none\nwarm\ngrassy\ncold\n")
    segmenter = load_segmenter(str(path), tmp_path / "classes.txt")
    images = random_images(2, 12, 10, seed=1)
    assert segmenter.classes[1] == "warm"
    assert np.array_equal(segment(segmenter, images), color_rule(images))
    with pytest.raises(OptionError, match="does not name its classes"):
        load_segmenter(str(path))
