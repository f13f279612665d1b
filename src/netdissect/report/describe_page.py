"""The descriptions page of a run: each unit's IoU, AUC and WPMI labels side by side, with their agreement.

``<run>/describe.html`` shows, per described layer, a table of how often the methods' rank-1
labels agree, then one card per unit: its IoU label (when the run is a dissection), its best
AUC concept (with the p-value; marked when significant), its best WPMI word, its best formula
and its top images (without masks: any layer, fully connected ones included). Thumbnails of
the top images are stored once each in ``<run>/describe-images/``. Joined with a dissection,
the page is listed in the run's ``extra_pages.json``. Torch is not imported.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from PIL import Image

from ..ablation.images import normalise
from ..files import atomic_write_bytes, layer_dirname
from ..runs.layout import UNITS_FILE
from .pages import environment

PAGE = "describe.html"
IMAGES_DIR = "describe-images"
THUMBNAIL = 96
SHOWN_IMAGES = 5
METHOD_NAMES = {"iou": "IoU", "auc": "AUC", "wpmi": "WPMI", "auc-formula": "AUC formula"}


def write_describe_page(run_dir: str | os.PathLike) -> Path:
    """Write ``<run_dir>/describe.html`` from the run's descriptions; returns its path."""
    from ..describe.result import read_layer

    run_dir = Path(run_dir)
    record = json.loads((run_dir / "describe.json").read_text())
    images = [Path(p) for p in record["images"]]
    used: dict[int, str] = {}
    layers = []
    for name in record["layers"]:
        directory = run_dir / layer_dirname(name)
        described = read_layer(directory)
        iou = _iou_labels(directory)
        best = {m: described.best(m) for m in sorted({r["method"] for r in described.rows})}
        if iou is not None:
            best = {"iou": [label for label, _, _ in iou], **best}
        units = []
        top = described.arrays.get("top_indices")
        for u in range(1, described.units + 1):
            cells: list[dict] = []
            if iou is not None:
                label, score, detector = iou[u - 1]
                cells.append(
                    {"method": "IoU", "concept": label or "-", "detail": f"{score:.3f}", "significant": detector}
                )
            for method in best:
                if method == "iou":
                    continue
                rows = described.unit_rows(u, method)
                if rows:
                    r = rows[0]
                    detail = f"{r['score']:.3f}"
                    if r["p_value"] is not None:
                        detail += f", p = {r['p_value']:.2g}"
                    cells.append(
                        {
                            "method": METHOD_NAMES.get(method, method),
                            "concept": r["concept"],
                            "detail": detail,
                            "significant": bool(r["significant"]),
                        }
                    )
            shown = [] if top is None else [int(i) for i in top[u - 1][:SHOWN_IMAGES]]
            thumbs = [_thumbnail(run_dir, images, i, used) for i in shown]
            units.append({"unit": u, "cells": cells, "images": [t for t in thumbs if t]})
        layers.append(
            {
                "name": name,
                "anchor": layer_dirname(name),
                "summary": described.summary,
                "agreement": agreement_table(best),
                "units": units,
            }
        )
    html = (
        environment()
        .get_template("describe.html")
        .render(
            model=record.get("metadata", {}).get("model", ""),
            probes=record.get("metadata", {}).get("probes", {}),
            layers=layers,
            joined=record.get("joined", False),
        )
    )
    page = run_dir / PAGE
    atomic_write_bytes(page, html.encode("utf-8"))
    if record.get("joined"):
        from . import add_extra_page

        if os.access(run_dir, os.W_OK):
            add_extra_page(run_dir, "Unit descriptions (AUC, WPMI)", page)
    return page


def agreement_table(best: dict[str, list[str | None]]) -> list[dict]:
    """For each pair of methods, the share of units whose rank-1 labels are the same concept."""
    methods = list(best)
    table = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            pairs = [(x, y) for x, y in zip(best[a], best[b]) if x and y]
            same = sum(normalise(x) == normalise(y) for x, y in pairs)
            table.append(
                {
                    "a": METHOD_NAMES.get(a, a),
                    "b": METHOD_NAMES.get(b, b),
                    "units": len(pairs),
                    "same": same,
                    "share": same / len(pairs) if pairs else 0.0,
                }
            )
    return table


def _iou_labels(directory: Path) -> list[tuple[str | None, float, bool]] | None:
    """The dissection's best label, its IoU and the detector flag per unit, when the layer was dissected."""
    try:
        units = json.loads((directory / UNITS_FILE).read_text())["units"]
    except (OSError, ValueError, KeyError):
        return None
    return [(u.get("label") or None, float(u.get("score", 0.0)), bool(u.get("detector"))) for u in units]


def _thumbnail(run_dir: Path, images: list[Path], index: int, used: dict[int, str]) -> str | None:
    """The page-relative path of image ``index``'s thumbnail (written once), or None when unreadable."""
    if index in used:
        return used[index]
    target = run_dir / IMAGES_DIR / f"{index:06d}.jpg"
    if not target.exists():
        try:
            with Image.open(images[index]) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMBNAIL, THUMBNAIL))
                buffer = io.BytesIO()
                im.save(buffer, format="JPEG", quality=85)
        except (OSError, IndexError):
            return None
        atomic_write_bytes(target, buffer.getvalue())
    used[index] = f"{IMAGES_DIR}/{target.name}"
    return used[index]
