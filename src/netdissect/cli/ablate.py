"""The ablate subcommand: how much each unit of a layer matters to each output class."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import _add_model_options, _add_preprocess_options, _load_preprocessed


def cmd_ablate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..ablation import ablate

    model = _load_preprocessed(args)
    result = ablate(
        model,
        args.images,
        args.layer,
        out=args.out,
        classes=args.classes,
        units=args.units,
        method=args.method,
        top_k=args.top_k,
        estimate=args.estimate,
        dissection=args.dissection,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        ablation_batch=args.ablation_batch,
        checkpoint_every=args.checkpoint_every,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        report=not args.no_report,
        split=args.split,
        size=args.size,
    )
    meta = result.metadata
    print(
        f"layer {args.layer}: {len(result.units)} units, {int(np.sum(result.class_counts))} images, split: {meta['split']}"
    )
    if meta.get("split_fallback_reason"):
        print(f"  (torch.fx split not used: {meta['split_fallback_reason']})")
    print(f"{'class':<24} {'images':>6} {'accuracy':>8} {'top-1 removed':>13}  top units (importance)")
    for c, name in enumerate(result.class_names):
        top = ", ".join(f"{u} ({v:.2f})" for u, v in result.top_units(name, 5))
        removed = result.group_removed[c, 0] if result.top_k else float("nan")
        print(
            f"{name:<24} {int(result.class_counts[c]):>6} {_pct(result.base_accuracy[c]):>8} {_pct(removed):>13}  {top}"
        )
    if meta.get("classes_without_images"):
        print(f"classes without images: {', '.join(meta['classes_without_images'])}")
    joined = meta.get("dissection")
    if joined:
        pearson, spearman = (joined.get(f"{name}_iou_vs_classes") for name in ("pearson", "spearman"))
        r, rho = ("undefined" if v is None else f"{v:.3f}" for v in (pearson, spearman))
        print(
            f"correlation of IoU with the number of classes having the unit in their top {joined['k']}: "
            f"Pearson r = {r}, Spearman rho = {rho}"
        )
    print(f"results: {Path(args.out).resolve()} (ablation.npz, ablation.json)")
    if not args.no_report:
        print(f"page: {(Path(args.out) / 'index.html').resolve()}")
    return 0


#: Images of the demo dataset the demo's ablation uses (its first rows).
DEMO_ABLATION_IMAGES = 200


def demo_ablation(model, data_dir: Path, args: argparse.Namespace) -> None:
    """The demo's unit ablation: conv4 of the demo model on the dataset's scene labels, joined with
    the demo run and linked from it (``<out>/ablation/index.html``)."""
    from ..ablation import ablate

    out = Path(args.out) / "ablation"
    print(f"ablating the {DEMO_ABLATION_IMAGES} first images' scenes, layer conv4 ...", flush=True)
    result = ablate(
        model,
        data_dir,
        "conv4",
        out=out,
        dissection=args.out,
        size=DEMO_ABLATION_IMAGES,
        batch_size=args.batch_size,
        device=args.device,
        overwrite=True,
        progress=not args.no_progress,
        report=not args.no_report,
    )
    for name in result.class_names:
        print(f"  {name}: top units {', '.join(str(u) for u, _ in result.top_units(name, 5))}")
    print(f"ablation: {out.resolve()}" + ("" if args.no_report else f" (page: {(out / 'index.html').resolve()})"))


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}%"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ablate subcommand."""
    p = sub.add_parser(
        "ablate",
        help="measure how much each unit of a layer matters to each output class",
        description="Remove each unit of a classifier's layer (and each class's top units together) and "
        "measure the per-class accuracy on labelled images; optionally join with a dissection of the layer.",
    )
    _add_model_options(p)
    p.add_argument("--layer", required=True, metavar="L", help="dotted module name of the layer, e.g. layer4")
    p.add_argument(
        "--images",
        required=True,
        metavar="DIR",
        help="labelled images: one folder per class (ImageFolder layout), or a Broden dataset (its scene labels)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--classes",
        metavar="FILE",
        help="the model's class names, one per line in output order (default: the model source's, "
        "else integer folder names as output indices)",
    )
    p.add_argument("--units", default="all", metavar="all|1,5,9-20", help="units to ablate (default: %(default)s)")
    p.add_argument(
        "--method",
        choices=["zero", "mean"],
        default="zero",
        help="set a removed unit to 0 or to its mean over the images and positions (default: %(default)s)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=20,
        help="largest group of a class's top units removed or kept (default: %(default)s)",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="rank units by a first-order estimate (activation x gradient, one backward pass per batch) "
        "instead of ablating each unit: for huge layers",
    )
    p.add_argument("--dissection", metavar="RUN", help="a finished dissection run of this model and layer to join")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    p.add_argument(
        "--ablation-batch",
        type=int,
        default=512,
        metavar="N",
        help="at most N images (ablated copies x batch) per forward pass of the layers after L; bounds "
        "memory (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=0, help="data loading worker processes (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument(
        "--size", type=int, metavar="N", help="use only N images, taken in turn from each class (default: all)"
    )
    p.add_argument("--input-size", type=int, metavar="PX", help="resize every image to PX x PX for the model")
    _add_preprocess_options(p)
    p.add_argument(
        "--split",
        choices=["auto", "hook"],
        default="auto",
        help="auto: run the layers before L once per batch (torch.fx), falling back to hooks; "
        "hook: always rerun the whole model per chunk of copies (default: %(default)s)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="checkpoint in --out this often; a killed run continues when run again (0: every batch; "
        "default: %(default)g)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different ablation found in --out (its results stay until the new one has finished; "
        "a failed or interrupted overwrite leaves them as they were)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write index.html and the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_ablate)
