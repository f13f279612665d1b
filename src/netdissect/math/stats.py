"""Streaming, mergeable per-unit statistics: upper quantiles and top images.

Every accumulator here sees a stream of batches ``(units, values)`` and can be merged with
another accumulator of the same kind that saw a different part of the stream (another shard,
another process); merging gives the same answer as one pass over the whole stream.

* :class:`TopKQuantile` keeps, per unit, the exact ``k`` largest values: enough to read an
  upper quantile exactly, matching ``numpy.quantile`` (linear interpolation).
* :class:`QuantileSketch` is a KLL-style compactor sketch (vectorised over units) whose memory
  does not depend on the stream length. Its rank error is at most ``1e-4`` of the stream
  length with the default ``k`` (see :data:`SKETCH_RANK_ERROR`).
* :class:`TopImages` keeps, per unit, the images with the largest per-image maxima.
"""

from __future__ import annotations

import math

import torch

#: Documented bound on the sketch's rank error, as a fraction of the number of values seen,
#: with the default ``k`` (checked by the tests on several distributions and stream lengths).
SKETCH_RANK_ERROR = 1e-4
#: Default compactor size of :class:`QuantileSketch`; the sketch holds about ``3 * k`` values per unit.
SKETCH_K = 65536


def quantile_position(n: int, level: float) -> tuple[int, float]:
    """The ascending order statistic index and interpolation weight for ``level``.

    As ``numpy.quantile(method="linear")``: the quantile lies at ``(n - 1) * level``.
    """
    pos = (n - 1) * level
    lo = min(int(math.floor(pos)), n - 1)
    return lo, pos - lo


def topk_needed(n: int, level: float) -> int:
    """How many of the largest values are needed to read the ``level`` quantile of ``n`` values."""
    lo, _ = quantile_position(n, level)
    return min(n, n - lo)


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    # numpy's formula, chosen per weight for accuracy near both ends
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


