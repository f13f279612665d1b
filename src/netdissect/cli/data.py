"""Dataset subcommands: download, resize-dataset, build-broden, import-dataset, make-dataset, prepare."""

from __future__ import annotations

import argparse
import os

from .options import _add_model_options, _dataset_path, _load, _parse_input_size


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..data import BrodenDataset
    from ..data.prepared import prepare_dataset, prepared_size
    from ..errors import OptionError
    from ..models.preprocess import Preprocess

    if args.workers < 0:
        raise OptionError(f"--workers must be >= 0, got {args.workers}")
    input_size = _parse_input_size(args.input_size) if args.input_size is not None else None
    if input_size is None and args.model:
        input_size = _load(args).preprocess.input_size
    dataset = BrodenDataset(
        _dataset_path(args.dataset, args.data_dir),
        categories=args.categories,
        split=args.split,
        size=args.size,
        preprocess=Preprocess(input_size=input_size),
    )
    path = prepare_dataset(dataset, args.out, workers=args.workers, progress=not args.no_progress)
    size = "the dataset's own size" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(f"prepared {len(dataset)} images at {size}: {path.resolve()} ({prepared_size(path) / 2**20:.1f} MiB)")
    if args.out is None:
        print("`netdissect dissect` reads it by default (--prepared auto) with the same dataset options")
    else:
        print(f"read it with `netdissect dissect ... --prepared {path}`")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import download_broden

    path = download_broden(args.name, args.dir, urls=args.url, sha256=args.sha256, progress=not args.no_progress)
    print(f"{args.name}: {path}")
    return 0


