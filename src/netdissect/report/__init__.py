"""The HTML report of a dissection run: a run page, a page per layer, unit tiles and charts.

``<out>/index.html`` summarises the run and links to ``<out>/<layer>/index.html``, which shows
every unit (its label, category, IoU, next-best labels and top images). The pages are
self-contained: inline CSS and JavaScript, local files referenced by relative paths, no network.

Files: each distinct top image of the run once in ``<out>/report-images/``; per layer
``masks.js`` (every unit's masks as packed bits: the page draws dimming, outline and ground
truth itself), ``index.html`` and ``bargraph.png``; ``<out>/summary.png``. Writing a report
never imports torch (unless activation maps must be shrunk to their image), so rebuilding one
costs a fraction of the dissection.

Other pages: the pages listed in ``<out>/extra_pages.json`` (see :mod:`netdissect.report.extra`)
and any ``<out>/<dir>/index.html`` (``<dir>`` not a layer) are linked from the run page; listed
pages inside a layer's directory and any ``<out>/<layer>/<dir>/index.html`` from its layer page.
Found pages are titled by their ``<title>``. A tool that writes such a page afterwards calls
:func:`add_extra_page`: it lists the page and, when the run has a report, rewrites the run page
(cheap) so that it links the page at once.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import DatasetError, OptionError, RunDirectoryError
from ..files import atomic_write_bytes, layer_dirname
from ..runs.layout import SUMMARY_FILE
from ..runs.outputs import DISSECTION, GENERATOR, IMPORTED, read_kind
from ..runs.results import DissectionResult
from . import strips as _strips
from .categories import bar_data
from .datarows import Rows, read_rows, rows_of
from .extra import pages_lock, read_extra_pages, record_extra_page
from .pages import layer_context, render_layer_page, render_run_page, run_context

if TYPE_CHECKING:
    from ..data.broden import BrodenDataset

__all__ = [
    "add_extra_page",
    "bar_data",
    "layer_context",
    "open_run_dataset",
    "run_context",
    "write_report",
    "write_run_page",
]

INDEX = "index.html"
MASKS_JS = "masks.js"
OLD_STRIPS_DIR = "strips"  # the per-unit JPEG strips of earlier versions, removed on rebuild
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
    from ..data.broden import BrodenDataset

    recorded = _recorded(result)
    if dataset is None:
        dataset = BrodenDataset(_recorded_path(recorded), categories=recorded.get("categories"))
    elif not isinstance(dataset, BrodenDataset):
        dataset = BrodenDataset(dataset, categories=recorded.get("categories"))
    if _matches([r.row for r in dataset.meta.rows], recorded):
        return dataset
    for split in ("val", "train"):
        try:
            candidate = BrodenDataset(dataset.directory, split=split, size=recorded.get("images"))
        except DatasetError:
            continue
        if _matches([r.row for r in candidate.meta.rows], recorded):
            return candidate
    raise _mismatch(dataset.directory, [r.row for r in dataset.meta.rows], recorded)


def _recorded(result: Any) -> dict:
    recorded = result.metadata.get("dataset") or {}
    return recorded if isinstance(recorded, dict) else {"path": str(recorded)}


def _recorded_path(recorded: Mapping) -> str:
    path = recorded.get("path")
    if not path:
        raise DatasetError("the run does not record its dataset's path: pass --dataset PATH")
    if not (Path(path) / "index.csv").is_file():
        raise DatasetError(f"dataset {path} of this run is missing: pass --dataset PATH to where it is now")
    return str(path)


def _matches(rows: list[int], recorded: Mapping) -> bool:
    """Whether data rows ``rows`` start with the rows the run used (as far as the metadata tells)."""
    n = int(recorded.get("images", len(rows)))
    if not 0 < n <= len(rows):
        return False
    return rows[0] == recorded.get("first_row", rows[0]) and rows[n - 1] == recorded.get("last_row", rows[n - 1])


def _mismatch(directory: Path, rows: list[int], recorded: Mapping) -> DatasetError:
    return DatasetError(
        f"dataset {directory} does not match the run: the run used {recorded.get('images')} images "
        f"(index.csv rows {recorded.get('first_row')}-{recorded.get('last_row')}), the dataset has {len(rows)} "
        f"(rows {rows[0] if rows else '-'}-{rows[-1] if rows else '-'}); pass the run's dataset with --dataset"
    )


def _run_rows(run: DissectionResult, dataset: BrodenDataset | str | os.PathLike | None) -> Rows:
    """The run's dataset rows: from an open dataset (checked, reopened with the run's split when
    needed), else parsed from the recorded or given directory without torch."""
    recorded = _recorded(run)
    if dataset is not None and not isinstance(dataset, (str, os.PathLike)):
        return rows_of(open_run_dataset(run, dataset))
    directory = Path(dataset) if dataset is not None else Path(_recorded_path(recorded))
    if not (directory / "index.csv").is_file():
        raise DatasetError(f"dataset directory {directory} has no index.csv")
    rows = read_rows(directory, recorded)
    if rows is None:
        return rows_of(open_run_dataset(run, directory))  # raises the full explanation
    return rows


def _page_title(path: Path) -> str:
    head = path.read_bytes()[:8192].decode("utf-8", "replace")
    found = re.search(r"<title>(.*?)</title>", head, re.S | re.I)
    return html.unescape(found.group(1)).strip() if found else path.parent.name


def extra_pages(directory: Path, skip: set[str], listed: Sequence[Mapping[str, str]] = ()) -> list[dict[str, str]]:
    """``{"title", "href"}`` of the ``listed`` pages (``{"title", "path"}``, ``path`` relative to
    ``directory``), then of every ``<directory>/<dir>/index.html`` with ``<dir>`` not in ``skip``
    and not listed."""
    pages = [{"title": p["title"], "href": "/".join(quote(part) for part in p["path"].split("/"))} for p in listed]
    hrefs = {p["href"] for p in pages}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and p.name not in skip):
        page, href = sub / INDEX, f"{quote(sub.name)}/{INDEX}"
        if page.is_file() and href not in hrefs:
            pages.append({"title": _page_title(page) or sub.name, "href": href})
    return pages


def _layer_listed(listed: Sequence[Mapping[str, str]], dirname: str) -> list[dict[str, str]]:
    """The listed pages inside a layer's directory, with paths relative to it."""
    prefix = dirname + "/"
    return [{"title": p["title"], "path": p["path"][len(prefix) :]} for p in listed if p["path"].startswith(prefix)]


