#!/usr/bin/env python
"""Report benchmark: the HTML report's cost against the dissection that produced it, disk per unit,
peak memory of ``netdissect demo``, and a 2,048-unit layer in Chromium.

Every command runs in its own process, as a user runs it (wall seconds and peak RSS of that
process), side by side in one run:

(a) ``netdissect demo`` end to end with an empty cache (dataset generation, dissection, report);
    peak RSS, next to the *import floor*: the peak RSS of a process that only imports what the
    demo imports (torch, the engine, the report, matplotlib's Agg canvas) and exits as
    ``netdissect`` does; ``netdissect --help``;
(b) the demo (400 images, 4 layers) and a 224 px synthetic set (two layers, conv2 + conv3 = 192
    units): ``netdissect dissect``/``demo --no-report --no-ablation`` (the dissection), then ``netdissect report``
    on it: *cold* (no report files yet: charts drawn) and *rebuild* (the report exists: the usual
    ``netdissect report`` after a dissection wrote one); ratio = report seconds / dissection seconds;
(c) the old report (``--old-commit``, the code before this change, from ``git archive``) on the same
    runs: seconds and disk per unit (on the large layer only with ``--old-large``: minutes);
(d) a synthetic 2,048-unit layer written directly (``tests/fake_run.py``, no model) on the 224 px
    set: report seconds and disk per unit, then in headless Chromium (Playwright, when installed):
    seconds until the first card shows its 10 tiles, and sort / filter / search response times
    (event to next frame, median of 3).

Disk per unit counts the report's images: ``report-images/`` and every ``masks.js`` (new) or
``strips/`` (old), divided by the run's units.

Usage::

    python benchmarks/bench_report.py           # full (a few minutes; the old report takes ~1 min)
    python benchmarks/bench_report.py --quick   # CI: small sets, no old report

A table goes to stdout and everything to ``benchmarks/results/bench_report.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_OUT = RESULTS / "bench_report.json"
OLD_COMMIT = "f0294d3"  # the report before this change (one JPEG strip pair per unit, drawn in Python)
TARGETS = {
    "report_over_dissection": 0.25,
    "disk_kb_per_unit": 30.0,
    "first_cards_s": 2.0,
    "action_ms": 200.0,
    "demo_peak_rss_mb": 600.0,
    "help_s": 0.5,
    "demo_end_to_end_s": 25.0,
}


def run(cmd: list[str], env: dict, log: Path) -> dict:
    """Run ``cmd`` in a fresh process: wall seconds and its own peak RSS (MB)."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


#: What ``netdissect demo`` imports, then the exit ``netdissect`` takes once torch is loaded.
IMPORT_FLOOR = (
    "import os, torch, netdissect.engine.runner, netdissect.data.synthetic, netdissect.ablation.experiment, "
    "netdissect.report, matplotlib.figure, matplotlib.backends.backend_agg; os._exit(0)"
)


def nd(*args: str) -> list[str]:
    return [sys.executable, "-m", "netdissect", *args]


def report_bytes(run_dir: Path) -> int:
    """Bytes of the report's images: report-images/ and masks.js (new), strips/ (old)."""
    total = sum(p.stat().st_size for p in (run_dir / "report-images").glob("*") if p.is_file())
    total += sum(p.stat().st_size for p in run_dir.glob("*/masks.js"))
    total += sum(p.stat().st_size for p in run_dir.glob("*/strips/*") if p.is_file())
    return total


def units_of(run_dir: Path) -> int:
    summary = json.loads((run_dir / "summary.json").read_text())
    return sum(layer["units"] for layer in summary["layers"].values())


def strip_report(run_dir: Path) -> None:
    """Remove every report file (back to what ``--no-report`` leaves)."""
    shutil.rmtree(run_dir / "report-images", ignore_errors=True)
    for pattern in ("index.html", "summary.png", "*/index.html", "*/bargraph.png", "*/masks.js"):
        for p in run_dir.glob(pattern):
            p.unlink()
    for p in run_dir.glob("*/strips"):
        shutil.rmtree(p)


def old_source(tmp: Path, commit: str) -> Path:
    """The package as it was at ``commit`` (``git archive``), for the old report."""
    target = tmp / "old"
    target.mkdir()
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def measure_reports(name: str, run_dir: Path, dissection: dict, env: dict, old_env: dict | None, tmp: Path) -> dict:
    units = units_of(run_dir)
    row: dict = {"units": units, "dissection": dissection}
    strip_report(run_dir)
    row["report_cold"] = run(nd("report", str(run_dir), "--no-progress"), env, tmp / f"{name}-cold.log")
    row["report_rebuild"] = run(nd("report", str(run_dir), "--no-progress"), env, tmp / f"{name}-rebuild.log")
    row["disk_kb_per_unit"] = round(report_bytes(run_dir) / units / 1024, 2)
    row["ratio_cold"] = round(row["report_cold"]["seconds"] / dissection["seconds"], 3)
    row["ratio_rebuild"] = round(row["report_rebuild"]["seconds"] / dissection["seconds"], 3)
    if old_env is not None:
        old_dir = tmp / f"{name}-old"
        shutil.copytree(run_dir, old_dir)
        strip_report(old_dir)
        row["old_report"] = run(nd("report", str(old_dir), "--no-progress"), old_env, tmp / f"{name}-old.log")
        row["old_disk_kb_per_unit"] = round(report_bytes(old_dir) / units / 1024, 2)
        row["old_ratio"] = round(row["old_report"]["seconds"] / dissection["seconds"], 3)
        row["speedup_vs_old"] = round(row["old_report"]["seconds"] / row["report_cold"]["seconds"], 2)
        row["disk_reduction_vs_old"] = round(row["old_disk_kb_per_unit"] / row["disk_kb_per_unit"], 1)
    return row


