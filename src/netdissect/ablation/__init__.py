"""Unit ablation: how much each unit of a layer matters to each output class of a classifier,
joined with a dissection of the layer (Bau et al., PNAS 2020)."""

from __future__ import annotations

from .experiment import ablate
from .images import LabelledImages, labelled_images
from .result import AblationResult

__all__ = ["AblationResult", "LabelledImages", "ablate", "labelled_images"]
