"""Each option of a dissection declared once (:data:`RUN_OPTIONS`): a :class:`RunOption` per
:class:`~netdissect.engine.config.DissectConfig` field, with its command-line flag, help and units,
and whether it belongs to the run's key or only to its checkpoints' key.

:meth:`DissectConfig.result_options`, :meth:`DissectConfig.checkpoint_options` and the command
line's flags (``cli/options.py``) are derived from it; ``tests/engine/test_config_options.py``
checks that every field is declared once. Importing this module costs no torch import.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..math import IOU_MODES

if TYPE_CHECKING:
    from .config import DissectConfig

MEMORY_FORMATS = ("contiguous", "channels_last")

RESULT = "result"  # in the run's key (result_options), hence in its checkpoints' key too
CHECKPOINT = "checkpoint"  # only in the checkpoints' key: how the passes accumulate, not what they find
NEITHER = "neither"  # in no key: how the run is carried out (devices, workers, progress, ...)
KEYS = (RESULT, CHECKPOINT, NEITHER)
GROUPS = ("run", "layout", "command")  # see RunOption.group


def _rotated(config: DissectConfig) -> bool:
    return config.rotate is not None


def _image_values(config: DissectConfig) -> bool:
    return config.image_values


def _formulas(config: DissectConfig) -> bool:
    return config.formula_length > 1


def _mib(size: int) -> float:
    return size / 2**20


def _bytes(mib: float) -> int:
    return int(mib * 2**20)


@dataclass(frozen=True)
class RunOption:
    """The one declaration of a :class:`DissectConfig` field: its flag and its place in the keys.

    Attributes:
        name: the :class:`DissectConfig` field.
        key: :data:`RESULT` (the run's key, :meth:`DissectConfig.result_options`),
            :data:`CHECKPOINT` (only the checkpoints' key, :meth:`DissectConfig.checkpoint_options`)
            or :data:`NEITHER`.
        flag: the command-line flag; ``None``: the Python API only.
        help: the flag's help (argparse's ``%(default)s`` allowed).
        group: which helper of ``cli/options.py`` adds the flag: ``"run"`` (``_add_run_options``,
            every command that dissects), ``"layout"`` (``_add_layout_options``, also
            ``layers``) or ``"command"`` (the commands that take it add it with ``_add_option``,
            with their own help where the flag means more there).
        type, choices, metavar, action: as ``ArgumentParser.add_argument``'s.
        to_flag, from_flag: the field's value as the flag's and back (bytes as MiB); ``None``:
            the same value. The flag's default is ``to_flag`` of the field's default.
        key_if: the option counts in the key only when this holds of the config; otherwise it
            is ``None`` there, or left out with ``omit_off`` (so that older runs keep their keys).
        to_key: the value as the key writes it (``None``: as it is).
    """

    name: str
    key: str
    flag: str | None = None
    help: str | None = None
    group: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    action: str | None = None
    to_flag: Callable[[Any], Any] | None = None
    from_flag: Callable[[Any], Any] | None = None
    key_if: Callable[[DissectConfig], bool] | None = None
    omit_off: bool = False
    to_key: Callable[[Any], Any] | None = None

    @property
    def dest(self) -> str:
        """The flag's attribute in argparse's namespace (``--no-progress``: ``no_progress``)."""
        if self.flag is None:
            raise ValueError(f"{self.name} has no command-line flag")
        return self.flag.lstrip("-").replace("-", "_")

    def argument(self, default: Any) -> tuple[str, dict[str, Any]]:
        """The flag and the keyword arguments of ``ArgumentParser.add_argument`` for it, given the
        field's ``default`` (:func:`netdissect.engine.config.config_defaults`)."""
        if self.flag is None:
            raise ValueError(f"{self.name} has no command-line flag")
        kwargs: dict[str, Any] = {"default": self.to_flag(default) if self.to_flag else default, "help": self.help}
        for name in ("type", "choices", "metavar", "action"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return self.flag, kwargs

    def value(self, flag_value: Any) -> Any:
        """The field's value for the flag's."""
        return self.from_flag(flag_value) if self.from_flag else flag_value


#: Every option of a dissection, once; a group's flags are added in this order.
RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "iou_mode",
        RESULT,
        "--iou-mode",
        "paper: a unit's mask area counts in images where the category is annotated; "
        "lite: NetDissect-Lite's rule (only where the category occurs under the mask) "
        "and threshold level (default: %(default)s)",
        "run",
        choices=IOU_MODES,
    ),
    RunOption(
        "quantile",
        RESULT,
        "--quantile",
        "top fraction of each unit's activations that forms its mask (default: %(default)s)",
        "run",
        type=float,
    ),
    RunOption(
        "iou_threshold",
        RESULT,
        "--iou-threshold",
        "IoU at which a unit is a detector (default: %(default)s)",
        "run",
        type=float,
    ),
    RunOption("batch_size", CHECKPOINT, "--batch-size", "images per batch (default: %(default)s)", "run", type=int),
    RunOption("workers", NEITHER, "--workers", "data loading worker processes (default: %(default)s)", "run", type=int),
    RunOption("device", NEITHER, "--device", "cpu, cuda or cuda:N (default: cuda if available)", "run"),
    RunOption("top_images", RESULT, "--top-images", "top images kept per unit (default: %(default)s)", "run", type=int),
    RunOption(
        "threshold_memory",
        CHECKPOINT,
        "--threshold-memory",
        "memory for exact thresholds per layer; beyond it a quantile sketch with rank "
        "error <= 1e-4 is used (default: %(default)g MiB)",
        "run",
        type=float,
        metavar="MiB",
        to_flag=_mib,
        from_flag=_bytes,
    ),
    RunOption(
        "cache_memory",
        NEITHER,
        "--cache-memory",
        "memory for keeping activations between the two passes instead of running "
        "the model twice (default: %(default)g MiB)",
        "run",
        type=float,
        metavar="MiB",
        to_flag=_mib,
        from_flag=_bytes,
    ),
    RunOption(
        "null_samples",
        RESULT,
        "--null-samples",
        "permutation-null samples for each unit's p-value and z-score (its masks paired "
        "with other images' annotations); costs about K times pass 2's counting and "
        "8*K*units*labels bytes per layer; 0: none (default: %(default)s)",
        "run",
        type=int,
        metavar="K",
    ),
    RunOption(
        "image_values",
        RESULT,
        "--image-values",
        "also keep each unit's image-level value (its map's mean) on every image, so that "
        "`describe` of this run needs no forward pass; 4*images*units bytes per layer",
        "run",
        action="store_true",
        key_if=_image_values,
        omit_off=True,
    ),
    RunOption(
        "memory_format",
        RESULT,
        "--memory-format",
        "memory layout of the model and its input; channels_last is often faster but "
        "changes activations in their last bits (default: %(default)s)",
        "run",
        choices=MEMORY_FORMATS,
    ),
    RunOption(
        "amp",
        RESULT,
        "--amp",
        "forward pass under autocast (float16 on CUDA, bfloat16 on CPU): faster on GPUs, "
        "activations in half precision; thresholds and counts stay exact float32 on them",
        "run",
        action="store_true",
    ),
    RunOption(
        "checkpoint_every",
        NEITHER,
        "--checkpoint-every",
        "checkpoint both passes this often in the run directory; after a crash or kill "
        "the same command continues from the last checkpoint (0: after every batch; "
        "default: %(default)g)",
        "run",
        type=float,
        metavar="SECONDS",
    ),
    RunOption(
        "formula_length",
        RESULT,
        "--formula-length",
        "also find each unit's best formula of up to N labels joined by AND, OR, AND NOT "
        "(beam search; exact pixel IoU over all images; see docs/formulas.md); 1: none (default: %(default)s)",
        "run",
        type=int,
        metavar="N",
        key_if=_formulas,
        omit_off=True,
    ),
    RunOption(
        "beam",
        RESULT,
        "--beam",
        "beam width of the formula search (default: %(default)s)",
        "run",
        type=int,
        metavar="B",
        key_if=_formulas,
        omit_off=True,
    ),
    RunOption(
        "formula_ops",
        RESULT,
        "--formula-ops",
        "comma-separated operators formulas may use: and, or, andnot (default: %(default)s)",
        "run",
        metavar="OPS",
        to_flag=",".join,
        key_if=_formulas,
        omit_off=True,
        to_key=list,
    ),
    RunOption(
        "progress",
        NEITHER,
        "--no-progress",
        "hide progress bars",
        "run",
        action="store_true",
        to_flag=operator.not_,
        from_flag=operator.not_,
    ),
    RunOption(
        "tokens",
        RESULT,
        "--tokens",
        "(B, N, C) token outputs (ViT, DeiT) become maps of their patch tokens: auto drops "
        "the leading class/register tokens found from the token count and the input's aspect "
        "ratio; N drops exactly N leading tokens; off refuses token outputs (default: %(default)s)",
        "layout",
        metavar="auto|N|off",
    ),
    RunOption(
        "channels_last",
        RESULT,
        "--channels-last",
        "read 4-D layer outputs as (B, H, W, C) maps (Swin stages)",
        "layout",
        action="store_true",
    ),
    RunOption(
        "overwrite",
        NEITHER,
        "--overwrite",
        "replace a different run found in --out (the old run stays until the new one has finished)",
        "command",
        action="store_true",
    ),
    RunOption(
        "rotate",
        RESULT,
        "--rotate",
        "dissect a random rotation of each layer's unit basis (the paper's baseline): the seed "
        "of a Haar-random rotation R",
        "command",
        type=int,
        metavar="SEED",
    ),
    RunOption(
        "rotation_power",
        RESULT,
        "--rotation-power",
        "with --rotate: use R**P, P in [0, 1] (0: no rotation, 1: R; default: %(default)s)",
        "command",
        type=float,
        metavar="P",
        key_if=_rotated,
    ),
    RunOption(
        "rotation_match",
        RESULT,
        "--rotation-match",
        "with --rotate: number each rotated direction like the original unit closest to it",
        "command",
        action="store_true",
        key_if=_rotated,
    ),
    RunOption("chunk_pixels", NEITHER),  # the Python API only: a memory bound of pass 2
)

_BY_NAME = {option.name: option for option in RUN_OPTIONS}


def run_option(name: str) -> RunOption:
    """The declaration of the :class:`DissectConfig` field ``name``."""
    return _BY_NAME[name]
