"""The describe benchmark's quick mode runs, finds AUCs identical to the per-pair loop and writes its JSON."""

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_describe.py"


def test_bench_describe_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "AUCs identical to the loop: yes" in proc.stdout
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["aucs_identical"] is True and report["images"] == 60
    # the kept image-level values: 60 images x (128 + 128) units of conv3 and conv4, float32
    assert report["image_values_bytes"] == 60 * 256 * 4
    assert set(report["ratios"]) >= {"dissect_image_values_vs_dissect", "describe_joined_vs_describe"}
    for ratio in report["ratios"].values():
        assert math.isfinite(ratio) and ratio > 0
