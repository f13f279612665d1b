"""The run directory's files (netdissect.runs.layout): one module names them, reading a run needs no torch."""

from __future__ import annotations

import json
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


def tiny_run(dataset: Path, out: Path) -> DissectionResult:
    """The dissection of the tiny dataset's planted maps, with null samples and formulas, saved in ``out``."""
    data = BrodenDataset(dataset, preprocess=RAW)
    return dissect(
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


def test_reading_a_run_does_not_import_torch(tiny_dataset, tmp_path):
    """DissectionResult.load (null samples and formulas included) reads the saved scores without torch,
    with the values the dissection computed."""
    out = tmp_path / "run"
    result = tiny_run(tiny_dataset, out)
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


#: The arrays of a layer's results that the report, explain and the ablation page read.
READ_ARRAYS = (
    "label_category", "thresholds", "iou", "category_label", "category_iou", "category", "label", "score",
    "detectors", "top_indices", "top_values", "null_score", "null_mean", "null_std", "z_score", "p_value",
    "formula_iou", "formula_single_iou",
)  # fmt: skip


def test_a_loaded_run_has_the_dissections_values(tiny_dataset, tmp_path):
    """A run read back (with or without its maps) has the values of the dissection's own results:
    labels, IoU, significance, formulas, summary, unit records and the report's pages."""
    from netdissect.report.pages import layer_context, run_context

    out = tmp_path / "run"
    result = tiny_run(tiny_dataset, out)
    layer = result["layer"]
    for maps in (True, False):
        run = DissectionResult.load(out, maps=maps)
        assert run.directory == out and list(run.layers) == ["layer"]
        assert run.metadata == json.loads(json.dumps(result.metadata))
        loaded = run["layer"]
        for name in READ_ARRAYS:
            assert np.array_equal(getattr(loaded, name), getattr(layer, name)), name
        for name in ("layer", "categories", "label_names", "iou_threshold", "units", "null_samples"):
            assert getattr(loaded, name) == getattr(layer, name), name
        for name in ("formula", "formula_terms", "formula_single_label"):
            assert getattr(loaded, name) == getattr(layer, name) is not None, name
        assert loaded.metadata == json.loads(json.dumps(layer.metadata))
        assert loaded.summary() == layer.summary() == layout.read_layer(out / "layer").summary
        records = json.loads(json.dumps(layer.unit_records()))
        assert json.loads(json.dumps(loaded.unit_records())) == records == layout.read_layer(out / "layer").records
        assert (loaded.top_maps is None) != maps and layer.top_maps is not None
        if maps:
            assert np.array_equal(loaded.top_maps, layer.top_maps)
        context = layer_context(loaded, {1: [0]}, model="tiny")
        assert context == layer_context(layer, {1: [0]}, model="tiny")
        assert any(unit["formula"] for unit in context["units"])
        assert run_context(run) == run_context(result)