class TopKQuantile:
    """Exact upper quantiles from the ``k`` largest values per unit.

    Until every unit has seen ``k`` values they are all kept; from then on a value can only
    matter if it beats the unit's current k-th largest (its *floor*), and only those few
    values are collected, as a flat list of (unit, value) pairs, and folded into the kept
    ``(units, k)`` matrix when the list grows as large as the matrix.

    Args:
        units: number of units (rows of each batch).
        k: values kept per unit; use :func:`topk_needed` with the total stream length.
        device: where the kept values live.
    """

    def __init__(self, units: int, k: int, device: torch.device | str = "cpu") -> None:
        self.units, self.k = units, k
        self.values = torch.empty((units, 0), dtype=torch.float32, device=device)  # k largest per unit
        self._floor = torch.full((units,), float("-inf"), device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (unit, value) candidates
        self._pending_size = 0
        self.count = 0

    @staticmethod
    def memory_bytes(units: int, k: int) -> int:
        """Peak bytes: the kept values, as many pending candidates (with their units) and a merge copy."""
        return 4 * units * k * 4

    @property
    def _warm(self) -> bool:
        return self.values.shape[1] >= self.k

    def add(self, values: torch.Tensor) -> None:
        """Add a batch ``(units, m)`` of values."""
        values = values.to(self.values.device, torch.float32)
        self.count += values.shape[1]
        if not self._warm:
            merged = torch.cat([self.values, values], dim=1)
            self.values = merged.topk(self.k, dim=1).values if merged.shape[1] > self.k else merged
            if self._warm:
                self._floor = self.values.amin(dim=1)
            return
        unit, col = (values > self._floor[:, None]).nonzero(as_tuple=True)
        self._collect(unit, values[unit, col])

    def add_maps(self, maps: torch.Tensor, maxima: torch.Tensor | None = None) -> None:
        """Add a batch of activation maps ``(B, units, h, w)``; ``maxima`` (B, units) is optional.

        Once warm, only the maps whose maximum beats their unit's floor are read value by value.
        """
        B, U = maps.shape[:2]
        if not self._warm:
            self.add(maps.transpose(0, 1).reshape(U, -1))
            return
        maps = maps.to(self.values.device, torch.float32)
        self.count += maps[0, 0].numel() * B
        maxima = maps.amax(dim=(2, 3)) if maxima is None else maxima.to(maps.device)
        b, u = (maxima > self._floor).nonzero(as_tuple=True)
        if len(b) == 0:
            return
        rows = maps[b, u].flatten(1)
        r, col = (rows > self._floor[u][:, None]).nonzero(as_tuple=True)
        self._collect(u[r], rows[r, col])

    def _collect(self, unit: torch.Tensor, value: torch.Tensor) -> None:
        if len(unit):
            self._pending.append((unit, value))
            self._pending_size += len(unit)
            if self._pending_size >= self.units * self.k:
                self._fold()

    def _fold(self) -> None:
        """Merge the pending candidates into the kept ``(units, k)`` values."""
        if not self._pending:
            return
        unit = torch.cat([u for u, _ in self._pending])
        value = torch.cat([v for _, v in self._pending])
        self._pending, self._pending_size = [], 0
        order = unit.argsort(stable=True)
        unit, value = unit[order], value[order]
        counts = torch.bincount(unit, minlength=self.units)
        rank = torch.arange(len(unit), device=unit.device) - (counts.cumsum(0) - counts)[unit]
        padded = torch.full((self.units, int(counts.max())), float("-inf"), device=value.device)
        padded[unit, rank] = value
        self.values = torch.cat([self.values, padded], dim=1).topk(self.k, dim=1).values
        self._floor = self.values.amin(dim=1)

    def merge(self, other: TopKQuantile) -> None:
        """Fold in an accumulator that saw another part of the stream."""
        other._fold()
        count = self.count
        self.add(other.values)
        self.count = count + other.count

    def quantile(self, level: float) -> torch.Tensor:
        """The ``level`` quantile per unit (float32), exactly as ``numpy.quantile`` would give."""
        self._fold()
        n = self.count
        if n == 0:
            raise ValueError("no values seen")
        lo, t = quantile_position(n, level)
        needed = n - lo
        if needed > self.values.shape[1]:
            raise ValueError(f"k={self.k} values kept, {needed} needed for level {level} of {n}")
        top = self.values.double().topk(needed, dim=1).values  # sorted, descending
        a = top[:, needed - 1]  # ascending index lo
        b = top[:, needed - 2] if needed >= 2 else a  # ascending index lo + 1
        return _lerp(a, b, t).float()

    def state_dict(self) -> dict:
        self._fold()
        return {"values": self.values.cpu(), "count": self.count, "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        self.values = state["values"].to(self.values.device)
        self.count, self.k = int(state["count"]), int(state["k"])
        self._pending, self._pending_size = [], 0
        warm = self.values.shape[1] >= self.k
        self._floor = self.values.amin(dim=1) if warm else torch.full_like(self._floor, float("-inf"))


class QuantileSketch:
    """A mergeable KLL-style quantile sketch, vectorised over units.

    Level ``i`` holds values of weight ``2**i``. When a level outgrows its capacity, it is
    sorted and every other value (from a random offset per unit) moves up one level with twice
    the weight. All units see the same number of values, so every unit's levels have the same
    length and the whole sketch is a list of ``(units, n_i)`` tensors. Memory is about
    ``3 * k`` values per unit whatever the stream length; the rank error is at most
    :data:`SKETCH_RANK_ERROR` of the stream length with the default ``k``.

    Args:
        units: number of units.
        k: capacity of the top level (larger: more accurate, more memory).
        seed: seed of the compaction offsets (results are reproducible).
        device: where the sketch lives.
    """

    def __init__(self, units: int, k: int = SKETCH_K, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.units, self.k = units, k
        self.device = torch.device(device)
        self.levels: list[torch.Tensor] = [torch.empty((units, 0), dtype=torch.float32, device=self.device)]
        self.count = 0
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def _capacity(self, level: int) -> int:
        height = len(self.levels)
        return max(8, int(math.ceil(self.k * (2.0 / 3.0) ** (height - 1 - level))))

    def add(self, values: torch.Tensor) -> None:
        """Add a batch ``(units, m)`` of values."""
        values = values.to(self.device, torch.float32)
        self.count += values.shape[1]
        self.levels[0] = torch.cat([self.levels[0], values], dim=1)
        self._compress()

    def merge(self, other: QuantileSketch) -> None:
        """Fold in a sketch that saw another part of the stream."""
        for i, level in enumerate(other.levels):
            if i == len(self.levels):
                self.levels.append(torch.empty((self.units, 0), dtype=torch.float32, device=self.device))
            self.levels[i] = torch.cat([self.levels[i], level.to(self.device)], dim=1)
        self.count += other.count
        self._compress()

    def _compress(self) -> None:
        i = 0
        while i < len(self.levels):
            level = self.levels[i]
            if level.shape[1] > self._capacity(i):
                if i + 1 == len(self.levels):
                    self.levels.append(torch.empty((self.units, 0), dtype=torch.float32, device=self.device))
                ordered = level.sort(dim=1).values
                keep = ordered.shape[1] % 2  # an odd value out stays at this level
                pairs = ordered[:, keep:].reshape(self.units, -1, 2)
                offset = torch.randint(0, 2, (self.units, 1, 1), generator=self.generator).to(self.device)
                promoted = pairs.gather(2, offset.expand(-1, pairs.shape[1], 1)).squeeze(2)
                self.levels[i] = ordered[:, :keep]
                self.levels[i + 1] = torch.cat([self.levels[i + 1], promoted], dim=1)
            i += 1

    def quantile(self, level: float) -> torch.Tensor:
        """The ``level`` quantile per unit (float32), within the sketch's rank error."""
        if self.count == 0:
            raise ValueError("no values seen")
        values = torch.cat(self.levels, dim=1)
        weights = torch.cat(
            [torch.full((lv.shape[1],), float(2**i), device=self.device) for i, lv in enumerate(self.levels)]
        )
        order = values.argsort(dim=1)
        cum = weights[order].cumsum(dim=1)
        total = cum[:, -1:]
        # smallest value whose cumulative weight reaches the target rank
        target = level * (total - 1) + 1
        idx = torch.searchsorted(cum, target).clamp(max=values.shape[1] - 1)
        return values.gather(1, order.gather(1, idx)).squeeze(1)

    def state_dict(self) -> dict:
        return {
            "levels": [lv.cpu() for lv in self.levels],
            "count": self.count,
            "k": self.k,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.levels = [lv.to(self.device) for lv in state["levels"]]
        self.count, self.k = int(state["count"]), int(state["k"])
        self.generator.set_state(state["generator"])


class TopImages:
    """Per unit, the ``k`` images with the largest per-image maximum activation.

    Ties are broken by the smaller image index, so the result does not depend on batch
    order or sharding.
    """

    def __init__(self, units: int, k: int, device: torch.device | str = "cpu") -> None:
        self.units, self.k = units, k
        self.values = torch.empty((units, 0), dtype=torch.float32, device=device)
        self.indices = torch.empty((units, 0), dtype=torch.int64, device=device)

    def add(self, maxima: torch.Tensor, indices: torch.Tensor) -> None:
        """Add per-image maxima ``(batch, units)`` for dataset indices ``(batch,)``."""
        maxima = maxima.to(self.values.device, torch.float32).t()
        indices = indices.to(self.values.device).unsqueeze(0).expand(self.units, -1)
        self._keep(torch.cat([self.values, maxima], 1), torch.cat([self.indices, indices], 1))

    def merge(self, other: TopImages) -> None:
        self._keep(
            torch.cat([self.values, other.values.to(self.values.device)], 1),
            torch.cat([self.indices, other.indices.to(self.indices.device)], 1),
        )

    def _keep(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        # sort by index, then stably by value (descending): equal values keep index order
        by_index = indices.argsort(dim=1)
        values, indices = values.gather(1, by_index), indices.gather(1, by_index)
        order = values.argsort(dim=1, descending=True, stable=True)[:, : self.k]
        self.values, self.indices = values.gather(1, order), indices.gather(1, order)

    def state_dict(self) -> dict:
        return {"values": self.values.cpu(), "indices": self.indices.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.values = state["values"].to(self.values.device)
        self.indices = state["indices"].to(self.indices.device)
