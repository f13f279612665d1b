"""The CSAIL Places365 CNNs (``--model places365:<arch>``).

The checkpoints are the ones the Places365 project (and NetDissect-Lite's model zoo script)
publish at ``http://places2.csail.mit.edu/models_places365/<arch>_places365.pth.tar``: a dict
``{'state_dict': ...}`` whose keys carry DataParallel's ``module.`` prefix, saved before PyTorch
0.4 (no BatchNorm ``num_batches_tracked``; DenseNet keys in the old ``norm.1`` form). The
project also published whole pickled models (``whole_<arch>_places365_python36.pth.tar``);
those load from ``--weights`` only with ``--trust-pickle``.

Architectures (365 classes) are built from torchvision:

* ``resnet18``, ``resnet50``, ``alexnet``, ``densenet161``: torchvision's, unchanged;
* ``wideresnet18``: the Places365 repository's ``wideresnet.resnet18``, a ResNet-18 without
  the stem's max-pool (so every stage keeps twice the resolution: layer4 is 14x14 at 224x224)
  and with ``AvgPool2d(14)`` before the classifier. Built as torchvision's ResNet-18 with
  ``maxpool`` replaced by ``nn.Identity()``; its parameters are the same tensors under the same
  names. The pooling is torchvision's adaptive average pool, equal to ``AvgPool2d(14)`` at the
  224x224 input it was trained on (and, unlike it, usable at other sizes).

Preprocessing: RGB in [0, 1] normalised by ImageNet's mean and std, as the project's own
scripts do.

The checkpoint is downloaded once into torch's hub cache (``$TORCH_HOME/hub/checkpoints``);
offline, the error names the file, its URL and where to put it. ``weights`` (``--weights``)
gives a local file instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, first_line
from .base import LoadedModel, load_state, model_options, prefix_matcher, register_builtin, torch_load
from .preprocess import Preprocess

BASE_URL = "http://places2.csail.mit.edu/models_places365/"
ARCHS = ("resnet18", "resnet50", "alexnet", "densenet161", "wideresnet18")
NUM_CLASSES = 365

#: Old (pre-0.4) DenseNet key form: ``denselayer1.norm.1.weight`` -> ``denselayer1.norm1.weight``.
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


CATEGORIES_FILE = Path(__file__).with_name("places365_categories.txt")


def category_names() -> list[str]:
    """The 365 Places365 classes in output order, as the project's ``categories_places365.txt``
    names them without the leading ``/<letter>/`` (``airfield``, ..., ``arena/hockey``)."""
    return CATEGORIES_FILE.read_text().split()


def checkpoint_url(arch: str) -> str:
    """The URL of the Places365 checkpoint of ``arch``."""
    return f"{BASE_URL}{arch}_places365.pth.tar"


def build_places365(arch: str) -> nn.Module:
    """The architecture of ``places365:<arch>`` with random weights and 365 classes."""
    import torchvision

    if arch not in ARCHS:
        raise ModelError(f"unknown places365 architecture {arch!r}; available: {', '.join(ARCHS)}")
    if arch == "wideresnet18":
        model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
        model.maxpool = nn.Identity()
        return model
    return torchvision.models.get_model(arch, weights=None, num_classes=NUM_CLASSES)


def load_places365(arch: str, weights: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    """``places365:<arch>`` with its Places365 weights (downloaded) or those of ``weights``."""
    model = build_places365(arch)
    path = Path(weights) if weights else _download(arch)
    # a broken download is named as such (delete it to download it again)
    state = _state_dict(torch_load(path, trust_pickle, None if weights else "downloaded checkpoint"), path)
    load_state(model, state, path)
    return LoadedModel(model.eval(), Preprocess(), f"places365:{arch}", str(path))


def _download(arch: str) -> Path:
    url = checkpoint_url(arch)
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as exc:  # URLError, HTTPError, timeouts: offline or host down
        raise ModelError(
            f"cannot download {target.name} from {url} ({first_line(exc)}); fetch that file on a machine "
            f"with internet and put it at {target}, or pass {model_options().weights} PATH"
        ) from None
    return target


def _state_dict(loaded, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint or of a whole pickled model, with ``module.`` stripped."""
    if isinstance(loaded, nn.Module):
        # modules pickled by old PyTorch lack attributes state_dict() needs: read them directly
        state = {}
        for prefix, module in loaded.named_modules():
            for kind in ("_parameters", "_buffers"):
                for key, value in getattr(module, kind, {}).items():
                    if value is not None:
                        state[f"{prefix}.{key}" if prefix else key] = value.detach()
        loaded = state
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelError(f"{path} is not a Places365 checkpoint (a state dict or a dict with a 'state_dict' entry)")
    state = {}
    for key, value in loaded.items():
        key = key.replace("module.", "")
        key = _DENSENET_KEY.sub(r"\1\2", key)
        state[key] = value
    return state


register_builtin(
    "places365",
    prefix_matcher("places365:"),
    lambda spec, weights, trust, args: load_places365(spec.split(":", 1)[1], weights, trust),
)
