"""A layer's descriptions: scoring every unit by each method, the rows kept, and their files."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ablation.images import normalise
from ..errors import OptionError
from ..files import atomic_write_bytes, atomic_write_json
from ..formulas.terms import formula_text
from .concepts import ConceptLabels
from .scores import auc_table, average_ranks, benjamini_hochberg, eligible_concepts

CSV_FILE, JSON_FILE, NPZ_FILE = "descriptions.csv", "descriptions.json", "descriptions.npz"
LAYER_FILES = (CSV_FILE, JSON_FILE, NPZ_FILE)  # a layer's descriptions
CSV_HEADER = ("unit", "method", "rank", "concept", "score", "p_value", "significant")
TOP_IMAGES = 10  # each unit's top images kept for the page
WPMI_DECIMALS = 6  # WPMI scores equal to this many decimals are tied


@dataclass
class LayerDescriptions:
    """Every unit of one layer described by each method: ``rows`` as in ``descriptions.csv``."""

    layer: str
    units: int
    rows: list[dict]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def best(self, method: str) -> list[str | None]:
        """Each unit's rank-1 concept by ``method`` (None where it has none)."""
        found: list[str | None] = [None] * self.units
        for row in self.rows:
            if row["method"] == method and row["rank"] == 1:
                found[row["unit"] - 1] = row["concept"]
        return found

    def unit_rows(self, unit: int, method: str) -> list[dict]:
        """Unit ``unit``'s (1-based) rows of ``method``, best first."""
        return [r for r in self.rows if r["unit"] == unit and r["method"] == method]


@dataclass
class DescriptionResult:
    """The descriptions of every described layer, as returned by :func:`netdissect.describe`."""

    layers: dict[str, LayerDescriptions]
    metadata: dict
    directory: Path | None = None

    def __getitem__(self, layer: str) -> LayerDescriptions:
        return self.layers[layer]

    def format_table(self) -> str:
        """One line per layer and method: units with a significant description, final-layer accuracy."""
        lines = []
        for name, layer in self.layers.items():
            s = layer.summary
            parts = [f"{name}: {layer.units} units"]
            if "significant_units" in s:
                parts.append(
                    f"{s['significant_units']} with a significant AUC concept (of {s['tested_concepts']} tested)"
                )
            for method, share in (s.get("final_layer_accuracy") or {}).items():
                parts.append(f"final-layer accuracy ({method}) {100 * share:.1f} %")
            lines.append(", ".join(parts))
        return "\n".join(lines)


def describe_layer(
    name: str,
    values: np.ndarray,
    probes: ConceptLabels,
    words: list[str] | None,
    similarity: np.ndarray | None,
    options: dict,
    class_names: list[str] | None,
) -> LayerDescriptions:
    """Score every unit of ``name`` (its (N, U) ``values``) by the methods of ``options``."""
    n, units = values.shape
    rows: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    summary: dict = {"units": units, "images": n}
    top_k = options["top_k"]
    if "auc" in options["methods"]:
        tested = eligible_concepts(probes.present, options["min_images"], options["max_fraction"])
        if not tested.any():
            raise OptionError(
                f"no concept holds on at least --min-images {options['min_images']} and at most --max-fraction "
                f"{options['max_fraction']:g} of the {n} images: lower --min-images or raise --max-fraction"
            )
        table = auc_table(values, probes.present, tested)
        significant = benjamini_hochberg(table.p_value, options["alpha"])
        arrays.update(auc=table.auc, p_value=table.p_value, significant=significant, tested=tested)
        for u in range(units):
            order = [k for k in np.argsort(-np.nan_to_num(table.auc[u], nan=-1.0), kind="stable") if tested[k]]
            for rank, k in enumerate(order[:top_k], 1):
                rows.append(
                    _row(u, "auc", rank, probes.names[k], table.auc[u, k], table.p_value[u, k], significant[u, k])
                )
        summary["tested_concepts"] = int(tested.sum())
        summary["significant_units"] = int(significant.any(axis=1).sum())
        if options["formula_length"] >= 2:
            rows += _formula_rows(values, probes, tested, options)
    if similarity is not None and words:
        import torch

        from .wpmi import soft_wpmi

        activations, sim = torch.from_numpy(values).float(), torch.from_numpy(similarity).float()
        scores = soft_wpmi(activations, sim).numpy()
        # With few units the score saturates at log(units) for many words (the prior is a mean over
        # the units): equal scores are ordered by the likelihood term log p(word | top images).
        likelihood = soft_wpmi(activations, sim, lam=0.0).numpy()
        arrays["wpmi"] = scores
        for u in range(units):
            ranked = np.lexsort((-likelihood[u], -np.round(scores[u], WPMI_DECIMALS)))
            for rank, m in enumerate(ranked[:top_k], 1):
                rows.append(_row(u, "wpmi", rank, words[m], scores[u, m], None, None))
    rows.sort(key=lambda r: (r["unit"], r["method"], r["rank"]))
    top = np.argsort(-values, axis=0, kind="stable")[:TOP_IMAGES].T  # (U, T)
    arrays.update(top_indices=top, top_values=np.take_along_axis(values.T, top, axis=1))
    layer = LayerDescriptions(name, units, rows, arrays, summary)
    if class_names is not None and len(class_names) == units:
        layer.summary["final_layer_accuracy"] = final_layer_accuracy(layer, class_names)
    return layer


