"""netdissect describe on the command line: a run of its own, joining a dissection, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from describe_helpers import COLOURS, write_images
from helpers import folder_digest as digest
from helpers import one_line_error as one_line
from netdissect.cli import main

FAST = ["--device", "cpu", "--no-progress", "--batch-size", "16", "--min-images", "5"]


@pytest.fixture
def colour_module(tmp_path, monkeypatch):
    """``describe_helpers`` importable as the SPEC ``describe_helpers:make`` (tests/ is on sys.path)."""
    monkeypatch.chdir(tmp_path)
    return "describe_helpers:make"


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("colours-cli"))


def test_describe_prints_and_writes(colour_module, probes, tmp_path, capsys):
    images, labels, _ = probes
    out = tmp_path / "run"
    argv = ["describe", "--model", colour_module, "--layers", "fc", "head", "--images", str(images)]
    argv += ["--labels", str(labels), "--out", str(out), "--classes", str(_classes(tmp_path)), *FAST]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "unit 1: auc red" in printed and "final-layer accuracy (auc) 100.0 %" in printed
    assert (out / "fc" / "descriptions.csv").is_file() and (out / "describe.html").is_file()


def _classes(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(COLOURS) + "\n")
    return path


def test_bad_inputs_are_one_line_and_leave_a_finished_run(colour_module, probes, tmp_path, capsys):
    images, labels, _ = probes
    out = tmp_path / "run"
    base = ["describe", "--model", colour_module, "--layers", "fc", "--out", str(out), *FAST]
    assert main([*base, "--images", str(images), "--labels", str(labels)]) == 0
    capsys.readouterr()
    before = digest(out)
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(images, unlabelled)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    twice = tmp_path / "twice.txt"
    twice.write_text("red\ngreen\nred\n")
    missing = tmp_path / "missing.csv"
    missing.write_text("image,labels\n000.png,red\nnot-there.png,green\n")
    cases = [
        (["--images", str(unlabelled)], "no concept labels"),
        (["--images", str(images), "--labels", str(labels), "--method", "wpmi"], "--clip"),
        (["--images", str(images), "--method", "wpmi", "--clip", "demo", "--concepts", str(empty)], "lists no concept"),
        (
            ["--images", str(images), "--method", "wpmi", "--clip", "demo", "--concepts", str(twice)],
            "'red' more than once",
        ),
        (
            ["--images", str(images), "--labels", str(labels), "--min-images", "1000"],
            "--min-images 1000 is more than the 60",
        ),
        (["--images", str(images), "--labels", str(missing)], "row 3: image"),
        (["--images", str(images), "--labels", str(labels), "--max-fraction", "0"], "--max-fraction"),
        (["--images", str(images), "--labels", str(labels), "--alpha", "1"], "--alpha"),
    ]
    for extra, fragment in cases:
        line = one_line(capsys, [*base, *extra, "--overwrite"])
        assert fragment in line, (extra, line)
        assert digest(out) == before, extra


def test_joins_a_dissection_of_the_same_model_and_refuses_another_models(tmp_path, capsys):
    from netdissect.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n=12, size=64, seed=4)
    run = tmp_path / "run"
    dissect = ["dissect", "--model", "demo", "--layers", "conv4", "--dataset", str(data), "--out", str(run)]
    assert main([*dissect, "--device", "cpu", "--no-progress"]) == 0
    describe = ["describe", "--model", "demo", "--layers", "conv4", "--dataset", str(data), "--out", str(run)]
    assert main([*describe, "--device", "cpu", "--no-progress", "--min-images", "2"]) == 0
    capsys.readouterr()
    assert (run / "conv4" / "descriptions.csv").is_file() and (run / "conv4" / "units.json").is_file()
    page = (run / "describe.html").read_text()
    assert ">IoU<" in page and ">AUC<" in page
    assert "describe.html" in (run / "index.html").read_text()  # linked from the run's page
    before = digest(run)
    other = ["describe", "--model", "torchvision:resnet18", "--layers", "fc", "--dataset", str(data), "--out", str(run)]
    assert "another model" in one_line(capsys, [*other, "--device", "cpu"])
    assert digest(run) == before
