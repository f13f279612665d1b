"""The explain benchmark's quick mode runs, finds our effects equal to one forward pass per unit and writes
its JSON (no speed assertion: CI machines are shared)."""

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_explain.py"


def test_bench_explain_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "effects equal (max |diff| <= 1e-05, float32 rounding): yes" in proc.stdout
    assert "naive, 1 image" in proc.stdout and "conv4" in proc.stdout
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["n"] == 4 and report["effects_equal"] is True
    layer = report["layers"]["conv4"]
    assert layer["units"] == 128 and layer["split"] == "fx" and layer["max_effect_difference"] <= 1e-5
    for ratio in layer["ratios"].values():
        assert math.isfinite(ratio) and ratio > 0
