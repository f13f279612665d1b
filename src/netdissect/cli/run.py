"""Dissection subcommands: dissect, report, layers, demo."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from .._version import __version__
from .options import (
    _add_layout_options,
    _add_model_options,
    _add_option,
    _add_prepared_option,
    _add_preprocess_options,
    _add_report_options,
    _add_run_options,
    _config,
    _dataset_path,
    _load,
    _load_preprocessed,
    _prepared,
    _report,
)

DEFAULT_DEMO_OUT = "netdissect-demo"


def cmd_dissect(args: argparse.Namespace) -> int:
    from ..data import BrodenDataset
    from ..engine.runner import dissect

    config = _config(args)
    model = _load_preprocessed(args)
    preprocess = model.preprocess
    dataset = BrodenDataset(
        _dataset_path(args.dataset, args.data_dir),
        categories=args.categories,
        split=args.split,
        size=args.size,
        preprocess=preprocess,
        prepared=_prepared(args),
    )
    if dataset.prepared is not None:
        print(f"reading the prepared dataset {dataset.prepared.path}", flush=True)
    result = dissect(model, dataset, args.layers, out=args.out, config=config)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 prints and writes the report
        return 0
    print(result.format_table())
    print(f"results: {Path(args.out).resolve()}")
    _report(args, args.out, dataset)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_report  # reads the dataset itself, without torch (fast)

    index = write_report(args.run_dir, dataset=args.dataset, examples=args.examples, progress=not args.no_progress)
    print(f"report: {index.resolve()}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    import torch

    from ..capture.hooks import layer_shapes
    from ..capture.tokens import looks_channels_last, parse_tokens, token_grid
    from ..errors import OptionError

    tokens = parse_tokens(args.tokens)
    if args.input_size < 1:
        raise OptionError(f"--input-size must be >= 1, got {args.input_size}")
    model = _load(args)
    size = args.input_size
    x = torch.zeros(1, 3, size, size)
    rows = layer_shapes(model.module, x)
    width = max((len(n) for n, _, _ in rows), default=10)
    print(f"{'layer':<{width}}  {'type':<20} {'output shape':<22} dissectable")
    for name, kind, shape in rows:
        text = "not called" if shape is None else str(list(shape)) if shape else "(no tensor)"
        ok = ""
        if shape is not None and len(shape) == 4:
            ok = "yes"
            if args.channels_last:
                ok = f"yes (channels-last: {shape[3]} units, {shape[1]}x{shape[2]})"
            elif looks_channels_last(shape, (size, size)):
                ok = "yes (looks channels-last: pass --channels-last)"
        elif shape is not None and len(shape) == 3 and shape[0] == 1:
            found = token_grid(shape[1], (size, size), tokens)
            if found is not None:
                k, h, w = found
                ok = f"yes (tokens: {shape[2]} units, {h}x{w}, drop {k})"
        print(f"{name:<{width}}  {kind:<20} {text:<22} {ok}")
    return 0


def cache_dir() -> Path:
    """Where netdissect caches generated data: $NETDISSECT_CACHE, else ~/.cache/netdissect."""
    from ..data.prepared import default_cache_dir

    return default_cache_dir()


def demo_dataset(n: int, seed: int, progress: bool) -> Path:
    """The demo's synthetic dataset, generated once into the cache directory."""
    from ..data.synthetic import make_synthetic_dataset
    from ..models.demo import DEMO_IMAGE_SIZE

    target = cache_dir() / f"synthetic-{__version__}-n{n}-s{DEMO_IMAGE_SIZE}-seed{seed}"
    if (target / "index.csv").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        make_synthetic_dataset(tmp / "data", n=n, size=DEMO_IMAGE_SIZE, seed=seed, progress=progress)
        if (target / "index.csv").exists():  # another process finished first
            return target
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp / "data", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data import BrodenDataset
    from ..engine.runner import dissect
    from ..models import load_model
    from ..models.demo import DEMO_LAYERS

    config = _config(args, overwrite=True)  # bad options fail before the dataset is generated
    print(f"preparing the synthetic demo dataset ({args.images} images) ...", flush=True)
    data_dir = demo_dataset(args.images, args.seed, progress=not args.no_progress)
    model = load_model("demo")
    dataset = BrodenDataset(data_dir, preprocess=model.preprocess, prepared=_prepared(args))
    print(f"dataset: {data_dir}\nmodel: demo CNN, layers {', '.join(DEMO_LAYERS)}", flush=True)
    result = dissect(model, dataset, list(DEMO_LAYERS), out=args.out, config=config)
    print(result.format_table())
    print(f"results: {Path(args.out).resolve()} (summary.json, <layer>/tally.csv, units.json, iou.npz)")
    _report(args, args.out, dataset)
    if not args.no_ablation:
        from .ablate import demo_ablation

        demo_ablation(model, data_dir, args)
    if not args.no_explain:  # explain: a few demo images segmented by conv4's units (cli/explain.py)
        from .explain import demo_explain

        demo_explain(model, data_dir, args)
    if not args.no_describe:
        from .describe import demo_describe

        demo_describe(model, data_dir, args)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the dissection subcommands."""
    p = sub.add_parser(
        "dissect",
        help="dissect layers of a model on a Broden-format dataset",
        description="Score every unit of the given layers against every concept of the dataset.",
    )
    _add_model_options(p)
    p.add_argument(
        "--layers",
        nargs="+",
        required=True,
        metavar="L",
        help="dotted module names, e.g. layer4 or features.10 (see `netdissect layers`)",
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="DIR",
        help="Broden-format dataset directory, or broden1_224/227/384 in the data directory",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where downloaded datasets live (default: $NETDISSECT_DATA, else ~/.cache/netdissect/data)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run directory for the results")
    p.add_argument("--categories", nargs="+", metavar="CAT", help="categories to use (default: all)")
    p.add_argument("--split", choices=["train", "val"], help="use one split only (default: both)")
    p.add_argument("--size", type=int, metavar="N", help="use only the first N images")
    p.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="resize whole images (never crop) to PX x PX for the model; masks still "
        "compare at the segmentation size (default: the dataset's own size)",
    )
    _add_preprocess_options(p)
    _add_layout_options(p)
    _add_prepared_option(p)
    for name in ("overwrite", "rotate", "rotation_power", "rotation_match"):
        _add_option(p, name)
    _add_run_options(p)
    _add_report_options(p)
    p.set_defaults(func=cmd_dissect)

    p = sub.add_parser(
        "report",
        help="rebuild the HTML report of a finished run",
        description="Rebuild the HTML report (pages, top images and masks, charts) of a run directory "
        "from its saved results; the model is not needed.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `netdissect dissect`")
    p.add_argument("--dataset", metavar="DIR", help="the dataset, if it moved since the run (default: the run's)")
    p.add_argument("--examples", type=int, default=10, help="top images shown per unit (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "layers",
        help="list a model's layers with their output shapes",
        description="List every named module, its type and its output shape for one dummy input.",
    )
    _add_model_options(p)
    p.add_argument("--input-size", type=int, default=224, help="side of the dummy input image (default: %(default)s)")
    _add_layout_options(p)
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser(
        "demo",
        help="dissect the bundled demo model on a synthetic dataset (offline)",
        description="Generate (once, cached) a synthetic dataset, dissect every conv layer of the bundled "
        "demo CNN on it, write the report, and ablate conv4's units on the dataset's scene labels.",
    )
    p.add_argument(
        "--out",
        default=DEFAULT_DEMO_OUT,
        metavar="DIR",
        help="run directory; a different run found there is replaced (default: %(default)s)",
    )
    p.add_argument("--images", type=int, default=400, help="images in the demo dataset (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo dataset (default: %(default)s)")
    _add_prepared_option(p)
    _add_run_options(p)
    _add_report_options(p)
    p.add_argument("--no-ablation", action="store_true", help="skip the unit ablation of conv4 on the scene labels")
    p.add_argument(
        "--no-describe",
        action="store_true",
        help="skip describing conv4 and the output layer fc (image-level AUC, WPMI with the demo CLIP)",
    )
    p.add_argument(
        "--no-explain", action="store_true", help="skip explaining a few demo images by conv4's units (explain)"
    )
    # The demo CNN runs again in pass 2 at no measurable cost; keeping its ~380 MB of activations
    # between the passes would only raise the peak memory.
    p.set_defaults(func=cmd_demo, cache_memory=0.0)
