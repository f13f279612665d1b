#!/usr/bin/env python
"""Core benchmark: our streaming, vectorised dissection vs a per-unit loop (NetDissect-Lite style).

What it measures, on the bundled demo CNN (``netdissect.models.demo``) and synthetic Broden
datasets of N and 4N images at the demo size (128 px images, 64 px segmentations):

(a) our end-to-end ``dissect()``: both passes (thresholds, then counts), default options
    (activations of pass 1 cached for pass 2 when they fit the budget);
(b) a baseline written here: the same forward pass (same model, preprocessing, loader and batch
    size, so the activations are bit-identical) followed by a Python loop over images and
    units, as NetDissect-Lite's tally does: upsample each single map that exceeds its threshold,
    threshold it, and count the labels under the mask with numpy. It takes its thresholds from
    our result (it does not compute them: that work is free for the baseline), and its counts
    must equal ours exactly (checked, ``counts identical``);
(c) the counting work alone: ``netdissect.math.tally.count_batch`` over pre-computed activations vs
    the baseline's loop over the same activations (no decoding, no forward pass);
(d) the peak RSS of a dissection in a fresh process for N and for 4N images, in pure streaming
    mode (``cache_memory=0``, memory should not grow with the dataset) and with the default
    activation cache (memory may grow with the dataset up to the cache budget).

Usage::

    python benchmarks/bench_core.py            # N = 100 (and 4N = 400), 3 repetitions
    python benchmarks/bench_core.py --n 200
    python benchmarks/bench_core.py --quick    # CI: N = 32 (one full batch), one repetition, < 60 s

A table goes to stdout and the numbers to ``benchmarks/results/bench_core.json`` (``--out``).
Speed ratios are ``baseline seconds / our seconds`` (> 1: ours is faster). Timings are the best
of the repetitions (the machine may be shared); every repetition is kept in the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
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

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import netdissect
from netdissect import DissectConfig, dissect
from netdissect.data import synthetic as synthetic_module
from netdissect.data import writer as writer_module
from netdissect.data.broden import BrodenDataset, collate_broden
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.math.tally import Counts, count_batch
from netdissect.models import demo as demo_module

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_OUT = RESULTS / "bench_core.json"
DEFAULT_CACHE = RESULTS / "datasets"
ALL_LAYERS = tuple(demo_module.DEMO_LAYERS)  # conv1 .. conv4
LAYER_SETS = {"conv1-4": ALL_LAYERS, "conv4": ("conv4",)}
KERNEL_TARGET = 20.0  # counting work: ours >= 20x the per-unit loop
MEMORY_TARGET = 0.10  # streaming: peak RSS for 4N within 10 % of N
SEED = 0


# --------------------------------------------------------------------------- setup


def _generator_key() -> str:
    """A short digest of the synthetic generator's code: a changed generator never reuses a cache."""
    digest = hashlib.sha256()
    for module in (synthetic_module, writer_module):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:10]


