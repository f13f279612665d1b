"""The built-in model sources as ``--model SPEC`` names them: the one place their syntax is written.

Torch-free, so that ``netdissect --help`` lists the SPECs without importing torch. Each built-in
source module registers its source with :func:`netdissect.models.base.register_builtin`, which
takes the syntax and priority from :data:`BUILTIN_SOURCES`; a third-party source gives its own
to :class:`~netdissect.models.base.ModelSource`. ``load_model`` asks the registered sources in
ascending priority (ties: built-ins first, then registration order) whether they take a SPEC, and its error for a
SPEC that none takes lists their syntax; so does ``--model``'s help, from this table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The priority of the catch-all sources, asked after every other: a callable's dotted path
#: (any SPEC with a colon), then a pickled model (any existing file).
CATCH_ALL = 10


@dataclass(frozen=True)
class BuiltinSource:
    """A built-in model source: its name, SPEC syntax, priority and the module that registers it."""

    name: str
    syntax: str
    module: str  # in netdissect.models
    priority: int = 0


BUILTIN_SOURCES = (
    BuiltinSource("demo", "demo", "loading"),
    BuiltinSource("torchvision", "torchvision:<name>", "loading"),
    BuiltinSource("caffe", "caffe:deploy.prototxt", "caffe"),
    BuiltinSource("places365", "places365:<arch>", "places365"),
    BuiltinSource("onnx", "path/to/model.onnx", "onnx"),
    BuiltinSource("callable", "package.module:callable", "loading", CATCH_ALL),
    BuiltinSource("pickle", "path/to/model.pt (with --trust-pickle)", "loading", CATCH_ALL + 1),
)


def builtin_source(name: str) -> BuiltinSource:
    for source in BUILTIN_SOURCES:
        if source.name == name:
            return source
    raise KeyError(f"no built-in model source {name!r}")


def spec_list(syntaxes: Iterable[str]) -> str:
    """``"a, b or c"``: SPEC syntaxes as the help and the errors list them."""
    items = list(syntaxes)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def builtin_spec_help() -> str:
    """The built-in sources' SPEC syntax in the order ``load_model`` asks them (``--model``'s help)."""
    return spec_list(s.syntax for s in sorted(BUILTIN_SOURCES, key=lambda s: s.priority))
