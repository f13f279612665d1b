"""Fixtures of the ablation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablation_helpers import COLOURS, EVIL, PLANTED_CLASSES, PlantedNet, write_folders
from helpers import RAW, rename_label
from netdissect import dissect
from netdissect.cli import main
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.models import load_model
from netdissect.models.base import LoadedModel


@pytest.fixture
def planted(tmp_path: Path) -> tuple[LoadedModel, Path, Path]:
    """The planted model, an ImageFolder of pure red/green/blue images, and its class file."""
    images = write_folders(tmp_path / "images", {"red": 3, "green": 2, "blue": 4}, colours=COLOURS)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(PLANTED_CLASSES) + "\n")
    return LoadedModel(PlantedNet().eval(), RAW, "planted"), images, classes


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A synthetic dataset, a dissection of the demo model's conv4 with its report, and an ablation."""
    from netdissect.report import write_report

    root = tmp_path_factory.mktemp("ablation-join")
    data = make_synthetic_dataset(root / "data", n=40, size=64, seed=3)
    rename_label(data, "ball", EVIL)  # a hostile concept name must show as text on the page
    run = root / "run"
    dissect(load_model("demo"), data, ["conv4"], run, workers=0, progress=False, device="cpu", quantile=0.02)
    write_report(run, progress=False)
    out = root / "ablation"
    code = main(
        ["ablate", "--model", "demo", "--layer", "conv4", "--images", str(data), "--out", str(out)]
        + ["--dissection", str(run), "--top-k", "5", "--no-progress", "--device", "cpu"]
    )
    assert code == 0
    return data, run, out
