"""The report's categories: their order and colours, and the numbers its charts draw per layer and run.

Pure functions of a layer's or run's results (``LayerResult``/``DissectionResult``, as computed
or as read back from a run directory without torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ..labels import display_name

if TYPE_CHECKING:
    from ..runs.results import DissectionResult, LayerResult

#: Order of the categories in charts and menus; categories a dataset lacks are skipped and
#: categories not listed here follow in the dataset's order.
CATEGORY_ORDER: tuple[str, ...] = ("object", "scene", "part", "material", "texture", "color")

#: One fixed colour per Broden category (colour-blind friendly, Tableau 10).
CATEGORY_COLOURS: dict[str, str] = {
    "object": "#4e79a7",
    "scene": "#f28e2b",
    "part": "#59a14f",
    "material": "#b07aa1",
    "texture": "#edc948",
    "color": "#e15759",
}

#: Colours for other categories, given in order of appearance.
EXTRA_COLOURS: tuple[str, ...] = ("#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8")

NO_CATEGORY_COLOUR = "#9aa0a6"


def ordered_categories(categories: Iterable[str]) -> list[str]:
    """``categories`` in the report's order: object, scene, part, material, texture, color,
    then any other category in its given order."""
    categories = list(dict.fromkeys(categories))
    known = [c for c in CATEGORY_ORDER if c in categories]
    return known + [c for c in categories if c not in CATEGORY_ORDER]


def category_colours(categories: Iterable[str]) -> dict[str, str]:
    """A colour per category: the fixed palette for Broden's, then the extra colours in turn."""
    colours = {}
    extra = 0
    for c in ordered_categories(categories):
        if c in CATEGORY_COLOURS:
            colours[c] = CATEGORY_COLOURS[c]
        else:
            colours[c] = EXTRA_COLOURS[extra % len(EXTRA_COLOURS)]
            extra += 1
    return colours


def bar_data(result: LayerResult) -> list[tuple[str, str, int]]:
    """The bar graph of a layer: ``(category, label display name, detectors)`` per detected label.

    Grouped by category in :data:`CATEGORY_ORDER` (then other categories), most detectors
    first within a category (ties by name).
    """
    counts: dict[tuple[int, int], int] = {}
    for u in np.flatnonzero(result.detectors):
        key = (int(result.category[u]), int(result.label[u]))
        counts[key] = counts.get(key, 0) + 1
    rank = {c: i for i, c in enumerate(ordered_categories(result.categories))}
    rows = [
        (result.categories[ci], display_name(result.label_names[label]), n, label) for (ci, label), n in counts.items()
    ]
    rows.sort(key=lambda r: (rank[r[0]], -r[2], r[1], r[3]))
    return [(c, name, n) for c, name, n, _ in rows]


def category_fractions(result: DissectionResult) -> dict:
    """Per layer, the detectors per category and the units: what the summary chart draws.

    Returns ``{"categories": [...], "layers": [{"layer", "units", "counts": {cat: n},
    "fractions": {cat: n / units}}]}`` with categories in the report's order.
    """
    categories: list[str] = []
    for layer in result.layers.values():
        categories += layer.categories
    categories = ordered_categories(categories)
    rows = []
    for name, layer in result.layers.items():
        s = layer.summary()
        counts = {c: int(s["detectors_by_category"].get(c, 0)) for c in categories}
        units = max(int(s["units"]), 1)
        rows.append(
            {
                "layer": name,
                "units": int(s["units"]),
                "counts": counts,
                "fractions": {c: n / units for c, n in counts.items()},
            }
        )
    return {"categories": categories, "layers": rows}
