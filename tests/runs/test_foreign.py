"""import-results: other tools' per-unit CSVs read as run directories."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
import textwrap
from pathlib import Path

import pytest
from markupsafe import escape

from helpers import RAW, LookupNet, write_planted_dataset
from netdissect import BrodenDataset, DissectionResult, dissect, import_results
from netdissect.cli import main
from netdissect.errors import DatasetError, RunDirectoryError
from netdissect.runs.foreign import CONVENTIONS, NETDISSECT_THRESHOLD, SOURCE_FILE

OPTIONS = dict(quantile=0.3, workers=0, progress=False, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def own_run(tmp_path_factory) -> Path:
    """A real small dissection: 3 planted object units, a scene unit and 6 noise units."""
    root = tmp_path_factory.mktemp("own")
    maps = write_planted_dataset(root / "ds", n=15, random_units=6)
    dissect(LookupNet(maps), BrodenDataset(root / "ds", preprocess=RAW), ["layer"], root / "run", **OPTIONS)
    return root / "run"


def csv_counts(path: Path, threshold: float = 0.04) -> tuple[int, int]:
    """Detectors and unique detectors (distinct best labels) counted straight from a tally.csv."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["score"]) >= threshold]
    return len(rows), len({(r["category"], r["label"]) for r in rows})


