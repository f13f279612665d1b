"""Planted models, images and dissection runs for the explain tests.

``ColourUnits``: layer ``features`` (B, 4, H, W) at the input's resolution: units 1-3 are 2 on
the red, green and blue pixels (0 elsewhere), unit 4 is 0.9 on red and yellow pixels ("warm");
output k (red, green, blue) reads only unit k: ``10 * mean(unit k)``.
``ReadsUnits``: ReLU conv units (random, plus a preferred colour each); output k reads only unit k.
``ColourTokens``: a ViT-like model whose layer ``blocks`` outputs (B, 1 + 16, 4) tokens (a class
token, then 4 x 4 patches of 4 x 4 pixels): channel k of a patch is 2 x its share of colour k
(red, green, blue), channel 4 its share of yellow; output k reads only channel k of the patches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from netdissect.files import layer_dirname
from netdissect.models.base import model_fingerprint
from netdissect.runs.results import DissectionResult, LayerResult

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
GREY = (128, 128, 128)
PREPROCESS = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "bgr": False, "pixel_scale": 1.0, "input_size": None}


def colour_masks(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Bool (B, H, W) masks of the pure colours in an input in [0, 1]."""
    r, g, b = (x[:, c] > 0.5 for c in range(3))
    return {"red": r & ~g & ~b, "green": g & ~r & ~b, "blue": b & ~r & ~g, "yellow": r & g & ~b}


