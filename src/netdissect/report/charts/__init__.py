"""The report's charts, a module per chart, and :data:`CHARTS`, the one list of them.

Each chart module has one ``data(...)`` building the chart's plain data (JSON-able) from the
results, and the renderers of both formats, drawn from that same data: ``svg(data) -> str`` (for
the pages; its text and attributes escaped) and ``save_png(data, path, key=None) -> Path`` (for
papers; matplotlib with Agg, pyplot untouched). A chart without one of the formats says why in its
module docstring. Shared drawing is in :mod:`.svgbase` and :mod:`.pngbase`; matplotlib is imported
only when a PNG is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from . import (
    ablation_curves,
    ablation_scatter,
    category_fractions,
    detectors,
    detectors_per_layer,
    emergence,
    rotation_sweep,
    unique_detectors,
)


@dataclass(frozen=True)
class Chart:
    """A chart: its name (its module's) and its functions (``svg`` None for a PNG-only chart)."""

    name: str
    data: Callable[..., dict]
    svg: Callable[[Mapping], str] | None
    save_png: Callable[..., Path]


def _chart(module: ModuleType) -> Chart:
    return Chart(module.__name__.rpartition(".")[2], module.data, getattr(module, "svg", None), module.save_png)


#: Every chart of the report.
CHARTS: tuple[Chart, ...] = tuple(
    _chart(m)
    for m in (
        detectors,
        category_fractions,
        unique_detectors,
        detectors_per_layer,
        emergence,
        ablation_curves,
        ablation_scatter,
        rotation_sweep,
    )
)
