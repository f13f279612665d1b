"""Options and helpers shared by the subcommands: model, preprocessing, run and report options."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from ..config import config_defaults

    d = argparse.Namespace(**config_defaults())
    p.add_argument(
        "--iou-mode",
        choices=["paper", "lite"],
        default=d.iou_mode,
        help="paper: a unit's mask area counts in images where the category is annotated; "
        "lite: NetDissect-Lite's rule (only where the category occurs under the mask) "
        "and threshold level (default: %(default)s)",
    )
    p.add_argument(
        "--quantile",
        type=float,
        default=d.quantile,
        help="top fraction of each unit's activations that forms its mask (default: %(default)s)",
    )
    p.add_argument(
        "--iou-threshold",
        type=float,
        default=d.iou_threshold,
        help="IoU at which a unit is a detector (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per batch (default: %(default)s)")
    p.add_argument(
        "--workers", type=int, default=d.workers, help="data loading worker processes (default: %(default)s)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument(
        "--top-images", type=int, default=d.top_images, help="top images kept per unit (default: %(default)s)"
    )
    p.add_argument(
        "--threshold-memory",
        type=float,
        default=d.threshold_memory / 2**20,
        metavar="MiB",
        help="memory for exact thresholds per layer; beyond it a quantile sketch with rank "
        "error <= 1e-4 is used (default: %(default)g MiB)",
    )
    p.add_argument(
        "--cache-memory",
        type=float,
        default=d.cache_memory / 2**20,
        metavar="MiB",
        help="memory for keeping activations between the two passes instead of running "
        "the model twice (default: %(default)g MiB)",
    )
    p.add_argument(
        "--null-samples",
        type=int,
        default=d.null_samples,
        metavar="K",
        help="permutation-null samples for each unit's p-value and z-score (its masks paired "
        "with other images' annotations); costs about K times pass 2's counting and "
        "8*K*units*labels bytes per layer; 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--memory-format",
        choices=["contiguous", "channels_last"],
        default=d.memory_format,
        help="memory layout of the model and its input; channels_last is often faster but "
        "changes activations in their last bits (default: %(default)s)",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="forward pass under autocast (float16 on CUDA, bfloat16 on CPU): faster on GPUs, "
        "activations in half precision; thresholds and counts stay exact float32 on them",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=d.checkpoint_every,
        metavar="SECONDS",
        help="checkpoint both passes this often in the run directory; after a crash or kill "
        "the same command continues from the last checkpoint (0: after every batch; "
        "default: %(default)g)",
    )
    p.add_argument(
        "--formula-length",
        type=int,
        default=d.formula_length,
        metavar="N",
        help="also find each unit's best formula of up to N labels joined by AND, OR, AND NOT "
        "(beam search; exact pixel IoU over all images; see docs/formulas.md); 1: none (default: %(default)s)",
    )
    p.add_argument(
        "--beam", type=int, default=d.beam, metavar="B", help="beam width of the formula search (default: %(default)s)"
    )
    p.add_argument(
        "--formula-ops",
        default=",".join(d.formula_ops),
        metavar="OPS",
        help="comma-separated operators formulas may use: and, or, andnot (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    p.add_argument(
        "--examples", type=int, default=10, help="top images shown per unit in the report (default: %(default)s)"
    )


def _report(args: argparse.Namespace, out: str, dataset) -> None:
    if args.no_report:
        return
    from ..report import write_report

    index = write_report(out, dataset=dataset, examples=args.examples, progress=not args.no_progress)
    print(f"report: {index.resolve()}")


def _config(args: argparse.Namespace, **extra):
    from ..config import DissectConfig

    return DissectConfig(
        quantile=args.quantile,
        iou_threshold=args.iou_threshold,
        iou_mode=args.iou_mode,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        top_images=max(args.top_images, getattr(args, "examples", 0)),
        threshold_memory=int(args.threshold_memory * 2**20),
        cache_memory=int(args.cache_memory * 2**20),
        progress=not args.no_progress,
        null_samples=args.null_samples,
        checkpoint_every=args.checkpoint_every,
        memory_format=args.memory_format,
        amp=args.amp,
        formula_length=args.formula_length,
        beam=args.beam,
        formula_ops=args.formula_ops,
        **extra,
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from ..model_specs import builtin_spec_help

    p.add_argument("--model", required=True, metavar="SPEC", help=builtin_spec_help())
    p.add_argument("--weights", help="checkpoint (state dict), torchvision weights name, or .caffemodel")
    p.add_argument(
        "--model-args", default="{}", metavar="JSON", help="keyword arguments for the model constructor, as JSON"
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow loading pickled Python objects (can run code: only for files you trust)",
    )


def _add_layout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tokens",
        default="auto",
        metavar="auto|N|off",
        help="(B, N, C) token outputs (ViT, DeiT) become maps of their patch tokens: auto drops "
        "the leading class/register tokens found from the token count and the input's aspect "
        "ratio; N drops exactly N leading tokens; off refuses token outputs (default: %(default)s)",
    )
    p.add_argument(
        "--channels-last", action="store_true", help="read 4-D layer outputs as (B, H, W, C) maps (Swin stages)"
    )


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    """Overrides of the model source's preprocessing (applied with dataclasses.replace)."""
    p.add_argument(
        "--mean",
        nargs="+",
        type=float,
        metavar="V",
        help="per-channel mean R G B (B G R with --bgr), in the units of --pixel-scale "
        "(default: the model source's, ImageNet's for PyTorch models)",
    )
    p.add_argument(
        "--std",
        nargs="+",
        type=float,
        metavar="V",
        help="per-channel std, three values in the same order and units as --mean",
    )
    order = p.add_mutually_exclusive_group()
    order.add_argument(
        "--bgr",
        action="store_const",
        const=True,
        dest="bgr",
        default=None,
        help="feed channels in BGR order (as Caffe models expect)",
    )
    order.add_argument(
        "--rgb",
        action="store_const",
        const=False,
        dest="bgr",
        help="feed channels in RGB order (overrides a source that declares BGR)",
    )
    p.add_argument(
        "--pixel-scale",
        type=float,
        metavar="S",
        help="pixel values range over [0, S] before normalisation: 1 for PyTorch models, "
        "255 for Caffe models (default: the model source's)",
    )