def ensure_dataset(cache_dir: Path, n: int, size: int, seed: int = SEED) -> Path:
    """The synthetic dataset of ``n`` images, generated once into ``cache_dir`` and reused."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"synthetic_n{n}_px{size}_seed{seed}_{_generator_key()}"
    marker = final / ".complete"
    for stale in cache_dir.glob(f"synthetic_n{n}_px{size}_seed{seed}_*"):  # made by an older generator
        if stale.is_dir() and stale != final:
            shutil.rmtree(stale, ignore_errors=True)
    if marker.is_file():
        return final
    if final.exists():  # an interrupted generation
        shutil.rmtree(final, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    try:
        start = time.perf_counter()
        make_synthetic_dataset(tmp / "data", n=n, size=size, seed=seed)
        (tmp / "data" / ".complete").write_text(f"generated in {time.perf_counter() - start:.1f} s\n")
        try:
            os.replace(tmp / "data", final)
        except OSError:
            if not marker.is_file():  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_demo() -> tuple[torch.nn.Module, str]:
    """The demo model with its shipped weights, or a seeded random init when they are absent."""
    torch.manual_seed(SEED)
    if demo_module.WEIGHTS.is_file():
        try:
            digest = hashlib.md5(demo_module.WEIGHTS.read_bytes()).hexdigest()[:8]
            return demo_module.demo_model(), f"shipped demo_weights.pt, md5 {digest}"
        except Exception as exc:  # e.g. the file is being written
            print(f"note: cannot load {demo_module.WEIGHTS} ({exc}); using a random init", file=sys.stderr)
            torch.manual_seed(SEED)
    return demo_module.demo_model(weights=None), f"random init (torch seed {SEED}; no weights file)"


def engine_config(workers: int, **changes) -> DissectConfig:
    return DissectConfig(device="cpu", workers=workers, progress=False, **changes)


def _loader(dataset: BrodenDataset, config: DissectConfig) -> DataLoader:
    # exactly the engine's loader: same batches, so the forward pass gives identical activations
    return DataLoader(
        dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.workers, collate_fn=collate_broden
    )


class _Hooks:
    """Plain forward hooks recording the outputs of named modules (the baseline's own capture)."""

    def __init__(self, model: torch.nn.Module, layers) -> None:
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.outputs[name] = output

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


# --------------------------------------------------------------------------- the per-unit loop


class LoopTally:
    """The straightforward per-image, per-unit counting loop (NetDissect-Lite's tally, ``paper`` act).

    For each image and each unit whose map exceeds its threshold somewhere: upsample that single
    map to the segmentation size (bilinear, half-pixel centres, antialiased when shrinking, as
    ``netdissect.math.tally.upsample``), keep the pixels above the threshold and count, with numpy, the
    labels under them (image-level labels meet every masked pixel); the mask's area goes to
    ``act`` for every category annotated in the image.
    """

    def __init__(self, label_category: np.ndarray, categories: int, thresholds: dict[str, np.ndarray]) -> None:
        self.L = len(label_category)
        self.invalid = label_category < 0
        self.thresholds = {name: np.asarray(t, dtype=np.float32) for name, t in thresholds.items()}
        self.truth = np.zeros(self.L, dtype=np.int64)
        self.inter = {name: np.zeros((len(t), self.L), dtype=np.int64) for name, t in thresholds.items()}
        self.act = {name: np.zeros((len(t), categories), dtype=np.int64) for name, t in thresholds.items()}
        self.maps = {name: 0 for name in thresholds}  # (image, unit) maps seen
        self.pairs = {name: 0 for name in thresholds}  # maps whose maximum exceeds the threshold
        self.masked = {name: 0 for name in thresholds}  # masked pixels (at the segmentation size)

    def add_batch(
        self, acts: dict[str, torch.Tensor], seg: torch.Tensor, scalars: torch.Tensor, present: torch.Tensor
    ) -> None:
        seg, scalars, present = seg.numpy(), scalars.numpy(), present.numpy()
        sh, sw = seg.shape[-2:]
        for i in range(seg.shape[0]):
            s = seg[i]
            sc = scalars[i][scalars[i] > 0]
            pr = present[i].astype(np.int64)
            truth = np.bincount(s.ravel(), minlength=self.L)
            if len(sc):
                truth += np.bincount(sc, minlength=self.L) * (sh * sw)
            truth[self.invalid] = 0
            self.truth += truth
            for name, a in acts.items():
                self._units(name, a[i], s, sc, pr)

    def _units(self, name: str, maps: torch.Tensor, s: np.ndarray, sc: np.ndarray, pr: np.ndarray) -> None:
        T, inter, act = self.thresholds[name], self.inter[name], self.act[name]
        maps_np = maps.numpy()
        h, w = maps.shape[-2:]
        sh, sw = s.shape[-2:]
        resize, shrink = (h, w) != (sh, sw), h > sh or w > sw
        self.maps[name] += maps.shape[0]
        for u in range(maps.shape[0]):
            if not maps_np[u].max() > T[u]:
                continue
            if resize:
                up = F.interpolate(
                    maps[u][None, None], size=(sh, sw), mode="bilinear", align_corners=False, antialias=shrink
                )[0, 0].numpy()
            else:
                up = maps_np[u]
            mask = up > T[u]
            area = int(np.count_nonzero(mask))
            self.pairs[name] += 1
            self.masked[name] += area
            if area == 0:
                continue
            hist = np.bincount(s[:, mask].ravel(), minlength=self.L)
            if len(sc):
                np.add.at(hist, sc, area)
            hist[self.invalid] = 0
            inter[u] += hist
            act[u] += area * pr


def compare_counts(result, tally: LoopTally, layers) -> list[str]:
    """Differences between our result's counts and the loop's (empty: identical)."""
    problems = []
    for name in layers:
        ours = result[name]
        for what, mine, theirs in (
            ("inter", ours.inter, tally.inter[name]),
            ("act", ours.act, tally.act[name]),
            ("truth", ours.truth, tally.truth),
        ):
            if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
                diff = int(np.abs(mine.astype(np.int64) - theirs).sum()) if mine.shape == theirs.shape else -1
                problems.append(f"{name}.{what} differs (sum |diff| = {diff})")
    return problems


# --------------------------------------------------------------------------- timed runs


def run_ours(model, data_dir: Path, layers, config: DissectConfig) -> tuple[float, dict, object]:
    """(a) our end-to-end dissect(), once: (seconds, pass timings, result)."""
    start = time.perf_counter()
    result = dissect(model, data_dir, list(layers), config=config)
    return time.perf_counter() - start, result[layers[0]].metadata["timings"], result


def run_baseline(
    model, data_dir: Path, layers, thresholds: dict, config: DissectConfig
) -> tuple[float, dict, LoopTally]:
    """(b) the baseline, once: its own forward pass (same loader and batches) + the per-unit loop."""
    dataset = BrodenDataset(data_dir)
    meta = dataset.meta
    model = model.to("cpu").eval()
    hooks = _Hooks(model, layers)
    tally = LoopTally(meta.label_category, len(meta.categories), {n: thresholds[n] for n in layers})
    forward = counting = 0.0
    start = time.perf_counter()
    try:
        for batch in _loader(dataset, config):
            t0 = time.perf_counter()
            with torch.no_grad():
                model(batch["image"])
            acts = {name: hooks.outputs[name].float() for name in layers}
            t1 = time.perf_counter()
            tally.add_batch(acts, batch["seg"], batch["scalars"], batch["present"])
            t2 = time.perf_counter()
            forward += t1 - t0
            counting += t2 - t1
    finally:
        hooks.close()
    total = time.perf_counter() - start
    breakdown = {
        "forward_seconds": forward,
        "counting_seconds": counting,
        "loading_seconds": total - forward - counting,
    }
    return total, breakdown, tally


def compare_end_to_end(
    model, data_dir: Path, layers, images: int, config: DissectConfig, reps: int
) -> tuple[dict, object]:
    """(a) and (b), alternating run by run so that a busy spell of the machine hits both sides."""
    ours_s, ours_passes, base_s, base_bd, problems, result = [], [], [], [], [], None
    for _ in range(reps):
        seconds, passes, result = run_ours(model, data_dir, layers, config)
        ours_s.append(seconds)
        ours_passes.append(passes)
        seconds, breakdown, tally = run_baseline(
            model, data_dir, layers, {name: result[name].thresholds for name in layers}, config
        )
        base_s.append(seconds)
        base_bd.append(breakdown)
        problems += [p for p in compare_counts(result, tally, layers) if p not in problems]
    best_o, best_b = int(np.argmin(ours_s)), int(np.argmin(base_s))
    row = {
        "images": images,
        "layers": list(layers),
        "ours": {
            "seconds": ours_s,
            "best_seconds": ours_s[best_o],
            "best_passes": ours_passes[best_o],
            "images_per_s": images / ours_s[best_o],
        },
        "baseline": {
            "seconds": base_s,
            "best_seconds": base_s[best_b],
            "best_breakdown": base_bd[best_b],
            "images_per_s": images / base_s[best_b],
        },
        "speedup": base_s[best_b] / ours_s[best_o],
        "counts_identical": not problems,
        "mismatches": problems,
    }
    return row, result


def collect_activations(model, data_dir: Path, config: DissectConfig) -> tuple[BrodenDataset, list]:
    """Pre-computed activations of every layer and the batches' annotations, for (c)."""
    dataset = BrodenDataset(data_dir)
    hooks = _Hooks(model, ALL_LAYERS)
    store = []
    try:
        for batch in _loader(dataset, config):
            with torch.no_grad():
                model(batch["image"])
            acts = {name: hooks.outputs[name].float() for name in ALL_LAYERS}
            store.append(({k: batch[k] for k in ("seg", "scalars", "present")}, acts))
    finally:
        hooks.close()
    return dataset, store


def time_kernels(dataset: BrodenDataset, store: list, layers, result, config: DissectConfig, reps: int) -> dict:
    """(c) counting only, over the same pre-computed activations: count_batch vs the loop."""
    meta = dataset.meta
    label_category = torch.from_numpy(meta.label_category)
    thresholds = {name: torch.from_numpy(result[name].thresholds) for name in layers}
    ours_times, loop_times = [], []
    identical = True
    for _ in range(reps):
        counts: dict[str, Counts] = {}
        start = time.perf_counter()
        for batch, acts in store:
            for name in layers:
                c = count_batch(
                    acts[name],
                    thresholds[name],
                    batch["seg"],
                    batch["scalars"],
                    batch["present"],
                    label_category,
                    config.iou_mode,
                    config.chunk_pixels,
                )
                if name in counts:
                    counts[name].add(c)
                else:
                    counts[name] = c
        ours_times.append(time.perf_counter() - start)
        for name in layers:
            identical &= np.array_equal(counts[name].inter.numpy(), result[name].inter)
            identical &= np.array_equal(counts[name].act.numpy(), result[name].act)
            identical &= np.array_equal(counts[name].truth.numpy(), result[name].truth)

        tally = LoopTally(meta.label_category, len(meta.categories), {n: result[n].thresholds for n in layers})
        start = time.perf_counter()
        for batch, acts in store:
            tally.add_batch({name: acts[name] for name in layers}, batch["seg"], batch["scalars"], batch["present"])
        loop_times.append(time.perf_counter() - start)
        identical &= not compare_counts(result, tally, layers)
    return {
        "images": len(dataset),
        "ours_seconds": ours_times,
        "loop_seconds": loop_times,
        "ours_best_seconds": min(ours_times),
        "loop_best_seconds": min(loop_times),
        "ours_images_per_s": len(dataset) / min(ours_times),
        "loop_images_per_s": len(dataset) / min(loop_times),
        "speedup": min(loop_times) / min(ours_times),
        "counts_identical": bool(identical),
        "maps": sum(tally.maps.values()),
        "maps_over_threshold": sum(tally.pairs.values()),
        "masked_pixel_fraction": sum(tally.masked.values())
        / max(1, sum(tally.pairs.values()) * store[0][0]["seg"][0, 0].numel()),
    }


class MachineLoad:
    """CPU used by *other* processes while we time: busy time of the machine minus our own.

    ``read()`` gives the average number of cores the rest of the machine kept busy since the last
    read; far above 0 means the timings were disturbed.
    """

    def __init__(self) -> None:
        self._last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        values = [int(v) for v in fields]
        busy = (sum(values[:8]) - values[3] - values[4]) / ticks  # all but idle and iowait
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system

    def read(self) -> float | None:
        now = self._sample()
        if now is None or self._last is None:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9))


