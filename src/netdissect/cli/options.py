"""Options and helpers shared by the subcommands: model, preprocessing, run and report options."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path


def _add_option(p: argparse.ArgumentParser, name: str, **changes) -> None:
    """Add the flag of the run option ``name`` as ``RUN_OPTIONS`` declares it (``changes``: a command's own help)."""
    from ..engine.config import config_defaults
    from ..engine.run_options import run_option

    flag, kwargs = run_option(name).argument(config_defaults()[name])
    p.add_argument(flag, **{**kwargs, **changes})


def _add_option_group(p: argparse.ArgumentParser, group: str) -> None:
    from ..engine.run_options import RUN_OPTIONS

    for option in RUN_OPTIONS:
        if option.group == group:
            _add_option(p, option.name)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The flags of every command that dissects (``RUN_OPTIONS``, group ``run``)."""
    _add_option_group(p, "run")


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
    """The ``DissectConfig`` of the run options the command's parser has (``extra``: fields it sets itself)."""
    from ..engine.config import DissectConfig
    from ..engine.run_options import RUN_OPTIONS

    values = {o.name: o.value(getattr(args, o.dest)) for o in RUN_OPTIONS if o.flag and hasattr(args, o.dest)}
    if "top_images" in values:  # the report shows --examples top images per unit
        values["top_images"] = max(values["top_images"], getattr(args, "examples", 0))
    return DissectConfig(**{**values, **extra})


def _add_model_options(
    p: argparse.ArgumentParser,
    required: bool = True,
    model_help: str | None = None,
    weights_help: str = "checkpoint (state dict), torchvision weights name, or .caffemodel",
    model_args_help: str = "keyword arguments for the model constructor, as JSON",
    trust_help: str = "allow loading pickled Python objects (can run code: only for files you trust)",
) -> None:
    """``--model``, ``--weights``, ``--model-args`` and ``--trust-pickle``; a command may word them its way."""
    from ..model_specs import builtin_spec_help

    p.add_argument("--model", required=required, metavar="SPEC", help=model_help or builtin_spec_help())
    p.add_argument("--weights", help=weights_help)
    p.add_argument("--model-args", default="{}", metavar="JSON", help=model_args_help)
    p.add_argument("--trust-pickle", action="store_true", help=trust_help)


def _add_layout_options(p: argparse.ArgumentParser) -> None:
    """How layer outputs become maps (``RUN_OPTIONS``, group ``layout``): also for ``layers``."""
    _add_option_group(p, "layout")


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


def _load_preprocessed(args: argparse.Namespace):
    """The command line's model with its preprocessing overrides (``--mean``, ``--input-size`` ...)."""
    model = _load(args)
    return dataclasses.replace(model, preprocess=_preprocess(args, model.preprocess))


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
