"""The run directory's files (netdissect.runs.layout): one module names them, reading a run needs no torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import RAW, LookupNet, tiny_maps
from netdissect import BrodenDataset, DissectionResult, dissect
from netdissect.runs import layout

SRC = Path(__file__).parents[2] / "src" / "netdissect"

#: The run directory's file names, each declared once, in netdissect.runs.layout.
NAMES = ("tally.csv", "units.json", "iou.npz", "top_maps.npz", "formulas.csv", "summary.json", "run.json")


def test_each_file_name_is_declared_once():
    """No module but runs/layout.py spells a run's file names (they are imported from there)."""
    spelled = {
        name: sorted(
            str(path.relative_to(SRC))
            for path in SRC.rglob("*.py")
            if re.search(rf"([\"']){re.escape(name)}\1", path.read_text(encoding="utf-8"))
        )
        for name in NAMES
    }
    assert spelled == {name: ["runs/layout.py"] for name in NAMES}


def test_reading_a_run_does_not_import_torch(tiny_dataset, tmp_path):
    """DissectionResult.load (null samples and formulas included) reads the saved scores without torch,
    with the values the dissection computed."""
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    out = tmp_path / "run"
    result = dissect(
        LookupNet(tiny_maps()),
        data,
        ["layer"],
        out,
        quantile=0.5,
        batch_size=1,
        null_samples=3,
        formula_length=2,
        device="cpu",
        workers=0,
        progress=False,
    )
    code = (
        "import sys, numpy as np; from netdissect.runs.results import DissectionResult; "
        f"layer = DissectionResult.load({str(out)!r})['layer']; "
        "print('torch' in sys.modules, layer.p_value is not None, layer.formula is not None)"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["False", "True", "True"]
    loaded, layer = DissectionResult.load(out)["layer"], result["layer"]
    for name in ("iou", "score", "label", "null_score", "null_mean", "null_std", "z_score", "p_value"):
        assert np.array_equal(getattr(loaded, name), getattr(layer, name)), name
    assert loaded.summary() == layer.summary() == layout.read_layer(out / "layer").summary
    assert layout.is_finished_run(out) and layout.is_finished_layer(layout.layer_path(out, "layer"))
