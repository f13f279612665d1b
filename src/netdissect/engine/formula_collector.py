"""The formula pass: each layer's :class:`~netdissect.formulas.search.SignatureTable`, streamed.

While pass 2 counts a batch, :class:`FormulaCollector` finds the batch's pixel signatures (the
label sets on its pixels, once for all layers) and, per layer, the signatures under every unit's
mask (the masks of the dissection: same thresholds, same upsampling). Tables of batches are
summed into one compact table per layer; nothing of the size of the dataset's masks is kept.
Under ``torch.distributed`` every rank builds the table of its batches and the tables are
gathered and summed on every rank (the sum is canonical, so every rank then finds the same
formulas). The table is part of pass 2's checkpoints, and with formulas on pass 2 also
checkpoints once at its end, so a run killed during the beam search restarts from there.
:class:`FormulaCollector` is one of pass 2's collectors (:mod:`netdissect.engine.collectors`): its
``finish`` runs the beam search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..formulas.search import UnitFormulas, search_formulas
from ..formulas.signatures import SignatureTable, batch_signatures, batch_table
from ..math.masks import batch_masked_pixels
from .collectors import Batch, LayerBatch
from .distributed import Shard

PENDING_BYTES = 64 << 20  # batch tables summed into the layer's table beyond this (or the table's size)


class FormulaCollector:
    """Per layer signature tables over (this rank's share of) the dataset; ``finish`` finds the formulas.

    Args:
        units: per layer, its number of units.
        label_category: ``(L,)`` primary category per label (-1: none, never in a formula), on the CPU.
        length, beam, ops: the search's (``formula_length``, ``beam``, ``formula_ops``).
        device: where the tables are kept.
        chunk_pixels: bound on the upsampled values evaluated at once (as pass 2).
    """

    name = "formula"
    slow_finish = True

    def __init__(
        self,
        units: dict[str, int],
        label_category: torch.Tensor,
        length: int,
        beam: int,
        ops: Sequence[str],
        device: torch.device | str = "cpu",
        chunk_pixels: int = 1 << 22,
    ) -> None:
        self.units = dict(units)
        self.layers = list(units)
        self.label_category = label_category
        self.keep = label_category >= 0
        self.labels = len(label_category)
        self.length, self.beam, self.ops = length, beam, ops
        self.device = device
        self.chunk_pixels = chunk_pixels
        self._tables: dict[str, SignatureTable] = {}
        self._pending: dict[str, list[SignatureTable]] = {name: [] for name in self.layers}
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def start_batch(self, batch: Batch) -> None:
        """Find the signatures of a batch's pixels."""
        seg = batch.seg
        self._batch = batch_signatures(seg, batch.scalars.to(seg.device), self.keep.to(seg.device))

    def add(self, layer: LayerBatch) -> None:
        """Count the signatures under the masks of the layer's maps ``(B, U, h, w)`` of the batch."""
        self.add_maps(layer.name, layer.acts, layer.thresholds, layer.masked)

    def add_maps(
        self,
        name: str,
        acts: torch.Tensor,
        thresholds: torch.Tensor,
        masked: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Count the signatures under the masks of layer ``name``'s maps ``(B, U, h, w)`` of the
        batch (``masked``: their masked pixels when the caller has them, as pass 2 does)."""
        assert self._batch is not None, "start_batch first"
        rows, pixel_sig = self._batch
        U = acts.shape[1]
        if masked is None:
            size = (pixel_sig.shape[1], pixel_sig.shape[2])
            masked = batch_masked_pixels(acts, thresholds, size, self.chunk_pixels)
        pair, ys, xs = masked
        table = batch_table(rows, pixel_sig, pair, ys.to(pixel_sig.device), xs.to(pixel_sig.device), U, self.labels)
        pending = self._pending[name]
        pending.append(table)
        done = self._tables.get(name)
        if sum(t.nbytes for t in pending) > max(PENDING_BYTES, done.nbytes if done is not None else 0):
            self._compact(name)

    def _compact(self, name: str) -> None:
        parts = ([self._tables[name]] if name in self._tables else []) + self._pending[name]
        if parts:
            self._tables[name] = SignatureTable.concat(parts)
        self._pending[name] = []

    def tables(self) -> dict[str, SignatureTable]:
        """Every layer's table (pending batches summed in)."""
        for name in self.layers:
            self._compact(name)
        return dict(self._tables)

    def state_dict(self) -> dict:
        return {name: table.state_dict() for name, table in self.tables().items()}

    def load_state_dict(self, state: dict) -> None:
        self._tables = {name: SignatureTable.from_state(s, self.device) for name, s in state.items()}
        self._pending = {name: [] for name in self.layers}

    def merge(self, shard: Shard) -> None:
        """Sum every rank's tables (the same tables on every rank afterwards)."""
        if shard.world == 1:
            return
        parts: dict[str, list[SignatureTable]] = {}
        for state in shard.gather(self.state_dict()):
            for name, s in state.items():
                parts.setdefault(name, []).append(SignatureTable.from_state(s, self.device))
        self._tables = {name: SignatureTable.concat(tables) for name, tables in parts.items()}

    def finish(self) -> dict[str, dict[str, Any]]:
        """Per layer, ``formulas``: each unit's best formula (the beam search over the layer's table)."""
        tables = self.tables()
        found = {}
        for name in self.layers:
            empty = SignatureTable.empty(self.units[name], self.labels, self.device)
            found[name] = {
                "formulas": find_formulas(
                    tables.get(name, empty), self.label_category, self.length, self.beam, self.ops
                )
            }
        return found


def find_formulas(
    table: SignatureTable, label_category: torch.Tensor, length: int, beam: int, ops: Sequence[str]
) -> UnitFormulas:
    """Each unit's best formula of up to ``length`` labels over a layer's table (see :mod:`netdissect.formulas.search`)."""
    keep = (label_category >= 0).to(table.rows.device)
    return search_formulas(table, keep, length, beam, ops)
