"""The HTML report of a dissection run: a run page, a page per layer, unit strips and PNG charts.

``<out>/index.html`` summarises the run and links to ``<out>/<layer>/index.html``, which shows
every unit (its label, category, IoU, next-best labels and top images). The pages are
self-contained: inline CSS and JavaScript, images referenced by relative paths, no network.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from ..data.broden import BrodenDataset
from ..errors import DatasetError, OptionError, RunDirectoryError
from ..results import SUMMARY_FILE, DissectionResult, atomic_write_bytes, layer_dirname
from . import strips as _strips
from .charts import save_bar_graph_png, save_category_fractions_png
from .pages import (
    bar_data,
    layer_context,
    render_layer_page,
    render_run_page,
    run_context,
)

__all__ = ["bar_data", "layer_context", "open_run_dataset", "run_context", "write_report"]

INDEX = "index.html"
STRIPS_DIR = "strips"
BAR_GRAPH_PNG = "bargraph.png"
SUMMARY_PNG = "summary.png"


def open_run_dataset(
    result: DissectionResult, dataset: BrodenDataset | str | os.PathLike | None = None
) -> BrodenDataset:
    """The concept dataset of a run, with the rows the run used (unit top images are row positions).

    ``dataset`` defaults to the path recorded in the run's metadata. A dataset opened with
    other rows than the run (e.g. without the run's ``--split``) is reopened with the run's
    selection when one of the splits reproduces it.
    """
    recorded = result.metadata.get("dataset") or {}
    if not isinstance(recorded, dict):
        recorded = {"path": str(recorded)}
    if dataset is None:
        path = recorded.get("path")
        if not path:
            raise DatasetError("the run does not record its dataset's path: pass --dataset PATH")
        if not (Path(path) / "index.csv").is_file():
            raise DatasetError(f"dataset {path} of this run is missing: pass --dataset PATH to where it is now")
        dataset = BrodenDataset(path, categories=recorded.get("categories"))
    elif not isinstance(dataset, BrodenDataset):
        dataset = BrodenDataset(dataset, categories=recorded.get("categories"))
    if _matches(dataset, recorded):
        return dataset
    for split in ("val", "train"):
        try:
            candidate = BrodenDataset(dataset.directory, split=split, size=recorded.get("images"))
        except DatasetError:
            continue
        if _matches(candidate, recorded):
            return candidate
    rows = dataset.meta.rows
    raise DatasetError(
        f"dataset {dataset.directory} does not match the run: the run used {recorded.get('images')} images "
        f"(index.csv rows {recorded.get('first_row')}-{recorded.get('last_row')}), the dataset has {len(rows)} "
        f"(rows {rows[0].row}-{rows[-1].row}); pass the run's dataset with --dataset"
    )


def _matches(dataset: BrodenDataset, recorded: dict) -> bool:
    """Whether ``dataset`` starts with the rows the run used (as far as the metadata tells)."""
    rows = dataset.meta.rows
    n = int(recorded.get("images", len(rows)))
    if not 0 < n <= len(rows):
        return False
    return rows[0].row == recorded.get("first_row", rows[0].row) and rows[n - 1].row == recorded.get(
        "last_row", rows[n - 1].row
    )


def _strip_sizes(directory: Path, files: dict[int, tuple[str, str]]) -> dict[int, tuple[int, int]]:
    """Pixel sizes of the strips (read from the image headers only)."""
    sizes = {}
    for unit, (strip, _) in files.items():
        try:
            with Image.open(directory / strip) as im:
                sizes[unit] = im.size
        except OSError:
            continue
    return sizes


def write_report(
    run_dir: str | os.PathLike,
    dataset: BrodenDataset | str | os.PathLike | None = None,
    examples: int = 10,
    progress: bool = True,
) -> Path:
    """Write the HTML report of a finished run directory; return the path of its ``index.html``.

    Args:
        run_dir: the run directory (holding ``summary.json`` and a directory per layer).
        dataset: the concept dataset the run used (a :class:`BrodenDataset` or a path);
            default: the path recorded in the run.
        examples: top images shown per unit (at most the run's ``top_images``).
        progress: show a progress bar over the layers.

    Writes ``<layer>/strips/unit_NNNN.jpg`` and ``unit_NNNN_concept.jpg`` per unit,
    ``<layer>/index.html``, ``<layer>/bargraph.png``, ``index.html`` and ``summary.png``.
    """
    run_dir = Path(run_dir)
    if examples < 1:
        raise OptionError(f"--examples must be >= 1, got {examples}")
    if not (run_dir / SUMMARY_FILE).is_file():
        raise RunDirectoryError(f"{run_dir} holds no finished dissection (no {SUMMARY_FILE}): run a dissection first")
    result = DissectionResult.load(run_dir)
    dataset = open_run_dataset(result, dataset)
    names = list(result.layers)
    model = str(result.metadata.get("model", ""))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="report", unit="layer")
    try:
        for name in names:
            layer = result.layers[name]
            if bar is not None:
                bar.set_postfix_str(name)
            directory = run_dir / layer_dirname(name)
            if layer.top_maps is None:
                raise RunDirectoryError(
                    f"layer {name} in {run_dir} has no top_maps.npz (made by an older version): dissect it again"
                )
            files = _strips.write_strips(layer, dataset, directory / STRIPS_DIR, examples)
            sizes = _strip_sizes(directory / STRIPS_DIR, files)
            context = layer_context(layer, files, sizes, layers=names, model=model)
            atomic_write_bytes(directory / INDEX, render_layer_page(context).encode("utf-8"))
            save_bar_graph_png(context["bars"], directory / BAR_GRAPH_PNG, title=f"{model} {name}".strip())
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    context = run_context(result)
    index = run_dir / INDEX
    atomic_write_bytes(index, render_run_page(context).encode("utf-8"))
    save_category_fractions_png(context, run_dir / SUMMARY_PNG)
    return index