class ColourUnits(nn.Module):
    def __init__(self, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.features = nn.Identity()
        self.head = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(10 * torch.eye(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = colour_masks(x)
        maps = torch.stack([2.0 * m["red"], 2.0 * m["green"], 2.0 * m["blue"], 0.9 * (m["red"] | m["yellow"])], 1)
        if self.channels_last:
            return self.head(self.features(maps.float().permute(0, 2, 3, 1)).mean(dim=(1, 2)))
        return self.head(self.features(maps.float()).mean(dim=(2, 3)))


#: The colour each unit of :class:`ReadsUnits` prefers (its centre tap): red, green, blue, yellow, cyan, magenta.
PREFERRED = [[2, -1, -1], [-1, 2, -1], [-1, -1, 2], [1, 1, -2], [-2, 1, 1], [1, -2, 1]]


class ReadsUnits(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        units = len(PREFERRED)
        self.conv = nn.Conv2d(3, units, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(units, units, bias=False)
        with torch.no_grad():
            self.conv.weight.mul_(0.2)
            self.conv.weight[:, :, 1, 1] += torch.tensor(PREFERRED, dtype=torch.float32)
            self.head.weight.copy_(3 * torch.eye(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


class ColourTokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.full((1, 1, 4), 0.5))
        self.blocks = nn.Identity()
        self.head = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(10 * torch.eye(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = colour_masks(x)
        maps = torch.stack([2.0 * m["red"], 2.0 * m["green"], 2.0 * m["blue"], 1.0 * m["yellow"]], 1).float()
        patches = nn.functional.avg_pool2d(maps, 4)  # (B, 4, 4, 4): a 4 x 4 grid of patches
        tokens = patches.flatten(2).transpose(1, 2)  # (B, 16, 4), row-major
        tokens = self.blocks(torch.cat([self.cls.expand(x.shape[0], 1, 4), tokens], 1))
        return self.head(tokens[:, 1:].mean(1))


class Pooled(nn.Module):
    """A layer without maps: ``pooled`` outputs (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.pooled = nn.Identity()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x.mean(dim=(2, 3))))


def make_colour_units() -> ColourUnits:
    """The SPEC ``explain_helpers:make_colour_units``."""
    return ColourUnits()


def write_image(path: Path, rects: dict[str, tuple[int, int, int, int]], size: int = 16) -> np.ndarray:
    """A PNG of ``size`` x ``size`` grey pixels with rectangles ``colour: (y0, y1, x0, x1)``; returns its pixels."""
    pixels = np.full((size, size, 3), GREY, dtype=np.uint8)
    for colour, (y0, y1, x0, x1) in rects.items():
        pixels[y0:y1, x0:x1] = COLOURS[colour]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_sizes(directory: Path, image: tuple[int, int], seg: tuple[int, int], rows: int = 3) -> Path:
    """A dataset folder holding only the ``index.csv`` explain reads (image and segmentation sizes)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["image,split,ih,iw,sh,sw"] + [
        f"x/{i}.jpg,train,{image[0]},{image[1]},{seg[0]},{seg[1]}" for i in range(rows)
    ]
    (directory / "index.csv").write_text("\n".join(lines) + "\n")
    return directory


def write_run(
    out: Path,
    module: nn.Module,
    spec: str,
    layer: str,
    thresholds: list[float],
    labels: list[str],
    ious: list[float],
    dataset: Path,
    options: dict | None = None,
) -> Path:
    """A finished dissection run of ``layer`` with planted thresholds, labels and IoUs (category ``color``)."""
    names = ["-", *sorted({label for label in labels})]
    units = len(labels)
    given = np.zeros((units, len(names)))
    for u, (label, iou) in enumerate(zip(labels, ious)):
        given[u, names.index(label)] = iou
    zeros = np.zeros((units, len(names)), dtype=np.int64)
    result = LayerResult(
        layer=layer,
        categories=["color"],
        label_names=names,
        label_category=np.array([-1] + [0] * (len(names) - 1)),
        thresholds=np.asarray(thresholds, dtype=np.float32),
        inter=zeros,
        act=np.zeros((units, 1), dtype=np.int64),
        truth=np.zeros(len(names), dtype=np.int64),
        top_indices=np.zeros((units, 1), dtype=np.int64),
        top_values=np.zeros((units, 1), dtype=np.float32),
        given_iou=given,
    )
    metadata = {
        "model": spec,
        "model_fingerprint": model_fingerprint(module),
        "dataset": {"path": str(dataset), "first_row": 1, "last_row": 3, "preprocess": PREPROCESS},
        "options": {"iou_threshold": 0.04, "tokens": "auto", "channels_last": False, "rotate": None, **(options or {})},
    }
    DissectionResult({layer: result}, metadata).save(out)
    key = {k: metadata[k] for k in ("model", "model_fingerprint", "dataset", "options")}
    (out / "run.json").write_text(json.dumps({"key": key, "layers": [layer], "state": "done"}))
    (out / "netdissect.json").write_text(json.dumps({"kind": "dissection"}))
    assert (out / layer_dirname(layer) / "units.json").is_file()
    return out


def colour_run(root: Path, seg: int = 16, image: int = 16, **options) -> Path:
    """The planted run of :class:`ColourUnits` (blue's IoU below the threshold: not a detector)."""
    data = write_sizes(root / "data", (image, image), (seg, seg))
    model = ColourUnits(channels_last=bool(options.get("channels_last")))
    return write_run(
        root / "run",
        model,
        "explain_helpers:make_colour_units",
        "features",
        [1.0, 1.0, 1.0, 0.5],
        ["red", "green", "blue", "warm"],
        [0.2, 0.2, 0.01, 0.1],
        data,
        options,
    )


def naive_effects(module: nn.Module, layer: nn.Module, x: torch.Tensor, axis: int = 1) -> np.ndarray:
    """Per unit, the drop of the top class's probability with the unit zeroed: one forward pass per unit
    (a hook zeroes the unit's channel on axis ``axis`` of the layer's output)."""
    with torch.no_grad():
        base = torch.softmax(module(x), -1)[0].double()
        top = int(base.argmax())
        probe = [None]
        handle = layer.register_forward_hook(lambda m, i, o: probe.__setitem__(0, o))
        module(x)
        handle.remove()
        width = probe[0].shape[axis]
        drops = []
        for u in range(width):

            def zero(m, i, o, u=u):
                o = o.clone()
                o.select(axis, u).zero_()
                return o

            handle = layer.register_forward_hook(zero)
            p = torch.softmax(module(x), -1)[0, top].double()
            handle.remove()
            drops.append(float(base[top] - p))
    return np.array(drops)