def cmd_resize_dataset(args: argparse.Namespace) -> int:
    from ..data.resize import resize_dataset

    path = resize_dataset(args.source, args.size, args.out, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def cmd_build_broden(args: argparse.Namespace) -> int:
    from ..data.build import build_broden

    path = build_broden(
        args.out,
        size=args.size,
        seg_size=args.seg_size,
        ade20k=args.ade20k,
        pascal=args.pascal,
        opensurfaces=args.opensurfaces,
        dtd=args.dtd,
        colors=not args.no_colors,
        min_images=args.min_images,
        min_coverage=args.min_coverage,
        progress=not args.no_progress,
    )
    print(f"wrote {path}")
    return 0


def cmd_import_dataset(args: argparse.Namespace) -> int:
    from ..data.importer import import_dataset

    path = import_dataset(
        args.images,
        args.masks,
        args.labels,
        args.out,
        category=args.category,
        image_labels=args.image_labels,
        size=args.size,
        progress=not args.no_progress,
    )
    print(f"wrote {path}")
    return 0


def cmd_make_dataset(args: argparse.Namespace) -> int:
    from ..data.synthetic import make_synthetic_dataset

    path = make_synthetic_dataset(args.out, n=args.n, size=args.size, seed=args.seed, progress=not args.no_progress)
    print(f"wrote {args.n} images to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the dataset subcommands."""
    p = sub.add_parser(
        "download",
        help="download a Broden dataset (mirrors, resume, checksums)",
        description="Download and extract a Broden dataset into the data directory. Mirrors given "
        "with --url are tried first, in order, then the official URL; an interrupted download "
        "resumes; the archive is verified before it is extracted; a complete copy is kept.",
    )
    p.add_argument("name", choices=["broden1_224", "broden1_227", "broden1_384"], help="the dataset")
    p.add_argument(
        "--dir", metavar="DIR", help="data directory (default: $NETDISSECT_DATA, else ~/.cache/netdissect/data)"
    )
    p.add_argument("--url", action="append", default=[], metavar="URL", help="a mirror of the zip (repeatable)")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the zip archive")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "resize-dataset",
        help="copy a Broden-format dataset at another resolution",
        description="Write a Broden-format copy of SRC whose images' longer side is --size "
        "(bilinear) and whose segmentations are half that (nearest), e.g. 32 px for CIFAR-size models.",
    )
    p.add_argument("source", metavar="SRC", help="a Broden-format dataset")
    p.add_argument("--size", type=int, required=True, help="image size in pixels of the copy")
    p.add_argument("--out", required=True, metavar="DST", help="output directory (must not hold a dataset)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_resize_dataset)

    p = sub.add_parser(
        "build-broden",
        help="build a Broden-format dataset from the original sources",
        description="Build a Broden-format dataset from local copies of ADE20K, Pascal-Context/Part, "
        "OpenSurfaces and DTD in their native layouts (any subset), plus colour labels.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--size", type=int, default=224, help="image size in pixels (default: %(default)s)")
    p.add_argument("--seg-size", type=int, help="segmentation size (default: half the image size)")
    p.add_argument("--ade20k", metavar="DIR", help="ADE20K (ADE20K_2016_07_26 layout)")
    p.add_argument("--pascal", metavar="DIR", help="Pascal VOC2010 with Pascal-Context (and Pascal-Part)")
    p.add_argument("--opensurfaces", metavar="DIR", help="OpenSurfaces (photos/, photos-labels/)")
    p.add_argument("--dtd", metavar="DIR", help="the Describable Textures Dataset (images/<texture>/)")
    p.add_argument("--no-colors", action="store_true", help="do not add the 11 colour labels")
    p.add_argument("--min-images", type=int, default=10, help="drop labels seen in fewer images (default: %(default)s)")
    p.add_argument(
        "--min-coverage",
        type=float,
        default=0.5,
        help="drop labels covering less than this many whole images (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_build_broden)

    p = sub.add_parser(
        "import-dataset",
        help="convert your own segmentation data to the Broden format",
        description="Write a Broden-format dataset from a folder of images, a folder of class-map "
        "PNGs (same file names; pixel value = class, 0 = none) and a label list.",
    )
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--masks", required=True, metavar="DIR", help="folder of class-map PNGs, same relative paths")
    p.add_argument(
        "--labels",
        required=True,
        metavar="FILE",
        help="CSV value,name[,category] or a text file with one name per line (values 1, 2, ...)",
    )
    p.add_argument("--category", default="object", help="category of pixel labels without one (default: %(default)s)")
    p.add_argument(
        "--image-labels", metavar="CSV", help="image-level labels: rows image,name[,category] (default scene)"
    )
    p.add_argument("--size", type=int, help="resize images so their longer side is SIZE (default: keep)")
    p.add_argument("--out", required=True, metavar="DST", help="output directory (must not hold a dataset)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_import_dataset)

    p = sub.add_parser(
        "make-dataset",
        help="write a synthetic Broden-format dataset",
        description="Write a Broden-format dataset of procedurally drawn scenes.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a dataset)")
    p.add_argument("--n", type=int, default=500, help="number of images (default: %(default)s)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_make_dataset)

    p = sub.add_parser(
        "prepare",
        help="store a dataset's decoded images and label maps for faster dissections",
        description="Decode every image and label PNG of a dataset once (images resized to the "
        "model's input size) into compact arrays that `netdissect dissect` reads instead of the "
        "files. The copy is keyed by the dataset's files (sizes and mtimes), the selection and the "
        "input size: a changed dataset is never read from a stale copy.",
    )
    p.add_argument("dataset", metavar="DATASET", help="Broden-format dataset directory, or broden1_224/227/384")
    p.add_argument("--data-dir", metavar="DIR", help="where downloaded datasets live")
    p.add_argument("--categories", nargs="+", metavar="CAT", help="categories to use (default: all)")
    p.add_argument("--split", choices=["train", "val"], help="use one split only (default: both)")
    p.add_argument("--size", type=int, metavar="N", help="use only the first N images")
    p.add_argument(
        "--input-size",
        metavar="N|HxW",
        help="resize whole images to N x N or H x W, as `dissect --input-size` will "
        "(default: the model's input size with --model, else the dataset's own size)",
    )
    _add_model_options(
        p,
        required=False,
        model_help="take the input size from this model's preprocessing",
        weights_help="the model's weights, if its source needs them to load",
        model_args_help="keyword arguments for the model constructor",
        trust_help="allow loading a pickled model file",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write it (default: <cache>/prepared/<dataset>-<key>, found by --prepared auto; "
        "cache: $NETDISSECT_CACHE, else $XDG_CACHE_HOME/netdissect, else ~/.cache/netdissect)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="decoding worker processes (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_prepare)
