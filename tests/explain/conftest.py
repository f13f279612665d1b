"""The explain tests import their planted models as ``explain_helpers`` (the CLI tests load them
by the SPEC ``explain_helpers:make_colour_units``): this folder goes on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, Path]:
    """``(dataset, run)``: a synthetic dataset and a dissection of the demo model's conv4 on it, with its report."""
    from netdissect import dissect
    from netdissect.data.synthetic import make_synthetic_dataset
    from netdissect.models import load_model
    from netdissect.report import write_report

    root = tmp_path_factory.mktemp("explain-demo")
    data = make_synthetic_dataset(root / "data", n=32, size=64, seed=2)
    run = root / "run"
    dissect(load_model("demo"), data, ["conv4"], run, workers=0, progress=False, device="cpu", quantile=0.02)
    write_report(run, progress=False)
    return data, run