# --------------------------------------------------------------------------- memory (child processes)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def child_main(args) -> int:
    """Run one dissection in this (fresh) process and print its peak memory as one JSON line."""
    model, weights = load_demo()
    cache = DissectConfig().cache_memory if args.cache_memory == "default" else int(args.cache_memory)
    config = engine_config(args.workers, cache_memory=cache)
    rss_before = _status_kib("VmRSS")
    start = time.perf_counter()
    result = dissect(model, args.dataset, list(args.layers.split(",")), config=config)
    seconds = time.perf_counter() - start
    record = {
        "peak_rss_kib": _status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers_ru_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "rss_before_dissect_kib": rss_before,
        "cache_memory": cache,
        "seconds": seconds,
        "timings": result[args.layers.split(",")[0]].metadata["timings"],
        "weights": weights,
    }
    if record["peak_rss_kib"] is None:  # no /proc: fall back on getrusage
        record["peak_rss_kib"] = record["ru_maxrss_kib"]
    print("BENCH_CHILD " + json.dumps(record))
    return 0


def run_child(data_dir: Path, cache_memory: str, workers: int) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--dataset",
        str(data_dir),
        "--layers",
        ",".join(ALL_LAYERS),
        "--cache-memory",
        cache_memory,
        "--workers",
        str(workers),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_CHILD ")][-1]
    return json.loads(line[len("BENCH_CHILD ") :])


