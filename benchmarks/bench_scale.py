#!/usr/bin/env python
"""Speed and scale benchmark: a torchvision ResNet-18 (seeded random init) on a synthetic dataset.

What it measures, each configuration in a fresh process (so peak memory is its own):

(a) data loading alone (DataLoader, no model): images/s decoding the JPEG and PNG files vs
    reading the prepared copy (``netdissect prepare``), and the time to prepare it;
(b) end to end, per pass and in total (images/s) and peak memory, for ``layer4`` and for a
    multi-layer run (``layer1`` .. ``layer4``):
      - ``exact``: default options, reading the files;
      - ``exact+prepared``: the same reading the prepared copy (results must be identical);
      - ``fast+prepared``: ``--memory-format channels_last --amp`` (bfloat16 on CPU, float16 on
        CUDA) on the prepared copy; reports how many units keep the exact run's label;
      - ``core``: the engine as it was when the core issue closed (``--baseline-commit``, checked
        out with ``git worktree``; the naive baseline measured in the same run); ratios are
        ``core seconds / our seconds``;
(c) scale-out: ``torchrun`` with 1, 2 and 4 gloo processes on CPU (layer4, prepared data),
    pass seconds of rank 0 and the speed-up over one process; results must equal one process's.

Usage::

    python benchmarks/bench_scale.py                 # N = 1000 images at 224 px
    python benchmarks/bench_scale.py --n 3000
    python benchmarks/bench_scale.py --quick         # CI: 48 images at 112 px, no core baseline

A table goes to stdout and everything to ``benchmarks/results/bench_scale.json`` (``--out``).
CUDA runs are added when a CUDA device is present (``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"
DEFAULT_OUT = RESULTS / "bench_scale.json"
CORE_COMMIT = "c8eae57"  # the engine when the core issue was resolved
LAYER_SETS = {"layer4": ["layer4"], "layer1-4": ["layer1", "layer2", "layer3", "layer4"]}
CPU_TARGET = 3.0  # end to end on CPU: at least 3x the core version


# --------------------------------------------------------------------------- child process


def child(config: dict) -> dict:
    """One dissection (or one loader pass) in this process; returns timings and labels."""
    import torch
    import torchvision

    from netdissect import BrodenDataset, dissect

    torch.manual_seed(0)
    options = {"prepared": config["prepared"]} if config.get("prepared") else {}
    data = BrodenDataset(config["dataset"], **options)
    if config.get("loader_only"):
        from torch.utils.data import DataLoader

        from netdissect.data.broden import collate_broden

        loader = DataLoader(
            data, batch_size=config["batch_size"], num_workers=config["workers"], collate_fn=collate_broden
        )
        start = time.perf_counter()
        for _ in loader:
            pass
        return {"seconds": time.perf_counter() - start}
    model = torchvision.models.resnet18().eval()
    kwargs = dict(workers=config["workers"], device=config["device"], progress=False, batch_size=config["batch_size"])
    if config.get("fast"):
        kwargs.update(memory_format="channels_last", amp=True)
    start = time.perf_counter()
    result = dissect(model, data, config["layers"], **kwargs)
    seconds = time.perf_counter() - start
    timings = result[config["layers"][0]].metadata["timings"]
    out = {
        "seconds": seconds,
        "pass1": timings["pass1_seconds"],
        "pass2": timings["pass2_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "labels": {name: result[name].label.tolist() for name in config["layers"]},
        "scores": {name: [float(s) for s in result[name].score] for name in config["layers"]},
    }
    if config["device"].startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(config: dict, src: Path | None = None, threads: int | None = None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise SystemExit(f"child run {config} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- parent


def core_worktree(commit: str, where: Path) -> Path | None:
    """A checkout of ``commit``'s sources (``git worktree``), or None when git or the commit is missing."""
    repo = HERE.parent
    try:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", "-f", str(where), commit],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return where / "src"


def remove_worktree(where: Path) -> None:
    subprocess.run(
        ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(where)], capture_output=True, timeout=120
    )


