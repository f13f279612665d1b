"""netdissect: Network Dissection for PyTorch models.

Score every unit of a vision network's layers against a densely labelled concept dataset
(Broden) and label the units that detect concepts::

    from netdissect import dissect
    result = dissect("torchvision:resnet18", "broden1_224", layers=["layer4"], out="runs/r18")
    print(result.summary())

The public names below are imported on first use, so ``import netdissect`` (and the command
line's ``--help``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Public name -> module that defines it.
_EXPORTS = {
    "AblationResult": "ablation",
    "ablate": "ablation",
    "BrodenDataset": "data.broden",
    "BrodenMeta": "data.broden",
    "DissectConfig": "config",
    "dissect": "engine",
    "import_results": "foreign",
    "describe": "describe",
    "DescriptionResult": "describe",
    "NetDissectError": "errors",
    "LayerCapture": "hooks",
    "LoadedModel": "models.base",
    "load_model": "models.loading",
    "Preprocess": "models.preprocess",
    "annotate_images": "data.annotate",
    "dissect_generator": "generator",
    "Segmenter": "segmenter",
    "load_segmenter": "segmenter",
    "DissectionResult": "results",
    "LayerResult": "results",
}

__all__ = [
    "AblationResult",
    "BrodenDataset",
    "BrodenMeta",
    "DescriptionResult",
    "DissectConfig",
    "DissectionResult",
    "LayerCapture",
    "LayerResult",
    "LoadedModel",
    "NetDissectError",
    "Preprocess",
    "Segmenter",
    "__version__",
    "ablate",
    "annotate_images",
    "describe",
    "dissect",
    "dissect_generator",
    "import_results",
    "load_model",
    "load_segmenter",
]

if TYPE_CHECKING:
    from .ablation import AblationResult, ablate
    from .config import DissectConfig
    from .data.annotate import annotate_images
    from .data.broden import BrodenDataset, BrodenMeta
    from .describe import DescriptionResult, describe
    from .engine import dissect
    from .errors import NetDissectError
    from .foreign import import_results
    from .generator import dissect_generator
    from .hooks import LayerCapture
    from .models.base import LoadedModel
    from .models.loading import load_model
    from .models.preprocess import Preprocess
    from .results import DissectionResult, LayerResult
    from .segmenter import Segmenter, load_segmenter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'netdissect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
