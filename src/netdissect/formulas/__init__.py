"""Compositional explanations: formula terms and their text (``terms``), beam search (``search``),
the signature tables (``signatures``) streamed in pass 2 by the formula collector (``collector``).

This package was the module ``netdissect.formulas`` in 0.1.0; its names (``search_formulas``, ...)
still resolve here, from :mod:`netdissect.formulas.search`, for one release.
"""

from __future__ import annotations

from typing import Any

from .._moved import forward_attribute


def __getattr__(name: str) -> Any:
    return forward_attribute(__name__, "search", name)
