"""`netdissect demo`: the bundled model on the cached synthetic dataset, end to end."""

import json

from netdissect.cli import main
from netdissect.models.demo import DEMO_LAYERS, WEIGHTS


def test_demo_runs_offline_and_finds_detectors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 5 * 2**20
    code = main(["demo", "--images", "120", "--out", str(out), "--workers", "0", "--no-progress", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "conv4" in printed and str(out.resolve()) in printed
    summary = json.loads((out / "summary.json").read_text())["layers"]
    assert list(summary) == list(DEMO_LAYERS)
    assert summary["conv4"]["units"] == 128
    assert summary["conv4"]["detectors"] > 0  # the trained model has real concept detectors
    # the dataset is cached: a second run reuses it, and the same run directory is reused
    cached = list((tmp_path / "cache").iterdir())
    assert main(["demo", "--images", "120", "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    assert list((tmp_path / "cache").iterdir()) == cached