# --------------------------------------------------------------------------- report


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def measure_memory(datasets: dict[str, Path], workers: int) -> dict:
    """(d) peak RSS of dissect(conv1-4) on the N and 4N datasets in fresh processes, streaming and cached."""
    memory: dict = {}
    for mode, cache in (("streaming", "0"), ("default_cache", "default")):
        memory[mode] = {key: run_child(data_dir, cache, workers) for key, data_dir in datasets.items()}
        small, large = memory[mode]["N"], memory[mode]["4N"]
        memory[mode]["growth"] = large["peak_rss_kib"] / small["peak_rss_kib"] - 1
        memory[mode]["dissect_increment_growth"] = (large["peak_rss_kib"] - large["rss_before_dissect_kib"]) / max(
            1, small["peak_rss_kib"] - small["rss_before_dissect_kib"]
        ) - 1
    return memory


def _targets(kernels: dict, memory: dict) -> dict:
    kernel_speedup = kernels["conv1-4"]["speedup"]
    targets = {
        "counting_kernel_speedup_conv1-4": {
            "target": f">= {KERNEL_TARGET:g}x",
            "value": kernel_speedup,
            "met": kernel_speedup >= KERNEL_TARGET,
        },
    }
    if memory:
        growth = memory["streaming"]["growth"]
        targets["streaming_peak_rss_growth_N_to_4N"] = {
            "target": f"<= {MEMORY_TARGET:.0%}",
            "value": growth,
            "met": growth <= MEMORY_TARGET,
        }
    return targets


