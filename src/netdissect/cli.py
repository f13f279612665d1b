"""The ``netdissect`` command line: parse arguments, call the Python API, print."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import __version__

DEFAULT_DEMO_OUT = "netdissect-demo"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from .dissect import DissectConfig

    d = DissectConfig()
    p.add_argument("--iou-mode", choices=["paper", "lite"], default=d.iou_mode,
                   help="paper: a unit's mask area counts in images where the category is annotated; "
                   "lite: NetDissect-Lite's rule (only where the category occurs under the mask) "
                   "and threshold level (default: %(default)s)")
    p.add_argument("--quantile", type=float, default=d.quantile,
                   help="top fraction of each unit's activations that forms its mask (default: %(default)s)")
    p.add_argument("--iou-threshold", type=float, default=d.iou_threshold,
                   help="IoU at which a unit is a detector (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per batch (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="data loading worker processes (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--top-images", type=int, default=d.top_images,
                   help="top images kept per unit (default: %(default)s)")
    p.add_argument("--threshold-memory", type=float, default=d.threshold_memory / 2**20, metavar="MiB",
                   help="memory for exact thresholds per layer; beyond it a quantile sketch with rank "
                   "error <= 1e-4 is used (default: %(default)g MiB)")
    p.add_argument("--cache-memory", type=float, default=d.cache_memory / 2**20, metavar="MiB",
                   help="memory for keeping activations between the two passes instead of running "
                   "the model twice (default: %(default)g MiB)")
    p.add_argument("--null-samples", type=int, default=d.null_samples, metavar="K",
                   help="permutation-null samples for each unit's p-value and z-score (its masks paired "
                   "with other images' annotations); costs about K times pass 2's counting and "
                   "8*K*units*labels bytes per layer; 0: none (default: %(default)s)")
    p.add_argument("--memory-format", choices=["contiguous", "channels_last"], default=d.memory_format,
                   help="memory layout of the model and its input; channels_last is often faster but "
                   "changes activations in their last bits (default: %(default)s)")
    p.add_argument("--amp", action="store_true",
                   help="forward pass under autocast (float16 on CUDA, bfloat16 on CPU): faster on GPUs, "
                   "activations in half precision; thresholds and counts stay exact float32 on them")
    p.add_argument("--checkpoint-every", type=float, default=d.checkpoint_every, metavar="SECONDS",
                   help="checkpoint both passes this often in the run directory; after a crash or kill "
                   "the same command continues from the last checkpoint (0: after every batch; "
                   "default: %(default)g)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    p.add_argument("--examples", type=int, default=10,
                   help="top images shown per unit in the report (default: %(default)s)")


def _report(args: argparse.Namespace, out: str, dataset) -> None:
    if args.no_report:
        return
    from .report import write_report

    index = write_report(out, dataset=dataset, examples=args.examples, progress=not args.no_progress)
    print(f"report: {index.resolve()}")


def _config(args: argparse.Namespace, **extra):
    from .dissect import DissectConfig

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
        **extra,
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="demo, torchvision:<name>, places365:<arch>, package.module:callable, "
                   "path/to/model.onnx, caffe:deploy.prototxt, or a pickled model file")
    p.add_argument("--weights", help="checkpoint (state dict), torchvision weights name, or .caffemodel")
    p.add_argument("--model-args", default="{}", metavar="JSON",
                   help="keyword arguments for the model constructor, as JSON")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading pickled Python objects (can run code: only for files you trust)")


def _add_layout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", default="auto", metavar="auto|N|off",
                   help="(B, N, C) token outputs (ViT, DeiT) become maps of their patch tokens: auto drops "
                   "the leading class/register tokens found from the token count and the input's aspect "
                   "ratio; N drops exactly N leading tokens; off refuses token outputs (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true",
                   help="read 4-D layer outputs as (B, H, W, C) maps (Swin stages)")


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    """Overrides of the model source's preprocessing (applied with dataclasses.replace)."""
    p.add_argument("--mean", nargs="+", type=float, metavar="V",
                   help="per-channel mean R G B (B G R with --bgr), in the units of --pixel-scale "
                   "(default: the model source's, ImageNet's for PyTorch models)")
    p.add_argument("--std", nargs="+", type=float, metavar="V",
                   help="per-channel std, three values in the same order and units as --mean")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--bgr", action="store_const", const=True, dest="bgr", default=None,
                       help="feed channels in BGR order (as Caffe models expect)")
    order.add_argument("--rgb", action="store_const", const=False, dest="bgr",
                       help="feed channels in RGB order (overrides a source that declares BGR)")
    p.add_argument("--pixel-scale", type=float, metavar="S",
                   help="pixel values range over [0, S] before normalisation: 1 for PyTorch models, "
                   "255 for Caffe models (default: the model source's)")


