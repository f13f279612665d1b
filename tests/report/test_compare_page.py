"""Comparing runs: hand-made runs whose labels, detectors and changes are known exactly."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from netdissect.errors import OptionError, RunDirectoryError
from netdissect.report.charts import detectors_per_layer, emergence, unique_detectors
from netdissect.report.compare_page import compare_runs, comparison_data, label_changes
from netdissect.runs.results import DissectionResult, LayerResult

EVIL = "<script>alert(1)</script>"
CATEGORIES = ["color", "object"]  # the page orders them object, color
LABELS = ["-", "dog", "waterfall", "red-c", "<script>"]
LABEL_CATEGORY = np.array([-1, 1, 1, 0, 1])
LABEL = {name: i for i, name in enumerate(LABELS)}
# truth = act = 100 everywhere, so a unit with intersection x on a label has IoU x / (200 - x):
# 50 -> 0.333, 40 -> 0.25, 30 -> 0.176, 20 -> 0.111, 10 -> 0.0526 (a detector), 5 -> 0.0256 (not one)


def iou(x: int) -> float:
    return x / (200 - x)


def make_layer(name: str, units: list[tuple[str, int]]) -> LayerResult:
    """A layer whose unit k (1-based) overlaps only label ``units[k-1][0]``, by ``units[k-1][1]`` pixels."""
    inter = np.zeros((len(units), len(LABELS)), np.int64)
    for u, (label, x) in enumerate(units):
        inter[u, LABEL[label]] = x
    n = len(units)
    return LayerResult(
        layer=name,
        categories=CATEGORIES,
        label_names=LABELS,
        label_category=LABEL_CATEGORY,
        thresholds=np.ones(n, np.float32),
        inter=inter,
        act=np.full((n, len(CATEGORIES)), 100, np.int64),
        truth=np.full(len(LABELS), 100, np.int64),
        top_indices=np.zeros((n, 3), np.int64),
        top_values=np.zeros((n, 3), np.float32),
    )


RUN_A = {
    "conv": [("dog", 50), ("waterfall", 10), ("red-c", 20), ("dog", 5)],
    "fc": [("<script>", 30), ("dog", 40)],
}
RUN_B = {
    "conv": [("waterfall", 50), ("waterfall", 10), ("red-c", 20), ("dog", 10)],
    "fc": [("<script>", 30), ("red-c", 40)],
}
RUN_C = {
    "conv": [("dog", 0), ("dog", 0), ("dog", 0), ("dog", 2)],  # all-zero units get the first category's first label
    "fc": [("dog", 5), ("red-c", 10)],
}


def save_run(directory, layers: dict, model: str = "tiny") -> str:
    DissectionResult({name: make_layer(name, units) for name, units in layers.items()}, {"model": model}).save(
        directory
    )
    return str(directory)


@pytest.fixture
def runs(tmp_path):
    return [save_run(tmp_path / name, layers) for name, layers in (("A", RUN_A), ("B", RUN_B), ("C", RUN_C))]


def test_label_changes_are_exact(runs):
    data = comparison_data(runs[:2])
    changes = data["label_changes"]
    assert changes["available"] and (changes["before"], changes["after"]) == ("A", "B")
    got = {
        layer["layer"]: [
            (
                r["unit"],
                r["before"]["label"],
                r["after"]["label"],
                r["before"]["iou"],
                r["after"]["iou"],
                r["before"]["detector"],
                r["after"]["detector"],
            )
            for r in layer["changes"]
        ]
        for layer in changes["layers"]
    }
    assert got.keys() == {"conv", "fc"}
    assert [row[:3] for row in got["conv"]] == [(1, "dog", "waterfall"), (4, "dog", "dog")]
    assert [row[:3] for row in got["fc"]] == [(2, "dog", "red")]  # "red-c" shown without its suffix
    assert got["conv"][0][3:] == pytest.approx((iou(50), iou(50), True, True))
    assert got["conv"][1][3:] == pytest.approx((iou(5), iou(10), False, True))  # became a detector
    assert got["fc"][0][3:] == pytest.approx((iou(40), iou(40), True, True))
    assert [r["after"]["category"] for r in changes["layers"][1]["changes"]] == ["color"]


def test_label_changes_threshold_override():
    a, b = make_layer("l", RUN_A["conv"]), make_layer("l", RUN_B["conv"])
    # at 0.06, unit 2 (waterfall 0.0526) is no detector in either run, unit 4 (0.0526) stays none
    assert [r["unit"] for r in label_changes(a, b, iou_threshold=0.06)] == [1]
    assert [r["unit"] for r in label_changes(a, b, iou_threshold=0.01)] == [1]  # 0.0256 counts at 0.01
    with pytest.raises(OptionError):
        label_changes(a, make_layer("l", RUN_A["fc"]))


def test_unique_detectors_per_category_are_exact(runs):
    data = comparison_data(runs)
    assert data["categories"] == ["object", "color"]
    got = {
        (r["run"], r["layer"]): (r["unique_by_category"], r["detectors_by_category"], r["unique_detectors"])
        for r in data["rows"]
    }
    assert got == {
        ("A", "conv"): ({"object": 2, "color": 1}, {"object": 2, "color": 1}, 3),
        ("A", "fc"): ({"object": 2, "color": 0}, {"object": 2, "color": 0}, 2),
        ("B", "conv"): ({"object": 2, "color": 1}, {"object": 3, "color": 1}, 3),
        ("B", "fc"): ({"object": 1, "color": 1}, {"object": 1, "color": 1}, 2),
        ("C", "conv"): ({"object": 0, "color": 0}, {"object": 0, "color": 0}, 0),
        ("C", "fc"): ({"object": 0, "color": 1}, {"object": 0, "color": 1}, 1),
    }
    d = data["detectors_per_layer"]
    assert d["layers"] == ["conv", "fc"] and d["runs"] == ["A", "B", "C"]
    assert d["detectors"] == [[3, 2], [4, 2], [0, 1]]
    assert d["units"] == [[4, 2], [4, 2], [4, 2]]
    # more than two runs without --series: no unit table
    assert not data["label_changes"]["available"] and data["label_changes"]["note"]
    assert data["series"] is None


def test_series_data_is_exact(runs):
    data = comparison_data(runs, series=True, labels=["it1", "it2", "it3"])
    series = data["series"]
    assert series["runs"] == ["it1", "it2", "it3"]
    conv, fc = series["layers"]
    assert conv["layer"] == "conv" and fc["layer"] == "fc"
    assert conv["detectors"] == {"object": [2, 3, 0], "color": [1, 1, 0]}
    assert conv["unique"] == {"object": [2, 2, 0], "color": [1, 1, 0]}
    assert conv["detectors_total"] == [3, 4, 0] and conv["unique_total"] == [3, 3, 0]
    assert fc["detectors"] == {"object": [2, 1, 0], "color": [0, 1, 1]}
    assert fc["unique_total"] == [2, 2, 1]
    # a series compares its first and last run unit by unit
    changes = data["label_changes"]
    assert changes["available"] and (changes["before"], changes["after"]) == ("it1", "it3")
    assert [r["unit"] for r in changes["layers"][0]["changes"]] == [
        1,
        2,
        3,
    ]  # lost detectors; unit 4 stays a "dog" non-detector
    svg = emergence.svg(emergence.data(data, "conv"))
    lines = {
        p.get("data-name"): p.get("data-values")
        for p in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}polyline")
    }
    assert lines == {"object": "2,3,0", "color": "1,1,0", "unique detectors": "3,3,0"}


def test_page_pngs_links_and_escaping(runs, tmp_path):
    (tmp_path / "A" / "index.html").write_text("<html></html>")
    out = tmp_path / "cmp"
    index = compare_runs(runs, out, labels=[EVIL, "B", "C"], series=True)
    assert index == out / "index.html"
    html = index.read_text()
    for png in ("unique_detectors.png", "detectors_per_layer.png", "concept_emergence.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'href="{png}"' in html
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the run label
    assert "&lt;script&gt;" in html  # the hostile concept label in the label-change table
    assert 'href="../A/index.html"' in html and 'href="../B/index.html"' not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") == 2 + 2  # unique, detectors, one emergence chart per layer
    data = json.loads((out / "compare.json").read_text())
    assert data["series"]["layers"][0]["detectors_total"] == [3, 4, 0]
    for svg in (
        unique_detectors.svg(unique_detectors.data(data)),
        detectors_per_layer.svg(detectors_per_layer.data(data)),
    ):
        ET.fromstring(svg)  # well-formed with the hostile run name


def test_two_runs_page_has_change_table(runs, tmp_path):
    html = compare_runs(runs[:2], tmp_path / "out").read_text()
    assert html.count('class="change"') == 3
    assert 'data-unit="4"' in html and "gained" in html
    assert not (tmp_path / "out" / "concept_emergence.png").exists()


def test_different_architectures_skip_changes_with_a_note(runs, tmp_path):
    other = save_run(tmp_path / "D", {"conv": RUN_A["conv"][:3], "fc": RUN_A["fc"]})
    data = comparison_data([runs[0], other])
    assert not data["label_changes"]["available"]
    assert "conv" in data["label_changes"]["note"]
    html = compare_runs([runs[0], other], tmp_path / "out").read_text()
    assert 'id="changes-note"' in html
    layers = save_run(tmp_path / "E", {"conv": RUN_A["conv"]})
    note = comparison_data([runs[0], layers])["label_changes"]["note"]
    assert "layer fc only in run A (both have layer conv)" in note
    single = comparison_data([runs[0]], series=True)
    assert single["series"]["layers"][0]["detectors_total"] == [3]


def test_errors(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError, match="summary.json"):
        compare_runs([runs[0], tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(RunDirectoryError, match="does not exist"):
        compare_runs([tmp_path / "missing"], tmp_path / "out")
    with pytest.raises(OptionError):
        compare_runs([], tmp_path / "out")
    with pytest.raises(OptionError):
        compare_runs(runs, tmp_path / "out", labels=["a"])
    with pytest.raises(OptionError):
        compare_runs(runs[:1], tmp_path / "out", iou_threshold=2.0)
    with pytest.raises(OptionError):
        compare_runs(runs[:1], runs[0])
    for error in RunDirectoryError, OptionError:
        assert error.__name__  # one-line messages


def test_cli_compare(runs, tmp_path, capsys):
    from netdissect.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", *[str(r) for r in runs], "--out", str(out), "--series"]) == 0
    assert capsys.readouterr().out.strip() == f"comparison: {(out / 'index.html').resolve()}"
    assert (out / "concept_emergence.png").is_file()
    assert main(["compare", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("netdissect: error:") and len(err.strip().splitlines()) == 1


def test_runs_of_the_same_layer_say_what_differs(tmp_path, tiny_dataset):
    """Two runs of conv4 are never said to have "dissected different layers": the note names what differs."""
    from fake_run import fake_layer, write_fake_run
    from netdissect.data import BrodenDataset

    def note(*directories) -> str:
        changes = comparison_data(list(directories))["label_changes"]
        assert not changes["available"]
        return changes["note"]

    a = write_fake_run(tmp_path / "a", tiny_dataset, units=8, name="conv4")
    same = write_fake_run(tmp_path / "same", tiny_dataset, units=8, name="conv4", seed=1)
    assert comparison_data([a, same])["label_changes"]["available"]
    narrow = write_fake_run(tmp_path / "narrow", tiny_dataset, units=6, name="conv4", seed=1)
    assert note(a, narrow) == (
        "No per-unit label changes: layer conv4 has 8 units in run a and 6 in run narrow; "
        "the unit-by-unit table needs the same units."
    )
    dataset = BrodenDataset(tiny_dataset)
    layers = {name: fake_layer(dataset, 8, name) for name in ("conv1", "conv4")}
    DissectionResult(layers, {"model": "fake"}).save(tmp_path / "demo")  # as `netdissect demo`: conv1 and conv4
    assert note(tmp_path / "demo", a) == (
        "No per-unit label changes: layer conv1 only in run demo (both have layer conv4); "
        "the unit-by-unit table needs the same layers in both runs."
    )
    DissectionResult(dict(reversed(layers.items())), {"model": "fake"}).save(tmp_path / "reversed")
    assert "different layers" not in note(tmp_path / "demo", tmp_path / "reversed")
    assert "run demo lists its layers as conv1, conv4 and run reversed as conv4, conv1" in note(
        tmp_path / "demo", tmp_path / "reversed"
    )
    other = write_fake_run(tmp_path / "other", tiny_dataset, units=8, name="conv3")
    assert note(a, other) == (
        "No per-unit label changes: layer conv4 only in run a; layer conv3 only in run other (no layer in common); "
        "the unit-by-unit table needs the same layers in both runs."
    )
