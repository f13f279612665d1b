"""The page of images explained by a dissected layer (``netdissect explain``): ``<out>/index.html``.

Per image: the image as the model saw it, its segmentation by the layer's detector units over
it with a legend (colour, concept, share of the image), the model's top predictions, and the
units whose zeroing costs the top class the most, each with its mask over the image (the image
dimmed outside it) and a link to the unit's card on the run's layer page. Written from
``explain.json`` alone: torch is not imported.
"""

from __future__ import annotations

import colorsys
import json
import os
from pathlib import Path
from urllib.parse import quote

from ..files import atomic_write_bytes, layer_dirname
from ..labels import display_name
from ..runs.layout import SUMMARY_FILE
from . import add_extra_page, write_run_page
from .pages import environment

PAGE = "index.html"
#: Colours of the legend entries 1, 2, ... (Tableau 20, strong shades first); then see :func:`legend_colour`.
SEGMENT_COLOURS = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def legend_colour(index: int) -> str:
    """The ``#rrggbb`` colour of legend entry ``index`` (from 1), as drawn in ``seg-<i>.png`` and on the page:
    the fixed palette, then hues a golden angle apart (two lightnesses, two saturations)."""
    if 1 <= index <= len(SEGMENT_COLOURS):
        return SEGMENT_COLOURS[index - 1]
    extra = index - len(SEGMENT_COLOURS)
    red, green, blue = colorsys.hsv_to_rgb(
        (extra * 0.618034) % 1.0, 0.45 + 0.3 * (extra % 2), 0.9 - 0.25 * (extra // 2 % 2)
    )
    return "#" + "".join(f"{round(255 * c):02x}" for c in (red, green, blue))


def page_context(record: dict, run: Path | None, page_dir: Path) -> dict:
    """What the template shows, from the contents of ``explain.json``; links are relative to ``page_dir``."""
    meta = record.get("metadata", {})
    layer = str(meta.get("layer", ""))
    run_href = layer_href = ""
    if run is not None and (run / "index.html").is_file():
        run_href = _relative(run / "index.html", page_dir)
    if run is not None and (run / layer_dirname(layer) / "index.html").is_file():
        layer_href = _relative(run / layer_dirname(layer) / "index.html", page_dir)
    images = []
    for i, entry in enumerate(record.get("images", [])):
        legend = [
            {
                "index": int(k),
                "concept": display_name(str(v)),
                "colour": legend_colour(int(k)),
                "share": float(entry.get("coverage", {}).get(k, 0.0)),
            }
            for k, v in sorted(entry.get("legend", {}).items(), key=lambda kv: int(kv[0]))
        ]
        predictions = entry.get("predictions", [])
        units = [
            {
                **u,
                "label_text": display_name(str(u.get("label", ""))),
                "href": f"{layer_href}#unit-{int(u['unit'])}" if layer_href else "",
            }
            for u in entry.get("units", [])
        ]
        images.append(
            {
                "index": i,
                "name": Path(str(entry.get("image", ""))).name,
                "path": str(entry.get("image", "")),
                "input": entry.get("input", ""),
                "segmentation": entry.get("segmentation", ""),
                "legend": legend,
                "predictions": predictions,
                "top": predictions[0] if predictions else None,
                "units": units,
            }
        )
    return {
        "model": str(meta.get("model", "")),
        "layer": layer,
        "iou_threshold": meta.get("iou_threshold"),
        "detectors": meta.get("detectors"),
        "units": meta.get("units"),
        "input_size": meta.get("input_size") or [0, 0],
        "segmentation_size": meta.get("segmentation_size") or [0, 0],
        "run_href": run_href,
        "layer_href": layer_href,
        "images": images,
    }


def write_explain_page(directory: str | os.PathLike, run: str | os.PathLike | None, page_dir: str | os.PathLike | None = None) -> Path:  # fmt: skip
    """Write ``<directory>/index.html`` from ``<directory>/explain.json``; links to the run are
    made for the page's final folder ``page_dir`` (default: ``directory``). Returns its path."""
    directory = Path(directory)
    record = json.loads((directory / "explain.json").read_text(encoding="utf-8"))
    context = page_context(record, Path(run) if run is not None else None, Path(page_dir or directory))
    html = environment().get_template("explain.html").render(**context)
    page = directory / PAGE
    atomic_write_bytes(page, html.encode("utf-8"))
    return page


def link_from_run(run: Path, layer: str, page: Path | None, had_page: bool) -> None:
    """List ``page`` among the run's extra pages; without a page (``--no-report``), rewrite the
    run's page when it linked an explanation page that is gone (``had_page``)."""
    if page is not None:
        add_extra_page(run, f"Explained images · {layer}", page)
    elif had_page and (run / "index.html").is_file() and (run / SUMMARY_FILE).is_file():
        write_run_page(run)  # the run's page no longer links the removed page


def _relative(path: Path, start: Path) -> str:
    """A relative URL from folder ``start`` to ``path`` (each part percent-encoded)."""
    rel = Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    return "/".join(quote(part) for part in rel.split("/"))