def add_extra_page(run_dir: str | os.PathLike, title: str, page: str | os.PathLike) -> Path:
    """List ``page`` (a file path; it may lie outside the run) in ``<run_dir>/extra_pages.json``
    under ``title`` and, when the run has a report, rewrite its run page to link it.

    Returns the path of ``extra_pages.json``.
    """
    run_dir = Path(run_dir)
    path = Path(os.path.relpath(Path(page).resolve(), run_dir.resolve())).as_posix()
    with pages_lock(run_dir):  # two tools linking pages at once both get listed
        file = record_extra_page(run_dir, title, path)
        if (run_dir / INDEX).is_file() and (run_dir / SUMMARY_FILE).is_file():
            write_run_page(run_dir)
    return file


def _chart(path: Path, key_data: Any, draw: Callable[[str], Any]) -> None:
    """Draw a PNG chart unless ``path`` already shows ``key_data`` (digest in its PNG text)."""
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:24]
    if path.is_file():
        from PIL import Image

        try:
            with Image.open(path) as im:
                if getattr(im, "text", {}).get("netdissect-chart") == key:
                    return
        except OSError:
            pass
    draw(key)


def write_run_page(run_dir: str | os.PathLike, run: DissectionResult | None = None) -> Path:
    """Write (or rewrite) the run page ``<run_dir>/index.html`` and ``summary.png``, linking the
    run's layer pages and any other ``<run_dir>/<dir>/index.html`` page; return its path."""
    run_dir = Path(run_dir)
    if run is None:
        if not (run_dir / SUMMARY_FILE).is_file():
            raise RunDirectoryError(f"{run_dir} holds no finished dissection (no {SUMMARY_FILE})")
        run = DissectionResult.load(run_dir, maps=False, values=False)
    skip = {layer_dirname(n) for n in run.layers} | {_strips.IMAGES_DIR}
    context = run_context(run, extra_pages(run_dir, skip, read_extra_pages(run_dir)))
    index = run_dir / INDEX
    atomic_write_bytes(index, render_run_page(context).encode("utf-8"))

    def draw(key: str) -> None:
        from .charts import category_fractions

        category_fractions.save_png(category_fractions.data(context), run_dir / SUMMARY_PNG, key=key)

    _chart(run_dir / SUMMARY_PNG, context["fractions"], draw)
    return index


