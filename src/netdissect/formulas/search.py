"""Compositional explanations: the best logical formula of concept labels for each unit.

Semantics (those of Mu & Andreas, *Compositional Explanations of Neurons*, NeurIPS 2020):
every label is a pixel mask at the segmentation resolution on every image. A pixel label covers
its pixels (in any annotation layer), an image-level label (scene, texture) covers its whole
image, label 0 is nothing, and labels outside the dataset's categories never count. ``A AND
B``, ``A OR B`` and ``A AND NOT B`` act pixel by pixel; ``NOT B`` is every pixel of an image not
labelled B (on an image without B, all of it). Formulas are left-nested:
``((water OR river) AND NOT blue)``. A formula F's IoU with unit u is
``sum_images |M_u AND F| / sum_images |M_u OR F|`` with M_u the unit's mask of the dissection
(same threshold, same upsampling).

This differs from the single-label IoU of the ``paper``/``lite`` modes, which count a unit's
mask only in the images where the label's category is annotated (``paper``) or occurs under
the mask (``lite``). Here the mask counts on every image, so a unit's best single label under
these semantics (``formula_single_iou``) can score lower than its ``score``; the gain of a
formula is read against ``formula_single_iou``.

How it is computed exactly without any mask of the dataset in memory: every pixel carries a
*signature*, the set of labels on it (its pixel labels plus its image's image-level labels).
A formula's value on a pixel depends only on the signature, so the dataset reduces to a
:class:`~netdissect.formulas.signatures.SignatureTable`: each distinct signature s with its pixel count n(s) and, per unit, the
count c_u(s) of masked pixels carrying it (built in one streaming pass, see
:mod:`netdissect.engine.formula_collector`). A left-nested formula is a multilinear polynomial in its labels'
indicators (``x OR y = x + y - xy``, ``x AND NOT y = x - xy``), unique for the boolean function
it computes, so for every label L::

    |F AND L|       = sum_T a_T |AND(T) AND L|      (T: subsets of F's labels, a_T integers)
    |M_u AND F AND L| = sum_T a_T |M_u AND AND(T) AND L|

and ``|AND(T) AND L|`` for all L at once is one scan of the signatures holding every label of T.
A beam step extending F with every label L and operator then needs only::

    AND:      |M F L|                       and |F L|
    OR:       |M F| + |M L| - |M F L|       and |F| + |L| - |F L|
    AND NOT:  |M F| - |M F L|               and |F| - |F L|

(juxtaposition: intersection), all in int64, exact. Beam formulas whose best possible extension
cannot beat the beam's current worst (upper bounds ``|M F| / |M|`` for AND and AND NOT,
``min(|M|, |M F| + max_L |M L|) / |M OR F|`` for OR) are not extended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import OptionError
from .signatures import SignatureTable, subset_counts
from .terms import FORMULA_OPS as OPS  # the spellings of --formula-ops
from .terms import OP_TEXT, Terms
from .terms import UnitFormulas as UnitFormulas  # re-exported: formulas' public names
from .terms import evaluate_formula as evaluate_formula
from .terms import formula_text as formula_text

TEXT_OP = {text: op for op, text in OP_TEXT.items()}

Poly = dict[tuple[int, ...], int]  # label subset (descending) -> integer coefficient


# ---------------------------------------------------------------- formulas as polynomials


def _times(poly: Poly, label: int) -> Poly:
    out: Poly = {}
    for subset, coef in poly.items():
        key = tuple(sorted(set(subset) | {label}, reverse=True))
        out[key] = out.get(key, 0) + coef
    return {k: c for k, c in out.items() if c}


def _combine(a: Poly, b: Poly, sign: int) -> Poly:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0) + sign * c
    return {k: c for k, c in out.items() if c}


def extend_poly(poly: Poly, op: str, label: int) -> Poly:
    """The polynomial of ``(F op label)`` from F's polynomial."""
    product = _times(poly, label)
    if op == "and":
        return product
    if op == "or":
        return _combine(_combine(poly, {(label,): 1}, 1), product, -1)
    if op == "andnot":
        return _combine(poly, product, -1)
    raise ValueError(f"unknown operator {op!r}")


def formula_poly(terms: Terms) -> Poly:
    """The multilinear polynomial of a left-nested formula (its canonical form)."""
    poly: Poly = {(terms[0][1],): 1}
    for op, label in terms[1:]:
        poly = extend_poly(poly, str(op), label)
    return poly


def subset_key(owner: int, subset: tuple[int, ...], labels: int) -> int:
    key = owner
    for label in subset:
        key = key * labels + label
    return key


def check_formula_length(length: int, units: int, labels: int) -> None:
    """Stop with one line when formulas of ``length`` labels cannot be counted exactly.

    A formula of N labels needs keys ``unit * labels**(N - 1) + ...`` of label subsets below
    2**62 (int64); the message names ``length`` and the longest that fits.
    """
    for size in range(length):
        if (units + 1) * labels**size >= 2**62:
            fits = f"the longest that fits is {size}" if size >= 2 else "no formula fits"
            raise OptionError(
                f"--formula-length {length} is too long to count exactly over {labels} labels and {units} units: {fits}"
            )


