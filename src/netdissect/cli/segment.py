"""Concepts from a segmentation model: annotate (a dataset from any images), dissect-generator (GAN Dissection)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from .options import (
    _add_option,
    _add_preprocess_options,
    _add_report_options,
    _add_run_options,
    _config,
    _json_object,
    _preprocess,
    _report,
)


def _segmenter(args: argparse.Namespace):
    """The segmenter of the command line, with its class names and preprocessing overrides."""
    from ..segmenters.model import load_segmenter

    model_args = _json_object(args.segmenter_args, "--segmenter-args")
    segmenter = load_segmenter(args.segmenter, args.classes, args.segmenter_weights, args.trust_pickle, model_args)
    return dataclasses.replace(segmenter, preprocess=_preprocess(args, segmenter.preprocess))


def cmd_annotate(args: argparse.Namespace) -> int:
    from ..segmenters.annotate import annotate_images

    path = annotate_images(
        _segmenter(args),
        args.images,
        args.out,
        min_confidence=args.min_confidence,
        colors=args.colors,
        size=args.size,
        seg_size=args.seg_size,
        pattern=args.pattern,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(f"wrote {path}")
    return 0


def cmd_dissect_generator(args: argparse.Namespace) -> int:
    from ..files import layer_dirname
    from ..models import load_model
    from ..segmenters.generator import CAUSAL_FILE, dissect_generator

    generator = load_model(
        args.generator,
        args.generator_weights,
        args.trust_pickle,
        _json_object(args.generator_args, "--generator-args"),
        role="generator",
    )
    result = dissect_generator(
        generator,
        _segmenter(args),
        args.layers,
        args.out,
        z_dim=args.z_dim,
        samples=args.samples,
        seed=args.seed,
        z_shape=args.z_shape,
        min_confidence=args.min_confidence,
        seg_size=args.seg_size,
        ablate_top=args.ablate_top,
        config=_config(args),
    )
    print(result.format_table())
    for name in result.layers:
        path = Path(args.out) / layer_dirname(name) / CAUSAL_FILE
        if args.ablate_top and path.exists():
            for concept, effect in json.loads(path.read_text()).items():
                units = ", ".join(str(u) for u in effect["units"])
                print(
                    f"{name}: {concept} {100 * effect['pixel_fraction_before']:.2f} % of pixels -> "
                    f"{100 * effect['pixel_fraction_after']:.2f} % with unit(s) {units} zeroed"
                )
    print(f"results: {Path(args.out).resolve()}")
    _report(args, args.out, None)
    return 0


def _add_segmenter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--segmenter",
        required=True,
        metavar="SPEC",
        help="segmentation model: torchvision:<name> (deeplabv3_resnet50, fcn_resnet50, "
        "lraspp_mobilenet_v3_large ...), package.module:callable, path/to/model.onnx, ...; it returns "
        "class logits (B, K, H, W) or a dict with 'out'",
    )
    p.add_argument(
        "--segmenter-weights",
        metavar="W",
        help="its weights: a torchvision weights name (COCO_WITH_VOC_LABELS_V1) or a checkpoint (default: random init)",
    )
    p.add_argument(
        "--segmenter-args", default="{}", metavar="JSON", help="keyword arguments for the segmenter constructor"
    )
    p.add_argument(
        "--classes",
        metavar="FILE",
        help="class names, one per line, the background first (default: the segmenter's own)",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="pixels whose winning class has a softmax probability below P stay unlabelled (default: %(default)s)",
    )
    p.add_argument(
        "--seg-size",
        type=int,
        metavar="PX",
        help="store segmentations at PX x PX (nearest) (default: half the image's height and width)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow loading pickled Python objects (can run code: only for files you trust)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the annotate and dissect-generator subcommands."""
    p = sub.add_parser(
        "annotate",
        help="label a folder of images with a segmentation model, as a Broden-format dataset",
        description="Run a segmentation model on every image of a folder and write a Broden-format dataset "
        "(category object from its classes, optionally color) that `netdissect dissect` reads: "
        "dissect on your own images without hand labels. An interrupted run continues where it stopped.",
    )
    _add_segmenter_options(p)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="DATASET", help="the dataset directory to write")
    p.add_argument(
        "--pattern",
        metavar="GLOB",
        help="take only files matching GLOB, e.g. '*.jpg' (default: every file Pillow reads)",
    )
    p.add_argument("--colors", action="store_true", help="add the category color (11 colour terms, CIELAB)")
    p.add_argument("--size", type=int, metavar="PX", help="resize images to PX x PX (default: keep their size)")
    p.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="resize images to PX x PX for the segmenter only; its labels are resized back (default: as stored)",
    )
    _add_preprocess_options(p)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default: %(default)s)")
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="image decoding worker processes (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser(
        "dissect-generator",
        help="dissect a generator's units on its own samples labelled by a segmentation model (GAN Dissection)",
        description="Draw latents from --seed, generate and segment the samples, dissect the generator's "
        "layers on them exactly as `netdissect dissect` does, then zero each concept's best detector "
        "units and measure how much of the concept is left (<out>/<layer>/causal.json, causal.html).",
    )
    p.add_argument(
        "--generator",
        required=True,
        metavar="SPEC",
        help="package.module:callable, a pickled model, ONNX ...: latents (B, D) -> images (B, 3, H, W) in [-1, 1]",
    )
    p.add_argument("--generator-weights", metavar="W", help="a checkpoint (state dict) for the generator")
    p.add_argument(
        "--generator-args", default="{}", metavar="JSON", help="keyword arguments for the generator constructor"
    )
    p.add_argument("--z-dim", type=int, required=True, metavar="D", help="latent dimensions")
    p.add_argument(
        "--z-shape",
        choices=["vector", "image"],
        default="vector",
        help="latents fed as (B, D) or as (B, D, 1, 1) (default: %(default)s)",
    )
    p.add_argument("--samples", type=int, default=1000, metavar="N", help="samples to generate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the latents (default: %(default)s)")
    p.add_argument("--layers", nargs="+", required=True, metavar="L", help="the generator's layers to dissect")
    _add_segmenter_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="run directory for the results")
    p.add_argument(
        "--ablate-top",
        type=int,
        default=20,
        metavar="K",
        help="units zeroed per concept: its K best detectors by IoU; 0: no intervention (default: %(default)s)",
    )
    _add_preprocess_options(p)
    _add_option(
        p,
        "overwrite",
        help="replace a different run found in --out (the old run and its samples stay until the new one has finished)",
    )
    _add_run_options(p)
    _add_report_options(p)
    p.set_defaults(func=cmd_dissect_generator)
