"""Describe any unit in any words: image-level scores (AUC with significance) and open-vocabulary labels (WPMI).

See :func:`describe` and docs/describe.md.
"""

from .result import DescriptionResult, LayerDescriptions
from .run import describe

__all__ = ["DescriptionResult", "LayerDescriptions", "describe"]