# ---------------------------------------------------------------- beam search


@dataclass
class Formula:
    """One beam formula: its terms, polynomial and counts |M AND F| (``inter``) and |F| (``size``)."""

    terms: Terms
    poly: Poly
    inter: int
    size: int
    iou: float

    @property
    def key(self) -> frozenset:
        return frozenset(self.poly.items())


def _iou(inter: torch.Tensor, size: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    union = (mask + size - inter).double()
    return torch.where(union > 0, inter.double() / union.clamp(min=1), torch.zeros_like(union))


def search_formulas(
    table: SignatureTable, keep: torch.Tensor, length: int, beam: int, ops: Sequence[str] = OPS
) -> UnitFormulas:
    """Beam search of each unit's best formula of up to ``length`` labels (see the module doc).

    ``keep`` ``(L,)`` bool marks the labels formulas may use (labels absent from the data are
    never used). Exact: every count is an integer sum over the table.
    """
    U, L = table.units, table.labels
    device = table.rows.device
    check_formula_length(length, U, L)
    # singles: |M_u AND l| (U, L), |l| (L,), |M_u| (U,)
    m_l = subset_counts(table.rows, table.count, table.unit, torch.arange(U, device=device), 0, L, index=table.sig)
    t_l = subset_counts(table.rows, table.pixels, None, torch.zeros(1, dtype=torch.int64, device=device), 0, L)[0]
    mask = torch.zeros(U, dtype=torch.int64, device=device).index_add_(0, table.unit, table.count)
    usable = keep.to(device) & (t_l > 0)
    usable[0] = False
    single = _iou(m_l, t_l.unsqueeze(0), mask.unsqueeze(1)).masked_fill(~usable, -1.0)
    best_single_iou, best_single = single.max(dim=1)  # ties: the smaller label number
    order = torch.sort(-single, dim=1, stable=True).indices[:, :beam].cpu().tolist()
    m_l_c, t_l_c, single_c = m_l.cpu(), t_l.cpu(), single.cpu()
    beams: list[list[Formula]] = []
    for u in range(U):
        beams.append(
            [
                Formula(
                    ((None, label),), {(label,): 1}, int(m_l_c[u, label]), int(t_l_c[label]), float(single_c[u, label])
                )
                for label in order[u]
                if single_c[u, label] >= 0
            ]
        )
    pruned = 0
    op_list = [op for op in OPS if op in ops]
    max_m_l = m_l.masked_fill(~usable, 0).amax(dim=1).cpu().tolist() if L else [0] * U
    mask_c = mask.cpu().tolist()
    for _ in range(length - 1):
        slots: list[tuple[int, int]] = []
        for u in range(U):
            worst = beams[u][-1].iou if len(beams[u]) == beam else -1.0
            for b, f in enumerate(beams[u]):
                if _bound(f, mask_c[u], max_m_l[u], op_list) + 1e-12 < worst:
                    pruned += 1
                else:
                    slots.append((u, b))
        candidates = _extend(table, beams, slots, m_l, t_l, mask, usable, op_list)
        beams = _select(beams, slots, candidates, beam, op_list, L)
    terms = [bm[0].terms if bm else () for bm in beams]
    iou = np.array([bm[0].iou if bm else 0.0 for bm in beams], dtype=np.float64)
    info = {
        "length": length,
        "beam": beam,
        "ops": op_list,
        "pruned_beam_formulas": pruned,
        "signatures": len(table.rows),
        "entries": len(table.count),
        "table_bytes": table.nbytes,
    }
    return UnitFormulas(terms, iou, best_single.cpu().numpy(), best_single_iou.clamp(min=0).cpu().numpy(), info)


def _bound(f: Formula, mask: int, max_m_l: int, ops: Sequence[str]) -> float:
    """An upper bound on the IoU of every ``f op label``."""
    if mask == 0:
        return 0.0
    bound = 0.0
    if "and" in ops or "andnot" in ops:
        bound = f.inter / mask
    if "or" in ops:
        union = mask + f.size - f.inter
        bound = max(bound, min(mask, f.inter + max_m_l) / union if union else 0.0)
    return bound


def _extend(
    table: SignatureTable,
    beams: list[list[Formula]],
    slots: list[tuple[int, int]],
    m_l: torch.Tensor,
    t_l: torch.Tensor,
    mask: torch.Tensor,
    usable: torch.Tensor,
    ops: Sequence[str],
) -> torch.Tensor:
    """``(slots, ops, L)`` IoU of every extension of the slots' formulas; -1 where not allowed."""
    U, L = table.units, table.labels
    device = table.rows.device
    n = len(slots)
    if n == 0:
        return torch.zeros((0, len(ops), L), dtype=torch.float64, device=device)
    # expansion terms: (slot, subset, coefficient), for |M F L| (owner u) and |F L| (no owner)
    rows_m: dict[int, list[tuple[int, int, int]]] = {}
    rows_g: dict[int, list[tuple[int, int, int]]] = {}
    for i, (u, b) in enumerate(slots):
        for subset, coef in beams[u][b].poly.items():
            rows_m.setdefault(len(subset), []).append((i, subset_key(u, subset, L), coef))
            rows_g.setdefault(len(subset), []).append((i, subset_key(0, subset, L), coef))
    used = torch.zeros((U, L), dtype=torch.bool, device=device)  # the labels of each unit's beam formulas
    labels_used = [(u, label) for u, b in slots for _, label in beams[u][b].terms]
    used[tuple(torch.tensor(labels_used, device=device).T)] = True
    inter = torch.zeros((n, L), dtype=torch.int64, device=device)  # |M F L|
    both = torch.zeros((n, L), dtype=torch.int64, device=device)  # |F L|
    for size, entries in rows_m.items():
        _accumulate(
            inter,
            entries,
            lambda keys, s=size: subset_counts(
                table.rows, table.count, table.unit, keys, s, L, index=table.sig, used=used
            ),
        )
    any_used = used.any(dim=0, keepdim=True)
    for size, entries in rows_g.items():
        _accumulate(
            both, entries, lambda keys, s=size: subset_counts(table.rows, table.pixels, None, keys, s, L, used=any_used)
        )
    unit = torch.tensor([u for u, _ in slots], device=device)
    f_inter = torch.tensor([beams[u][b].inter for u, b in slots], device=device).unsqueeze(1)
    f_size = torch.tensor([beams[u][b].size for u, b in slots], device=device).unsqueeze(1)
    m = mask[unit].unsqueeze(1)
    out = []
    for op in ops:
        if op == "and":
            new_inter, new_size = inter, both
        elif op == "or":
            new_inter, new_size = f_inter + m_l[unit] - inter, f_size + t_l.unsqueeze(0) - both
        else:
            new_inter, new_size = f_inter - inter, f_size - both
        out.append(torch.stack([_iou(new_inter, new_size, m), new_inter.double(), new_size.double()]))
    result = torch.stack(out, dim=2)  # (3, slots, ops, L): iou, |M F'|, |F'|
    result[0] = result[0].masked_fill(~usable.view(1, 1, L), -1.0)
    return result


def _accumulate(target: torch.Tensor, entries: list[tuple[int, int, int]], counts) -> None:
    """``target[slot] += coef * counts(keys)[key]`` over the expansion ``entries``."""
    slot, key, coef = (torch.tensor(c, dtype=torch.int64, device=target.device) for c in zip(*entries))
    keys, where = torch.unique(key, return_inverse=True)
    table = counts(keys)
    target.index_add_(0, slot, coef.unsqueeze(1) * table[where])


def _select(
    beams: list[list[Formula]],
    slots: list[tuple[int, int]],
    candidates: torch.Tensor,
    beam: int,
    ops: Sequence[str],
    L: int,
) -> list[list[Formula]]:
    """Each unit's ``beam`` best distinct formulas among its beam and the extensions."""
    iou, inter, size = candidates[0], candidates[1], candidates[2]
    per_unit: dict[int, list[int]] = {}
    for i, (u, _) in enumerate(slots):
        per_unit.setdefault(u, []).append(i)
    new = [list(bm) for bm in beams]
    for u, rows in per_unit.items():
        flat = iou[rows].reshape(-1)  # (slots of u) x ops x L
        order = torch.sort(-flat, stable=True).indices
        take = min(len(flat), 4 * beam + 8)
        while True:
            picks = order[:take].tolist()
            values = flat[order[:take]].tolist()
            merged = _merge(beams[u], rows, picks, values, slots, inter, size, ops, L, beam)
            if len(merged) == beam or take == len(flat) or (values and values[-1] < 0):
                break
            take = min(len(flat), take * 4)
        new[u] = merged
    return new


def _merge(old, rows, picks, values, slots, inter, size, ops, L, beam) -> list[Formula]:
    """Merge the old beam (ranked first on ties) and the candidates ``picks`` (by IoU) into a beam."""
    seen: set = set()
    out: list[Formula] = []
    olds = list(old)
    cands = list(zip(picks, values))
    per = len(ops) * L
    while len(out) < beam and (olds or cands):
        if olds and (not cands or olds[0].iou >= cands[0][1]):
            f = olds.pop(0)
        else:
            flat, value = cands.pop(0)
            if value < 0:
                cands = []
                continue
            row, rest = rows[flat // per], flat % per
            op, label = ops[rest // L], rest % L
            parent = old[slots[row][1]]
            f = Formula(
                parent.terms + ((op, label),),
                extend_poly(parent.poly, op, label),
                int(inter[row, rest // L, label]),
                int(size[row, rest // L, label]),
                value,
            )
        if not f.poly or f.key in seen:
            continue
        seen.add(f.key)
        out.append(f)
    return out
