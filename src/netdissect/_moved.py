"""Old module paths of 0.1.0, kept for one release: ``netdissect.results`` still imports, with a
:class:`DeprecationWarning`, and is the very module ``netdissect.runs.results``.

:data:`MOVED` is the one list of the modules that moved into subpackages; an import hook resolves
the old names, so no stub module is left at the package root.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module (under ``netdissect.``) -> its new path (also under ``netdissect.``)
MOVED = {
    "hooks": "capture.hooks",
    "tokens": "capture.tokens",
    "stats": "math.stats",
    "bilinear": "math.bilinear",
    "masks": "math.masks",
    "tally": "math.tally",
    "rotation": "math.rotation",
    "config": "engine.config",
    "passes": "engine.passes",
    "collectors": "engine.collectors",
    "rotation_sweep": "engine.rotation_sweep",
    "distributed": "engine.distributed",
    "resume": "runs.checkpoints",
    "rundir": "runs.directory",
    "runfiles": "runs.layout",
    "results": "runs.results",
    "foreign": "runs.foreign",
    "outputs": "runs.outputs",
    "formula_terms": "formulas.terms",
    "formula_pass": "engine.formula_collector",
    "signatures": "formulas.signatures",
    "segmenter": "segmenters.model",
    "generator": "segmenters.generator",
    "report.compare": "report.compare_page",
    "data.annotate": "segmenters.annotate",
}
#: modules that became packages of the same name: their attributes now live in one submodule
BECAME_PACKAGES = {"engine": "runner", "formulas": "search"}

PACKAGE = "netdissect"


def _warn(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path will be removed in the next release",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new path (the same object, not a copy)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        _warn(spec.name, self.new, stacklevel=2)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the old name's spec; keep the real one


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``netdissect.<old>`` for every entry of :data:`MOVED`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != PACKAGE or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(f"{PACKAGE}.{MOVED[name]}"))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


def forward_attribute(package: str, module: str, name: str) -> Any:
    """``package.name`` for a package that was a module: the attribute of ``package.module``, with a warning."""
    if name.startswith("__"):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    target = importlib.import_module(f"{package}.{module}")
    try:
        value = getattr(target, name)
    except AttributeError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    _warn(f"{package}.{name}", f"{package}.{module}.{name}", stacklevel=4)  # the caller of the package's __getattr__
    return value
