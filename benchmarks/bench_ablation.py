#!/usr/bin/env python
"""Ablation benchmark: batched single-unit ablation vs a naive loop of one forward pass per unit.

On the bundled demo CNN and a synthetic dataset of N images (128 px), layer conv4 (128 units),
scene labels (5 classes):

(a) ours: ``netdissect.ablate`` with the torch.fx split (the layers before conv4 run once per
    batch; ablated copies of conv4's output are stacked through the rest); its single-unit
    stage's time (image decoding included) is compared;
(b) ours with the hook fallback (``split="hook"``: the whole model reruns on the input repeated
    once per copy), for the gain of the split itself;
(c) the baseline written here: the images decoded once and kept in memory (decoding free for
    it), then for every unit one full forward pass over all images with a forward hook setting
    the unit's channel to 0. Its per-class accuracies must equal ours exactly and its mean
    true-class probabilities within 1e-6;
(d) the first-order estimate (``estimate=True``): its time, and the Spearman rank correlation
    of its importances with the exact probability drops (all units x classes, and the mean
    over classes of the per-class correlation).

Usage::

    python benchmarks/bench_ablation.py            # N = 200, 3 repetitions
    python benchmarks/bench_ablation.py --quick    # CI: N = 40, units 1-16, one repetition

A table goes to stdout and the numbers to ``benchmarks/results/bench_ablation.json`` (``--out``).
Ratios are ``baseline seconds / our seconds`` (> 1: ours is faster); timings are the best of
the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import netdissect
from netdissect import ablate, load_model
from netdissect.ablation.compute import spearman
from netdissect.ablation.images import ImageDataset, collate_images, labelled_images, model_class_names
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.models.demo import DEMO_IMAGE_SIZE

LAYER = "conv4"
TARGET_RATIO = 3.0


def baseline(model, images, batch_size: int, units: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Per unit (row 0: none removed) and class: accuracy and mean true-class probability; seconds."""
    data = ImageDataset(images, model.preprocess)
    batches = [
        collate_images([data[i] for i in range(s, min(s + batch_size, len(data)))])
        for s in range(0, len(data), batch_size)
    ]
    module = model.module
    layer = dict(module.named_modules())[LAYER]
    outputs = torch.tensor(images.class_outputs)
    classes = len(images.class_names)
    counts = torch.bincount(torch.tensor(images.targets), minlength=classes).double()
    start = time.perf_counter()
    rows_acc, rows_prob = [], []
    for u in [-1, *(v - 1 for v in units)]:
        correct = torch.zeros(classes, dtype=torch.float64)
        prob = torch.zeros(classes, dtype=torch.float64)

        def hook(m, i, o, u=u):
            if u < 0:
                return o
            o = o.clone()
            o[:, u] = 0
            return o

        handle = layer.register_forward_hook(hook)
        with torch.no_grad():
            for x, targets, _ in batches:
                logits = module(x)
                true = outputs[targets]
                correct.index_add_(0, targets, (logits.argmax(1) == true).double())
                prob.index_add_(0, targets, torch.softmax(logits, 1).gather(1, true[:, None])[:, 0].double())
        handle.remove()
        rows_acc.append((correct / counts).numpy())
        rows_prob.append((prob / counts).numpy())
    return np.array(rows_acc), np.array(rows_prob), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--units", default="all", help="units to ablate (default: all 128)")
    parser.add_argument("--quick", action="store_true", help="N = 40, units 1-16, one repetition")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_ablation.json")
    args = parser.parse_args()
    if args.quick:
        args.n, args.reps, args.units = 40, 1, "1-16"
    model = load_model("demo")
    report: dict = {
        "n": args.n,
        "reps": args.reps,
        "quick": args.quick,
        "layer": LAYER,
        "environment": {
            "netdissect": netdissect.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(Path(tmp) / "data", n=args.n, size=DEMO_IMAGE_SIZE, seed=0)
        images = labelled_images(data, model_class_names(model))
        common = dict(top_k=1, units=args.units, batch_size=args.batch_size, device="cpu", progress=False, report=False)
        times: dict[str, list[float]] = {"ours_fx": [], "ours_hook": [], "baseline": [], "estimate": []}
        for _ in range(args.reps):
            ours = ablate(model, images, LAYER, **common)
            times["ours_fx"].append(ours.metadata["timings"]["single"])
            hook = ablate(model, images, LAYER, split="hook", **common)
            times["ours_hook"].append(hook.metadata["timings"]["single"])
            acc, prob, seconds = baseline(model, images, args.batch_size, ours.units.tolist())
            times["baseline"].append(seconds)
            est = ablate(model, images, LAYER, estimate=True, **common)
            times["estimate"].append(est.metadata["timings"]["single"])
    best = {k: min(v) for k, v in times.items()}
    identical = bool(
        np.array_equal(ours.accuracy, acc[1:])
        and np.array_equal(ours.base_accuracy, acc[0])
        and np.array_equal(hook.accuracy, acc[1:])
    )
    prob_diff = float(np.nanmax(np.abs(ours.prob_drop - (prob[0] - prob[1:]))))
    valid = ours.class_counts > 0
    per_class = [spearman(est.importance[:, c], ours.prob_drop[:, c]) for c in np.flatnonzero(valid)]
    report.update(
        {
            "units": len(ours.units),
            "classes": len(ours.class_names),
            "split": ours.metadata["split"],
            "seconds": times,
            "best_seconds": best,
            "ratios": {
                "baseline_vs_ours_fx": best["baseline"] / best["ours_fx"],
                "baseline_vs_ours_hook": best["baseline"] / best["ours_hook"],
                "baseline_vs_estimate": best["baseline"] / best["estimate"],
            },
            "accuracies_identical": identical,
            "max_prob_drop_difference": prob_diff,
            "estimate_spearman": {
                "vs_prob_drop_all": spearman(est.importance, ours.prob_drop),
                "vs_importance_all": spearman(est.importance, ours.importance),
                "vs_prob_drop_mean_per_class": float(np.mean(per_class)),
            },
            "target_ratio": TARGET_RATIO,
        }
    )
    report["target_met"] = report["ratios"]["baseline_vs_ours_fx"] >= TARGET_RATIO
    print(
        f"ablation of {report['units']} units of {LAYER}, {args.n} images, {report['classes']} classes (best of {args.reps})"
    )
    print(f"{'method':<44} {'seconds':>8} {'ratio':>7}")
    print(f"{'naive: one full forward pass per unit':<44} {best['baseline']:>8.2f} {1:>7.2f}")
    for key, name in (
        ("ours_fx", "ours (torch.fx split)"),
        ("ours_hook", "ours (hook fallback)"),
        ("estimate", "first-order estimate"),
    ):
        print(f"{name:<44} {best[key]:>8.2f} {best['baseline'] / best[key]:>7.2f}")
    print(f"results identical: {'yes' if identical else 'NO'} (accuracies exact; prob. drop max diff {prob_diff:.1e})")
    s = report["estimate_spearman"]
    print(
        f"estimate vs exact, Spearman: {s['vs_prob_drop_all']:.3f} (probability drop, all), "
        f"{s['vs_prob_drop_mean_per_class']:.3f} (mean per class), {s['vs_importance_all']:.3f} (accuracy drop)"
    )
    print(f"target >= {TARGET_RATIO:g}x: {'met' if report['target_met'] else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if identical and prob_diff <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
