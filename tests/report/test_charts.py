"""Every chart of the registry (``report.charts.CHARTS``): plain JSON-able data, an SVG laid out for
its card, a one-line chart when there is nothing to draw, a valid PNG as wide as the page's charts,
and any label text (``$``, ``<``, ``&``) shown as written in both formats."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdissect.ablation.result import AblationResult
from netdissect.report import charts
from netdissect.report.charts import CHARTS, ablation_curves, pngbase
from netdissect.report.charts.svgbase import CARD_WIDTH

SVG = "{http://www.w3.org/2000/svg}"
CARD = 1000  # about the inside of a page-wide card (1280-pixel window: 1186)
#: Label text that breaks an unescaped chart: markup in SVG, mathtext (an unknown symbol) in matplotlib.
HOSTILE = r"<i>$\bad$&"


def ablation(units: int = 6, classes: int = 3, k: int = 4, joined: bool = True, label: str = "sky") -> AblationResult:
    """A small ablation result with curves for every class and, when ``joined``, a dissection."""
    rng = np.random.default_rng(0)
    curves = [rng.uniform(0, 1, (classes, k)) for _ in range(4)]
    if k > 1:
        curves[0][0, 1] = np.nan  # an undefined accuracy is skipped, not drawn at 0
    dissection = {
        "k": 2,
        "pearson_iou_vs_classes": 0.25,
        "units": [
            {"unit": u, "label": label if u == 1 else f"l{u}", "iou": 0.05 * u, "top_k_classes": u % 3}
            for u in range(1, units + 1)
        ],
    }
    return AblationResult(
        class_names=[label, *(f"c{i}" for i in range(1, classes))],
        class_counts=np.full(classes, 5),
        base_accuracy=np.full(classes, 0.8),
        accuracy=np.full((units, classes), 0.7),
        importance=rng.uniform(0, 0.1, (units, classes)),
        prob_drop=rng.uniform(0, 0.1, (units, classes)),
        units=np.arange(1, units + 1),
        group_removed=curves[0],
        group_kept=curves[1],
        group_removed_others=curves[2],
        group_kept_others=curves[3],
        base_prob=np.full(classes, 0.5),
        metadata={"dissection": dissection} if joined else {},
    )


def empty_ablation() -> AblationResult:
    result = ablation(units=0, k=0, joined=False)
    result.class_counts = np.zeros(3, np.int64)
    return result


def fractions(layer: str = "conv4", category: str = "object") -> dict:
    return {
        "categories": [category, "part"],
        "layers": [
            {
                "layer": layer,
                "units": 64,
                "counts": {category: 4, "part": 2},
                "fractions": {category: 4 / 64, "part": 2 / 64},
            },
            {
                "layer": "conv5",
                "units": 64,
                "counts": {category: 1, "part": 0},
                "fractions": {category: 1 / 64, "part": 0.0},
            },
        ],
    }


def comparison(run: str = "before", layer: str = "conv4", category: str = "object", series: bool = True) -> dict:
    """A comparison_data-shaped input of two runs and two layers."""
    runs = [run, "after"]
    return {
        "categories": [category, "part"],
        "rows": [
            {"run": r, "layer": n, "unique_detectors": 3, "unique_by_category": {category: 1, "part": 2}}
            for r in runs
            for n in (layer, "conv5")
        ],
        "detectors_per_layer": {"layers": [layer, "conv5"], "runs": runs, "detectors": [[4, 6], [5, None]]},
        "series": {
            "runs": runs,
            "layers": [
                {"layer": n, "detectors": {category: [1, 2], "part": [0, 0]}, "unique_total": [1, 3]}
                for n in (layer, "conv5")
            ],
        }
        if series
        else None,
    }


def empty_comparison() -> dict:
    return {
        "categories": [],
        "rows": [],
        "detectors_per_layer": {"layers": [], "runs": [], "detectors": []},
        "series": None,
    }


def sweep(layer: str = "conv4") -> dict:
    return {
        "powers": [0.0, 0.5, 1.0],
        "seed": 0,
        "layers": {layer: {"detectors": [9, 5, 2], "unique_detectors": [6, 4, 2]}},
    }


#: Per chart: its data from ordinary inputs (a label given), its data from empty inputs, its card's width.
EXAMPLES: dict[str, tuple[Callable[[str], dict], Callable[[], dict], int]] = {
    "detectors": (
        lambda s: charts.detectors.data([("object", s, 5), ("part", "door", 2), ("color", "red", 1)], title=s),
        lambda: charts.detectors.data([]),
        CARD,
    ),
    "category_fractions": (
        lambda s: charts.category_fractions.data(fractions(layer=s, category=s)),
        lambda: charts.category_fractions.data({"categories": [], "layers": []}),
        CARD,
    ),
    "unique_detectors": (
        lambda s: charts.unique_detectors.data(comparison(run=s, category=s)),
        lambda: charts.unique_detectors.data(empty_comparison()),
        CARD,
    ),
    "detectors_per_layer": (
        lambda s: charts.detectors_per_layer.data(comparison(run=s, layer=s)),
        lambda: charts.detectors_per_layer.data(empty_comparison()),
        CARD,
    ),
    "emergence": (
        lambda s: charts.emergence.data(comparison(run=s, category=s), layer="conv4"),
        lambda: charts.emergence.data(empty_comparison()),
        CARD,
    ),
    "ablation_curves": (
        lambda s: ablation_curves.data(ablation(label=s), 0),
        lambda: ablation_curves.data(empty_ablation()),
        ablation_curves.WIDTH,
    ),
    "ablation_scatter": (
        lambda s: charts.ablation_scatter.data(ablation(label=s)),
        lambda: charts.ablation_scatter.data(empty_ablation()),
        CARD,
    ),
    "rotation_sweep": (lambda s: charts.rotation_sweep.data(sweep(layer=s)), lambda: {"powers": [], "layers": {}}, 0),
}
NAMES = [c.name for c in CHARTS]
SVG_CHARTS = [c for c in CHARTS if c.svg is not None]


def test_the_registry_lists_every_chart_module_once():
    folder = Path(charts.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "svgbase", "pngbase"}
    assert sorted(NAMES) == sorted(modules) and len(set(NAMES)) == len(NAMES)
    assert sorted(EXAMPLES) == sorted(NAMES)  # a new chart brings its examples to these tests
    for chart in CHARTS:
        module = getattr(charts, chart.name)
        assert (chart.data, chart.save_png) == (module.data, module.save_png)
        # a chart without SVG says why in its docstring
        assert chart.svg is not None or "PNG only" in (module.__doc__ or ""), chart.name
    assert "rotation_sweep" not in {c.name for c in SVG_CHARTS}


@pytest.mark.parametrize("chart", CHARTS, ids=NAMES)
def test_data_is_plain_json(chart):
    full, empty, _ = EXAMPLES[chart.name]
    for data in (full("sky"), empty()):
        assert json.loads(json.dumps(data, allow_nan=False)) == json.loads(json.dumps(data))


def box(svg: str) -> tuple[float, float, float, ET.Element]:
    """The chart's viewBox width and height, its least width (CSS) and its root element."""
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    style = root.get("style") or ""
    least = float(style.split("min-width:")[1].split("px")[0]) if "min-width:" in style else 0.0
    return width, height, least, root