def _preprocess(args: argparse.Namespace, base):
    """The model source's Preprocess with the command line's overrides."""
    from .errors import OptionError

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
        changes["input_size"] = (args.input_size, args.input_size)
    return dataclasses.replace(base, **changes)


def _add_prepared_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prepared", default="auto", metavar="auto|off|DIR",
                   help="read decoded images and label maps written by `netdissect prepare`: auto uses the "
                   "matching copy in the cache directory if there is one, off decodes the files, DIR must be "
                   "a copy prepared from this dataset (default: %(default)s)")


def _prepared(args: argparse.Namespace):
    """``BrodenDataset(prepared=...)`` for the ``--prepared`` option."""
    value = getattr(args, "prepared", "auto")
    return None if value == "off" else value


def _parse_input_size(text: str) -> tuple[int, int]:
    """``N`` or ``HxW`` as (H, W)."""
    from .errors import OptionError

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


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import BrodenDataset
    from .data.prepared import prepare_dataset, prepared_size
    from .errors import OptionError
    from .models.preprocess import Preprocess

    if args.workers < 0:
        raise OptionError(f"--workers must be >= 0, got {args.workers}")
    input_size = _parse_input_size(args.input_size) if args.input_size is not None else None
    if input_size is None and args.model:
        input_size = _load(args).preprocess.input_size
    dataset = BrodenDataset(_dataset_path(args.dataset, args.data_dir), categories=args.categories,
                            split=args.split, size=args.size, preprocess=Preprocess(input_size=input_size))
    path = prepare_dataset(dataset, args.out, workers=args.workers, progress=not args.no_progress)
    size = "the dataset's own size" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(f"prepared {len(dataset)} images at {size}: {path.resolve()} ({prepared_size(path) / 2**20:.1f} MiB)")
    if args.out is None:
        print("`netdissect dissect` reads it by default (--prepared auto) with the same dataset options")
    else:
        print(f"read it with `netdissect dissect ... --prepared {path}`")
    return 0


def _load(args: argparse.Namespace):
    from .errors import ModelError
    from .models import load_model

    try:
        model_args = json.loads(args.model_args)
    except json.JSONDecodeError as exc:
        raise ModelError(f"--model-args is not valid JSON: {exc}") from None
    if not isinstance(model_args, dict):
        raise ModelError("--model-args must be a JSON object")
    return load_model(args.model, args.weights, args.trust_pickle, model_args)


