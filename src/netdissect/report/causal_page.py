"""The causal-effect page of a generator layer: concepts' pixel shares before and after ablation.

``<layer>/causal.html`` shows, per concept with detectors, the ablated units, the concept's share
of the generated pixels before and after, and sample pairs (``<layer>/causal/``). The run
directory's ``extra_pages.json`` lists the page (see :func:`netdissect.report.add_extra_page`) so
that the run report links it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_write_bytes
from . import add_extra_page
from .pages import environment

CAUSAL_PAGE = "causal.html"
CAUSAL_DIR = "causal"


@dataclass
class CausalEffect:
    """One concept's ablation: its label number and name, the 1-based units zeroed, its pixel
    share before and after, and sample pairs ``(sample index, image before, image after)``."""

    label: int
    name: str
    units: list[int]
    before: float
    after: float
    pairs: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _change(before: float, after: float) -> str:
    if before == 0:
        return "absent before"
    return f"{100 * (after - before) / before:+.0f} %"


def _units_phrase(counts: Sequence[int], ablate_top: int) -> str:
    """How many units each concept had zeroed, in words that match the data: "its best detector
    unit (by IoU) is", "its best 3 detector units (by IoU) are", or, when the concepts differ,
    "its best detector units (by IoU; up to 20, fewer where it has fewer detectors) are"."""
    distinct = sorted(set(counts))
    if len(distinct) == 1:
        n = distinct[0]
        return "its best detector unit (by IoU) is" if n == 1 else f"its best {n} detector units (by IoU) are"
    return f"its best detector units (by IoU; up to {ablate_top}, fewer where it has fewer detectors) are"


def causal_context(layer: str, model: str, concepts: Sequence[dict], samples: int, ablate_top: int) -> dict:
    """The template context of the causal page: ``concepts`` as built by :func:`write_causal_page`."""
    counts = [len(c["units"]) for c in concepts]
    return {
        "layer": layer,
        "model": model,
        "concepts": concepts,
        "samples": samples,
        "samples_text": f"{samples} sample{'s' if samples != 1 else ''}",
        "ablate_top": ablate_top,
        "units_phrase": _units_phrase(counts, ablate_top) if counts else "",
        "zeroed": "the unit" if counts and max(counts) == 1 else "the units",
    }


def write_causal_page(
    directory: str | Path,
    layer: str,
    model: str,
    effects: Sequence[CausalEffect],
    samples: int,
    ablate_top: int,
    run: str | Path | None = None,
) -> Path:
    """Write ``directory/causal.html`` and its sample images; returns the page's path. With ``run``
    (the run directory), the run's report lists the page.

    The page states the units zeroed for each concept as they are (a concept with one detector had
    one unit zeroed, whatever ``ablate_top``, the most allowed), and shows no image preprocessing:
    a generator's input is its latents.
    """
    directory = Path(directory)
    concepts = []
    for effect in effects:
        pairs = []
        for sample, before, after in effect.pairs:
            stem = f"{CAUSAL_DIR}/label{effect.label:04d}_sample{sample:06d}"
            atomic_write_bytes(directory / f"{stem}_before.png", _png(before))
            atomic_write_bytes(directory / f"{stem}_after.png", _png(after))
            pairs.append({"sample": sample, "before": f"{stem}_before.png", "after": f"{stem}_after.png"})
        n = len(effect.units)
        concepts.append(
            {
                "anchor": f"label{effect.label}",
                "name": effect.name,
                "units": effect.units,
                "units_text": f"{n} unit{'s' if n != 1 else ''} zeroed",
                "before": effect.before,
                "after": effect.after,
                "change": _change(effect.before, effect.after),
                "pairs": pairs,
            }
        )
    context = causal_context(layer, model, concepts, samples, ablate_top)
    html = environment().get_template(CAUSAL_PAGE).render(**context)
    page = directory / CAUSAL_PAGE
    atomic_write_bytes(page, html.encode("utf-8"))
    if run is not None:
        add_extra_page(run, f"Causal effects: {layer}", page)
    return page
