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

from . import _moved
from ._version import __version__ as __version__

_moved.install()  # old module paths of 0.1.0 (netdissect.results, ...) resolve for one release

#: Public name -> module that defines it: the one list of the public API. The imports under
#: TYPE_CHECKING below name the same names for type checkers (tests/test_public_api.py checks).
_EXPORTS = {
    "AblationResult": "ablation",
    "ablate": "ablation",
    "BrodenDataset": "data.broden",
    "BrodenMeta": "data.broden",
    "DissectConfig": "engine.config",
    "dissect": "engine.runner",
    "import_results": "runs.foreign",
    "describe": "describe",
    "DescriptionResult": "describe",
    "explain": "explain",  # explain: images segmented by units, per-image unit effects
    "ExplainResult": "explain",
    "NetDissectError": "errors",
    "LayerCapture": "capture.hooks",
    "LoadedModel": "models.base",
    "load_model": "models.loading",
    "Preprocess": "models.preprocess",
    "annotate_images": "segmenters.annotate",
    "dissect_generator": "segmenters.generator",
    "Segmenter": "segmenters.model",
    "load_segmenter": "segmenters.model",
    "DissectionResult": "runs.results",
    "LayerResult": "runs.results",
}

#: The public API: every name of :data:`_EXPORTS`, and the version.
__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    # "X as X": an explicit re-export for type checkers (mypy --no-implicit-reexport)
    from .ablation import AblationResult as AblationResult
    from .ablation import ablate as ablate
    from .capture.hooks import LayerCapture as LayerCapture
    from .data.broden import BrodenDataset as BrodenDataset
    from .data.broden import BrodenMeta as BrodenMeta
    from .describe import DescriptionResult as DescriptionResult
    from .describe import describe as describe
    from .engine.config import DissectConfig as DissectConfig
    from .engine.runner import dissect as dissect
    from .errors import NetDissectError as NetDissectError
    from .explain import ExplainResult as ExplainResult
    from .explain import explain as explain
    from .models.base import LoadedModel as LoadedModel
    from .models.loading import load_model as load_model
    from .models.preprocess import Preprocess as Preprocess
    from .runs.foreign import import_results as import_results
    from .runs.results import DissectionResult as DissectionResult
    from .runs.results import LayerResult as LayerResult
    from .segmenters.annotate import annotate_images as annotate_images
    from .segmenters.generator import dissect_generator as dissect_generator
    from .segmenters.model import Segmenter as Segmenter
    from .segmenters.model import load_segmenter as load_segmenter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'netdissect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