def cmd_dissect(args: argparse.Namespace) -> int:
    from .data import BrodenDataset
    from .dissect import dissect

    config = _config(args, overwrite=args.overwrite, tokens=args.tokens, channels_last=args.channels_last,
                     rotate=args.rotate, rotation_power=args.rotation_power, rotation_match=args.rotation_match)
    model = _load(args)
    preprocess = _preprocess(args, model.preprocess)
    model = dataclasses.replace(model, preprocess=preprocess)
    dataset = BrodenDataset(_dataset_path(args.dataset, args.data_dir), categories=args.categories,
                            split=args.split, size=args.size, preprocess=preprocess, prepared=_prepared(args))
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
    from .data import BrodenDataset
    from .report import write_report

    dataset = BrodenDataset(args.dataset) if args.dataset else None
    index = write_report(args.run_dir, dataset=dataset, examples=args.examples, progress=not args.no_progress)
    print(f"report: {index.resolve()}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    import torch

    from .errors import OptionError
    from .hooks import layer_shapes
    from .tokens import looks_channels_last, parse_tokens, token_grid

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


def _dataset_path(name: str, data_dir: str | None) -> Path:
    """A dataset directory, or a Broden name (``broden1_224``) looked up in the data directory."""
    from .data.download import BRODEN, default_data_dir, is_complete
    from .errors import DatasetError

    if os.path.exists(name) or name not in BRODEN:
        return Path(name)
    directory = Path(data_dir) if data_dir else default_data_dir()
    if not is_complete(directory / name):
        raise DatasetError(
            f"{name} is not in {directory}: run `netdissect download {name} --dir {directory}` first "
            "(or pass the dataset's path)"
        )
    return directory / name


def cmd_download(args: argparse.Namespace) -> int:
    from .data.download import download_broden

    path = download_broden(args.name, args.dir, urls=args.url, sha256=args.sha256, progress=not args.no_progress)
    print(f"{args.name}: {path}")
    return 0


def cmd_resize_dataset(args: argparse.Namespace) -> int:
    from .data.resize import resize_dataset

    path = resize_dataset(args.source, args.size, args.out, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .report.compare import compare_runs

    index = compare_runs(args.runs, args.out, labels=args.labels, series=args.series, iou_threshold=args.iou_threshold)
    print(f"comparison: {index.resolve()}")
    return 0


def cmd_rotation_sweep(args: argparse.Namespace) -> int:
    from .data import BrodenDataset
    from .rotation import rotation_sweep

    model = _load(args)
    preprocess = _preprocess(args, model.preprocess)
    model = dataclasses.replace(model, preprocess=preprocess)
    dataset = BrodenDataset(_dataset_path(args.dataset, args.data_dir), preprocess=preprocess,
                            prepared=_prepared(args))
    config = _config(args, overwrite=args.overwrite, tokens=args.tokens, channels_last=args.channels_last,
                     rotation_match=args.rotation_match)
    options = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("rotate", "rotation_power")}
    curves = rotation_sweep(model, dataset, args.layers, args.out, seed=args.seed, powers=args.powers, **options)
    print(f"{'layer':<20} " + " ".join(f"P={p:<5g}" for p in curves["powers"]) + "  (unique detectors)")
    for name, entry in curves["layers"].items():
        print(f"{name:<20} " + " ".join(f"{v:<7d}" for v in entry["unique_detectors"]))
    print(f"plot: {(Path(args.out) / 'rotation_sweep.png').resolve()}")
    return 0


def cmd_build_broden(args: argparse.Namespace) -> int:
    from .data.build import build_broden

    path = build_broden(args.out, size=args.size, seg_size=args.seg_size, ade20k=args.ade20k, pascal=args.pascal,
                        opensurfaces=args.opensurfaces, dtd=args.dtd, colors=not args.no_colors,
                        min_images=args.min_images, min_coverage=args.min_coverage, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def cmd_import_dataset(args: argparse.Namespace) -> int:
    from .data.importer import import_dataset

    path = import_dataset(args.images, args.masks, args.labels, args.out, category=args.category,
                          image_labels=args.image_labels, size=args.size, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def cmd_make_dataset(args: argparse.Namespace) -> int:
    from .data.synthetic import make_synthetic_dataset

    path = make_synthetic_dataset(args.out, n=args.n, size=args.size, seed=args.seed, progress=not args.no_progress)
    print(f"wrote {args.n} images to {path}")
    return 0


def cache_dir() -> Path:
    """Where netdissect caches generated data: $NETDISSECT_CACHE, else ~/.cache/netdissect."""
    from .data.prepared import default_cache_dir

    return default_cache_dir()


def demo_dataset(n: int, seed: int, progress: bool) -> Path:
    """The demo's synthetic dataset, generated once into the cache directory."""
    from .data.synthetic import make_synthetic_dataset
    from .models.demo import DEMO_IMAGE_SIZE

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
    from .data import BrodenDataset
    from .dissect import dissect
    from .models import load_model
    from .models.demo import DEMO_LAYERS

    print(f"preparing the synthetic demo dataset ({args.images} images) ...", flush=True)
    data_dir = demo_dataset(args.images, args.seed, progress=not args.no_progress)
    model = load_model("demo")
    dataset = BrodenDataset(data_dir, preprocess=model.preprocess, prepared=_prepared(args))
    print(f"dataset: {data_dir}\nmodel: demo CNN, layers {', '.join(DEMO_LAYERS)}", flush=True)
    result = dissect(model, dataset, list(DEMO_LAYERS), out=args.out, config=_config(args, overwrite=True))
    print(result.format_table())
    print(f"results: {Path(args.out).resolve()} (summary.json, <layer>/tally.csv, units.json, iou.npz)")
    _report(args, args.out, dataset)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdissect",
        description="Network Dissection: label the hidden units of vision networks with the concepts they detect.",
    )
    parser.add_argument("--version", action="version", version=f"netdissect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dissect", help="dissect layers of a model on a Broden-format dataset",
                       description="Score every unit of the given layers against every concept of the dataset.")
    _add_model_options(p)
    p.add_argument("--layers", nargs="+", required=True, metavar="L",
                   help="dotted module names, e.g. layer4 or features.10 (see `netdissect layers`)")
    p.add_argument("--dataset", required=True, metavar="DIR",
                   help="Broden-format dataset directory, or broden1_224/227/384 in the data directory")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where downloaded datasets live (default: $NETDISSECT_DATA, else ~/.cache/netdissect/data)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory for the results")
    p.add_argument("--categories", nargs="+", metavar="CAT", help="categories to use (default: all)")
    p.add_argument("--split", choices=["train", "val"], help="use one split only (default: both)")
    p.add_argument("--size", type=int, metavar="N", help="use only the first N images")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help="resize whole images (never crop) to PX x PX for the model; masks still "
                   "compare at the segmentation size (default: the dataset's own size)")
    _add_preprocess_options(p)
    _add_layout_options(p)
    _add_prepared_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace a different run found in --out")
    p.add_argument("--rotate", type=int, metavar="SEED",
                   help="dissect a random rotation of each layer's unit basis (the paper's baseline): the seed "
                   "of a Haar-random rotation R")
    p.add_argument("--rotation-power", type=float, default=1.0, metavar="P",
                   help="with --rotate: use R**P, P in [0, 1] (0: no rotation, 1: R; default: %(default)s)")
    p.add_argument("--rotation-match", action="store_true",
                   help="with --rotate: number each rotated direction like the original unit closest to it")
    _add_run_options(p)
    _add_report_options(p)
    p.set_defaults(func=cmd_dissect)

    p = sub.add_parser("report", help="rebuild the HTML report of a finished run",
                       description="Rebuild the HTML report (pages, unit strips, charts) of a run directory "
                       "from its saved results; the model is not needed.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `netdissect dissect`")
    p.add_argument("--dataset", metavar="DIR", help="the dataset, if it moved since the run (default: the run's)")
    p.add_argument("--examples", type=int, default=10, help="top images shown per unit (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("layers", help="list a model's layers with their output shapes",
                       description="List every named module, its type and its output shape for one dummy input.")
    _add_model_options(p)
    p.add_argument("--input-size", type=int, default=224, help="side of the dummy input image (default: %(default)s)")
    _add_layout_options(p)
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("compare", help="compare finished runs (models, layers, checkpoints)",
                       description="Build a comparison page and plots from finished runs: unique detectors per "
                       "category, detectors per layer, per-unit label changes between two runs of one architecture, "
                       "and with --series the emergence of concepts over checkpoints given in order.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `netdissect dissect`")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory of the comparison")
    p.add_argument("--series", action="store_true", help="the runs are checkpoints in order: chart concept emergence")
    p.add_argument("--labels", nargs="+", metavar="NAME", help="names of the runs on the page (default: directories)")
    p.add_argument("--iou-threshold", type=float, help="one detector threshold for every run (default: each run's)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("rotation-sweep", help="dissect rotated unit bases at powers 0, .25, .5, .75, 1",
                       description="The paper's rotation baseline: dissect the layers in a random rotation R**P of "
                       "their unit basis for each power P, and plot unique detectors and detectors against P.")
    _add_model_options(p)
    p.add_argument("--layers", nargs="+", required=True, metavar="L", help="dotted module names")
    p.add_argument("--dataset", required=True, metavar="DIR", help="Broden-format dataset or broden1_* name")
    p.add_argument("--data-dir", metavar="DIR", help="where downloaded datasets live")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for one run per power and the plot")
    p.add_argument("--seed", type=int, default=0, help="seed of the random rotation (default: %(default)s)")
    p.add_argument("--powers", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0], metavar="P",
                   help="rotation powers (default: 0 0.25 0.5 0.75 1)")
    p.add_argument("--rotation-match", action="store_true",
                   help="number each rotated direction like the original unit closest to it")
    p.add_argument("--input-size", type=int, metavar="PX", help="resize whole images to PX x PX for the model")
    _add_preprocess_options(p)
    _add_layout_options(p)
    _add_prepared_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace different runs found in --out")
    _add_run_options(p)
    p.set_defaults(func=cmd_rotation_sweep)

    p = sub.add_parser("download", help="download a Broden dataset (mirrors, resume, checksums)",
                       description="Download and extract a Broden dataset into the data directory. Mirrors given "
                       "with --url are tried first, in order, then the official URL; an interrupted download "
                       "resumes; the archive is verified before it is extracted; a complete copy is kept.")
    p.add_argument("name", choices=["broden1_224", "broden1_227", "broden1_384"], help="the dataset")
    p.add_argument("--dir", metavar="DIR",
                   help="data directory (default: $NETDISSECT_DATA, else ~/.cache/netdissect/data)")
    p.add_argument("--url", action="append", default=[], metavar="URL", help="a mirror of the zip (repeatable)")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the zip archive")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("resize-dataset", help="copy a Broden-format dataset at another resolution",
                       description="Write a Broden-format copy of SRC whose images' longer side is --size "
                       "(bilinear) and whose segmentations are half that (nearest), e.g. 32 px for CIFAR-size models.")
    p.add_argument("source", metavar="SRC", help="a Broden-format dataset")
    p.add_argument("--size", type=int, required=True, help="image size in pixels of the copy")
    p.add_argument("--out", required=True, metavar="DST", help="output directory (must not hold a dataset)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_resize_dataset)

    p = sub.add_parser("build-broden", help="build a Broden-format dataset from the original sources",
                       description="Build a Broden-format dataset from local copies of ADE20K, Pascal-Context/Part, "
                       "OpenSurfaces and DTD in their native layouts (any subset), plus colour labels.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--size", type=int, default=224, help="image size in pixels (default: %(default)s)")
    p.add_argument("--seg-size", type=int, help="segmentation size (default: half the image size)")
    p.add_argument("--ade20k", metavar="DIR", help="ADE20K (ADE20K_2016_07_26 layout)")
    p.add_argument("--pascal", metavar="DIR", help="Pascal VOC2010 with Pascal-Context (and Pascal-Part)")
    p.add_argument("--opensurfaces", metavar="DIR", help="OpenSurfaces (photos/, photos-labels/)")
    p.add_argument("--dtd", metavar="DIR", help="the Describable Textures Dataset (images/<texture>/)")
    p.add_argument("--no-colors", action="store_true", help="do not add the 11 colour labels")
    p.add_argument("--min-images", type=int, default=10,
                   help="drop labels seen in fewer images (default: %(default)s)")
    p.add_argument("--min-coverage", type=float, default=0.5,
                   help="drop labels covering less than this many whole images (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_build_broden)

    p = sub.add_parser("import-dataset", help="convert your own segmentation data to the Broden format",
                       description="Write a Broden-format dataset from a folder of images, a folder of class-map "
                       "PNGs (same file names; pixel value = class, 0 = none) and a label list.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--masks", required=True, metavar="DIR", help="folder of class-map PNGs, same relative paths")
    p.add_argument("--labels", required=True, metavar="FILE",
                   help="CSV value,name[,category] or a text file with one name per line (values 1, 2, ...)")
    p.add_argument("--category", default="object", help="category of pixel labels without one (default: %(default)s)")
    p.add_argument("--image-labels", metavar="CSV", help="image-level labels: rows image,name[,category] (default scene)")
    p.add_argument("--size", type=int, help="resize images so their longer side is SIZE (default: keep)")
    p.add_argument("--out", required=True, metavar="DST", help="output directory (must not hold a dataset)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_import_dataset)

    p = sub.add_parser("make-dataset", help="write a synthetic Broden-format dataset",
                       description="Write a Broden-format dataset of procedurally drawn scenes.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a dataset)")
    p.add_argument("--n", type=int, default=500, help="number of images (default: %(default)s)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_make_dataset)

    p = sub.add_parser("prepare", help="store a dataset's decoded images and label maps for faster dissections",
                       description="Decode every image and label PNG of a dataset once (images resized to the "
                       "model's input size) into compact arrays that `netdissect dissect` reads instead of the "
                       "files. The copy is keyed by the dataset's files (sizes and mtimes), the selection and the "
                       "input size: a changed dataset is never read from a stale copy.")
    p.add_argument("dataset", metavar="DATASET", help="Broden-format dataset directory, or broden1_224/227/384")
    p.add_argument("--data-dir", metavar="DIR", help="where downloaded datasets live")
    p.add_argument("--categories", nargs="+", metavar="CAT", help="categories to use (default: all)")
    p.add_argument("--split", choices=["train", "val"], help="use one split only (default: both)")
    p.add_argument("--size", type=int, metavar="N", help="use only the first N images")
    p.add_argument("--input-size", metavar="N|HxW",
                   help="resize whole images to N x N or H x W, as `dissect --input-size` will "
                   "(default: the model's input size with --model, else the dataset's own size)")
    p.add_argument("--model", metavar="SPEC", help="take the input size from this model's preprocessing")
    p.add_argument("--weights", help="the model's weights, if its source needs them to load")
    p.add_argument("--model-args", default="{}", metavar="JSON", help="keyword arguments for the model constructor")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a pickled model file")
    p.add_argument("--out", metavar="DIR",
                   help="where to write it (default: <cache>/prepared/<dataset>-<key>, found by --prepared auto; "
                   "cache: $NETDISSECT_CACHE, else $XDG_CACHE_HOME/netdissect, else ~/.cache/netdissect)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="decoding worker processes (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("demo", help="dissect the bundled demo model on a synthetic dataset (offline)",
                       description="Generate (once, cached) a synthetic dataset and dissect every conv layer "
                       "of the bundled demo CNN on it.")
    p.add_argument("--out", default=DEFAULT_DEMO_OUT, metavar="DIR", help="run directory (default: %(default)s)")
    p.add_argument("--images", type=int, default=400, help="images in the demo dataset (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo dataset (default: %(default)s)")
    _add_prepared_option(p)
    _add_run_options(p)
    _add_report_options(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import NetDissectError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NetDissectError as exc:
        print(f"netdissect: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netdissect: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