@pytest.mark.parametrize("chart", SVG_CHARTS, ids=[c.name for c in SVG_CHARTS])
def test_svg_is_laid_out_for_its_card(chart):
    full, _, card = EXAMPLES[chart.name]
    width, height, least, _ = box(chart.svg(full("sky")))
    assert width >= card, width  # laid out for the card, not a third of it
    assert height < width / (1.8 if card == CARD else 1.5), (width, height)  # scaled, still a chart's height
    assert least < width  # it may shrink in a narrow window


@pytest.mark.parametrize("chart", SVG_CHARTS, ids=[c.name for c in SVG_CHARTS])
def test_empty_chart_is_one_line(chart):
    _, empty, _ = EXAMPLES[chart.name]
    width, height, _, root = box(chart.svg(empty()))
    assert width >= CARD and height <= 60
    texts = list(root.iter(f"{SVG}text"))
    assert len(texts) == 1 and texts[0].text and len(list(root)) == 1


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.parametrize("chart", CHARTS, ids=NAMES)
def test_png_is_as_wide_as_the_page_charts(chart, tmp_path):
    full, empty, _ = EXAMPLES[chart.name]
    path = chart.save_png(full("sky"), tmp_path / "sub" / f"{chart.name}.png", key="digest")
    assert path == tmp_path / "sub" / f"{chart.name}.png"
    width, height = png_size(path)
    assert width >= 1.5 * height and width > 300, (width, height)
    with Image.open(path) as im:
        assert im.text.get(pngbase.CHART_KEY) == "digest"
    assert png_size(chart.save_png(empty(), tmp_path / "empty.png"))[0] > 100  # nothing to draw: still a picture
    assert {p.name for p in tmp_path.rglob("*") if p.is_file()} == {"empty.png", f"{chart.name}.png"}  # no temporaries


