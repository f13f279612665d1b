"""The package's shape: every module imports on its own, no import cycles, no oversized modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "netdissect"
MAX_LINES = 520  # "about 500 lines"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def module_path(name: str) -> Path:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (function bodies included, type-checking blocks not)."""
    path = module_path(name)
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if _in_type_checking(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" for alias in node.names] + [origin]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            # the deepest package module named by the import
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
                break
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def package_graph() -> dict[str, set[str]]:
    """Import edges between modules; a package's own ``__init__`` only counts through what it imports."""
    known = set(module_names())
    graph = {name: imports_of(name, known) for name in known}
    # importing a.b.c runs a/__init__ and a/b/__init__ first: edges to ancestors are implied, not cycles
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(package_graph()) == []


def test_graph_sees_function_level_imports():
    graph = package_graph()
    # engine imports passes at module level; the CLI imports the engine inside its commands
    assert "netdissect.engine.passes" in graph["netdissect.engine.runner"]
    assert "netdissect.engine.runner" in graph["netdissect.cli.run"]


def test_every_module_imports_on_its_own():
    """Each module imported first, in a fresh package state (catches import-order dependencies)."""
    script = (
        "import importlib, sys, torch, numpy\n"
        f"names = {module_names()!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'netdissect' or m.startswith('netdissect.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", module_names())
def test_module_size(name):
    lines = len(module_path(name).read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it along its seams"


def test_help_does_not_import_torch():
    script = "import sys; from netdissect.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


ARCHITECTURE = PACKAGE.parents[1] / "docs" / "design" / "architecture.md"


def architecture_table() -> dict[str, set[str]]:
    """Layer -> the module files (relative to the package) that docs/design/architecture.md's table names.

    A cell names files (``errors.py``), a folder's modules (``data/`` (``broden``, ...)) or a
    whole folder (``report/``).
    """
    text = ARCHITECTURE.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    table: dict[str, set[str]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) != 3 or cells[0].startswith("---"):
            continue
        files: set[str] = set()
        for folder, members in re.findall(r"`([\w/]+/)`(?: \(([^)]*)\))?", cells[1]):
            names = re.findall(r"`(\w+)`", members)
            if names:
                files |= {f"{folder}{name}.py" for name in names}
            else:
                files |= {
                    str(p.relative_to(PACKAGE)) for p in (PACKAGE / folder).rglob("*.py") if p.name != "__init__.py"
                }
        files |= set(re.findall(r"`([\w/]+\.py)`", cells[1]))
        table[cells[0]] = files
    return table


def test_architecture_table_names_every_module():
    """Every module sits in one layer of the design's table, and every file the table names exists."""
    table = architecture_table()
    named = set().union(*table.values())
    modules = {
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
    }
    assert sorted(modules - named) == [], "modules missing from docs/design/architecture.md"
    assert sorted(named - modules) == [], "docs/design/architecture.md names files that do not exist"


def test_package_root_holds_only_shared_modules():
    """The root is the 'shared' layer; everything else lives in the folder of its layer."""
    root = {p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert root == architecture_table()["shared"]


def test_tests_mirror_the_package_folders():
    """tests/<folder>/ exists for every subpackage with tests of its own modules."""
    tests = Path(__file__).resolve().parent
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert sorted(folder for folder in folders if not (tests / folder).is_dir()) == []


#: The layers of docs/design/architecture.md, lowest first, by folder ("" is the package root's
#: shared modules). A module imports modules of its own layer or lower ones.
LAYERS = (
    {""},
    {"models"},
    {"capture"},
    {"math"},
    {"formulas"},
    {"runs"},
    {"data"},
    {"engine"},
    {"ablation", "describe", "explain", "segmenters"},
    {"report"},
    {"cli"},
)
#: The package's front door imports from every layer: the lazy public API and the old module paths.
FRONT_DOOR = {"netdissect", "netdissect._moved"}


def layer_of(name: str) -> int:
    parts = name.split(".")
    folder = parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""
    return next(i for i, layer in enumerate(LAYERS) if folder in layer)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer; a feature may import its page (``report.<feature>_page``)."""
    found = []
    for name, targets in graph.items():
        if name in FRONT_DOOR:
            continue
        for target in targets:
            page = target.startswith("netdissect.report.") and target.endswith("_page")
            if layer_of(target) > layer_of(name) and not (page and layer_of(name) == layer_of("netdissect.explain")):
                found.append(f"{name} -> {target}")
    return sorted(found)


def test_layer_rule_finds_a_planted_upward_import():
    graph = {
        "netdissect.math.tally": {"netdissect.engine.config"},
        "netdissect.engine.passes": {"netdissect.math.tally"},
    }
    assert upward_imports(graph) == ["netdissect.math.tally -> netdissect.engine.config"]
    assert upward_imports({"netdissect.describe.run": {"netdissect.report.describe_page"}}) == []
    assert upward_imports({"netdissect.describe.run": {"netdissect.report.pages"}}) != []


def test_layers_import_downwards():
    assert upward_imports(package_graph()) == []


#: Drawing libraries: only the report (pages and charts) imports them.
REPORT_ONLY = ("jinja2", "markupsafe", "matplotlib")


def drawing_imports(source: str) -> list[str]:
    """The :data:`REPORT_ONLY` libraries that ``source`` imports anywhere (function bodies included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in REPORT_ONLY]
    return found


def test_drawing_import_finder_sees_function_level_imports():
    source = '"""Mentions matplotlib."""\nimport os\n\ndef f():\n    from matplotlib.figure import Figure\n    import jinja2\n'
    assert drawing_imports(source) == ["matplotlib.figure", "jinja2"]
    assert drawing_imports("from .markupsafe import x\nimport markupsafety\n") == []


def test_only_the_report_imports_jinja2_markupsafe_or_matplotlib():
    report = PACKAGE / "report"
    found = {
        str(path.relative_to(PACKAGE)): drawing_imports(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
        if report not in path.parents
    }
    assert {path: names for path, names in found.items() if names} == {}
    assert "matplotlib" in (PACKAGE / "cli" / "__init__.py").read_text()  # named in a docstring: not an import