def test_lite_tally_round_trips(own_run, tmp_path, capsys):
    tally = own_run / "layer" / "tally.csv"
    out = tmp_path / "imported"
    assert main(["import-results", str(tally), "--layer", "layer", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(format lite)" in printed and CONVENTIONS["lite"] in printed

    mine, theirs = DissectionResult.load(own_run), DissectionResult.load(out)
    detectors, unique = csv_counts(tally)
    assert 0 < detectors < mine["layer"].units  # the noise units make the count non-trivial
    s = theirs.summary()["layer"]
    assert (s["detectors"], s["unique_detectors"]) == (detectors, unique)
    assert s == mine.summary()["layer"]  # every count, both unique conventions, per category
    assert (out / "layer" / "tally.csv").read_bytes() == tally.read_bytes()  # the same table written back
    assert (out / "layer" / SOURCE_FILE).read_bytes() == tally.read_bytes()
    meta = theirs.metadata
    assert meta["format"] == "lite" and meta["convention"] == CONVENTIONS["lite"]
    assert meta["imported_from"] == {"layer": str(tally.resolve())}
    assert meta["model"] == "layer"  # tally.csv: named after its directory
    assert json.loads((out / "run.json").read_text())["state"] == "done"


def test_compare_reads_an_imported_run_unchanged(own_run, tmp_path):
    from netdissect.report.compare_page import compare_runs

    out = tmp_path / "published"
    import_results(own_run / "layer" / "tally.csv", "layer", out, model="published")
    assert main(["compare", str(own_run), str(out), "--out", str(tmp_path / "cmp")]) == 0
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    mine, published = data["rows"]
    assert mine["unique_by_category"] == published["unique_by_category"]
    assert mine["detectors"] == published["detectors"] > 0
    assert data["label_changes"]["available"] and data["label_changes"]["layers"][0]["changes"] == []
    assert data["runs"][1]["model"] == "published"
    assert compare_runs([own_run, out], tmp_path / "cmp2").is_file()


def test_report_of_an_imported_run_names_its_source_without_images(own_run, tmp_path, capsys):
    """`netdissect report` on imported results: pages and charts, no dataset and no images; the
    pages name the source file, its format and its detector convention."""
    original = tmp_path / "conv5-result.csv"
    original.write_text(ORIGINAL)
    out = tmp_path / "paper"
    import_results(original, "conv5", out, model="alexnet <places365>")
    assert main(["report", str(out), "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out
    run_page = (out / "index.html").read_text()
    assert str(original.resolve()) in run_page and escape(CONVENTIONS["netdissect"]) in run_page
    assert "format <b>netdissect</b>" in run_page and "alexnet &lt;places365&gt;" in run_page
    layer_page = (out / "conv5" / "index.html").read_text()
    assert 'id="imported"' in layer_page and str(original.resolve()) in layer_page
    assert escape(CONVENTIONS["netdissect"]) in layer_page
    assert "2/4 units covering 2 concepts" in layer_page  # the original's IoU > 0.04 convention
    assert 'data-images="' not in layer_page.replace('data-images="../report-images/"', "")  # no unit shows images
    assert 'script.src = "masks.js"' not in layer_page and not (out / "conv5" / "masks.js").exists()
    assert not any((out / "report-images").glob("*"))
    for png in (out / "summary.png", out / "conv5" / "bargraph.png"):
        assert png.stat().st_size > 1000
    # a Lite import of a real run, next to the run's own report
    lite = tmp_path / "lite"
    import_results(own_run / "layer" / "tally.csv", "layer", lite)
    assert main(["report", str(lite), "--no-progress"]) == 0
    assert escape(CONVENTIONS["lite"]) in (lite / "index.html").read_text()
    mine = DissectionResult.load(own_run)["layer"].summary()
    assert f"{mine['detectors']}/{mine['units']} units" in (lite / "layer" / "index.html").read_text()


def test_compare_shows_both_unique_detector_conventions_per_category(own_run, tmp_path):
    """An original-format import (where unit 3 also reaches 0.04 with another texture label than its
    best) next to a real run: compare.json and the page carry both conventions, per category."""
    path = tmp_path / "conv5-result.csv"
    path.write_text(
        ORIGINAL.replace("3,object,dog,0.2,dog,100,60,32,0.2,striped", "3,object,dog,0.2,dog,100,60,32,0.2,dotted")
    )
    paper = tmp_path / "paper"
    import_results(path, "layer", paper)
    assert main(["compare", str(own_run), str(paper), "--out", str(tmp_path / "cmp")]) == 0
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    mine, imported = data["rows"]
    # by best label: texture {striped (unit 1)}; per category: texture {striped, dotted (unit 3's texture best)}
    assert {c: n for c, n in imported["unique_by_category"].items() if n} == {"object": 1, "texture": 1}
    assert {c: n for c, n in imported["unique_by_category_sum"].items() if n} == {"object": 1, "texture": 2}
    assert (imported["unique_detectors"], imported["unique_detectors_by_category_sum"]) == (2, 3)
    summary = json.loads((own_run / "summary.json").read_text())["layers"]["layer"]
    assert mine["unique_by_category_sum"] == {
        c: summary["unique_detectors_by_category"].get(c, 0) for c in data["categories"]
    }
    assert mine["unique_detectors_by_category_sum"] == summary["unique_detectors_by_category_sum"]
    assert mine["unique_detectors"] == summary["unique_detectors"]
    page = (tmp_path / "cmp" / "index.html").read_text()
    row = page[page.index('<tr data-run="paper" data-layer="layer">') :]
    row = row[: row.index("</tr>")]
    assert re.findall(
        r'data-category="(\w+)"[^>]*><span class="unique-best">(\d+)</span> <span class="muted unique-sum">/ (\d+)</span>',
        row,
    ) == [
        (c, str(imported["unique_by_category"].get(c, 0)), str(imported["unique_by_category_sum"].get(c, 0)))
        for c in data["categories"]
    ]
    assert '<td class="unique-sum">3</td>' in row


# A hand-written original NetDissect per-unit CSV (its column layout, two categories).
ORIGINAL = """\
unit,category,label,score,object-label,object-truth,object-activation,object-intersect,object-iou,\
texture-label,texture-truth,texture-activation,texture-intersect,texture-iou
3,object,dog,0.2,dog,100,60,32,0.2,striped,50,40,4,0.04347826086956522
1,texture,striped,0.05,dog,100,30,6,0.0242718,striped,50,40,4.0,0.05
4,object,car,0.04,car,80,20,4,0.04,dotted,60,10,2,0.0294118
2,object,dog,0.039,dog,100,90,7,0.039,,24924928,41006,41006,0.00164518
"""


def test_original_netdissect_csv_and_its_convention(tmp_path):
    path = tmp_path / "conv5-result.csv"
    path.write_text(ORIGINAL)
    result = import_results(path, "conv5", tmp_path / "run")
    layer = result["conv5"]
    assert result.metadata["format"] == "netdissect"  # detected: per-category columns, not tally.csv
    assert result.metadata["convention"] == CONVENTIONS["netdissect"]
    assert layer.iou_threshold == NETDISSECT_THRESHOLD
    assert [layer.label_names[k] for k in layer.label] == ["striped", "dog", "dog", "car"]
    # IoU > 0.04: units 1 (striped .05) and 3 (dog .2); unit 4 (car, exactly .04) is not a detector
    assert layer.detectors.tolist() == [True, False, True, False]
    s = layer.summary()
    assert (s["detectors"], s["unique_detectors"]) == (2, 2)
    # per category: object {dog (unit 3)}, texture {striped (units 1 and 3: .0435 > .04)}
    assert s["unique_detectors_by_category"] == {"object": 1, "texture": 1}
    assert s["unique_detectors_by_category_sum"] == 2
    assert layer.category_iou[1].tolist() == [0.039, 0.0]  # unit 2's empty texture label: no concept
    # the counts behind the IoU are kept: unit 3's dog intersection, activation and truth
    dog = layer.label_names.index("dog")
    assert (layer.inter[2, dog], layer.act[2, 0], layer.truth[dog]) == (32, 60, 100)

    # the same file counted with Lite's convention (IoU >= 0.04): unit 4 (car .04) counts
    lite = import_results(path, "conv5", tmp_path / "lite", format="lite")["conv5"]
    assert lite.detectors.tolist() == [True, False, True, True]
    assert lite.summary()["unique_detectors"] == 3


def test_minimal_lite_table_and_several_layers(tmp_path):
    path = tmp_path / "tally.csv"
    path.write_text("unit,category,label,score\n2,object,car,0.1\n1,scene,street-s,0.05\n3,object,car,0.01\n")
    out = tmp_path / "run"
    assert main(["import-results", str(path), "--layer", "layer4", "--out", str(out), "--model", "r18"]) == 0
    other = tmp_path / "l3.csv"
    other.write_text("unit,category,label,score\n1,object,car,0.3\n")
    assert main(["import-results", str(other), "--layer", "layer3", "--out", str(out), "--format", "lite"]) == 0
    run = DissectionResult.load(out)
    assert list(run.layers) == ["layer4", "layer3"] and run.metadata["model"] == "r18"
    layer4 = run["layer4"]
    assert layer4.summary()["detectors"] == 2 and layer4.summary()["unique_detectors"] == 2
    assert layer4.units == 3 and layer4.top_indices.shape == (3, 0)
    assert set(run.metadata["imported_from"]) == {"layer4", "layer3"}
    # a layer imported again is replaced
    path.write_text("unit,category,label,score\n1,object,car,0.01\n")
    import_results(path, "layer4", out)
    again = DissectionResult.load(out)
    assert list(again.layers) == ["layer4", "layer3"] and again["layer4"].units == 1
    assert again["layer4"].summary()["detectors"] == 0 and again["layer3"].summary()["detectors"] == 1
    # an original-format file does not join a Lite run: the conventions would mix
    original = tmp_path / "conv5-result.csv"
    original.write_text(ORIGINAL)
    with pytest.raises(RunDirectoryError, match="imported as 'lite'"):
        import_results(original, "conv5", out)


def test_a_dissection_run_is_not_overwritten(own_run, tmp_path):
    before = (own_run / "run.json").read_bytes()
    with pytest.raises(RunDirectoryError, match="holds a dissection run"):
        import_results(own_run / "layer" / "tally.csv", "other", own_run)
    # nor one that has not finished (no summary.json yet)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_bytes(before)
    with pytest.raises(RunDirectoryError, match="holds a dissection run"):
        import_results(own_run / "layer" / "tally.csv", "other", unfinished)
    assert (unfinished / "run.json").read_bytes() == before


HEADER = "unit,category,label,score,object-label,object-iou\n"


@pytest.mark.parametrize(
    "body, where, message",
    [
        ("1,object,dog,0.2,dog\n", "row 2", "5 fields, the header has 6"),
        ("1,object,dog,0.2,dog,0.2\nx,object,dog,0.1,dog,0.1\n", "row 3", "unit 'x' is not a unit number"),
        ("1,object,dog,0.2,dog,0.2\n1,object,dog,0.1,dog,0.1\n", "row 3", "unit 1 appears twice"),
        ("1,object,dog,high,dog,0.2\n", "row 2", "score 'high' is not a number"),
        ("1,object,dog,1.5,dog,1.5\n", "row 2", "above 1"),
        ("1,object,dog,0.2,cat,0.2\n", "row 2", "disagrees with its object- columns"),
        ("1,scene,park-s,0.2,dog,0.2\n", "row 2", "category 'scene' has no scene-label"),
        ("2,object,dog,0.2,dog,0.2\n", "", "unit 1 is missing"),
        ("", "", "has a header but no units"),
    ],
)
def test_malformed_rows_stop_with_one_line(tmp_path, capsys, body, where, message):
    path = tmp_path / "bad-result.csv"
    path.write_text(HEADER + body)
    with pytest.raises(DatasetError, match=message) as info:
        import_results(path, "conv5", tmp_path / "run")
    assert str(info.value).startswith(f"{path} {where}".rstrip() if where else str(path))
    assert not (tmp_path / "run").exists()  # nothing written
    assert main(["import-results", str(path), "--layer", "conv5", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("netdissect: error: ") and message in err


def test_not_a_result_table(tmp_path):
    path = tmp_path / "index.csv"
    path.write_text("image,split,ih,iw\nim0.jpg,train,8,8\n")
    with pytest.raises(DatasetError, match=rf"{path} row 1: the header lacks column\(s\) unit, category, label, score"):
        import_results(path, "x", tmp_path / "run")
    with pytest.raises(DatasetError, match="does not exist"):
        import_results(tmp_path / "missing.csv", "x", tmp_path / "run")


DOCS = Path(__file__).parents[2] / "docs" / "published-results.md"


def documented(kind: str) -> list[str]:
    """The ``kind`` (bash, python) code blocks of docs/published-results.md, lines joined."""
    blocks = re.findall(rf"```{kind}\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [textwrap.dedent(b).replace("\\\n", " ") for b in blocks]


def test_the_documented_commands_run(own_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tally = own_run / "layer" / "tally.csv"
    for path, text in {
        "result/pytorch_resnet18_places365/tally.csv": tally.read_text().replace(",layer,", ",layer4,"),
        "plot/caffe_reference_places365.csv": ORIGINAL,
        "conv5-result.csv": ORIGINAL,
    }.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    shutil.copytree(own_run, "runs/r18-places365")
    (Path("runs/r18-places365") / "layer").rename("runs/r18-places365/layer4")
    (Path("runs/r18-places365") / "summary.json").write_text(
        (Path("runs/r18-places365") / "summary.json").read_text().replace('"layer"', '"layer4"')
    )
    ran = []
    for block in documented("bash"):
        for line in filter(None, (line.strip() for line in block.splitlines())):
            argv = shlex.split(line)
            assert argv[0] == "netdissect"
            if argv[1] == "dissect":  # needs the Caffe weights and Broden: stand in with the paper's import
                out = argv[argv.index("--out") + 1]
                assert main(["import-results", "conv5-result.csv", "--layer", "conv5", "--out", out]) == 0
                continue
            assert main(argv[1:]) == 0, line
            ran.append(argv[1])
    assert ran.count("import-results") == 2 and ran.count("compare") == 2
    assert Path("compare/alexnet/index.html").is_file()
    for block in documented("python"):
        exec(block, {})
    assert DissectionResult.load("runs/paper-alexnet").metadata["model"] == "alexnet-places365"
