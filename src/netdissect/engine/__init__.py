"""The dissection engine: options (``config``), the two passes (``passes``) and pass 2's collectors
(``collectors``), orchestration (``runner``), process groups (``distributed``), rotation sweeps.

This package was the module ``netdissect.engine`` in 0.1.0; its names (``dissect``,
``run_dissection``, ...) still resolve here, from :mod:`netdissect.engine.runner`, for one release.
"""

from __future__ import annotations

from typing import Any

from .._moved import forward_attribute


def __getattr__(name: str) -> Any:
    return forward_attribute(__name__, "runner", name)
