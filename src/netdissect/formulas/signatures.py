"""Signature tables: the sufficient statistics of formula IoUs (see :mod:`netdissect.formulas.search`).

A pixel's *signature* is the set of labels on it. :func:`batch_signatures` finds a batch's
distinct signatures (linear time: mixed-radix keys deduplicated by counting),
:func:`batch_table` the signatures under every unit's masked pixels, :class:`SignatureTable`
sums them over batches and ranks, and :func:`subset_counts` counts, for label subsets, the
co-occurrence with every label that the beam search needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def canonical_rows(rows: torch.Tensor) -> torch.Tensor:
    """Each row's labels sorted in descending order, repeats replaced by 0 (at the end), zero
    columns at the right dropped (at least one column kept)."""
    rows = rows.long()
    if rows.shape[1] == 0:
        return torch.zeros((rows.shape[0], 1), dtype=torch.int64, device=rows.device)
    rows = rows.sort(dim=1, descending=True).values
    if rows.shape[1] > 1:
        repeat = torch.zeros_like(rows, dtype=torch.bool)
        repeat[:, 1:] = rows[:, 1:] == rows[:, :-1]
        rows = rows.masked_fill(repeat, 0).sort(dim=1, descending=True).values
    width = int((rows > 0).sum(dim=1).max()) if len(rows) else 0
    return rows[:, : max(width, 1)].contiguous()


def unique_rows(rows: torch.Tensor, base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of a (R, K) tensor of values in ``[0, base)`` (lexicographic order) and the
    inverse index; rows packed into one int64 key when they fit, else ``torch.unique(dim=0)``."""
    R, K = rows.shape
    bits = max(1, (base - 1).bit_length())
    if bits * K > 62:
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
        return uniq, inverse
    key = torch.zeros(R, dtype=torch.int64, device=rows.device)
    for k in range(K):
        key = (key << bits) | rows[:, k]
    keys, inverse = torch.unique(key, return_inverse=True)
    mask = (1 << bits) - 1
    uniq = torch.stack([(keys >> (bits * (K - 1 - k))) & mask for k in range(K)], dim=1)
    return uniq, inverse


DENSE_KEYS = 1 << 22  # key spaces up to this size are deduplicated by counting instead of sorting
COMPACT_KEYS = 1 << 20  # pixel keys are renumbered before their space grows beyond this