def _preprocess(args: argparse.Namespace, base):
    """The model source's Preprocess with the command line's overrides."""
    from ..errors import OptionError

    changes = {}
    for option in ("mean", "std"):
        values = getattr(args, option, None)
        if values is None:
            continue
        if len(values) != 3:
            raise OptionError(f"--{option} takes 3 values (one per channel), got {len(values)}")
        if option == "std" and any(v <= 0 for v in values):
            raise OptionError(f"--std values must be > 0, got {' '.join(f'{v:g}' for v in values)}")
        changes[option] = tuple(values)
    if getattr(args, "bgr", None) is not None:
        changes["bgr"] = args.bgr
    if getattr(args, "pixel_scale", None) is not None:
        if not args.pixel_scale > 0:
            raise OptionError(f"--pixel-scale must be > 0, got {args.pixel_scale:g}")
        changes["pixel_scale"] = args.pixel_scale
    if getattr(args, "input_size", None) is not None:
        if args.input_size < 1:
            raise OptionError(f"--input-size must be >= 1, got {args.input_size}")
        from ..memory import require_memory

        batch = getattr(args, "batch_size", 1)  # one batch of float32 RGB inputs: a lower bound
        require_memory(batch * 3 * 4 * args.input_size**2, f"--input-size {args.input_size} (batch of {batch})")
        changes["input_size"] = (args.input_size, args.input_size)
    return dataclasses.replace(base, **changes)


def _add_prepared_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prepared",
        default="auto",
        metavar="auto|off|DIR",
        help="read decoded images and label maps written by `netdissect prepare`: auto uses the "
        "matching copy in the cache directory if there is one, off decodes the files, DIR must be "
        "a copy prepared from this dataset (default: %(default)s)",
    )


def _prepared(args: argparse.Namespace):
    """``BrodenDataset(prepared=...)`` for the ``--prepared`` option."""
    value = getattr(args, "prepared", "auto")
    return None if value == "off" else value


def _parse_input_size(text: str) -> tuple[int, int]:
    """``N`` or ``HxW`` as (H, W)."""
    from ..errors import OptionError

    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise OptionError(f"--input-size takes N or HxW with sides >= 1, got {text!r}")
    return size


def _json_object(text: str, option: str) -> dict:
    """The JSON object given to ``option`` (``--model-args``), or a one-line error."""
    from ..errors import ModelError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{option} must be a JSON object")
    return value


def _load(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, args.weights, args.trust_pickle, _json_object(args.model_args, "--model-args"))


def _dataset_path(name: str, data_dir: str | None) -> Path:
    """A dataset directory, or a Broden name (``broden1_224``) looked up in the data directory."""
    from ..data.download import BRODEN, default_data_dir, is_complete
    from ..errors import DatasetError

    if os.path.exists(name) or name not in BRODEN:
        return Path(name)
    directory = Path(data_dir) if data_dir else default_data_dir()
    if not is_complete(directory / name):
        raise DatasetError(
            f"{name} is not in {directory}: run `netdissect download {name} --dir {directory}` first "
            "(or pass the dataset's path)"
        )
    return directory / name