def torchrun(nproc: int, dataset: Path, prepared: Path, out: Path, batch: int, device: str, threads: int) -> dict:
    """A ``torchrun`` dissection of layer4; rank 0's pass seconds and the wall time."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "netdissect",
        "dissect",
        "--model",
        "torchvision:resnet18",
        "--layers",
        "layer4",
        "--dataset",
        str(dataset),
        "--prepared",
        str(prepared),
        "--out",
        str(out),
        "--batch-size",
        str(batch),
        "--workers",
        "0",
        "--device",
        device,
        "--no-progress",
        "--no-report",
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"torchrun --nproc-per-node {nproc} failed:\n{proc.stderr[-3000:]}")
    meta = json.loads((out / "layer4" / "units.json").read_text())
    timings = meta["metadata"]["timings"]
    tally = (out / "layer4" / "tally.csv").read_text()
    return {
        "wall": wall,
        "pass1": timings["pass1_seconds"],
        "pass2": timings["pass2_seconds"],
        "seconds": timings["pass1_seconds"] + timings["pass2_seconds"],
        "tally": tally,
    }


def agreement(a: dict, b: dict) -> dict:
    """How many units keep their label between two runs, and the largest score change."""
    same = total = 0
    diff = 0.0
    for name in a["labels"]:
        for la, lb, sa, sb in zip(a["labels"][name], b["labels"][name], a["scores"][name], b["scores"][name]):
            same += la == lb
            total += 1
            diff = max(diff, abs(sa - sb))
    return {"same_label": same / total, "max_score_change": diff}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None, help="images (default 1000; --quick: 48)")
    parser.add_argument("--size", type=int, default=None, help="image size in px (default 224; --quick: 112)")
    parser.add_argument("--quick", action="store_true", help="CI mode: small, no core baseline, 1 and 2 processes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, plus cuda when present)")
    parser.add_argument("--baseline-commit", default=CORE_COMMIT, help="the core version's commit ('' to skip)")
    parser.add_argument(
        "--cache-dir", type=Path, default=RESULTS / "datasets", help="where generated datasets are kept"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    import torch
    from bench_core import ensure_dataset

    from netdissect.data import BrodenDataset
    from netdissect.data.prepared import prepare_dataset

    n = args.n or (48 if args.quick else 1000)
    size = args.size or (112 if args.quick else 224)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cores = os.cpu_count() or 1
    report: dict = {
        "quick": args.quick,
        "n": n,
        "size": size,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": cores,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "loader": {},
        "runs": {},
        "ratios": {},
        "scale_out": {},
        "checks": {},
    }
    print(f"dataset: {n} synthetic images at {size} px; model: torchvision resnet18 (seeded random init)", flush=True)
    dataset = ensure_dataset(args.cache_dir, n, size)
    work = Path(tempfile.mkdtemp(prefix="bench_scale."))
    try:
        start = time.perf_counter()
        prepared = prepare_dataset(BrodenDataset(dataset), out=work / "prepared", workers=args.workers, progress=False)
        report["loader"]["prepare_seconds"] = time.perf_counter() - start
        base = {"dataset": str(dataset), "batch_size": args.batch_size, "workers": args.workers}
        for source, path in (("files", None), ("prepared", str(prepared))):
            seconds = run_child({**base, "prepared": path, "loader_only": True})["seconds"]
            report["loader"][f"{source}_images_per_s"] = n / seconds

        core_src = None
        if args.baseline_commit and not args.quick:
            core_src = core_worktree(args.baseline_commit, work / "core")
            report["baseline_commit"] = args.baseline_commit if core_src else None
        layer_sets = {"layer4": LAYER_SETS["layer4"]} if args.quick else LAYER_SETS
        for device in devices:
            for set_name, layers in layer_sets.items():
                config = {**base, "device": device, "layers": layers}
                runs = {
                    "exact": run_child({**config, "prepared": None}),
                    "exact+prepared": run_child({**config, "prepared": str(prepared)}),
                    "fast+prepared": run_child({**config, "prepared": str(prepared), "fast": True}),
                }
                if core_src is not None:
                    runs["core"] = run_child({**config, "prepared": None}, src=core_src)
                for name, run in runs.items():
                    key = f"{device} {set_name} {name}"
                    report["runs"][key] = {k: v for k, v in run.items() if k not in ("labels", "scores")}
                    print(f"  {key}: {run['seconds']:.1f} s", flush=True)
                report["checks"][f"{device} {set_name} prepared identical"] = (
                    runs["exact"]["labels"] == runs["exact+prepared"]["labels"]
                    and runs["exact"]["scores"] == runs["exact+prepared"]["scores"]
                )
                report["checks"][f"{device} {set_name} fast vs exact"] = agreement(runs["exact"], runs["fast+prepared"])
                if "core" in runs:
                    for name in ("exact", "exact+prepared", "fast+prepared"):
                        report["ratios"][f"{device} {set_name} {name} vs core"] = (
                            runs["core"]["seconds"] / runs[name]["seconds"]
                        )
                    report["checks"][f"{device} {set_name} core vs exact"] = agreement(runs["core"], runs["exact"])

        single = None
        for nproc in (1, 2) if args.quick else (1, 2, 4):
            threads = max(1, cores // nproc)
            run = torchrun(nproc, dataset, prepared, work / f"gloo{nproc}", args.batch_size, "cpu", threads)
            tally = run.pop("tally")
            single = single or (run, tally)
            run["speedup"] = single[0]["seconds"] / run["seconds"]
            run["identical_to_one_process"] = tally == single[1]
            report["scale_out"][f"gloo x{nproc}"] = {**run, "threads_per_process": threads}
            print(f"  gloo x{nproc}: {run['seconds']:.1f} s", flush=True)
    finally:
        if (work / "core").exists():
            remove_worktree(work / "core")
        shutil.rmtree(work, ignore_errors=True)

    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def print_table(report: dict) -> None:
    n = report["n"]
    loader = report["loader"]
    print(f"\n## data loading ({report['workers']} workers, batch {report['batch_size']})")
    print(f"  files    {loader['files_images_per_s']:8.0f} images/s")
    print(
        f"  prepared {loader['prepared_images_per_s']:8.0f} images/s   (prepared once in {loader['prepare_seconds']:.1f} s)"
    )
    print(f"\n## end to end ({n} images at {report['size']} px)")
    print(
        f"  {'run':34s} {'pass 1 im/s':>11s} {'pass 2 im/s':>11s} {'total im/s':>10s} {'seconds':>8s} {'peak RSS MB':>11s}"
    )
    for key, run in report["runs"].items():
        print(
            f"  {key:34s} {n / run['pass1']:11.1f} {n / run['pass2']:11.1f} {n / run['seconds']:10.1f} "
            f"{run['seconds']:8.1f} {run['peak_rss_mb']:11.0f}"
        )
    if report["ratios"]:
        print(f"\n## speed-up over the core version (target on CPU: >= {CPU_TARGET:g}x end to end)")
        for key, ratio in report["ratios"].items():
            print(f"  {key:40s} {ratio:5.2f}x")
    print("\n## checks")
    for key, value in report["checks"].items():
        if isinstance(value, dict):
            value = f"{100 * value['same_label']:.1f} % of units keep their label, max score change {value['max_score_change']:.4f}"
        print(f"  {key}: {value}")
    print("\n## scale-out (torchrun, gloo, CPU; layer4 on the prepared copy; rank 0's pass seconds)")
    for key, run in report["scale_out"].items():
        print(
            f"  {key}: {run['seconds']:6.1f} s  speed-up {run['speedup']:4.2f}x  "
            f"({run['threads_per_process']} threads/process, wall {run['wall']:.1f} s with start-up, "
            f"identical to 1 process: {run['identical_to_one_process']})"
        )


if __name__ == "__main__":
    sys.exit(main())