def dense_unique(key: torch.Tensor, space: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(key, return_inverse=True)`` for keys in ``[0, space)``: a bincount when the
    space is small (linear time), a sort otherwise."""
    if space > DENSE_KEYS:
        return torch.unique(key, return_inverse=True)
    present = torch.bincount(key, minlength=space) > 0
    ids = torch.cumsum(present, 0) - 1
    return present.nonzero().squeeze(1), ids[key]


def _decode(
    keys: torch.Tensor, inverse: torch.Tensor, found: torch.Tensor, columns: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The label rows of distinct mixed-radix ``keys`` (leading digit: a row of ``found``, then
    one digit per entry of ``columns``, the label numbers of its values) and ``inverse``."""
    digits = []
    for labels_of in reversed(columns):
        digits.append(labels_of[keys % len(labels_of)].unsqueeze(1))
        keys = keys // len(labels_of)
    return torch.cat([found[keys], *digits[::-1]], 1), inverse


def batch_signatures(seg: torch.Tensor, scalars: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The signatures of a batch's pixels.

    Args:
        seg: ``(B, layers, sh, sw)`` label numbers; scalars: ``(B, k)`` image-level labels.
        keep: ``(L,)`` bool, the labels formulas use (others count as no label).

    Returns:
        ``rows`` ``(S, K)`` the distinct signatures (descending labels, 0 padding) and
        ``pixel_sig`` ``(B, sh, sw)`` each pixel's row.

    Each pixel's key is a mixed-radix number: the id of its image's image-level labels, then
    per annotation layer its label renumbered among the labels present in that layer. The
    key space is small in practice, so the distinct keys are found by counting (linear time).
    """
    L = len(keep)
    B, layers, sh, sw = seg.shape
    device = seg.device
    numbers = torch.arange(L, device=device)
    clean = torch.where(keep.to(device) & (numbers > 0), numbers, 0)
    scalars = scalars.to(device).long()
    image_rows, image_id = unique_rows(
        canonical_rows(scalars), max(L, int(scalars.max()) + 1 if scalars.numel() else L)
    )
    key = image_id.repeat_interleave(sh * sw)
    space, found = len(image_rows), image_rows
    columns: list[torch.Tensor] = []  # per digit of the key: the label numbers of its values
    for j in range(layers):
        values = seg[:, j].reshape(-1).long()
        present = torch.bincount(values, minlength=L) > 0
        n = int(present.sum())
        if space * n > COMPACT_KEYS:  # renumber the keys found so far: the space stays small
            found, key = _decode(*dense_unique(key, space), found, columns)
            space, columns = len(found), []
        key = key * n + (torch.cumsum(present, 0) - 1)[values]
        space *= n
        columns.append(present.nonzero().squeeze(1))
    found, inverse = _decode(*dense_unique(key, space), found, columns)
    full = found
    full = clean[full.clamp(max=L - 1)].masked_fill(full >= L, 0)
    rows, row_inverse = unique_rows(canonical_rows(full), L)
    return rows, row_inverse[inverse].view(B, sh, sw)


@dataclass
class SignatureTable:
    """A layer's sufficient statistics for formulas: distinct pixel signatures and masked counts.

    ``rows`` ``(S, K)``: label sets (descending, 0 padding); ``pixels`` ``(S,)``: pixels with each
    signature; ``unit``, ``sig``, ``count`` ``(E,)``: masked pixels of unit ``unit`` carrying
    signature ``sig`` (only nonzero entries).
    """

    units: int
    labels: int
    rows: torch.Tensor
    pixels: torch.Tensor
    unit: torch.Tensor
    sig: torch.Tensor
    count: torch.Tensor

    @classmethod
    def empty(cls, units: int, labels: int, device: torch.device | str = "cpu") -> SignatureTable:
        z = torch.zeros(0, dtype=torch.int64, device=device)
        return cls(units, labels, torch.zeros((0, 1), dtype=torch.int64, device=device), z, z, z, z)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.rows, self.pixels, self.unit, self.sig, self.count))

    @classmethod
    def concat(cls, tables: Sequence[SignatureTable]) -> SignatureTable:
        """One table holding the sums of ``tables`` (same units and labels), canonical order."""
        units, labels = tables[0].units, tables[0].labels
        width = max(t.rows.shape[1] for t in tables)
        rows = torch.cat([torch.nn.functional.pad(t.rows, (0, width - t.rows.shape[1])) for t in tables])
        uniq, inverse = unique_rows(canonical_rows(rows), labels)
        S = len(uniq)
        pixels = torch.zeros(S, dtype=torch.int64, device=rows.device).index_add_(
            0, inverse, torch.cat([t.pixels for t in tables])
        )
        offsets = np.cumsum([0] + [len(t.rows) for t in tables])
        sig = torch.cat([inverse[int(o) + t.sig] for o, t in zip(offsets, tables)])
        key = torch.cat([t.unit for t in tables]) * S + sig
        keys, where = torch.unique(key, return_inverse=True)
        count = torch.zeros(len(keys), dtype=torch.int64, device=rows.device).index_add_(
            0, where, torch.cat([t.count for t in tables])
        )
        return cls(units, labels, uniq, pixels, keys // max(S, 1), keys % max(S, 1), count)

    def state_dict(self) -> dict:
        state: dict = {"units": self.units, "labels": self.labels}
        for name in ("rows", "pixels", "unit", "sig", "count"):
            state[name] = getattr(self, name).cpu()
        return state

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> SignatureTable:
        tensors = [state[n].to(device) for n in ("rows", "pixels", "unit", "sig", "count")]
        return cls(int(state["units"]), int(state["labels"]), *tensors)


def batch_table(
    rows: torch.Tensor,
    pixel_sig: torch.Tensor,
    pair: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    units: int,
    labels: int,
) -> SignatureTable:
    """A batch's table from its signatures and the masked pixels ``(pair = image * U + unit, y, x)``."""
    S = len(rows)
    pixels = torch.bincount(pixel_sig.flatten(), minlength=S)
    key = (pair % units) * S + pixel_sig[pair // units, ys, xs]
    if units * S <= DENSE_KEYS:
        count = torch.bincount(key, minlength=units * S)
        keys = count.nonzero().squeeze(1)
        count = count[keys]
    else:
        keys, count = torch.unique(key, return_counts=True)
    return SignatureTable(units, labels, rows, pixels, keys // S, keys % S, count)


def subset_counts(
    rows: torch.Tensor,
    weight: torch.Tensor,
    owner: torch.Tensor | None,
    needed: torch.Tensor,
    size: int,
    labels: int,
    index: torch.Tensor | None = None,
    used: torch.Tensor | None = None,
    chunk: int = 1 << 22,
) -> torch.Tensor:
    """``out[q, l]``: the summed ``weight`` of the rows that hold every label of subset ``q`` and l.

    Args:
        rows: ``(R, K)`` signatures (descending, 0 padding); with ``index`` ``(E,)``, the rows
            counted are ``rows[index]``.
        weight: ``(E,)`` (or ``(R,)``) int64 weights; owner: the same length, or ``None``.
        needed: sorted int64 keys ``owner * labels**size + subset`` (subset labels descending,
            digits base ``labels``), one per output row.
        size: the number of labels in each subset (0: ``out[q, l]`` sums rows holding l).
        used: ``(owners, L)`` bool (``(1, L)`` without owners): the labels that occur in the
            owner's subsets. Only rows holding ``size`` of them can count, and only their
            combinations are tried (a large saving: subsets are made of beam labels).
    """
    Q, K = len(needed), rows.shape[1]
    out = torch.zeros((Q, labels), dtype=torch.int64, device=rows.device)
    n = len(index) if index is not None else len(rows)
    if Q == 0 or n == 0:
        return out
    flat = out.view(-1)
    for start in range(0, n, max(1, chunk // max(K, 1))):
        part = slice(start, start + max(1, chunk // max(K, 1)))
        r = rows[index[part]] if index is not None else rows[part]  # (R, K)
        w = weight[part]
        o = owner[part] if owner is not None else torch.zeros(len(r), dtype=torch.int64, device=r.device)
        slots = r
        if size > 0 and used is not None:  # keep the rows with >= size used labels, those labels first
            mine = used[o.unsqueeze(1), r] & (r > 0)
            keep = (mine.sum(dim=1) >= size).nonzero().squeeze(1)
            r, w, o, mine = r[keep], w[keep], o[keep], mine[keep]
            width = int(mine.sum(dim=1).max()) if len(r) else 0
            slots = torch.where(mine, r, 0).sort(dim=1, descending=True).values[:, :width]
        if len(r) == 0:
            continue
        combos = list(itertools.combinations(range(slots.shape[1]), size))
        if not combos:
            continue
        chosen = slots[:, torch.tensor(combos, dtype=torch.int64, device=r.device).view(len(combos), size)]
        key = o.unsqueeze(1).expand(len(r), len(combos))
        for i in range(size):
            key = key * labels + chosen[:, :, i]
        pos = torch.searchsorted(needed, key.flatten()).clamp(max=Q - 1).view_as(key)
        hit = (chosen > 0).all(dim=2) & (needed[pos] == key)
        row, _ = hit.nonzero(as_tuple=True)
        if len(row):
            target = pos[hit][:, None] * labels + r[row]
            flat.index_add_(0, target.flatten(), w[row, None].expand_as(target).flatten())
    out[:, 0] = 0  # padding
    return out
