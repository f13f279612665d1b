"""The report benchmark's quick mode runs end to end and writes its JSON.

No speed target is asserted here (timings are flaky on shared machines): the benchmark prints
whether its targets are met.
"""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_report.py"


def test_bench_report_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["old_commit"] is None
    for name in ("demo", "synthetic224"):
        row = report[name]
        assert row["units"] == (352 if name == "demo" else 192)
        for key in ("dissection", "report_cold", "report_rebuild"):
            assert row[key]["seconds"] > 0 and row[key]["peak_rss_mb"] > 0
        assert row["ratio_rebuild"] == round(row["report_rebuild"]["seconds"] / row["dissection"]["seconds"], 3)
        assert 0 < row["disk_kb_per_unit"] < 1000
    assert report["large_layer"]["units"] == 256 and report["large_layer"]["disk_kb_per_unit"] > 0
    assert set(report["checks"]) >= {"demo report / dissection (rebuild)", "disk KB/unit demo", "--help s"}
    assert all(set(c) == {"value", "target", "met"} for c in report["checks"].values())
    assert "results:" in proc.stdout
