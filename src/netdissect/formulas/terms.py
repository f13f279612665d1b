"""Formulas of labels as data, without torch: their text, their value on boolean arrays, and
their form in ``iou.npz`` (see :mod:`netdissect.formulas.search` for the semantics and the search).

A formula is a tuple of terms ``((None, l1), (op, l2), ...)``, left-nested, with label numbers
and ops ``"and"``, ``"or"``, ``"andnot"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMULA_OPS = ("and", "or", "andnot")  # the operators of --formula-ops, in canonical order
OP_TEXT = {"and": "AND", "or": "OR", "andnot": "AND NOT"}  # the spellings of formulas and formula_terms
OP_CODES = (None, "and", "or", "andnot")  # formula terms in iou.npz: op code 0 for the first term

Terms = tuple[tuple[str | None, int], ...]  # ((None, l1), (op, l2), ...), left-nested


@dataclass
class UnitFormulas:
    """Per unit: the best formula found, its IoU, and the best single label under the same semantics."""

    terms: list[Terms]  # per unit; () when the dataset has no usable label
    iou: np.ndarray  # (U,) float64
    single_label: np.ndarray  # (U,) int64 label number
    single_iou: np.ndarray  # (U,) float64
    info: dict = field(default_factory=dict)  # length, beam, ops, pruned, signatures, entries


def formula_text(terms: Sequence[tuple[str | None, int]], names: Sequence[str]) -> str:
    """``((water OR river) AND NOT blue)``; a single label is its name; no terms: ``""``."""
    if not terms:
        return ""
    text = names[terms[0][1]]
    for op, label in terms[1:]:
        text = f"({text} {OP_TEXT[str(op)]} {names[label]})"
    return text


def evaluate_formula(terms: Sequence[tuple[str | None, int]], members: dict[int, np.ndarray]) -> np.ndarray:
    """A formula's value from each of its labels' arrays (``members[label]``): boolean arrays, or
    the same masks as ``packbits`` bytes (padding bits 0), which give the packed result."""
    value = members[terms[0][1]].copy()
    for op, label in terms[1:]:
        other = members[label]
        value = value & other if op == "and" else value | other if op == "or" else value & ~other
    return value


def terms_from_arrays(ops: np.ndarray, labels: np.ndarray) -> list[Terms]:
    """Each unit's terms from ``iou.npz``'s ``formula_ops`` and ``formula_labels`` ``(U, N)``
    (label -1: padding; a unit without a formula has no terms)."""
    return [
        tuple((OP_CODES[op], int(label)) for op, label in zip(row_ops, row_labels) if label >= 0)
        for row_ops, row_labels in zip(np.asarray(ops).tolist(), np.asarray(labels).tolist())
    ]


def formula_arrays(formulas: UnitFormulas) -> dict[str, np.ndarray]:
    """The formulas as arrays for iou.npz: label numbers and op codes ``(U, N)`` (-1 / 0: padding)."""
    width = max([len(t) for t in formulas.terms] + [1])
    labels = np.full((len(formulas.terms), width), -1, dtype=np.int64)
    ops = np.zeros((len(formulas.terms), width), dtype=np.int64)
    for u, terms in enumerate(formulas.terms):
        for k, (op, label) in enumerate(terms):
            labels[u, k], ops[u, k] = label, OP_CODES.index(op)
    return {
        "formula_labels": labels,
        "formula_ops": ops,
        "formula_iou": formulas.iou,
        "formula_single_label": formulas.single_label,
        "formula_single_iou": formulas.single_iou,
    }


def read_formulas(arrays: Any, info: dict) -> UnitFormulas | None:
    """The formulas stored by :func:`formula_arrays` in ``arrays`` (an open ``iou.npz``), or None."""
    if "formula_labels" not in arrays:
        return None
    terms = terms_from_arrays(arrays["formula_ops"], arrays["formula_labels"])
    return UnitFormulas(
        terms, arrays["formula_iou"], arrays["formula_single_label"], arrays["formula_single_iou"], info
    )
