"""The core benchmark's quick mode runs, checks its counts against the per-unit loop and writes its JSON.

No speed or memory target is asserted here (timings are flaky on shared CI machines); the
benchmark prints whether the targets are met.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_core.py"


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_bench_core_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "counts identical" in proc.stdout
    report = json.loads(out.read_text())

    for key in ("n", "sizes", "reps", "weights", "environment", "end_to_end", "kernel", "memory", "ratios", "targets"):
        assert key in report, key
    assert report["quick"] is True
    assert report["sizes"] == {"N": report["n"], "4N": 4 * report["n"]}
    assert report["counts_identical"] is True
    assert report["mismatches"] == []

    assert report["ratios"], "no ratios"
    for name, ratio in report["ratios"].items():
        assert _positive(ratio), (name, ratio)

    for key in ("N", "4N"):
        for layers in ("conv1-4", "conv4"):
            row = report["end_to_end"][key][layers]
            assert row["counts_identical"] is True
            assert _positive(row["ours"]["images_per_s"]) and _positive(row["baseline"]["images_per_s"])
            assert _positive(row["speedup"])
    for layers in ("conv1-4", "conv4"):
        kernel = report["kernel"][layers]
        assert kernel["counts_identical"] is True
        assert _positive(kernel["ours_images_per_s"]) and _positive(kernel["loop_images_per_s"])
        assert _positive(kernel["speedup"])

    for mode in ("streaming", "default_cache"):
        for key in ("N", "4N"):
            record = report["memory"][mode][key]
            assert _positive(record["peak_rss_kib"])
            assert record["peak_rss_kib"] >= record["rss_before_dissect_kib"]
        assert isinstance(report["memory"][mode]["growth"], float)
    assert report["memory"]["streaming"]["N"]["cache_memory"] == 0
    assert report["memory"]["default_cache"]["N"]["cache_memory"] > 0

    for target in report["targets"].values():
        assert isinstance(target["met"], bool)
