"""The explain subcommand: images segmented by a dissected layer's units, and the units their prediction needs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import _add_model_options, _json_object


def cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import explain

    result = explain(
        args.run,
        args.images,
        args.out,
        layer=args.layer,
        top_units=args.top_units,
        classes=args.classes,
        iou_threshold=args.iou_threshold,
        model=args.model,
        weights=args.weights,
        trust_pickle=args.trust_pickle,
        model_args=_json_object(args.model_args, "--model-args"),
        dataset=args.dataset,
        device=args.device,
        batch_size=args.batch_size,
        ablation_batch=args.ablation_batch,
        report=not args.no_report,
    )
    print_explanation(result)
    print(f"results: {Path(args.out).resolve()} (explain.json, explain.npz, seg-<i>.png, mask-<i>-<unit>.png)")
    if not args.no_report:
        print(f"page: {(Path(args.out) / 'index.html').resolve()}")
    return 0


def print_explanation(result, units: int = 5) -> None:
    """Per image: the top prediction, the segmentation's largest concepts and the units with the largest effects."""
    from ..labels import display_name

    meta = result.metadata
    print(f"layer {meta['layer']}: {meta['detectors']} detector units of {meta['units']}, split: {meta['split']}")
    for explained in result.images:
        top = explained.top_class
        print(f"{Path(explained.image).name}: {top['class']} ({top['probability']:.3f})")
        concepts = ", ".join(
            f"{display_name(c)} {_share(explained.coverage[k])}" for k, c in list(explained.legend.items())[:6]
        )
        print(f"  segmentation: {concepts or 'no detector unit fires'}")
        listed = ", ".join(
            f"{u['unit']} {display_name(u['label'])} ({u['effect']:+.3f})" for u in explained.units[:units]
        )
        print(f"  units it needs (drop of p): {listed}")


def _share(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.005 else "<1%"


#: Rows of the demo dataset the demo explains (its first images).
DEMO_EXPLAIN_IMAGES = 4


def demo_explain(model, data_dir: Path, args: argparse.Namespace) -> None:
    """The demo's explanations: the first images of the demo dataset by conv4 of the demo run
    (``<out>/explain/``, its page linked from the run)."""
    import csv

    from ..explain import explain

    with open(data_dir / "index.csv", newline="", encoding="utf-8") as handle:
        rows = [row["image"] for _, row in zip(range(DEMO_EXPLAIN_IMAGES), csv.DictReader(handle))]
    out = Path(args.out) / "explain"
    print(f"explaining {len(rows)} images by conv4 ...", flush=True)
    result = explain(
        args.out,
        [data_dir / "images" / image for image in rows],
        out,
        layer="conv4",
        model=model,
        device=args.device,
        report=not args.no_report,
    )
    print_explanation(result, units=3)
    print(f"explanations: {out.resolve()}" + ("" if args.no_report else f" (page: {(out / 'index.html').resolve()})"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the explain subcommand."""
    p = sub.add_parser(
        "explain",
        help="explain images: segment them by a dissected layer's units, list the units their prediction needs",
        description="For each image: its segmentation by the detector units of a dissected layer (each pixel "
        "takes the concept of the unit most above its threshold there), the model's top predictions, and the "
        "effect on the top class's probability of zeroing each unit of the layer on this image alone (exact, "
        "batched as in ablate), the largest listed with their masks. The model, thresholds, labels and sizes "
        "are the run's. Writes <out>/explain.json, explain.npz, seg-<i>.png, mask-<i>-<unit>.png and index.html "
        "(linked from the run's page); an --out of explanations is rewritten.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="a finished dissection run of a classifier")
    p.add_argument(
        "--images", required=True, nargs="+", metavar="IMG", help="image files (a folder: the images directly in it)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rewritten)")
    p.add_argument("--layer", metavar="L", help="a dissected layer of the run (default: its last)")
    p.add_argument(
        "--top-units",
        type=int,
        default=10,
        metavar="K",
        help="units with the largest effects listed per image, with their masks (default: %(default)s)",
    )
    p.add_argument(
        "--classes",
        metavar="FILE",
        help="the model's class names, one per line in output order (default: the model source's, else output indices)",
    )
    p.add_argument(
        "--iou-threshold",
        type=float,
        metavar="T",
        help="IoU at which a unit is a detector, for the segmentation (default: the run's)",
    )
    _add_model_options(
        p,
        required=False,
        model_help="the run's model, when its recorded SPEC does not load it as dissected (checked against the "
        "run's weights fingerprint)",
        weights_help="checkpoint (state dict) or torchvision weights name for the run's model",
    )
    p.add_argument(
        "--dataset", metavar="DIR", help="the run's dataset, if it moved (its index.csv gives the image sizes)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    p.add_argument(
        "--ablation-batch",
        type=int,
        default=128,
        metavar="N",
        help="at most N images (unit copies x batch) per pass of the layers after the layer; bounds memory "
        "(default: %(default)s)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write index.html")
    p.set_defaults(func=cmd_explain)