TIMED = """async ([selector, value]) => {
    const el = document.querySelector(selector), t = performance.now();
    el.value = value;
    el.dispatchEvent(new Event(el.tagName === 'INPUT' ? 'input' : 'change'));
    document.body.offsetHeight;
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t;
}"""
FIRST_CARD = """() => { const c = document.querySelector('.unit-card');
    return c && c.querySelectorAll('canvas[data-painted=unit]').length === c.querySelectorAll('.tile').length &&
           c.querySelectorAll('.tile').length > 0 && [...c.querySelectorAll('img')].every(i => i.complete && i.naturalWidth); }"""


def browser_timings(page_path: Path, reps: int = 3) -> dict | None:
    """Seconds to the first card's tiles and sort/filter/search milliseconds in headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    out: dict = {"first_cards_s": [], "sort_ms": [], "filter_ms": [], "search_ms": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(reps):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            start = time.perf_counter()
            page.goto(page_path.as_uri())
            page.wait_for_function(FIRST_CARD, timeout=60_000, polling=20)
            out["first_cards_s"].append(time.perf_counter() - start)
            category = page.eval_on_selector("#category option:nth-child(3)", "o => o.value")
            label = page.eval_on_selector(".unit-card", "c => c.dataset.label")
            out["sort_ms"].append(max(page.evaluate(TIMED, ["#sort", v]) for v in ("unit", "label", "score")))
            out["filter_ms"].append(max(page.evaluate(TIMED, ["#category", v]) for v in (category, "detectors", "")))
            out["search_ms"].append(max(page.evaluate(TIMED, ["#search", v]) for v in (label, label[:1], "")))
            page.close()
        browser.close()
    return {k: round(statistics.median(v), 3 if k.endswith("_s") else 1) for k, v in out.items()} | {
        "reps": reps,
        "all": {k: [round(x, 3) for x in v] for k, v in out.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sets, no old report (CI)")
    parser.add_argument("--old-commit", default=OLD_COMMIT, help="the old report's commit (default: %(default)s)")
    parser.add_argument("--no-old", action="store_true", help="skip the old report")
    parser.add_argument("--old-large", action="store_true", help="also run the old report on the large layer (slow)")
    parser.add_argument("--units", type=int, default=2048, help="units of the synthetic layer (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    demo_images, synth_images, units = (60, 40, 256) if args.quick else (400, 400, args.units)

    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), NETDISSECT_CACHE=str(tmp / "cache"))
    old_env = None
    if not (args.quick or args.no_old):
        old_env = dict(env, PYTHONPATH=str(old_source(tmp, args.old_commit)))
    results: dict = {
        "quick": args.quick,
        "targets": TARGETS,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "old_commit": None if old_env is None else args.old_commit,
    }
    try:
        helps = [run(nd("--help"), env, tmp / "help.log")["seconds"] for _ in range(3)]
        results["help_s"] = min(helps)
        floor = run([sys.executable, "-c", IMPORT_FLOOR], env, tmp / "floor.log")
        results["import_floor_rss_mb"] = floor["peak_rss_mb"]
        # (a) demo end to end from an empty cache, then (b) its dissection alone and the reports
        images = ["--images", str(demo_images)]
        results["demo_end_to_end"] = run(
            nd("demo", "--out", str(tmp / "demo-e2e"), "--no-progress", *images), env, tmp / "e2e.log"
        )
        demo = tmp / "demo"
        demo_only = ("--no-progress", "--no-report", "--no-ablation")  # the dissection alone
        dissection = run(nd("demo", "--out", str(demo), *demo_only, *images), env, tmp / "d.log")
        results["demo"] = measure_reports("demo", demo, dissection, env, old_env, tmp)
        # a 224 px synthetic set: conv2 + conv3 of the demo model (made in a child process: this one
        # stays small, since a child's peak RSS counts the parent's memory at the fork)
        data = tmp / "synthetic224"
        code = f"from netdissect.data.synthetic import make_synthetic_dataset as m; m({str(data)!r}, n={synth_images}, size=224, seed=1)"
        run([sys.executable, "-c", code], env, tmp / "make224.log")
        run224 = tmp / "run224"
        layers = ["--layers", "conv2", "conv3"]
        args224 = ["--model", "demo", *layers, "--dataset", str(data), "--out", str(run224)]
        dissection = run(nd("dissect", *args224, "--no-report", "--no-progress"), env, tmp / "d224.log")
        results["synthetic224"] = measure_reports("s224", run224, dissection, env, old_env, tmp)
        # (d) a synthetic layer of many units, written directly
        big = tmp / "big"
        code = f"from fake_run import write_fake_run as w; w(__import__('pathlib').Path({str(big)!r}), {str(data)!r}, units={units})"
        run(
            [sys.executable, "-c", code],
            dict(env, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}"),
            tmp / "big-w.log",
        )
        row: dict = {"units": units}
        row["report"] = run(nd("report", str(big), "--no-progress"), env, tmp / "big.log")
        row["disk_kb_per_unit"] = round(report_bytes(big) / units / 1024, 2)
        row["page_kb"] = round((big / "layer4" / "index.html").stat().st_size / 1024, 1)
        row["masks_js_kb"] = round((big / "layer4" / "masks.js").stat().st_size / 1024, 1)
        row["browser"] = browser_timings(big / "layer4" / "index.html")
        if old_env is not None and args.old_large:
            old_big = tmp / "big-old"
            shutil.copytree(big, old_big)
            strip_report(old_big)
            row["old_report"] = run(nd("report", str(old_big), "--no-progress"), old_env, tmp / "big-old.log")
            row["old_disk_kb_per_unit"] = round(report_bytes(old_big) / units / 1024, 2)
        results["large_layer"] = row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    checks = {
        "demo report / dissection (rebuild)": (results["demo"]["ratio_rebuild"], TARGETS["report_over_dissection"]),
        "demo report / dissection (cold)": (results["demo"]["ratio_cold"], TARGETS["report_over_dissection"]),
        "224px report / dissection (rebuild)": (
            results["synthetic224"]["ratio_rebuild"],
            TARGETS["report_over_dissection"],
        ),
        "224px report / dissection (cold)": (results["synthetic224"]["ratio_cold"], TARGETS["report_over_dissection"]),
        "disk KB/unit demo": (results["demo"]["disk_kb_per_unit"], TARGETS["disk_kb_per_unit"]),
        "disk KB/unit 224px": (results["synthetic224"]["disk_kb_per_unit"], TARGETS["disk_kb_per_unit"]),
        f"disk KB/unit {units} units": (results["large_layer"]["disk_kb_per_unit"], TARGETS["disk_kb_per_unit"]),
        "demo peak RSS MB": (results["demo_end_to_end"]["peak_rss_mb"], TARGETS["demo_peak_rss_mb"]),
        "demo end to end s": (results["demo_end_to_end"]["seconds"], TARGETS["demo_end_to_end_s"]),
        "--help s": (results["help_s"], TARGETS["help_s"]),
    }
    browser = results["large_layer"]["browser"]
    if browser:
        checks[f"first cards s ({units} units)"] = (browser["first_cards_s"], TARGETS["first_cards_s"])
        for k in ("sort_ms", "filter_ms", "search_ms"):
            checks[f"{k.replace('_ms', '')} ms ({units} units)"] = (browser[k], TARGETS["action_ms"])
    results["checks"] = {k: {"value": v, "target": t, "met": v <= t} for k, (v, t) in checks.items()}

    print(f"{'measure':<36} {'value':>10} {'target':>8}  met")
    for k, c in results["checks"].items():
        print(f"{k:<36} {c['value']:>10} {c['target']:>8}  {'yes' if c['met'] else 'NO'}")
    demo_rss = results["demo_end_to_end"]["peak_rss_mb"]
    print(
        f"demo peak RSS {demo_rss} MB = import floor {results['import_floor_rss_mb']} MB "
        f"+ {round(demo_rss - results['import_floor_rss_mb'], 1)} MB of work"
    )
    print()
    for name in ("demo", "synthetic224"):
        r = results[name]
        line = (
            f"{name}: {r['units']} units, dissection {r['dissection']['seconds']} s, report cold "
            f"{r['report_cold']['seconds']} s, rebuild {r['report_rebuild']['seconds']} s, "
            f"{r['disk_kb_per_unit']} KB/unit"
        )
        if "old_report" in r:
            line += (
                f"; old report {r['old_report']['seconds']} s (ratio {r['old_ratio']}), "
                f"{r['old_disk_kb_per_unit']} KB/unit: {r['speedup_vs_old']}x faster, "
                f"{r['disk_reduction_vs_old']}x less disk"
            )
        print(line)
    big = results["large_layer"]
    line = f"large layer: {units} units, report {big['report']['seconds']} s, {big['disk_kb_per_unit']} KB/unit"
    if "old_report" in big:
        line += f"; old report {big['old_report']['seconds']} s, {big['old_disk_kb_per_unit']} KB/unit"
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