def print_tables(
    n: int, problems: list[str], end_to_end: dict, kernels: dict, memory: dict, load_timed: dict, targets: dict
) -> None:
    """The benchmark's tables: (a) vs (b) end to end, (c) counting only, (d) memory, machine load, targets."""
    print()
    print(
        f"counts identical (engine vs per-unit loop, inter/act/truth, every layer, N and 4N): {'NO' if problems else 'yes'}"
    )
    for p in problems:
        print(f"  MISMATCH {p}")
    print()
    print("(a) vs (b) end to end, images/s (higher is better)")
    print("    ours = dissect(): pass 1 (forward + thresholds) and pass 2 (counts; activations cached from pass 1)")
    print("    baseline = its own forward pass + per-unit loop; thresholds given to it for free")
    header = f"{'dataset':<9}{'layers':<9}{'ours img/s':>11}{'pass1 s':>9}{'pass2 s':>9}{'base img/s':>12}{'fwd s':>8}{'loop s':>8}{'speedup':>9}"
    print(header)
    for key, sets in end_to_end.items():
        for set_name, row in sets.items():
            passes, bd = row["ours"]["best_passes"], row["baseline"]["best_breakdown"]
            print(
                f"{key + '=' + str(row['images']):<9}{set_name:<9}{_fmt(row['ours']['images_per_s']):>11}"
                f"{passes['pass1_seconds']:>9.2f}{passes['pass2_seconds']:>9.2f}{_fmt(row['baseline']['images_per_s']):>12}"
                f"{bd['forward_seconds']:>8.2f}{bd['counting_seconds']:>8.2f}{row['speedup']:>8.2f}x"
            )
    print()
    print(f"(c) counting work only (same pre-computed activations of the N={n} dataset, no decoding or forward)")
    print("    ours = netdissect.math.tally.count_batch per batch; baseline = per-unit loop per image")
    print(f"{'layers':<9}{'ours img/s':>11}{'loop img/s':>12}{'speedup':>9}   target")
    for set_name, k in kernels.items():
        met = ("MET" if k["speedup"] >= KERNEL_TARGET else "NOT MET") if set_name == "conv1-4" else ""
        print(
            f"{set_name:<9}{_fmt(k['ours_images_per_s']):>11}{_fmt(k['loop_images_per_s']):>12}{k['speedup']:>8.2f}x   "
            f"{f'>= {KERNEL_TARGET:g}x: {met}' if met else ''}"
        )
    shares = ", ".join(f"{name} {k['share_of_dissection']:.0%}" for name, k in kernels.items())
    print(f"    counting's share of the whole dissection (N, same layers): {shares}")
    k = kernels["conv1-4"]
    print(
        f"    conv1-4: {k['maps_over_threshold']:,} of {k['maps']:,} (image, unit) maps exceed their threshold; "
        f"{k['masked_pixel_fraction']:.2%} of those maps' upsampled pixels are masked"
    )
    if memory:
        print()
        print("(d) peak RSS of dissect(conv1-4) in a fresh process (VmHWM; 'dissect' = peak minus RSS before the call)")
        print(f"{'mode':<34}{'N=' + str(n):>18}{'4N=' + str(4 * n):>18}{'growth':>9}{'dissect growth':>16}")
        for mode, label in (
            ("streaming", "streaming (cache_memory=0)"),
            ("default_cache", "default activation cache (2 GiB)"),
        ):
            m = memory[mode]
            print(
                f"{label:<34}{_mib(m['N']['peak_rss_kib']):>18}{_mib(m['4N']['peak_rss_kib']):>18}{m['growth']:>8.1%}{m['dissect_increment_growth']:>15.1%}"
            )
            print(
                f"{'':<34}{'dissect +' + _mib(m['N']['peak_rss_kib'] - m['N']['rss_before_dissect_kib']):>18}"
                f"{'dissect +' + _mib(m['4N']['peak_rss_kib'] - m['4N']['rss_before_dissect_kib']):>18}"
            )
        print("    the default cache keeps pass-1 activations for pass 2 while they fit 2 GiB: it is expected to grow")
    print()
    busy = [v for v in load_timed.values() if v is not None]
    if busy:
        worst = max(busy)
        print(
            f"other processes kept {worst:.2f} of {os.cpu_count()} cores busy on average during the timings"
            + ("  WARNING: the machine was shared, timings are disturbed" if worst > 0.25 else "")
        )
    for name, t in targets.items():
        value = f"{t['value']:.2f}x" if "speedup" in name else f"{t['value']:.1%}"
        print(f"target {name}: {t['target']}, measured {value}: {'MET' if t['met'] else 'NOT MET'}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="images of the smaller dataset (default 100; --quick: 32); the larger has 4N",
    )
    parser.add_argument("--quick", action="store_true", help="CI mode: N = 32, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of each timing (default 3; --quick: 1)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for every run (default 0)")
    parser.add_argument("--size", type=int, default=demo_module.DEMO_IMAGE_SIZE, help="image size in pixels")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where generated datasets are kept")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    # internal: one dissection in a fresh process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--layers", default=",".join(ALL_LAYERS), help=argparse.SUPPRESS)
    parser.add_argument("--cache-memory", default="default", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)

    # quick: N = the engine's batch size, so that both datasets are made of full batches (a lone
    # partial batch would make the N-vs-4N memory comparison meaningless)
    n = args.n or (DissectConfig().batch_size if args.quick else 100)
    reps = args.reps or (1 if args.quick else 3)
    if n < 1 or reps < 1:
        parser.error("--n and --reps must be >= 1")
    sizes = {"N": n, "4N": 4 * n}
    wall = time.perf_counter()
    config = engine_config(args.workers)
    model, weights = load_demo()

    datasets = {key: ensure_dataset(args.cache_dir, count, args.size) for key, count in sizes.items()}
    print(
        f"netdissect {netdissect.__version__} core benchmark: demo CNN ({weights}), {args.size} px images "
        f"(segmentations {args.size // 2} px), CPU, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, {os.cpu_count()} cores, workers={args.workers}, batch {config.batch_size}, best of {reps}"
    )

    # warm-up (untimed): first-call costs (thread pools, oneDNN kernels, file cache) hit neither side
    warm = dissect(model, datasets["N"], ["conv4"], config=config)
    run_baseline(model, datasets["N"], ["conv4"], {"conv4": warm["conv4"].thresholds}, config)

    load = MachineLoad()
    end_to_end: dict = {}
    problems: list[str] = []
    results_n = None
    for key, data_dir in datasets.items():
        for set_name, layers in LAYER_SETS.items():
            row, result = compare_end_to_end(model, data_dir, layers, sizes[key], config, reps)
            end_to_end.setdefault(key, {})[set_name] = row
            problems += [f"{key} {set_name}: {p}" for p in row["mismatches"]]
            if key == "N" and set_name == "conv1-4":
                results_n = result
    load_timed = {"end_to_end": load.read()}

    # (c) counting only, on the N dataset's pre-computed activations
    dataset, store = collect_activations(model, datasets["N"], config)
    kernels = {
        set_name: time_kernels(dataset, store, layers, results_n, config, reps)
        for set_name, layers in LAYER_SETS.items()
    }
    del store
    load_timed["kernel"] = load.read()
    for set_name, k in kernels.items():
        # what a faster counting kernel could save at most: its share of the whole dissection
        k["share_of_dissection"] = k["ours_best_seconds"] / end_to_end["N"][set_name]["ours"]["best_seconds"]
        if not k["counts_identical"]:
            problems.append(f"kernel {set_name}: counts differ")

    memory = {} if args.no_memory else measure_memory(datasets, args.workers)

    counts_identical = not problems
    targets = _targets(kernels, memory)
    print_tables(n, problems, end_to_end, kernels, memory, load_timed, targets)
    seconds = time.perf_counter() - wall
    print(f"benchmark wall time {seconds:.1f} s")

    report = {
        "benchmark": "bench_core",
        "quick": args.quick,
        "n": n,
        "sizes": sizes,
        "reps": reps,
        "image_size": args.size,
        "workers": args.workers,
        "batch_size": config.batch_size,
        "weights": weights,
        "environment": {
            "netdissect": netdissect.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "datasets": {key: str(path) for key, path in datasets.items()},
        "counts_identical": counts_identical,
        "mismatches": problems,
        "end_to_end": end_to_end,
        "kernel": kernels,
        "memory": memory,
        "ratios": {
            "end_to_end_conv1-4_N": end_to_end["N"]["conv1-4"]["speedup"],
            "end_to_end_conv1-4_4N": end_to_end["4N"]["conv1-4"]["speedup"],
            "end_to_end_conv4_N": end_to_end["N"]["conv4"]["speedup"],
            "end_to_end_conv4_4N": end_to_end["4N"]["conv4"]["speedup"],
            "kernel_conv1-4": kernels["conv1-4"]["speedup"],
            "kernel_conv4": kernels["conv4"]["speedup"],
        },
        "ratio_definition": "baseline seconds / our seconds (best of reps); > 1 means ours is faster",
        "targets": targets,
        "other_processes_busy_cores": load_timed,
        "wall_seconds": seconds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0 if counts_identical else 1


if __name__ == "__main__":
    sys.exit(main())
