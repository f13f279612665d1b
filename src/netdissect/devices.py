"""Choosing the torch device for ``--device``."""

from __future__ import annotations

import torch

from .errors import OptionError


def resolve_device(name: str | None) -> torch.device:
    """The device for ``--device`` (default: CUDA when available), checked to be usable."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device
