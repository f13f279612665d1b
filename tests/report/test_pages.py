"""The HTML report: files, numbers, unit cards, bar graph data, self-containment and escaping."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from helpers import rename_label
from netdissect import dissect
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.errors import DatasetError, RunDirectoryError
from netdissect.formulas.terms import UnitFormulas
from netdissect.labels import best_labels, display_name
from netdissect.models import load_model
from netdissect.report import add_extra_page, open_run_dataset, write_report, write_run_page
from netdissect.report.categories import (
    CATEGORY_ORDER,
    bar_data,
    category_colours,
    category_fractions,
    ordered_categories,
)
from netdissect.report.charts import category_fractions as fractions_chart
from netdissect.report.charts import detectors as detectors_chart
from netdissect.report.charts.svgbase import place_in_rows
from netdissect.report.pages import layer_context, render_layer_page, run_context
from netdissect.runs.results import DissectionResult, LayerResult

EVIL = "<script>alert(1)</script>"
LAYERS = ["conv3", "conv4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real dissection of the demo model on a synthetic dataset whose label "rug" (a frequent
    detector there) is renamed to a hostile name; then its report (dataset from the run's metadata)."""
    root = tmp_path_factory.mktemp("report")
    data = make_synthetic_dataset(root / "data", n=24, size=64, seed=0)
    rename_label(data, "rug", EVIL)
    out = root / "run"
    dissect(load_model("demo"), data, LAYERS, out, workers=0, progress=False, device="cpu")
    index = write_report(out, progress=False)
    assert index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def result(run) -> DissectionResult:
    return DissectionResult.load(run)


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text under elements with an id."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in {"img", "input", "meta", "br", "link", "rect", "line"}:
            self._open.append((tag, attrs.get("id")))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, ident in self._open:
            if ident:
                self.text[ident] = self.text.get(ident, "") + data

    def find(self, tag: str | None = None, cls: str | None = None) -> list[dict]:
        return [
            a
            for t, a in self.tags
            if (tag is None or t == tag) and (cls is None or cls in (a.get("class") or "").split())
        ]


def layer_page(run: Path, layer: str) -> str:
    return (run / layer / "index.html").read_text(encoding="utf-8")


