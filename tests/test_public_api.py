"""The public API is one list, ``netdissect._EXPORTS``: ``__all__`` is derived from it, and the
imports that type checkers read (under ``TYPE_CHECKING``) must name exactly its names."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import netdissect

INIT = Path(netdissect.__file__)


def type_checking_imports() -> dict[str, str]:
    """``{name: module}`` of the ``from .module import name as name`` lines under ``if TYPE_CHECKING:``."""
    tree = ast.parse(INIT.read_text())
    blocks = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    assert len(blocks) == 1, "one `if TYPE_CHECKING:` block"
    found: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.unparse(node)
        for alias in node.names:
            # "X as X" marks an explicit re-export for type checkers that do not read a computed __all__
            assert alias.asname == alias.name, f"write `{alias.name} as {alias.name}` ({ast.unparse(node)})"
            assert alias.name not in found, f"{alias.name} imported twice"
            found[alias.name] = str(node.module)
    return found


def test_type_checking_imports_name_exactly_the_exports():
    assert type_checking_imports() == netdissect._EXPORTS


def test_all_is_the_exports_and_the_version():
    assert sorted(netdissect.__all__) == sorted([*netdissect._EXPORTS, "__version__"])
    assert len(set(netdissect.__all__)) == len(netdissect.__all__)


@pytest.mark.parametrize("name", sorted(netdissect._EXPORTS))
def test_every_export_resolves(name):
    # through the lazy resolver: an attribute set by importing a submodule of the same name
    # (netdissect.describe, the package) would hide it from getattr (see the next test)
    value = netdissect.__getattr__(name)
    assert value is getattr(importlib.import_module(f"netdissect.{netdissect._EXPORTS[name]}"), name)


#: Exports named like a subpackage of netdissect: importing the subpackage binds it to that name.
SHADOWED = sorted(n for n in netdissect._EXPORTS if (INIT.parent / n).is_dir() or (INIT.parent / f"{n}.py").is_file())


@pytest.mark.parametrize(
    "name",
    SHADOWED,
)
def test_an_export_named_like_its_package_stays_callable_once_the_package_is_imported(name):
    script = f"import netdissect.{name}, netdissect; print(callable(netdissect.{name}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        netdissect.nothing_here  # noqa: B018
