"""Describe any unit in any words: image-level scores (AUC with significance) and open-vocabulary labels (WPMI).

See :func:`describe` and docs/describe.md. ``netdissect.describe`` is both this package and its
function: the package is callable, so ``netdissect.describe(model, layers, ...)`` works however it
was imported (as ``netdissect.explain``).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .result import DescriptionResult, LayerDescriptions
from .run import describe

__all__ = ["DescriptionResult", "LayerDescriptions", "describe"]


class _CallableModule(types.ModuleType):
    """The package, callable as :func:`describe` (``import netdissect.describe`` binds the package to
    the name ``netdissect.describe``, where the public API promises the function)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return describe(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