def test_files_exist(run, result):
    assert (run / "index.html").stat().st_size > 1000
    assert (run / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in result.layers:
        directory = run / name
        assert (directory / "index.html").is_file()
        assert (directory / "bargraph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        masks = directory / "masks.js"
        assert masks.read_text().startswith("window.NETDISSECT_TILES = {")
        assert not (directory / "strips").exists()
    # each distinct top image once, for all layers
    shown = {int(i) for layer in result.layers.values() for i in layer.top_indices[:, :10].ravel()}
    stored = sorted(p.name for p in (run / "report-images").iterdir())
    assert stored == [".sources.json", *(f"{i:06d}.jpg" for i in sorted(shown))]
    assert not list(run.rglob(".*.tmp*"))  # atomic writes leave no temporary files


@pytest.mark.parametrize("name", LAYERS)
def test_layer_header_has_the_summary_numbers(run, result, name):
    s = result[name].summary()
    page = Elements(layer_page(run, name))
    header = " ".join(page.text["layer-summary"].split())
    assert header == (
        f"{s['detectors']}/{s['units']} units covering {s['unique_detectors']} concepts with IoU >= {s['iou_threshold']:g}"
    )
    assert s["detectors"] > 0  # the test run has detectors to show


@pytest.mark.parametrize("name", LAYERS)
def test_one_card_per_unit_numbered_as_in_tally(run, result, name):
    layer = result[name]
    page = Elements(layer_page(run, name))
    cards = page.find("article", "unit-card")
    assert len(cards) == layer.units
    with open(run / name / "tally.csv", newline="") as f:
        tally = {int(r["unit"]): r for r in csv.DictReader(f)}
    assert sorted(int(c["data-unit"]) for c in cards) == sorted(tally) == list(range(1, layer.units + 1))
    for card in cards:
        row = tally[int(card["data-unit"])]
        assert card["data-label"] == display_name(row["label"])
        assert card["data-category"] == row["category"]
        assert float(card["data-score"]) == pytest.approx(float(row["score"]), abs=1e-5)
        assert card["data-detector"] == ("true" if float(row["score"]) >= layer.iou_threshold else "false")
        assert ("non-detector" in card["class"].split()) == (card["data-detector"] == "false")
    # cards start sorted by score, best first
    scores = [float(c["data-score"]) for c in cards]
    assert scores == sorted(scores, reverse=True)
    # every card names its top images (drawn by the page from report-images/ and masks.js)
    tiles = [t for t in page.find("div", "tiles") if t.get("id") != "viewer-tiles"]
    assert len(tiles) == layer.units
    grid = page.find("div", "units")[0]
    assert grid["data-images"] == "../report-images/"
    masks = json.loads((run / name / "masks.js").read_text().split(" = ", 1)[1].rstrip().rstrip(";"))
    for card in cards:
        unit = int(card["data-unit"])
        indices = [int(i) for i in card["data-images"].split()]
        assert indices == layer.top_indices[unit - 1, :10].tolist()
        assert all((run / "report-images" / f"{i:06d}.jpg").is_file() for i in indices)
        assert all(str(i) in masks["images"] for i in indices)
        assert len(masks["units"][str(unit)]) == 2


@pytest.mark.parametrize("name", LAYERS)
def test_bar_data_counts_detectors_per_label_in_category_order(result, name):
    layer = result[name]
    bars = bar_data(layer)
    expected = Counter(int(label) for label in layer.label[layer.detectors])
    assert sum(n for _, _, n in bars) == int(layer.detectors.sum())
    assert Counter({display_name(layer.label_names[k]): n for k, n in expected.items()}) == Counter(
        {label: n for _, label, n in bars}
    )
    for category, label, _n in bars:
        number = next(k for k in expected if display_name(layer.label_names[k]) == label)
        assert category == layer.categories[layer.label_category[number]]
    # grouped by category in the report's order, most detectors first within a group
    order = [c for c in CATEGORY_ORDER if c in layer.categories]
    cats = [c for c, _, _ in bars]
    assert cats == sorted(cats, key=order.index)
    for c in set(cats):
        counts = [n for cc, _, n in bars if cc == c]
        assert counts == sorted(counts, reverse=True)
    # the page's inline bar graph draws exactly these bars
    svg = re.search(r"<svg[^>]*class=\"bar-graph\".*?</svg>", layer_context(layer, {})["bar_graph"], re.S).group(0)
    rects = [r for r in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]
    assert [(r.get("data-category"), r.get("data-label"), int(r.get("data-count"))) for r in rects] == bars


def test_next_best_labels_are_the_top_other_labels(result):
    layer = result["conv4"]
    units = {u["unit"]: u for u in layer_context(layer, {})["units"]}
    for u in range(layer.units):
        iou = layer.iou[u].copy()
        iou[0] = iou[layer.label[u]] = -1
        best = [k for k in np.argsort(-iou, kind="stable")[:3] if iou[k] > 0]
        shown = units[u + 1]["next_best"]
        assert [n["label"] for n in shown] == [display_name(layer.label_names[k]) for k in best]


def test_run_page_tables_and_links(run, result):
    text = (run / "index.html").read_text(encoding="utf-8")
    page = Elements(text)
    for name, layer in result.layers.items():
        s = layer.summary()
        assert {"href": f"{name}/index.html"} in [{"href": a.get("href")} for a in page.find("a")]
        row = re.search(rf'<tr data-layer="{name}">(.*?)</tr>', text, re.S).group(1)
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        categories = ordered_categories(layer.categories)
        assert cells[1:] == [
            str(s["units"]),
            str(s["detectors"]),
            f"{100 * s['detectors'] / s['units']:.1f}%",
            str(s["unique_detectors"]),
            str(s["unique_detectors_by_category_sum"]),
            *(str(s["detectors_by_category"][c]) for c in categories),
        ]
    for key in ("demo", result.metadata["dataset"]["path"], "quantile", "iou_mode", "torch", "pass1"):
        assert key in text
    svg = re.search(r"<svg[^>]*class=\"fractions-chart\".*?</svg>", text, re.S).group(0)
    segments = [r for r in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "segment"]
    assert len(segments) == sum(
        1 for layer in result.layers.values() for n in layer.summary()["detectors_by_category"].values() if n
    )


def test_pages_are_self_contained(run):
    for path in [run / "index.html", *(run / name / "index.html" for name in LAYERS)]:
        text = path.read_text(encoding="utf-8")
        page = Elements(text)
        assert not page.find("link")  # no external stylesheets
        assert all("src" not in a for a in page.find("script"))  # inline scripts only
        for tag, attrs in page.tags:
            for key in ("src", "href"):
                value = attrs.get(key) or ""
                assert not re.match(r"(https?:)?//", value), (path, tag, value)
        assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text)
        assert "<style>" in text


def test_hostile_label_is_escaped_everywhere(run, result):
    assert any(EVIL in layer.label_names for layer in result.layers.values())
    shown = False
    for path in [run / "index.html", *(run / name / "index.html" for name in LAYERS)]:
        text = path.read_text(encoding="utf-8")
        assert "<script>alert" not in text
        assert text.count("<script") == (1 if path != run / "index.html" else 0)  # only our own script
        page = Elements(text)
        labels = [a.get("data-label") for a in page.find("article", "unit-card")]
        shown |= EVIL in labels  # rendered as a label, i.e. escaped text
    assert shown
    for name in LAYERS:  # also in the SVG bar graph, which must stay valid XML
        svg = detectors_chart.svg(detectors_chart.data(bar_data(result[name])))
        ET.fromstring(svg)
        assert "<script" not in svg


def test_bar_graph_svg_is_xml_with_one_bar_per_label():
    bars = [("object", "sky", 5), ("object", "tree & bush", 2), ("part", 'a "quoted" <b>', 1), ("color", "red", 1)]
    svg = detectors_chart.svg(detectors_chart.data(bars, ["color", "object", "part"]))
    root = ET.fromstring(svg)
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]
    assert [r.get("data-label") for r in rects] == [label for _, label, _ in bars]
    heights = [float(r.get("height")) for r in rects]
    assert heights[0] == pytest.approx(2.5 * heights[1]) and heights[2] == pytest.approx(heights[3])
    colours = category_colours(["object", "part", "color"])
    assert [r.get("fill") for r in rects] == [colours[c] for c, _, _ in bars]
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "object" in texts and "part" in texts and 'a "quoted" <b>' in texts
    ET.fromstring(detectors_chart.svg(detectors_chart.data([])))  # no detectors: still a valid picture


