"""The describe subcommand: every unit of any layer described by image-level AUC and by WPMI."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import _add_model_options, _add_preprocess_options, _load_preprocessed


def cmd_describe(args: argparse.Namespace) -> int:
    from ..describe import describe

    model = _load_preprocessed(args)
    result = describe(
        model,
        args.layers,
        args.out,
        dataset=args.dataset,
        images=args.images,
        labels=args.labels,
        methods=args.method,
        concepts=args.concepts,
        clip=args.clip,
        top_k=args.top_k,
        min_images=args.min_images,
        max_fraction=args.max_fraction,
        alpha=args.alpha,
        formula_length=args.formula_length,
        beam=args.beam,
        formula_ops=args.formula_ops,
        classes=args.classes,
        size=args.size,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        tokens=args.tokens,
        channels_last=args.channels_last,
        checkpoint_every=args.checkpoint_every,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        report=not args.no_report,
    )
    print(result.format_table())
    for name, layer in result.layers.items():
        methods = sorted({r["method"] for r in layer.rows})
        shown = min(layer.units, 8)
        print(f"{name}: rank-1 descriptions of the first {shown} units")
        for u in range(1, shown + 1):
            cells = []
            for method in methods:
                rows = layer.unit_rows(u, method)
                if rows:
                    r = rows[0]
                    mark = "" if r["significant"] is None else (" *" if r["significant"] else "")
                    cells.append(f"{method} {r['concept']} ({r['score']:.3f}{mark})")
            print(f"  unit {u}: " + "; ".join(cells))
    print("(* significant at --alpha after Benjamini-Hochberg)")
    print(f"results: {Path(args.out).resolve()} (<layer>/descriptions.csv, descriptions.json, descriptions.npz)")
    if not args.no_report:
        print(f"page: {(Path(args.out) / 'describe.html').resolve()}")
    return 0


#: The demo describes these layers of the demo model: a conv layer and the classifier's output.
DEMO_DESCRIBE_LAYERS = ("conv4", "fc")


def demo_describe(model, data_dir: Path, args: argparse.Namespace) -> None:
    """The demo's descriptions: conv4 and fc of the demo model by image-level AUC on the dataset's
    labels and by WPMI with the demo CLIP, joined to the demo run (``<out>/describe.html``); the
    final-layer accuracy on its scenes."""
    from ..describe import describe

    print(f"describing {', '.join(DEMO_DESCRIBE_LAYERS)} by image-level AUC and WPMI (demo CLIP) ...", flush=True)
    result = describe(
        model,
        list(DEMO_DESCRIBE_LAYERS),
        args.out,
        dataset=data_dir,
        methods=["auc", "wpmi"],
        clip="demo",
        min_images=min(10, max(2, args.images // 20)),  # a concept on >= 5 % of a small demo's images
        batch_size=args.batch_size,
        device=args.device,
        overwrite=True,
        progress=not args.no_progress,
        report=not args.no_report,
    )
    print(result.format_table())
    fc = result["fc"]
    print("  fc (one unit per scene): " + ", ".join(f"{u} {c}" for u, c in enumerate(fc.best("auc"), 1)))
    page = "" if args.no_report else f" (page: {(Path(args.out) / 'describe.html').resolve()})"
    print(f"descriptions: {Path(args.out).resolve()}/<layer>/descriptions.csv{page}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the describe subcommand."""
    from ..formulas.terms import FORMULA_OPS

    p = sub.add_parser(
        "describe",
        help="describe every unit of any layer (fc, tokens, maps) by image-level AUC or CLIP words (WPMI)",
        description="Describe each unit of the given layers, fully connected and token layers included: by "
        "the AUC of its image-level values for the images with each concept (INVERT; one-sided Mann-Whitney "
        "p-values, Benjamini-Hochberg) and/or by CLIP-Dissect's soft-WPMI against a word list. Writes "
        "<out>/<layer>/descriptions.csv/.json/.npz; an --out holding a dissection run of the same model "
        "gets the descriptions beside its IoU labels.",
    )
    _add_model_options(p)
    p.add_argument("--layers", nargs="+", required=True, metavar="L", help="dotted module names (any output shape)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="DIR", help="a Broden-format dataset (concepts annotated in each image)")
    source.add_argument(
        "--images",
        metavar="DIR",
        help="a folder of images: class folders (ImageFolder), images named by --labels, or unlabelled probes for wpmi",
    )
    p.add_argument("--labels", metavar="CSV", help="with --images: rows image,labels (labels ';'-separated)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory (a dissection run of this model to join, or a new one)")  # fmt: skip
    p.add_argument(
        "--method",
        nargs="+",
        choices=["auc", "wpmi"],
        default=["auc"],
        help="auc: image-level AUC with significance; wpmi: CLIP-Dissect's soft-WPMI (needs --clip) (default: auc)",
    )
    p.add_argument("--concepts", metavar="FILE", help="words for wpmi, one per line (default: the label names)")
    p.add_argument(
        "--clip",
        metavar="SPEC",
        help="CLIP model for wpmi: demo, open_clip:ARCH/PRETRAINED, hf:NAME_OR_DIR or package.module:callable",
    )
    p.add_argument("--top-k", type=int, default=5, help="descriptions kept per unit and method (default: %(default)s)")
    p.add_argument(
        "--min-images",
        type=int,
        default=10,
        help="a concept is scored by AUC when on at least this many images (default: %(default)s)",
    )
    p.add_argument(
        "--max-fraction",
        type=float,
        default=0.5,
        help="... and on at most this fraction of the images (default: %(default)s)",
    )
    p.add_argument(
        "--alpha", type=float, default=0.05, help="false discovery rate for significance (default: %(default)s)"
    )
    p.add_argument(
        "--formula-length",
        type=int,
        default=1,
        metavar="N",
        help="also the best AND / OR / AND NOT formulas of up to N concepts by AUC (default: %(default)s: none)",
    )
    p.add_argument("--beam", type=int, default=5, help="beam width of the formula search (default: %(default)s)")
    p.add_argument(
        "--formula-ops",
        default=",".join(FORMULA_OPS),
        metavar="OPS",
        help="operators formulas may use (default: %(default)s)",
    )
    p.add_argument(
        "--classes",
        metavar="FILE",
        help="the model's class names, one per line, for the final-layer accuracy (default: the model "
        "source's, or the image folders)",
    )
    p.add_argument("--size", type=int, metavar="N", help="use only the first N images")
    p.add_argument("--input-size", type=int, metavar="PX", help="resize every image to PX x PX for the model")
    _add_preprocess_options(p)
    p.add_argument(
        "--tokens",
        default="auto",
        metavar="auto|N|off",
        help="(B, N, C) token outputs: the mean over the patch tokens, leading class/register tokens "
        "dropped as in dissect (default: %(default)s)",
    )
    p.add_argument("--channels-last", action="store_true", help="read 4-D outputs as (B, H, W, C)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="image decoding worker processes (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="checkpoint the pass over the images this often; the same command continues a killed run "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace descriptions made with other options (the old ones stay until the new ones are written)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write describe.html")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_describe)
