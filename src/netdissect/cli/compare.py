"""Subcommands over several runs: compare, rotation-sweep."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .options import (
    _add_layout_options,
    _add_model_options,
    _add_option,
    _add_prepared_option,
    _add_preprocess_options,
    _add_run_options,
    _config,
    _dataset_path,
    _load_preprocessed,
    _prepared,
)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..report.compare_page import compare_runs

    index = compare_runs(args.runs, args.out, labels=args.labels, series=args.series, iou_threshold=args.iou_threshold)
    print(f"comparison: {index.resolve()}")
    return 0


def cmd_rotation_sweep(args: argparse.Namespace) -> int:
    from ..data import BrodenDataset
    from ..engine.rotation_sweep import rotation_sweep
    from ..report.charts import rotation_sweep as sweep_chart

    model = _load_preprocessed(args)
    preprocess = model.preprocess
    dataset = BrodenDataset(_dataset_path(args.dataset, args.data_dir), preprocess=preprocess, prepared=_prepared(args))
    config = _config(args)
    options = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("rotate", "rotation_power")}
    curves = rotation_sweep(model, dataset, args.layers, args.out, seed=args.seed, powers=args.powers, **options)
    print(f"{'layer':<20} " + " ".join(f"P={p:<5g}" for p in curves["powers"]) + "  (unique detectors)")
    for name, entry in curves["layers"].items():
        print(f"{name:<20} " + " ".join(f"{v:<7d}" for v in entry["unique_detectors"]))
    plot = sweep_chart.save_png(sweep_chart.data(curves), Path(args.out) / "rotation_sweep.png")
    print(f"plot: {plot.resolve()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands that compare runs."""
    p = sub.add_parser(
        "compare",
        help="compare finished runs (models, layers, checkpoints)",
        description="Build a comparison page and plots from finished runs: unique detectors per "
        "category, detectors per layer, per-unit label changes between two runs of one architecture, "
        "and with --series the emergence of concepts over checkpoints given in order.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `netdissect dissect`")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output directory of the comparison (rewritten by each compare)"
    )
    p.add_argument("--series", action="store_true", help="the runs are checkpoints in order: chart concept emergence")
    p.add_argument("--labels", nargs="+", metavar="NAME", help="names of the runs on the page (default: directories)")
    p.add_argument("--iou-threshold", type=float, help="one detector threshold for every run (default: each run's)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "rotation-sweep",
        help="dissect rotated unit bases at powers 0, .25, .5, .75, 1",
        description="The paper's rotation baseline: dissect the layers in a random rotation R**P of "
        "their unit basis for each power P, and plot unique detectors and detectors against P.",
    )
    _add_model_options(p)
    p.add_argument("--layers", nargs="+", required=True, metavar="L", help="dotted module names")
    p.add_argument("--dataset", required=True, metavar="DIR", help="Broden-format dataset or broden1_* name")
    p.add_argument("--data-dir", metavar="DIR", help="where downloaded datasets live")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for one run per power and the plot")
    p.add_argument("--seed", type=int, default=0, help="seed of the random rotation (default: %(default)s)")
    p.add_argument(
        "--powers",
        type=float,
        nargs="+",
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
        metavar="P",
        help="rotation powers (default: 0 0.25 0.5 0.75 1)",
    )
    _add_option(p, "rotation_match", help="number each rotated direction like the original unit closest to it")
    p.add_argument("--input-size", type=int, metavar="PX", help="resize whole images to PX x PX for the model")
    _add_preprocess_options(p)
    _add_layout_options(p)
    _add_prepared_option(p)
    _add_option(
        p, "overwrite", help="replace different runs found in --out (each old run stays until its new one has finished)"
    )
    _add_run_options(p)
    p.set_defaults(func=cmd_rotation_sweep)