def _row(u: int, method: str, rank: int, concept: str, score: float, p: float | None, sig) -> dict:
    return {
        "unit": u + 1,
        "method": method,
        "rank": rank,
        "concept": concept,
        "score": float(score),
        "p_value": None if p is None else float(p),
        "significant": None if sig is None else bool(sig),
    }


def _formula_rows(values: np.ndarray, probes: ConceptLabels, tested: np.ndarray, options: dict) -> list[dict]:
    """The ``auc-formula`` rows: each unit's best formulas, their nominal p-values and BH over the layer's rows."""
    from .formulas import search_image_formulas
    from .scores import mann_whitney_p

    n = values.shape[0]
    found = []
    for u in range(values.shape[1]):
        ranks, ties = average_ranks(values[:, u : u + 1])
        formulas = search_image_formulas(
            ranks[:, 0],
            probes.present,
            tested,
            options["formula_length"],
            options["beam"],
            options["formula_ops"],
            options["min_images"],
            options["max_fraction"],
            keep=options["top_k"],
        )
        for rank, f in enumerate(formulas, 1):
            n1 = np.array([float(f.positives)])
            p = mann_whitney_p(np.array([[f.u_stat]]), n1, n - n1, ties, n)[0, 0]
            found.append((u, rank, formula_text(f.terms, probes.names), f.auc, p))
    p_values = np.array([p for *_, p in found], dtype=np.float64)
    significant = benjamini_hochberg(p_values, options["alpha"]) if found else np.zeros(0, dtype=bool)
    return [_row(u, "auc-formula", rank, text, auc, p, s) for (u, rank, text, auc, p), s in zip(found, significant)]


def final_layer_accuracy(layer: LayerDescriptions, class_names: list[str]) -> dict[str, float]:
    """Per method, the share of output units whose rank-1 description is their own class (CLIP-Dissect's
    evaluation; names compared without Broden suffixes, case or separators)."""
    shares = {}
    for method in sorted({r["method"] for r in layer.rows}):
        best = layer.best(method)
        hits = [b is not None and normalise(b) == normalise(c) for b, c in zip(best, class_names)]
        shares[method] = float(np.mean(hits))
    return shares


def write_layer(layer: LayerDescriptions, directory: Path) -> None:
    """Write ``descriptions.npz``, ``descriptions.csv`` and (last) ``descriptions.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **layer.arrays)  # type: ignore[arg-type]
    atomic_write_bytes(directory / NPZ_FILE, buffer.getvalue())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in layer.rows:
        p = "" if r["p_value"] is None else f"{r['p_value']:.6g}"
        sig = "" if r["significant"] is None else int(r["significant"])
        writer.writerow([r["unit"], r["method"], r["rank"], r["concept"], f"{r['score']:.6g}", p, sig])
    atomic_write_bytes(directory / CSV_FILE, text.getvalue().encode("utf-8"))
    atomic_write_json(directory / JSON_FILE, {"layer": layer.layer, "units": layer.units, "summary": layer.summary, "rows": layer.rows})  # fmt: skip


def read_layer(directory: str | os.PathLike) -> LayerDescriptions:
    """A layer's descriptions back from its files (the arrays when ``descriptions.npz`` is there)."""
    directory = Path(directory)
    info = json.loads((directory / JSON_FILE).read_text())
    arrays = {}
    if (directory / NPZ_FILE).is_file():
        with np.load(directory / NPZ_FILE) as found:
            arrays = {k: found[k] for k in found.files}
    return LayerDescriptions(info["layer"], info["units"], info["rows"], arrays, info["summary"])
