#!/usr/bin/env python
"""Describe benchmark: ``describe`` by image-level AUC against a plain dissection and a per-pair loop.

On the bundled demo CNN and a synthetic dataset of N images (128 px), layers conv3 and conv4:

(a) ours: ``netdissect.describe(..., methods=["auc"])`` end to end (concept labels read from the
    dataset's segmentations, one forward pass, every (unit, concept) AUC and p-value,
    Benjamini-Hochberg), no page;
(b) the plain dissection of the same layers (``netdissect.dissect``, no report);
(c) the baseline written here for the scoring step: for every unit and every eligible concept,
    the unit's values ranked again (``np.argsort`` twice, ties averaged by a per-pair loop over
    groups) and the Mann-Whitney U and normal p-value computed for that pair alone. Its AUCs must
    equal ours exactly. It is timed on the values ours computed (so the forward pass is not in
    either scoring time), against our scoring step (:func:`netdissect.describe.scores.auc_table`
    plus Benjamini-Hochberg) on the same values;
(d) the dissection with ``image_values=True`` (pass 2 also keeps every unit's image-level values:
    ``4 * images * units`` bytes per layer, reported), against (b);
(e) ``describe`` into that run, which reads the kept values instead of running the model, against
    (a). Its AUCs must equal (a)'s exactly.

Goals: (a) at most 0.5x (b); our scoring at least 20x faster than (c). (d) and (e) are reported
without a goal.

Usage::

    python benchmarks/bench_describe.py            # N = 400, 3 repetitions
    python benchmarks/bench_describe.py --quick    # CI: N = 60, one repetition

A table goes to stdout and the numbers to ``benchmarks/results/bench_describe.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import netdissect
from netdissect import describe, dissect, load_model
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.describe.concepts import broden_concepts
from netdissect.describe.scores import auc_table, benjamini_hochberg, eligible_concepts
from netdissect.describe.values import unit_values
from netdissect.models.demo import DEMO_IMAGE_SIZE

LAYERS = ["conv3", "conv4"]
GOAL_VS_DISSECT = 0.5
GOAL_VS_LOOP = 20.0


def loop_scores(values: np.ndarray, present: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """The naive scoring: every (unit, concept) pair ranked and tested on its own."""
    n, units = values.shape
    auc = np.full((units, present.shape[1]), np.nan)
    p_value = np.full_like(auc, np.nan)
    for u in range(units):
        for k in np.flatnonzero(tested):
            v = values[:, u]
            order = np.argsort(v, kind="stable")
            ranks = np.empty(n)
            sorted_v = v[order]
            i = 0
            while i < n:  # ties: the average rank of the group
                j = i
                while j + 1 < n and sorted_v[j + 1] == sorted_v[i]:
                    j += 1
                ranks[order[i : j + 1]] = (i + j) / 2 + 1
                i = j + 1
            pos = present[:, k]
            n1 = pos.sum()
            n2 = n - n1
            u_stat = ranks[pos].sum() - n1 * (n1 + 1) / 2
            auc[u, k] = u_stat / (n1 * n2)
            sigma = math.sqrt(n1 * n2 * (n + 1) / 12)
            p_value[u, k] = 0.5 * math.erfc((u_stat - n1 * n2 / 2 - 0.5) / sigma / math.sqrt(2))
    return auc


def best(times: list[float]) -> float:
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI mode: 60 images, one repetition")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_describe.json"))
    args = parser.parse_args()
    n = 60 if args.quick else args.images
    repeat = 1 if args.quick else args.repeat
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model("demo")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(Path(tmp) / "data", n=n, size=DEMO_IMAGE_SIZE, seed=0)
        options = dict(device="cpu", progress=False, batch_size=32)
        ours, plain, kept, joined = [], [], [], []
        for i in range(repeat):
            start = time.perf_counter()
            result = describe(model, LAYERS, dataset=data, min_images=5, **options)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            dissect(model, data, LAYERS, workers=0, cache_memory=0, **options)
            plain.append(time.perf_counter() - start)
            run = Path(tmp) / f"run{i}"
            start = time.perf_counter()
            dissected = dissect(model, data, LAYERS, run, workers=0, cache_memory=0, image_values=True, **options)
            kept.append(time.perf_counter() - start)
            start = time.perf_counter()
            reused = describe(model, LAYERS, run, dataset=data, min_images=5, report=False, **options)
            joined.append(time.perf_counter() - start)
        kept_bytes = sum(dissected[name].image_values.nbytes for name in LAYERS)
        probes = broden_concepts(data, progress=False)
        values, _ = unit_values(model, LAYERS, probes.images, torch.device("cpu"), batch_size=32, progress=False)
        tested = eligible_concepts(probes.present, 5, 0.5)
        scoring, looping, identical = [], [], True
        for name in LAYERS:
            for _ in range(repeat):
                start = time.perf_counter()
                table = auc_table(values[name], probes.present, tested)
                benjamini_hochberg(table.p_value, 0.05)
                scoring.append((name, time.perf_counter() - start))
            start = time.perf_counter()
            naive = loop_scores(values[name], probes.present, tested)
            looping.append((name, time.perf_counter() - start))
            same = np.allclose(naive[:, tested], table.auc[:, tested], rtol=0, atol=1e-12)
            identical = identical and bool(same)
            ours_auc = result[name].arrays["auc"][:, tested]
            identical = identical and bool(np.allclose(ours_auc, naive[:, tested], rtol=0, atol=1e-12))
            identical = identical and bool(np.array_equal(reused[name].arrays["auc"][:, tested], ours_auc))
    score_time = sum(min(t for m, t in scoring if m == name) for name in LAYERS)
    loop_time = sum(t for _, t in looping)
    report = {
        "quick": args.quick,
        "images": n,
        "layers": LAYERS,
        "units": {name: int(values[name].shape[1]) for name in LAYERS},
        "tested_concepts": int(tested.sum()),
        "describe_seconds": best(ours),
        "dissect_seconds": best(plain),
        "scoring_seconds": score_time,
        "loop_seconds": loop_time,
        "dissect_image_values_seconds": best(kept),
        "image_values_bytes": kept_bytes,
        "describe_joined_seconds": best(joined),
        "ratios": {
            "describe_vs_dissect": best(ours) / best(plain),
            "loop_vs_scoring": loop_time / score_time,
            "dissect_image_values_vs_dissect": best(kept) / best(plain),
            "describe_joined_vs_describe": best(joined) / best(ours),
        },
        "aucs_identical": identical,
        "versions": {
            "netdissect": netdissect.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "threads": torch.get_num_threads(),
    }
    r = report["ratios"]
    print(f"describe benchmark: demo CNN, {', '.join(LAYERS)}, {n} images, {report['tested_concepts']} concepts tested")
    print(f"{'describe (auc), end to end':<40} {report['describe_seconds']:8.2f} s")
    print(f"{'dissect, same layers':<40} {report['dissect_seconds']:8.2f} s")
    print(f"{'  describe / dissect':<40} {r['describe_vs_dissect']:8.2f} x  (goal <= {GOAL_VS_DISSECT})")
    print(f"{'scoring (vectorised)':<40} {score_time:8.3f} s")
    print(f"{'scoring, one pair at a time':<40} {loop_time:8.3f} s")
    print(f"{'  loop / vectorised':<40} {r['loop_vs_scoring']:8.1f} x  (goal >= {GOAL_VS_LOOP})")
    print(
        f"{'dissect --image-values':<40} {report['dissect_image_values_seconds']:8.2f} s  ({kept_bytes / 2**20:.2f} MiB kept)"
    )
    print(f"{'  / dissect':<40} {r['dissect_image_values_vs_dissect']:8.2f} x")
    print(f"{'describe (auc) of that run':<40} {report['describe_joined_seconds']:8.2f} s")
    print(f"{'  / describe end to end':<40} {r['describe_joined_vs_describe']:8.2f} x")
    print(f"AUCs identical to the loop: {'yes' if identical else 'NO'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
