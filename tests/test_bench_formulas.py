"""The formula benchmark's quick mode runs N = 1, 2, 3 and writes its JSON (no timing target asserted)."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_formulas.py"


def test_bench_formulas_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--cache", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["datasets"]["quick-128px-40"]["rows"]
    assert set(rows) == {"1", "2", "3"}
    assert rows["1"]["ratio"] == 1.0
    for n in ("2", "3"):
        best = rows[n]["best"]
        assert best["seconds"] > 0 and best["peak_rss_mib"] > 0 and best["timings"]["formula_seconds"] > 0
        assert best["info"]["length"] == int(n)
        assert best["mean_formula_iou"] >= best["mean_single_iou"]
