"""netdissect: Network Dissection for PyTorch models.

Score every unit of a vision network's layers against a densely labelled concept dataset
(Broden) and label the units that detect concepts::

    from netdissect import dissect
    result = dissect("torchvision:resnet18", "broden1_224", layers=["layer4"], out="runs/r18")
    print(result.summary())
"""

__version__ = "0.1.0"

from .data import BrodenDataset, BrodenMeta  # noqa: E402
from .dissect import DissectConfig, dissect  # noqa: E402
from .errors import NetDissectError  # noqa: E402
from .hooks import LayerCapture  # noqa: E402
from .models import LoadedModel, Preprocess, load_model  # noqa: E402
from .results import DissectionResult, LayerResult  # noqa: E402

__all__ = [
    "BrodenDataset",
    "BrodenMeta",
    "DissectConfig",
    "DissectionResult",
    "LayerCapture",
    "LayerResult",
    "LoadedModel",
    "NetDissectError",
    "Preprocess",
    "dissect",
    "load_model",
]
