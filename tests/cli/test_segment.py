"""``netdissect annotate`` and ``netdissect dissect-generator``: the documented examples and one-line errors."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from netdissect import BrodenDataset
from netdissect.cli import main

FAST = ["--workers", "0", "--no-progress", "--device", "cpu"]
SEGMENTER = ["--segmenter", "netdissect.models.toy:color_segmenter"]


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    rc, out, err = run(capsys, argv)
    assert rc == 1 and "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("netdissect: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_docs_example_annotate_the_synthetic_set_and_dissect_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, ["make-dataset", "--out", "synthetic", "--n", "12", "--size", "64", "--no-progress"])[0] == 0
    argv = ["annotate", *SEGMENTER, "--images", "synthetic/images", "--pattern", "*.jpg", "--colors"]
    rc, out, _ = run(capsys, [*argv, "--out", "synthetic-toy", *FAST])
    assert rc == 0 and "wrote synthetic-toy" in out
    dataset = BrodenDataset("synthetic-toy")
    assert len(dataset) == 12 and dataset.meta.categories == ["color", "object"]
    assert {"red", "green", "blue"} & set(dataset.meta.label_names)
    argv = ["dissect", "--model", "demo", "--dataset", "synthetic-toy", "--layers", "conv2", "conv3"]
    rc, out, _ = run(capsys, [*argv, "--out", "runs/demo-toy", "--no-report", *FAST])
    assert rc == 0 and (tmp_path / "runs/demo-toy/conv3/tally.csv").is_file()


def test_docs_example_dissect_the_toy_generator(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "dissect-generator",
        "--generator",
        "netdissect.models.toy:toy_generator",
        "--z-dim",
        "8",
        "--samples",
        "40",
        "--seed",
        "0",
        "--layers",
        "features",
        *SEGMENTER,
        "--out",
        "runs/toy-gan",
        "--examples",
        "3",
        *FAST,
    ]
    rc, out, err = run(capsys, argv)
    assert rc == 0, err
    assert "features: red " in out and "-> 0.00 % with unit(s) 1" in out  # unit 1 first: the best by IoU
    run_dir = tmp_path / "runs/toy-gan"
    causal = json.loads((run_dir / "features/causal.json").read_text())
    assert causal["red"]["units"][0] == 1 and causal["red"]["pixel_fraction_after"] == 0
    assert (run_dir / "index.html").is_file() and (run_dir / "features/index.html").is_file()
    shown = sorted((run_dir / "report-images").glob("*.jpg"))
    assert shown
    with Image.open(shown[0]) as image:
        assert image.size == (32, 32)  # the generated samples are the units' top images
    assert json.loads((run_dir / "extra_pages.json").read_text())[0]["path"] == "features/causal.html"
    # the report links the causal page: from the run page and from the layer's page
    assert (
        '<a class="extra-page" href="features/causal.html">Causal effects: features</a>'
        in (run_dir / "index.html").read_text()
    )
    assert '<a class="extra-page" href="causal.html">' in (run_dir / "features/index.html").read_text()


def test_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    base = ["annotate", "--images", "in", "--out", "ds", *FAST]
    one_line_error(capsys, [*base, "--segmenter", "torch.nn:Identity"], "does not name its classes", "--classes")
    one_line_error(capsys, [*base, "--segmenter", "torchvision:deeplab"], "unknown torchvision model 'deeplab'")
    one_line_error(capsys, [*base, *SEGMENTER, "--segmenter-args", "[1]"], "--segmenter-args must be a JSON object")
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG broken")
    one_line_error(capsys, [*base, *SEGMENTER], "cannot read image", "b.png")
    gen = [
        "dissect-generator",
        "--generator",
        "netdissect.models.toy:toy_generator",
        "--layers",
        "features",
        *SEGMENTER,
    ]
    one_line_error(capsys, [*gen, "--z-dim", "4", "--out", "g", *FAST], "failed on latents of shape (1, 4)", "--z-dim")
    one_line_error(capsys, [*gen, "--z-dim", "8", "--samples", "0", "--out", "g", *FAST], "--samples must be >= 1")