def test_category_fractions_svg_is_xml():
    data = {
        "categories": ["object", "part", "new<cat>"],
        "layers": [
            {
                "layer": "layer<1>",
                "units": 10,
                "counts": {"object": 2, "part": 1, "new<cat>": 0},
                "fractions": {"object": 0.2, "part": 0.1, "new<cat>": 0.0},
            },
            {
                "layer": "layer2",
                "units": 10,
                "counts": {"object": 0, "part": 3, "new<cat>": 1},
                "fractions": {"object": 0.0, "part": 0.3, "new<cat>": 0.1},
            },
        ],
    }
    root = ET.fromstring(fractions_chart.svg(fractions_chart.data(data)))
    segments = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "segment"]
    assert [(r.get("data-layer"), r.get("data-category")) for r in segments] == [
        ("layer<1>", "object"),
        ("layer<1>", "part"),
        ("layer2", "part"),
        ("layer2", "new<cat>"),
    ]
    assert ET.fromstring(fractions_chart.svg(fractions_chart.data({"fractions": data}))) is not None


def test_category_order_and_colours():
    assert ordered_categories(["color", "weird", "object", "part", "texture", "extra"]) == [
        "object",
        "part",
        "texture",
        "color",
        "weird",
        "extra",
    ]
    colours = category_colours(["color", "weird", "object", "extra"])
    assert colours["object"] == category_colours(["object"])["object"]  # fixed per name
    assert len(set(colours.values())) == 4


def test_place_in_rows_staggers_overlapping_labels():
    assert place_in_rows([(0, 5), (20, 5), (40, 5)]) == [0, 0, 0]
    assert place_in_rows([(0, 10), (12, 10), (24, 10)]) == [0, 1, 0]


def test_missing_dataset_is_one_clear_line(tmp_path):
    gone = tmp_path / "moved-away"
    result = DissectionResult({}, {"dataset": {"path": str(gone), "images": 3, "first_row": 1, "last_row": 3}})
    with pytest.raises(DatasetError) as info:
        open_run_dataset(result)
    message = str(info.value)
    assert str(gone) in message and "--dataset" in message and "\n" not in message
    with pytest.raises(RunDirectoryError):
        write_report(tmp_path / "no-run", progress=False)


def test_dataset_with_other_rows_is_refused(run, result, tmp_path):
    other = make_synthetic_dataset(tmp_path / "small", n=6, size=32, seed=1)
    with pytest.raises(DatasetError, match="does not match the run"):
        open_run_dataset(result, other)


