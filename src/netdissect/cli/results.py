"""Subcommands over results made elsewhere: import-results."""

from __future__ import annotations

import argparse


def cmd_import_results(args: argparse.Namespace) -> int:
    from ..runs.foreign import CONVENTIONS, import_results

    result = import_results(args.file, args.layer, args.out, format=args.format, model=args.model)
    layer = result[args.layer]
    s = layer.summary()
    fmt = result.metadata["format"]
    print(f"imported {args.file} as layer {args.layer} of {args.out} (format {fmt})")
    print(f"convention: {CONVENTIONS[fmt]}")
    print(
        f"units {s['units']}, detectors {s['detectors']}, unique detectors: {s['unique_detectors']} "
        f"(distinct best labels), {s['unique_detectors_by_category_sum']} (per category, summed)"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands that read other tools' results."""
    p = sub.add_parser(
        "import-results",
        help="turn a published NetDissect-Lite or NetDissect CSV into a run directory",
        description="Read another tool's per-unit results (NetDissect-Lite's tally.csv or the original "
        "NetDissect's <layer>-result.csv) into a run directory that `compare` and the Python API read, "
        "with detectors counted by that tool's convention. Run it once per layer; layers of one "
        "model go into the same --out.",
    )
    p.add_argument("file", metavar="FILE", help="the CSV: one row per unit (unit, category, label, score, ...)")
    p.add_argument("--layer", required=True, metavar="NAME", help="the layer the results belong to, e.g. layer4")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write (or to add the layer to)")
    p.add_argument(
        "--format",
        choices=["lite", "netdissect"],
        help="lite: NetDissect-Lite (detector: IoU >= 0.04); netdissect: the original (IoU > 0.04 per category); "
        "default: lite for tally.csv or a file without per-category columns, netdissect otherwise",
    )
    p.add_argument("--model", metavar="NAME", help="model name shown for the run (default: from the file name)")
    p.set_defaults(func=cmd_import_results)
