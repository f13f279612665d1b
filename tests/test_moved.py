"""Old module paths of 0.1.0 (netdissect._moved): each still imports, warns, and is the new module."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from netdissect._moved import BECAME_PACKAGES, MOVED


def test_old_paths_are_the_new_modules_with_a_warning():
    """In a fresh interpreter: every old path is the very module at its new path, with one warning."""
    script = (
        "import importlib, warnings\n"
        "from netdissect._moved import MOVED\n"
        "failed = []\n"
        "for old, new in sorted(MOVED.items()):\n"
        "    with warnings.catch_warnings():\n"
        "        warnings.simplefilter('error')\n"
        "        module = importlib.import_module('netdissect.' + new)\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        alias = importlib.import_module('netdissect.' + old)\n"
        "    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]\n"
        "    expected = [f'netdissect.{old} moved to netdissect.{new}; the old path will be removed in the next release']\n"
        "    if alias is not module or module.__spec__.name != 'netdissect.' + new or messages != expected:\n"
        "        failed.append((old, alias, module.__spec__.name, messages))\n"
        "print(failed)\n"
        "raise SystemExit(1 if failed else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_old_module_names_resolve_in_packages_of_the_same_name():
    for package, module in BECAME_PACKAGES.items():
        target = importlib.import_module(f"netdissect.{package}.{module}")
        public = [name for name in vars(target) if not name.startswith("_") and callable(vars(target)[name])]
        name = public[0]
        with pytest.warns(DeprecationWarning, match=f"netdissect.{package}.{name} moved to"):
            value = getattr(importlib.import_module(f"netdissect.{package}"), name)
        assert value is getattr(target, name)


def test_the_documented_old_imports_work():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from netdissect.engine import dissect
        from netdissect.formulas import search_formulas
        from netdissect.results import DissectionResult

    import netdissect

    assert dissect is netdissect.dissect and DissectionResult is netdissect.DissectionResult
    assert search_formulas.__module__ == "netdissect.formulas.search"


def test_unknown_names_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("netdissect.no_such_module")
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        importlib.import_module("netdissect.engine").no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from netdissect.formulas import no_such_name")


def test_every_new_path_exists():
    for new in [*MOVED.values(), *(f"{p}.{m}" for p, m in BECAME_PACKAGES.items())]:
        assert importlib.util.find_spec(f"netdissect.{new}") is not None, new