def test_large_layer_page_stays_small():
    """2,048 units: every card is rendered server-side (its images drawn by the page) and each
    costs only a few kB of HTML."""
    rng = np.random.default_rng(0)
    units, labels, categories = 2048, 60, ["color", "object", "part", "material", "scene", "texture"]
    label_category = np.r_[-1, np.arange(labels - 1) % len(categories)]
    truth = rng.integers(50, 500, labels)
    act = rng.integers(50, 500, (units, len(categories)))
    inter = np.minimum(rng.integers(0, 120, (units, labels)), truth)
    inter = np.minimum(inter, act[:, np.maximum(label_category, 0)])
    layer = LayerResult(
        layer="layer4",
        categories=categories,
        label_names=["-", *(f"label{i}" for i in range(1, labels))],
        label_category=label_category,
        thresholds=np.ones(units, np.float32),
        inter=inter,
        act=act,
        truth=truth,
        top_indices=np.zeros((units, 5), np.int64),
        top_values=np.zeros((units, 5), np.float32),
    )
    tiles = {u: list(range(10)) for u in range(1, units + 1)}
    html = render_layer_page(layer_context(layer, tiles))
    assert html.count('class="unit-card') == units
    assert len(html) < 4_000 * units  # a few kB per card


def test_run_context_without_layers_metadata():
    context = run_context(DissectionResult({}, {}))
    assert context["layers"] == [] and category_fractions(DissectionResult({}, {}))["layers"] == []


def test_a_run_read_without_maps_gives_the_same_pages(run, result):
    """The run page reads the run without its activation maps (``maps=False``): only ``top_maps``
    differs (tests/runs/test_layout.py compares a loaded run with the dissection's own results)."""
    light = DissectionResult.load(run, maps=False)
    assert list(light.layers) == list(result.layers) and light.directory == result.directory == run
    for name, layer in result.layers.items():
        assert light[name].top_maps is None and layer.top_maps is not None
        assert layer_context(light[name], {}, model="demo") == layer_context(layer, {}, model="demo")
    assert run_context(light) == run_context(result)


def test_best_labels_ties_go_to_the_smaller_label():
    iou = np.array([[0.0, 0.5, 0.5, 0.2], [0.0, 0.1, 0.3, 0.3]])
    labels, scores = best_labels(iou, np.array([-1, 0, 0, 1]), 3)
    assert labels.tolist() == [[1, 3, 0], [2, 3, 0]]
    assert scores.tolist() == [[0.5, 0.2, 0.0], [0.3, 0.3, 0.0]]


def test_card_shows_the_units_formula(result):
    """Runs with formulas (--formula-length > 1): a card shows its unit's formula and its IoU, escaped."""
    layer = result["conv4"]
    names, units = layer.label_names, layer.units
    terms: list = [()] * units
    terms[4] = ((None, 1), ("or", 2), ("andnot", names.index(EVIL)))
    formulas = UnitFormulas(terms, np.full(units, 0.1234), np.zeros(units, np.int64), np.zeros(units))
    html = render_layer_page(layer_context(dataclasses.replace(layer, formulas=formulas), {5: [0, 1]}))
    text = f"(({names[1]} OR {names[2]}) AND NOT {EVIL})"
    page = Elements(html)
    card = next(a for a in page.find("article", "unit-card") if a["data-unit"] == "5")
    assert card["data-formula"] == text
    assert f'formula: <span class="mono">{escape(text)}</span> <span class="v">IoU 0.123</span>' in html
    assert html.count('class="formula"') == 1  # only the unit that has one


