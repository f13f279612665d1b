"""`netdissect ablate` on the demo model: the join with a dissection run, the page, the link from
the run, bad class folders, a different configuration in --out, and `netdissect demo`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ablation_helpers import write_folders
from netdissect import AblationResult
from netdissect.ablation.compute import pearson
from netdissect.cli import main
from netdissect.labels import display_name
from netdissect.runs.results import LayerResult


def test_join_puts_each_units_label_beside_its_importance(demo_run, capsys):
    _data, run, out = demo_run
    result = AblationResult.load(out)
    layer = LayerResult.load(run / "conv4")
    joined = result.metadata["dissection"]
    assert result.class_names == ["kitchen", "bedroom", "beach", "street", "forest"]
    assert int(result.class_counts.sum()) == 40  # every synthetic image has one scene
    assert [d["unit"] for d in joined["units"]] == list(range(1, 129))
    for d in joined["units"][:20]:
        assert d["label"] == display_name(layer.label_names[layer.label[d["unit"] - 1]])
        assert d["iou"] == pytest.approx(float(layer.score[d["unit"] - 1]), abs=1e-6)
    hits = result.classes_per_unit(5)
    assert [d["top_k_classes"] for d in joined["units"]] == hits.tolist()
    assert hits.sum() == 5 * 5  # five classes with images, five top units each
    iou = np.array([d["iou"] for d in joined["units"]])
    assert joined["pearson_iou_vs_classes"] == pytest.approx(np.corrcoef(iou, hits)[0, 1], abs=1e-5)
    assert joined["pearson_iou_vs_classes"] == pytest.approx(pearson(iou, hits), abs=1e-6)


def test_the_run_links_the_page_and_plots_exist(demo_run):
    _, run, out = demo_run
    pages = json.loads((run / "extra_pages.json").read_text())
    assert pages == [{"title": "Unit ablation · conv4", "path": "../ablation/index.html"}]
    assert (run / pages[0]["path"]).resolve() == (out / "index.html").resolve()
    # the run's report was written before the ablation: its run page links the page now
    assert (
        '<a class="extra-page" href="../ablation/index.html">Unit ablation · conv4</a>'
        in (run / "index.html").read_text()
    )
    page = (out / "index.html").read_text()
    assert "Interpretability against importance" in page
    # unit cards: the unit's first top images from the run report, and its card on the layer page
    layer = LayerResult.load(run / "conv4")
    unit = int(AblationResult.load(out).top_units("kitchen", 1)[0][0])
    first = [f"../run/report-images/{i:06d}.jpg" for i in layer.top_indices[unit - 1, :5]]
    card = page[page.index(f'<div class="unit-card" data-unit="{unit}">') :]
    card = card[: card.index("</a>")]
    assert re.findall(r'class="top-image" src="([^"]+)"', card) == first
    assert f'href="../run/conv4/index.html#unit-{unit}"' in card
    assert all((out / src).is_file() for src in first)
    assert (out / "group_curves.png").stat().st_size > 1000 and (out / "scatter.png").stat().st_size > 1000


def test_cli_prints_the_classes_and_the_correlation(tmp_path, demo_run, capsys):
    data, _run, _ = demo_run
    out = tmp_path / "a"
    args = ["ablate", "--model", "demo", "--layer", "conv4", "--images", str(data), "--out", str(out)]
    args += ["--units", "1-8", "--no-progress", "--device", "cpu", "--top-k", "3", "--no-report"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "kitchen" in printed and "split: fx" in printed
    assert not (out / "index.html").exists()
    assert AblationResult.load(out).units.tolist() == list(range(1, 9))
    # the same --out with other options is refused, then replaced with --overwrite
    assert main([*args[:-1], "--method", "mean"]) == 1
    assert "holds a different ablation" in capsys.readouterr().err
    assert main([*args[:-1], "--method", "mean", "--overwrite"]) == 0
    assert main([*args[:-1], "--estimate", "--overwrite"]) == 0
    estimated = AblationResult.load(out)
    assert estimated.metadata["estimate"] and np.isnan(estimated.accuracy).all()
    assert np.isfinite(estimated.importance).all() and (out / "index.html").exists()


def test_bad_class_folder_names_it_and_close_matches(tmp_path, capsys):
    images = write_folders(tmp_path / "images", {"kitchn": 1, "beach": 1}, size=16)
    code = main(
        ["ablate", "--model", "demo", "--layer", "conv4", "--images", str(images), "--out", str(tmp_path / "o")]
    )
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'kitchn'" in err and "close matches: kitchen" in err


def test_integer_folders_and_class_files(tmp_path, capsys):
    images = write_folders(tmp_path / "images", {"0": 2, "3": 0, "7": 1}, size=16)
    out = str(tmp_path / "o")
    base = ["ablate", "--model", "demo", "--layer", "conv4", "--images", str(images), "--out", out, "--no-progress"]
    # the demo model knows its class names: integer folders do not match them
    assert main(base) == 1 and "'0'" in capsys.readouterr().err
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(str(i) for i in range(5)) + "\n")
    assert main([*base, "--classes", str(classes)]) == 1  # folder 7: no such class
    assert "'7'" in capsys.readouterr().err
    classes.write_text("\n".join(str(i) for i in range(8)) + "\n")
    assert main([*base, "--classes", str(classes)]) == 1  # 8 names, 5 outputs
    assert "8 class names are given, the model has 5 outputs" in capsys.readouterr().err
    (tmp_path / "images" / "7").rename(tmp_path / "images" / "4")
    classes.write_text("\n".join(str(i) for i in range(5)) + "\n")
    assert main([*base, "--classes", str(classes), "--top-k", "2", "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "classes without images: 3" in printed
    result = AblationResult.load(out)
    assert result.class_names == ["0", "3", "4"] and result.class_counts.tolist() == [2, 0, 1]
    assert np.isnan(result.base_accuracy[1]) and np.isnan(result.importance[:, 1]).all()
    assert np.isfinite(result.base_accuracy[[0, 2]]).all()


def test_demo_runs_the_ablation_and_links_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    args = ["demo", "--images", "40", "--out", str(out), "--workers", "0", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert "ablation:" in capsys.readouterr().out
    result = AblationResult.load(out / "ablation")
    assert result.metadata["layer"] == "conv4" and len(result.units) == 128
    assert result.metadata["dissection"]["run"] == str(out.resolve())
    assert json.loads((out / "extra_pages.json").read_text())[0]["path"] == "ablation/index.html"
    # the run page, written before the ablation, links it (rewritten when the ablation page was added)
    assert (
        '<a class="extra-page" href="ablation/index.html">Unit ablation · conv4</a>' in (out / "index.html").read_text()
    )
    assert main([*args, "--no-ablation", "--no-report", "--out", str(tmp_path / "d2")]) == 0
    assert not (tmp_path / "d2" / "ablation").exists()


def test_ablations_and_dissections_keep_to_their_own_directories(demo_run, capsys):
    data, run, out = demo_run
    before = (run / "index.html").read_bytes()
    argv = ["ablate", "--model", "demo", "--layer", "conv4", "--images", str(data), "--no-progress", "--device", "cpu"]
    for target in (run, run / "conv4"):  # a run, or one of its layers
        assert main([*argv, "--out", str(target)]) == 1
        assert "dissection run" in capsys.readouterr().err
    assert (run / "index.html").read_bytes() == before
    dissect_argv = ["dissect", "--model", "demo", "--layers", "conv4", "--dataset", str(data), "--no-progress"]
    assert main([*dissect_argv, "--out", str(out), "--device", "cpu", "--workers", "0"]) == 1
    assert "holds a unit ablation" in capsys.readouterr().err
    assert AblationResult.load(out).units.size == 128


def test_a_wrong_dissection_fails_before_the_ablation_runs(demo_run, tmp_path, capsys):
    data, run, _ = demo_run
    argv = ["ablate", "--model", "demo", "--layer", "conv3", "--images", str(data), "--no-progress", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "abl"), "--dissection", str(run)]) == 1
    err = capsys.readouterr().err
    assert "has no layer 'conv3'" in err and err.count("\n") == 1
    assert not (tmp_path / "abl" / "ablation.npz").exists() and not (tmp_path / "abl" / "checkpoints").exists()
