"""The options of a dissection (:class:`DissectConfig`), checked when constructed.

Each option is declared once, in :data:`netdissect.engine.run_options.RUN_OPTIONS` (its flag,
help and units on the command line, and whether it belongs to the run's key or only to its
checkpoints' key); :meth:`DissectConfig.result_options`, :meth:`DissectConfig.checkpoint_options`
and the command line's flags (``cli/options.py``) are derived from it.

Importing this module costs no torch import: the command line reads its defaults for ``--help``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from ..errors import OptionError
from ..formulas.terms import FORMULA_OPS
from ..math import IOU_MODES
from .run_options import CHECKPOINT, MEMORY_FORMATS, RESULT, run_option

MAX_NULL_SAMPLES = 100  # null counts take 8 * K * units * labels bytes per layer
DEFAULT_BEAM = 5  # the beam width of the formula search
NULL_SEED = 20170721  # the null's shifts are reproducible: a fixed seed, batches in dataset order


@dataclass
class DissectConfig:
    """Options of a dissection (the CLI's flags).

    Attributes:
        quantile: top fraction of activations that defines each unit's mask (0.005: top 0.5 %).
        iou_threshold: IoU at which a unit counts as a detector.
        iou_mode: ``"paper"`` or ``"lite"`` (NetDissect-Lite's counting and threshold level).
        batch_size: images per forward pass.
        workers: DataLoader worker processes decoding images and PNGs (0: in the main process).
        device: ``cpu``, ``cuda`` or ``cuda:N``; default CUDA when available.
        top_images: images kept per unit, by per-image maximum activation.
        threshold_memory: bytes allowed for exact thresholds per layer; beyond, a sketch
            with rank error <= 1e-4 is used.
        cache_memory: bytes of activations kept from pass 1 for pass 2; beyond, pass 2
            runs the model again.
        chunk_pixels: upsampled values evaluated at once while counting (memory bound).
        progress: show tqdm progress bars.
        overwrite: replace a different run found in the output directory.
        tokens: how (B, N, C) token outputs become maps: ``"auto"`` (drop the leading
            class/register tokens found from the count and the input's aspect ratio), a
            number of leading tokens to drop, or ``"off"`` (refuse them); see
            :mod:`netdissect.capture.tokens`.
        channels_last: read 4-D layer outputs as (B, H, W, C) (Swin stages).
        rotate: dissect each layer in a random rotation of its unit basis (the seed of a
            Haar-random rotation R; see :mod:`netdissect.math.rotation`), or ``None``.
        rotation_power: P in [0, 1]: the rotation used is R**P (0: identity, 1: R).
        rotation_match: number each rotated direction like the original unit it is closest to.
        null_samples: K samples of a permutation null for each unit's score (0: none). In
            pass 2, sample k pairs each image's masks with the annotations of another image of
            the same batch (a seeded random cyclic shift per batch), giving each unit's
            ``p_value``, ``z_score``, ``null_mean`` and ``null_std``. Costs about K times the
            counting work of pass 2 and ``8 * K * units * labels`` bytes per layer while
            counting; at most :data:`MAX_NULL_SAMPLES`. Batches of one image cannot be
            shifted: their images keep their own annotations in every sample.
        image_values: also keep each unit's image-level value (the spatial mean of its map) on
            every image, saved in ``iou.npz`` as ``image_values`` ``(N, U)``: ``describe`` of
            the run then reads them instead of running the model. ``4 * images * units`` bytes
            per layer.
        memory_format: ``"contiguous"`` or ``"channels_last"``: the model's and the input's
            memory layout in the forward pass. ``channels_last`` is often faster (CUDA, and CPU
            with oneDNN) but changes the activations in their last bits, so results can differ
            from a contiguous run by a pixel here and there.
        amp: run the forward pass under autocast (float16 on CUDA, bfloat16 on CPU). Faster on
            GPUs; the activations change (half precision), thresholds and counts are still
            computed exactly in float32 from them.
        checkpoint_every: seconds between checkpoints of the accumulators in the run
            directory (0: after every batch); a run started again after a crash continues
            from the last one.
        formula_length: N >= 1; with N >= 2 every unit also gets its best formula of up to N
            labels joined by ``formula_ops`` (beam search, see :mod:`netdissect.formulas.search`).
        beam: B >= 1, the beam width of the formula search.
        formula_ops: the operators formulas use, a subset of ``and``, ``or``, ``andnot``
            (a sequence or a comma-separated string).

    ``beam`` and ``formula_ops`` other than their defaults need ``formula_length >= 2``: with
    ``formula_length == 1`` they would be ignored, so they stop with an :class:`OptionError`.
    """

    quantile: float = 0.005
    iou_threshold: float = 0.04
    iou_mode: str = "paper"
    batch_size: int = 32
    workers: int = min(4, os.cpu_count() or 1)
    device: str | None = None
    top_images: int = 10
    threshold_memory: int = 1 << 30
    cache_memory: int = 2 << 30
    chunk_pixels: int = 1 << 22
    progress: bool = True
    overwrite: bool = False
    tokens: str | int = "auto"
    channels_last: bool = False
    rotate: int | None = None
    rotation_power: float = 1.0
    rotation_match: bool = False
    null_samples: int = 0
    image_values: bool = False
    memory_format: str = "contiguous"
    amp: bool = False
    checkpoint_every: float = 300.0
    formula_length: int = 1
    beam: int = DEFAULT_BEAM
    formula_ops: tuple[str, ...] | str = FORMULA_OPS

    def __post_init__(self) -> None:
        from ..capture.tokens import parse_tokens
        from ..devices import resolve_device

        self.tokens = parse_tokens(self.tokens)
        if self.iou_mode not in IOU_MODES:
            raise OptionError(f"--iou-mode must be one of {', '.join(IOU_MODES)}, got {self.iou_mode!r}")
        if not 0 < self.quantile < 1:
            raise OptionError(f"--quantile must lie strictly between 0 and 1, got {self.quantile}")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise OptionError(f"--workers must be >= 0, got {self.workers}")
        if self.top_images < 1:
            raise OptionError(f"--top-images must be >= 1, got {self.top_images}")
        if not 0 <= self.iou_threshold <= 1:
            raise OptionError(f"--iou-threshold must lie in [0, 1], got {self.iou_threshold}")
        if not 0 <= self.rotation_power <= 1:
            raise OptionError(f"--rotation-power must lie in [0, 1], got {self.rotation_power}")
        if not 0 <= self.null_samples <= MAX_NULL_SAMPLES:
            raise OptionError(f"--null-samples must lie in [0, {MAX_NULL_SAMPLES}], got {self.null_samples}")
        if self.memory_format not in MEMORY_FORMATS:
            raise OptionError(f"--memory-format must be one of {', '.join(MEMORY_FORMATS)}, got {self.memory_format!r}")
        if self.checkpoint_every < 0:
            raise OptionError(f"--checkpoint-every must be >= 0 seconds, got {self.checkpoint_every}")
        if self.threshold_memory < 0 or self.cache_memory < 0:
            raise OptionError("--threshold-memory and --cache-memory must be >= 0")
        self.formula_ops = parse_formula_ops(self.formula_ops)
        if self.formula_length < 1:
            raise OptionError(f"--formula-length must be >= 1, got {self.formula_length}")
        if self.beam < 1:
            raise OptionError(f"--beam must be >= 1, got {self.beam}")
        if self.formula_length == 1:
            self._refuse_formula_options()
        resolve_device(self.device)

    def _refuse_formula_options(self) -> None:
        """Without formulas, a non-default --beam or --formula-ops would be ignored: refuse them."""
        given = []
        if self.beam != DEFAULT_BEAM:
            given.append(f"--beam {self.beam}")
        if self.formula_ops != FORMULA_OPS:
            given.append(f"--formula-ops {','.join(self.formula_ops)}")
        if given:
            verb, pronoun = ("apply", "them") if len(given) > 1 else ("applies", "it")
            raise OptionError(
                f"{' and '.join(given)} {verb} only to formulas: add --formula-length N (N >= 2), or leave {pronoun} out"
            )

    def result_options(self) -> dict:
        """The options that determine the results (the cache key of a run directory)."""
        return self._key_options(RESULT)

    def checkpoint_options(self) -> dict:
        """The options that, beyond :meth:`result_options`, key a run's checkpoints (how the passes accumulate)."""
        return self._key_options(CHECKPOINT)

    def _key_options(self, key: str) -> dict:
        """The fields declared with ``key`` (:data:`RUN_OPTIONS`), in field order, as the key writes them."""
        options = {}
        for field in fields(self):
            option = run_option(field.name)
            if option.key != key:
                continue
            value = getattr(self, field.name)
            if option.key_if is not None and not option.key_if(self):
                if option.omit_off:
                    continue
                value = None
            options[field.name] = option.to_key(value) if option.to_key is not None and value is not None else value
        return options


def parse_formula_ops(ops: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """``"and,or"`` or a sequence of operator names as a tuple in canonical order (``and, or, andnot``)."""
    names = [o.strip().lower() for o in (ops.split(",") if isinstance(ops, str) else ops) if o.strip()]
    for name in names:
        if name not in FORMULA_OPS:
            raise OptionError(f"--formula-ops: unknown operator {name!r} (choose from {', '.join(FORMULA_OPS)})")
    if not names:
        raise OptionError(f"--formula-ops needs at least one of {', '.join(FORMULA_OPS)}")
    return tuple(op for op in FORMULA_OPS if op in names)


def config_defaults() -> dict[str, Any]:
    """The default value of every :class:`DissectConfig` field (no validation, no torch import)."""
    return {f.name: f.default for f in fields(DissectConfig)}
