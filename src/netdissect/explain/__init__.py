"""Explain one image: segment it by a dissected layer's detector units (NetDissect TPAMI,
"segmentation by units"), and measure which units its prediction needs (the effect of zeroing
each unit on the top class's probability, as in Bau et al., PNAS 2020). See ``docs/explain.md``.

``netdissect.explain`` is both this package and its function: the package is callable, so
``netdissect.explain(run, images, out)`` works however it was imported.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .result import ExplainResult, ImageExplanation
from .run import explain

__all__ = ["ExplainResult", "ImageExplanation", "explain"]


class _CallableModule(types.ModuleType):
    """The package, callable as :func:`explain` (``import netdissect.explain`` binds the package
    to the name ``netdissect.explain``, where the public API promises the function)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