def write_report(
    run_dir: str | os.PathLike,
    dataset: BrodenDataset | str | os.PathLike | None = None,
    examples: int = 10,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Write the HTML report of a finished run directory; return the path of its ``index.html``.

    Args:
        run_dir: the run directory (holding ``summary.json`` and a directory per layer).
        dataset: the concept dataset the run used (a :class:`BrodenDataset` or a path);
            default: the path recorded in the run.
        examples: top images shown per unit (at most the run's ``top_images``).
        progress: show a progress bar over the layers.
        workers: threads copying images and packing masks (default: the CPU count, at most 8).

    Writes ``report-images/NNNNNN.jpg`` (each distinct top image once), per layer ``masks.js``,
    ``index.html`` and ``bargraph.png``, then ``index.html`` and ``summary.png``. Reports of
    earlier versions (per-unit ``strips/``) are replaced. Results imported from another tool
    (:func:`netdissect.import_results`: metadata ``imported_from``) have no dataset and no images:
    their pages and charts are written without top images, naming the source and its convention.
    """
    run_dir = Path(run_dir)
    if examples < 1:
        raise OptionError(f"--examples must be >= 1, got {examples}")
    run = _load_dissection(run_dir)
    imported = bool(run.metadata.get("imported_from"))  # another tool's results: no dataset, no images
    names = list(run.layers)
    shown: dict[str, dict[int, list[int]]] = {
        name: {} if imported else {u + 1: [int(i) for i in layer.top_indices[u, :examples]] for u in range(layer.units)}
        for name, layer in run.layers.items()
    }
    rows: Rows | None = None if imported else _run_rows(run, dataset)
    truth = _store_images(run, run_dir, rows, shown, examples, workers)
    listed = read_extra_pages(run_dir)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="report", unit="layer")
    try:
        for name in names:
            if bar is not None:
                bar.set_postfix_str(name)
            _write_layer(run_dir, run, name, shown[name], rows, truth, examples, workers, listed)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return write_run_page(run_dir, run)


def _load_dissection(run_dir: Path) -> DissectionResult:
    """The run of a finished dissection (or generator dissection, or imported results) at ``run_dir``."""
    found = read_kind(run_dir)
    if found is not None and found not in (DISSECTION, GENERATOR, IMPORTED):
        raise RunDirectoryError(
            f"{run_dir} holds {found.what} (written by {found.written_by}), not a dissection run; "
            "its page is rebuilt by the command that wrote it"
        )
    if not (run_dir / SUMMARY_FILE).is_file():
        raise RunDirectoryError(f"{run_dir} holds no finished dissection (no {SUMMARY_FILE}): run a dissection first")
    run = DissectionResult.load(run_dir, values=False)
    imported = bool(run.metadata.get("imported_from"))
    for name, layer in run.layers.items():
        if layer.top_maps is None and not imported:
            raise RunDirectoryError(
                f"layer {name} in {run_dir} has no top_maps.npz (made by an older version): dissect it again"
            )
    return run


def _store_images(
    run: DissectionResult,
    run_dir: Path,
    rows: Rows | None,
    shown: dict[str, dict[int, list[int]]],
    examples: int,
    workers: int | None,
) -> Any:
    """Copy the shown top images into ``report-images/`` and return their truth masks (None without rows)."""
    images = run_dir / _strips.IMAGES_DIR
    if rows is None:
        shutil.rmtree(images, ignore_errors=True)
        return None
    _strips.store_images(rows, (i for tiles in shown.values() for t in tiles.values() for i in t), images, workers)
    wanted: dict[int, set[int]] = {}
    for layer in run.layers.values():
        for image, labels in _strips.tile_labels(layer, examples).items():
            wanted.setdefault(image, set()).update(labels)
    return _strips.truth_masks(rows, wanted, workers)


def _write_layer(
    run_dir: Path,
    run: DissectionResult,
    name: str,
    shown: dict[int, list[int]],
    rows: Rows | None,
    truth: Any,
    examples: int,
    workers: int | None,
    listed: Sequence[Mapping[str, str]],
) -> None:
    """One layer's ``masks.js``, ``index.html`` and ``bargraph.png``."""
    layer = run.layers[name]
    model = str(run.metadata.get("model", ""))
    directory = run_dir / layer_dirname(name)
    if rows is not None:
        masks = _strips.layer_tiles(layer, rows, examples, truth, workers)
        table = _strips.image_table(rows, (i for t in shown.values() for i in t))
        data = json.dumps({"images": table, "units": masks}, separators=(",", ":"))
        atomic_write_bytes(directory / MASKS_JS, f"window.NETDISSECT_TILES = {data};\n".encode())
    context = layer_context(
        layer,
        shown,
        layers=list(run.layers),
        model=model,
        extra_pages=extra_pages(directory, set(), _layer_listed(listed, layer_dirname(name))),
    )
    atomic_write_bytes(directory / INDEX, render_layer_page(context).encode("utf-8"))
    shutil.rmtree(directory / OLD_STRIPS_DIR, ignore_errors=True)
    title = f"{model} {name}".strip()

    def draw(key: str) -> None:
        from .charts import detectors

        detectors.save_png(detectors.data(context["bars"], title=title), directory / BAR_GRAPH_PNG, key=key)

    _chart(directory / BAR_GRAPH_PNG, [context["bars"], title], draw)