def test_rebuild_of_an_old_report_and_extra_pages(run, tmp_path):
    """An old-format report (per-unit strips/) is replaced; pages other tools add are linked."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "report-images")
    (copy / "conv4" / "masks.js").unlink()
    (copy / "conv4" / "strips").mkdir()
    (copy / "conv4" / "strips" / "unit_0001.jpg").write_bytes(b"old")
    (copy / "ablation").mkdir()
    (copy / "ablation" / "index.html").write_text("<html><head><title>Ablation &amp; more</title></head></html>")
    (copy / "conv4" / "ablation").mkdir()
    (copy / "conv4" / "ablation" / "index.html").write_text("<title>conv4 ablation</title>")
    write_report(copy, progress=False)
    assert not (copy / "conv4" / "strips").exists()
    assert (copy / "conv4" / "masks.js").is_file() and (copy / "report-images").is_dir()
    links = {a["href"]: a for a in Elements((copy / "index.html").read_text()).find("a", "extra-page")}
    assert set(links) == {"ablation/index.html"}
    assert "Ablation &amp; more" in (copy / "index.html").read_text()
    layer_links = [a["href"] for a in Elements((copy / "conv4" / "index.html").read_text()).find("a", "extra-page")]
    assert layer_links == ["ablation/index.html"]
    # a page added later is linked by rewriting only the run page
    (copy / "notes").mkdir()
    (copy / "notes" / "index.html").write_text("<title>Notes</title>")
    write_run_page(copy)
    hrefs = [a["href"] for a in Elements((copy / "index.html").read_text()).find("a", "extra-page")]
    assert hrefs == ["ablation/index.html", "notes/index.html", "ablation/index.html", "notes/index.html"]


def test_listed_pages_are_validated_escaped_and_linked_without_a_rebuild(run, tmp_path):
    """extra_pages.json: valid entries whose page exists are linked (inside or outside the run, the
    layer's from its layer page too); malformed ones are ignored; add_extra_page relinks at once."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    outside = tmp_path / "elsewhere" / "page.html"
    outside.parent.mkdir()
    outside.write_text("<title>x</title>")
    (copy / "conv4" / "causal.html").write_text("<title>c</title>")
    entries = [
        {"title": "<script>alert(1)</script> outside", "path": "../elsewhere/page.html"},
        {"title": "Causal effects: conv4", "path": "conv4/causal.html"},
        {"title": "missing page", "path": "nowhere/index.html"},
        {"title": "a URL", "path": "javascript:alert(1)"},
        {"title": "absolute", "path": str(outside)},
        {"title": "", "path": "conv4/causal.html"},
        {"title": 3, "path": "conv4/causal.html"},
        "not an entry",
        {"path": "conv4/causal.html"},
    ]
    (copy / "extra_pages.json").write_text(json.dumps(entries))
    write_report(copy, progress=False)
    html = (copy / "index.html").read_text()
    links = [a["href"] for a in Elements(html).find("a", "extra-page")]
    assert links == ["../elsewhere/page.html", "conv4/causal.html"] * 2  # the top bar and the list
    assert html.count(">Causal effects: conv4</a>") == 2
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; outside" in html
    layer_links = [a["href"] for a in Elements((copy / "conv4" / "index.html").read_text()).find("a", "extra-page")]
    assert layer_links == ["causal.html"]
    for bad in ("[", '{"title": "t"}', "null"):  # a damaged file: no link, no crash
        (copy / "extra_pages.json").write_text(bad)
        write_run_page(copy)
        assert not Elements((copy / "index.html").read_text()).find("a", "extra-page")
    # a tool adding its page: listed (relative to the run) and linked without rebuilding the report
    stamp = (copy / "conv4" / "index.html").stat().st_mtime_ns
    add_extra_page(copy, "Outside & more", outside)
    assert json.loads((copy / "extra_pages.json").read_text())[-1] == {
        "title": "Outside & more",
        "path": "../elsewhere/page.html",
    }
    assert [a["href"] for a in Elements((copy / "index.html").read_text()).find("a", "extra-page")] == [
        "../elsewhere/page.html"
    ] * 2
    assert (copy / "conv4" / "index.html").stat().st_mtime_ns == stamp


def test_report_process_does_not_import_torch(run, tmp_path):
    """Rebuilding a report, or its run page alone, never imports torch (its import alone costs more
    than a small report)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    code = (
        "import sys; from netdissect.report import write_report, write_run_page; "
        f"write_report({str(copy)!r}, progress=False); write_run_page({str(copy)!r}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pages_linked_at_the_same_time_are_all_listed(tmp_path):
    """Tools that link pages to one run concurrently (two ablations, a generator) lose none."""
    import threading

    from netdissect.report.extra import read_extra_pages

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pages = []
    for k in range(12):
        page = tmp_path / f"tool{k}" / "index.html"
        page.parent.mkdir()
        page.write_text("<title>t</title>")
        pages.append(page)
    threads = [
        threading.Thread(target=add_extra_page, args=(run_dir, f"tool {k}", page)) for k, page in enumerate(pages)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listed = json.loads((run_dir / "extra_pages.json").read_text())
    assert sorted(entry["title"] for entry in listed) == sorted(f"tool {k}" for k in range(12))
    assert len(read_extra_pages(run_dir)) == 12
