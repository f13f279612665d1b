"""netdissect explain on the command line: the outputs, rewriting them, and one-line errors that write nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from explain_helpers import ColourUnits, colour_run, write_image, write_run, write_sizes

from helpers import folder_digest as digest
from helpers import one_line_error as one_line
from netdissect.cli import main
from netdissect.explain.result import read_segmentation

RECTS = {"red": (0, 8, 0, 8), "green": (9, 15, 2, 8), "yellow": (10, 14, 10, 15)}


@pytest.fixture
def planted(tmp_path):
    """``(run, image, out)``: the planted colour run (its model loads by its recorded SPEC) and an image."""
    run = colour_run(tmp_path)
    write_image(tmp_path / "img.png", RECTS)
    write_image(tmp_path / "img2.png", {"green": (0, 16, 0, 16)})
    return run, tmp_path / "img.png", tmp_path / "out"


def argv(run: Path, images: list[Path], out: Path, *extra: str) -> list[str]:
    return ["explain", "--run", str(run), "--images", *map(str, images), "--out", str(out), "--device", "cpu", *extra]


def test_explain_writes_json_pngs_and_page(planted, tmp_path, capsys):
    run, image, out = planted
    classes = tmp_path / "classes.txt"
    classes.write_text("red\ngreen\nblue\n")
    assert main(argv(run, [image, tmp_path / "img2.png"], out, "--top-units", "3", "--classes", str(classes))) == 0
    printed = capsys.readouterr().out
    assert "img.png: red (" in printed and "img2.png: green (" in printed
    assert "segmentation: red 25%, green 14%, warm 8%" in printed
    record = json.loads((out / "explain.json").read_text())
    first, second = record["images"]
    assert first["image"] == str(image) and first["layer"] == "features"
    assert [p["class"] for p in first["predictions"]] == ["red", "green", "blue"]
    assert set(first["predictions"][0]) >= {"class", "probability"}
    assert first["segmentation"] == "seg-0.png" and second["segmentation"] == "seg-1.png"
    assert first["legend"] == {"1": "red", "2": "green", "3": "warm"}
    assert [u["unit"] for u in first["units"]] == [1, 3, 4]  # red's unit; then no effect (ties by number)
    assert set(first["units"][0]) >= {"unit", "label", "iou", "effect"}
    assert first["units"][0]["label"] == "red" and first["units"][0]["iou"] == pytest.approx(0.2)
    for unit in first["units"]:
        assert (out / unit["mask"]).is_file()
    seg = read_segmentation(out / "seg-1.png")
    assert (seg == 1).all() and second["legend"] == {"1": "green"}  # all green
    with np.load(out / "explain.npz") as z:
        assert z["effects"].shape == (2, 4) and z["probabilities"].shape == (2, 3)
        assert z["effects"][0, 0] == pytest.approx(first["units"][0]["effect"])
    page = (out / "index.html").read_text()
    assert "seg-0.png" in page and "mask-0-1.png" in page and "img2.png" in page
    assert json.loads((out / "netdissect.json").read_text()) == {"kind": "explanation"}
    # the run (no report of its own) lists the page for its report
    pages = json.loads((run / "extra_pages.json").read_text())
    assert pages == [{"title": "Explained images · features", "path": "../out/index.html"}]


def test_explain_again_rewrites_and_no_report_removes_the_page(planted, tmp_path, capsys):
    run, image, out = planted
    assert main(argv(run, [image, tmp_path / "img2.png"], out)) == 0
    assert (out / "seg-1.png").is_file() and (out / "index.html").is_file()
    assert main(argv(run, [tmp_path / "img2.png"], out, "--no-report")) == 0
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert "seg-1.png" not in names and "index.html" not in names and "image-1.png" not in names
    assert not any(n.startswith("mask-1-") for n in names)
    record = json.loads((out / "explain.json").read_text())
    assert [r["image"] for r in record["images"]] == [str(tmp_path / "img2.png")]


def test_a_folder_of_images(planted, tmp_path, capsys):
    run, _, out = planted
    folder = tmp_path / "folder"
    write_image(folder / "b.png", RECTS)
    write_image(folder / "a.png", {"red": (0, 16, 0, 16)})
    (folder / "notes.txt").write_text("not an image\n")
    assert main(argv(run, [folder], out, "--no-report")) == 0
    record = json.loads((out / "explain.json").read_text())
    assert [Path(r["image"]).name for r in record["images"]] == ["a.png", "b.png"]


def test_one_line_errors_write_nothing(planted, tmp_path, capsys):
    run, image, out = planted
    before = digest(run)
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other.pt"
    changed = ColourUnits()
    with torch.no_grad():
        changed.head.weight.mul_(2)
    torch.save(changed.state_dict(), other)
    cases = {
        "nope.png: not found": argv(run, [tmp_path / "nope.png"], out),
        "is not an image that can be read": argv(run, [text], out),
        "has no layer 'layer4' (it has features)": argv(run, [image], out, "--layer", "layer4"),
        "is not the model of --run": argv(run, [image], out, "--weights", str(other)),
        "--model demo is not the model of --run": argv(run, [image], out, "--model", "demo"),
        "--top-units must be >= 1": argv(run, [image], out, "--top-units", "0"),
        "--iou-threshold must lie in [0, 1]": argv(run, [image], out, "--iou-threshold", "2"),
        "holds a Broden-format dataset (written by a dataset command), not a dissection run": argv(
            tmp_path / "data", [image], out
        ),
        "holds no finished dissection (no summary.json)": argv(empty, [image], out),
        "no-run: not found": argv(tmp_path / "no-run", [image], out),
        "2 class names are given, the model has 3 outputs": argv(run, [image], out, "--classes", str(_two(tmp_path))),
    }
    for expected, call in cases.items():
        line = one_line(capsys, call)
        assert expected in line, (expected, line)
        assert not out.exists(), expected
    assert digest(run) == before


def test_a_run_whose_model_does_not_load_and_a_moved_dataset(tmp_path, capsys):
    data = write_sizes(tmp_path / "data", (16, 16), (16, 16))
    run = write_run(tmp_path / "run", ColourUnits(), "ColourUnits", "features", [1.0] * 4, ["a", "b", "c", "d"], [0.1] * 4, data)  # fmt: skip
    write_image(tmp_path / "img.png", RECTS)
    line = one_line(capsys, argv(run, [tmp_path / "img.png"], tmp_path / "out"))
    assert "records the model 'ColourUnits', which does not load" in line and "pass --model SPEC" in line
    spec = ["--model", "explain_helpers:make_colour_units"]
    shutil.move(data, tmp_path / "moved")
    line = one_line(capsys, argv(run, [tmp_path / "img.png"], tmp_path / "out", *spec))
    assert str(data) in line and "--dataset" in line
    moved = ["--dataset", str(tmp_path / "moved")]
    assert main(argv(run, [tmp_path / "img.png"], tmp_path / "out", *spec, *moved)) == 0


def test_an_out_of_another_command_or_the_run_itself(planted, tmp_path, capsys):
    run, image, _ = planted
    line = one_line(capsys, argv(run, [image], run))
    assert "holds a dissection run" in line and "not explanations of images" in line


def _two(tmp_path: Path) -> Path:
    path = tmp_path / "two.txt"
    path.write_text("red\ngreen\n")
    return path


def test_a_rewrite_replaces_only_the_explanations_files(planted, tmp_path, capsys):
    run, image, out = planted
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / "seg-notes.png").write_text("also mine\n")
    assert main(argv(run, [image, tmp_path / "img2.png"], out)) == 0
    assert main(argv(run, [image], out)) == 0
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "seg-notes.png").is_file()
    assert not (out / "seg-1.png").exists() and (out / "seg-0.png").is_file()


def test_a_layer_folder_of_the_run_is_refused(planted, capsys):
    run, image, _ = planted
    before = digest(run)
    line = one_line(capsys, argv(run, [image], run / "features"))
    assert "is a layer of a dissection run" in line
    assert digest(run) == before
