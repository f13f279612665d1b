"""A rotation sweep's curves: unique detectors and detectors against the rotation power P, one line
per layer (``rotation_sweep.png``).

PNG only: the sweep writes no page to show an SVG in (its numbers are in ``rotation_sweep.json``),
so the chart has no ``svg``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from . import pngbase

PANELS = (("unique_detectors", "unique detectors"), ("detectors", "detectors"))


def data(curves: Mapping) -> dict:
    """The chart's data from :func:`netdissect.engine.rotation_sweep.rotation_sweep`'s curves:
    ``{"powers": [...], "layers": {layer: {"detectors": [...], "unique_detectors": [...]}}}``."""
    return {
        "powers": [float(p) for p in curves["powers"]],
        "layers": {
            name: {key: [int(v) for v in entry[key]] for key, _ in PANELS} for name, entry in curves["layers"].items()
        },
    }


def save_png(data: Mapping, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write the chart as a PNG: two panels (unique detectors, detectors), a line per layer
    (``key``: see :data:`pngbase.CHART_KEY`)."""
    fig = pngbase.figure(max(pngbase.MIN_WIDTH, 8.0), 3.4)
    for k, (name, title) in enumerate(PANELS):
        axes = fig.add_subplot(1, 2, k + 1)
        for layer, entry in data["layers"].items():
            axes.plot(data["powers"], entry[name], marker="o", label=pngbase.text(layer))
        axes.set_xlabel("rotation power P")
        axes.set_ylabel(title)
        axes.grid(alpha=0.3)
        pngbase.plain(axes, integer=True)
    if data["layers"]:
        axes.legend(fontsize=8)  # on the last panel
    fig.tight_layout()
    return pngbase.save(fig, path, key)
