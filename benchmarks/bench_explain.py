#!/usr/bin/env python
"""Explain benchmark: the time per image of ``netdissect.explain`` against one forward pass per unit.

A model is dissected on a synthetic dataset (not timed), then N of its images are explained by
each layer, in one run:

(a) ours: ``netdissect.explain`` end to end, without writing (``out=None``): image decoding, the
    layers before the layer once per batch of images, every unit's zeroed copy of the layer's
    output through the rest of the network (the ablation engine), the unit segmentation and the
    top units' masks;
(b) the baseline written here: the images decoded once and kept in memory (decoding free for
    it), then for every unit one full forward pass with a forward hook setting the unit's channel
    to 0, plus one pass with nothing zeroed: the drop of each image's top-class probability; one
    image at a time (explaining an image alone), and batched over the N images (``--batch-size``).
    Its effects must equal ours up to float32 rounding (within 1e-5, checked).

Usage::

    python benchmarks/bench_explain.py                         # demo CNN, conv3 and conv4, N = 16, 3 repetitions
    python benchmarks/bench_explain.py --quick                 # CI: conv4, N = 4, one repetition
    python benchmarks/bench_explain.py --threads 1             # one CPU thread (a shared, loaded machine)
    python benchmarks/bench_explain.py --model torchvision:resnet18 --layers layer3 layer4 --size 224

A table goes to stdout and the numbers to ``benchmarks/results/bench_explain.json`` (``--out``).
Ratios are ``baseline seconds / our seconds`` (> 1: ours is faster); timings are the best of the
repetitions. The goal: at least 10x.
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
from netdissect import dissect, explain, load_model
from netdissect.data import BrodenDataset
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.explain.source import read_image, read_run_layer

TARGET_RATIO = 10.0
TOLERANCE = 1e-5  # probabilities in float32: convolutions round differently at other batch sizes


def baseline(module: torch.nn.Module, layer: str, x: torch.Tensor, batch_size: int) -> tuple[np.ndarray, float]:
    """Per image and unit, the drop of the top-class probability with the unit zeroed: one full forward
    pass per unit over all images (batches of ``batch_size``). Returns ``(effects (N, U), seconds)``."""
    target = dict(module.named_modules())[layer]
    start = time.perf_counter()
    with torch.no_grad():
        batches = list(x.split(batch_size))
        captured: list[torch.Tensor] = []
        handle = target.register_forward_hook(lambda m, i, o: captured.append(o))
        base = torch.cat([torch.softmax(module(b), -1) for b in batches]).double()
        handle.remove()
        width = captured[0].shape[1]
        top = base.argmax(1, keepdim=True)
        p_top = base.gather(1, top)[:, 0]
        effects = np.zeros((x.shape[0], width))
        for u in range(width):

            def zero(m, i, o, u=u):
                o = o.clone()
                o[:, u] = 0
                return o

            handle = target.register_forward_hook(zero)
            p = torch.cat([torch.softmax(module(b), -1) for b in batches]).double().gather(1, top)[:, 0]
            handle.remove()
            effects[:, u] = (p_top - p).numpy()
    return effects, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model SPEC (default: %(default)s)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--layers", nargs="+", default=["conv3", "conv4"])
    parser.add_argument("--size", type=int, default=128, help="image side of the synthetic dataset (default: 128)")
    parser.add_argument("--n", type=int, default=16, help="images explained (default: %(default)s)")
    parser.add_argument("--dataset-n", type=int, default=40, help="images dissected (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1 on a shared, loaded machine)"
    )
    parser.add_argument("--quick", action="store_true", help="conv4 only, N = 4, one repetition")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_explain.json")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.n, args.reps, args.dataset_n = ["conv4"], 4, 1, 16
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, args.weights)
    device = torch.device(args.device)
    report: dict = {
        "model": args.model,
        "n": args.n,
        "reps": args.reps,
        "quick": args.quick,
        "batch_size": args.batch_size,
        "environment": {
            "netdissect": netdissect.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        },
        "layers": {},
    }
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(Path(tmp) / "data", n=max(args.dataset_n, args.n), size=args.size, seed=0)
        run = Path(tmp) / "run"
        dataset = BrodenDataset(data, preprocess=model.preprocess)
        dissect(model, dataset, args.layers, run, workers=0, progress=False, device=args.device, batch_size=16)
        paths = [data / "images" / row.image for row in dataset.meta.rows[: args.n]]
        module = model.module.to(device).eval()
        for layer in args.layers:
            source = read_run_layer(run, layer)
            x = torch.stack([source.preprocess.normalize(read_image(p, source.preprocess)) for p in paths]).to(device)
            seconds: dict[str, list[float]] = {"ours": [], "baseline_per_image": [], "baseline_batched": []}
            for _ in range(args.reps):
                start = time.perf_counter()
                result = explain(run, paths, layer=layer, model=model, device=args.device, batch_size=args.batch_size)
                seconds["ours"].append(time.perf_counter() - start)
                single, took = baseline(module, layer, x, 1)
                seconds["baseline_per_image"].append(took)
                batched, took = baseline(module, layer, x, args.batch_size)
                seconds["baseline_batched"].append(took)
            ours = np.stack([im.effects for im in result.images])
            diff = float(max(np.abs(ours - single).max(), np.abs(ours - batched).max()))
            ok &= diff <= TOLERANCE
            per_image = {k: min(v) / args.n for k, v in seconds.items()}
            ratios = {k: per_image[k] / per_image["ours"] for k in ("baseline_per_image", "baseline_batched")}
            report["layers"][layer] = {
                "units": int(ours.shape[1]),
                "split": result.metadata["split"],
                "seconds": seconds,
                "seconds_per_image": per_image,
                "ratios": ratios,
                "max_effect_difference": diff,
                "target_met": min(ratios.values()) >= TARGET_RATIO,
            }
    report["target_ratio"] = TARGET_RATIO
    report["effects_equal"] = ok
    report["tolerance"] = TOLERANCE
    print(f"explain, {args.model}, {args.n} images ({args.size} px), {args.device} (best of {args.reps})")
    print("seconds per image; naive: one full forward pass per unit, one image at a time / batched over the images")
    print(
        f"{'layer':<10} {'units':>5} {'ours':>8} {'naive, 1 image':>15} {'ratio':>6} {'naive, batched':>15} {'ratio':>6}  max |diff|"
    )
    for layer, r in report["layers"].items():
        s, q = r["seconds_per_image"], r["ratios"]
        print(
            f"{layer:<10} {r['units']:>5} {s['ours']:>8.4f} {s['baseline_per_image']:>15.4f} {q['baseline_per_image']:>6.1f} "
            f"{s['baseline_batched']:>15.4f} {q['baseline_batched']:>6.1f}  {r['max_effect_difference']:.1e}"
        )
    print(f"effects equal (max |diff| <= {TOLERANCE:g}, float32 rounding): {'yes' if ok else 'NO'}")
    for layer, r in report["layers"].items():
        print(f"target >= {TARGET_RATIO:g}x against both, {layer}: {'met' if r['target_met'] else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