def texts_and_values(root: ET.Element) -> list[str]:
    return [t for e in root.iter() for t in [e.text or "", *e.attrib.values()]]


def strings(data: object) -> list[str]:
    """Every string in plain data, keys included."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in [*strings(k), *strings(v)]]
    if isinstance(data, (list, tuple)):
        return [s for v in data for s in strings(v)]
    return []


#: Charts whose SVG shows no label of the data: the page's card names what they show.
SVG_WITHOUT_LABELS = {"ablation_curves"}


@pytest.mark.parametrize("chart", CHARTS, ids=NAMES)
def test_label_text_survives(chart, tmp_path):
    full, _, _ = EXAMPLES[chart.name]
    data = full(HOSTILE)
    assert HOSTILE in strings(data)
    if chart.svg is not None:
        root = ET.fromstring(chart.svg(data))  # well-formed
        assert not list(root.iter("i")) and not list(root.iter(f"{SVG}i"))  # no markup made of it
        if chart.name not in SVG_WITHOUT_LABELS:
            assert any(HOSTILE in t for t in texts_and_values(root))  # shown as written
    # matplotlib would read $\bad$ as mathtext and fail on the unknown symbol
    assert png_size(chart.save_png(data, tmp_path / "hostile.png"))[0] > 300


def test_png_labels_escape_mathtext():
    assert pngbase.text("$x$ & <y>") == r"\$x\$ & <y>"


def test_bar_graph_png_grows_with_its_labels(tmp_path):
    bars = [("object", "sky", 5), ("object", "$x$ and $y$", 2), ("part", "<script>", 1), ("color", "red", 1)]
    path = charts.detectors.save_png(charts.detectors.data(bars, title="model layer4"), tmp_path / "bargraph.png")
    width, height = png_size(path)
    assert width > 300 and height > 200
    wider = charts.detectors.save_png(charts.detectors.data(bars * 20), tmp_path / "wide.png")
    assert png_size(wider)[0] > width  # the figure grows with the number of labels


def test_category_fractions_data_from_a_run_context(tmp_path):
    data = charts.category_fractions.data(fractions())
    assert charts.category_fractions.data({"fractions": fractions()}) == data
    many = {
        "categories": ["object"],
        "layers": [
            {"layer": f"features.{i}", "units": 64, "counts": {"object": i}, "fractions": {"object": i / 64}}
            for i in range(8)
        ],
    }
    assert (
        png_size(charts.category_fractions.save_png(charts.category_fractions.data(many), tmp_path / "m.png"))[0] > 300
    )


def test_ablation_curves_data_for_a_class_and_the_mean():
    result = ablation()
    one = ablation_curves.data(result, 0)
    assert one["k"] == 4 and [s["key"] for s in one["series"]] == [k for k, *_ in ablation_curves.SERIES]
    assert one["series"][0]["values"][1] is None and one["series"][0]["classes"] == []
    mean = ablation_curves.data(result)
    expected = np.nanmean(result.group_kept, axis=0)
    assert mean["series"][2]["values"] == pytest.approx(list(expected))
    assert len(mean["series"][2]["classes"]) == 3  # each class drawn faint under the mean
    root = ET.fromstring(ablation_curves.svg(mean))
    assert len([p for p in root.iter(f"{SVG}polyline") if p.get("class") == "class-series"]) == 4 * 3
    points = [p for p in ET.fromstring(ablation_curves.svg(one)).iter(f"{SVG}polyline") if p.get("class") == "series"]
    assert len(points[0].get("points").split()) == 3  # the undefined accuracy is left out


def test_emergence_draws_a_panel_per_layer():
    data = charts.emergence.data(comparison())
    assert [p["layer"] for p in data["layers"]] == ["conv4", "conv5"]
    root = ET.fromstring(charts.emergence.svg(data))
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "panel-title"] == ["conv4", "conv5"]
    one = ET.fromstring(charts.emergence.svg(charts.emergence.data(comparison(), layer="conv5")))
    assert not [t for t in one.iter(f"{SVG}text") if t.get("class") == "panel-title"]  # its card names it
    assert charts.emergence.data(comparison(series=False))["layers"] == []


def test_charts_leave_pyplot_alone(tmp_path):
    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    for chart in CHARTS:
        chart.save_png(EXAMPLES[chart.name][0]("sky"), tmp_path / f"{chart.name}.png")
    if not pyplot_loaded:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == [] or pytest.skip("another test left pyplot figures open")


def test_the_empty_chart_is_as_wide_as_a_card():
    assert box(charts.svgbase.empty_svg("x", "nothing"))[0] == CARD_WIDTH
