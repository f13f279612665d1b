"""The ablation benchmark's quick mode runs, finds identical results and writes its JSON (no speed assertion)."""

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ablation.py"


def test_bench_ablation_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "results identical: yes" in proc.stdout
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["units"] == 16 and report["split"] == "fx"
    assert report["accuracies_identical"] is True and report["max_prob_drop_difference"] <= 1e-6
    for ratio in report["ratios"].values():
        assert math.isfinite(ratio) and ratio > 0
    assert -1 <= report["estimate_spearman"]["vs_prob_drop_all"] <= 1
