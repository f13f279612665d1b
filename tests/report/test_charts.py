"""PNG charts for papers: valid images, any label text, no pyplot state."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from netdissect.report.charts import save_bar_graph_png, save_category_fractions_png

FRACTIONS = {
    "categories": ["object", "part", "color"],
    "layers": [
        {
            "layer": "conv3",
            "units": 128,
            "counts": {"object": 4, "part": 22, "color": 0},
            "fractions": {"object": 4 / 128, "part": 22 / 128, "color": 0.0},
        },
        {
            "layer": "conv4",
            "units": 128,
            "counts": {"object": 3, "part": 11, "color": 2},
            "fractions": {"object": 3 / 128, "part": 11 / 128, "color": 2 / 128},
        },
    ],
}


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_bar_graph_png(tmp_path):
    bars = [
        ("object", "sky", 5),
        ("object", "$x$ and $y$", 2),
        ("part", "<script>alert(1)</script>", 1),
        ("material", "wood", 1),
        ("color", "red", 1),
    ]
    path = save_bar_graph_png(bars, tmp_path / "sub" / "bargraph.png", title="model layer4")
    assert path == tmp_path / "sub" / "bargraph.png"
    width, height = png_size(path)
    assert width > 300 and height > 200
    wider = save_bar_graph_png(bars * 20, tmp_path / "wide.png")
    assert png_size(wider)[0] > width  # the figure grows with the number of labels
    assert png_size(save_bar_graph_png([], tmp_path / "empty.png"))[0] > 100
    assert not list(tmp_path.rglob(".*tmp*"))


def test_category_fractions_png(tmp_path):
    assert png_size(save_category_fractions_png(FRACTIONS, tmp_path / "summary.png"))[0] > 300
    assert png_size(save_category_fractions_png({"fractions": FRACTIONS}, tmp_path / "ctx.png"))[0] > 300
    many = {
        "categories": ["object"],
        "layers": [
            {"layer": f"features.{i}", "units": 64, "counts": {"object": i}, "fractions": {"object": i / 64}}
            for i in range(8)
        ],
    }
    assert png_size(save_category_fractions_png(many, tmp_path / "many.png"))[0] > 300


def test_charts_leave_pyplot_alone(tmp_path):
    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    save_bar_graph_png([("object", "sky", 1)], tmp_path / "a.png")
    if not pyplot_loaded:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == [] or pytest.skip("another test left pyplot figures open")
