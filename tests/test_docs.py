"""The documentation stays true to the code: every ``netdissect`` command it shows parses with the
real parser, every page it links exists, and the generated CLI reference covers every subcommand."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from netdissect.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.S)


def shown_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every ``netdissect ...`` line in the pages' shell blocks."""
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                for part in re.split(r"&&|;", line):
                    part = part.strip()
                    if " -m netdissect " in part:  # torchrun ... -m netdissect dissect ...
                        part = "netdissect " + part.split(" -m netdissect ", 1)[1]
                    if part.startswith("netdissect "):
                        found.append((str(page.relative_to(ROOT)), part))
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_docs_show_commands():
    pages = {page for page, _ in shown_commands()}
    assert "README.md" in pages and len(shown_commands()) >= 20


@pytest.mark.parametrize("page, command", shown_commands())
def test_shown_command_parses(page, command):
    """Complete commands parse as they stand; elided ones (``...``, ``[optional]``) use only real options."""
    parser = build_parser()
    words = shlex.split(command)[1:]
    elided = "..." in words or any(w.startswith("[") for w in words)
    if not elided:
        try:
            parser.parse_args(words)
        except SystemExit as exc:
            pytest.fail(f"{page}: `{command}` does not parse (exit {exc.code})")
        return
    name = words[0]
    commands = subcommands(parser)
    assert name in commands, f"{page}: unknown subcommand in `{command}`"
    known = {s for a in commands[name]._actions for s in a.option_strings}
    options = {w.strip("[]|").split("=")[0] for w in words if w.lstrip("[").startswith("--")}
    unknown = sorted(o for o in options if o not in known)
    assert not unknown, f"{page}: `{command}` uses unknown options {unknown}"


LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_pages_resolve(page):
    missing = [t for t in LINK.findall(page.read_text()) if "://" not in t and not (page.parent / t).resolve().exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing pages {missing}"


def test_cli_reference_covers_every_subcommand():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.cli_reference_markdown()
    for name, sub in subcommands(build_parser()).items():
        assert f"## netdissect {name}\n" in text
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, f"{name} {option} missing from the reference"
    page = "# x\n\n" + module.MARKER + "\n"
    assert "## netdissect dissect" in module.on_page_markdown(page, None, None, None)


PYTHON = re.compile(r"```python\n(.*?)```", re.S)


def test_tutorial_python_runs_on_a_demo_run(tmp_path, monkeypatch, capsys):
    """The tutorial's Python blocks, run as written next to a (small) `netdissect demo` run directory."""
    from netdissect.cli import main

    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--images", "60", "--no-report", "--workers", "0", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    blocks = PYTHON.findall((ROOT / "docs" / "tutorial.md").read_text())
    assert blocks, "the tutorial shows Python"
    capsys.readouterr()
    for block in blocks:
        exec(compile(block, "docs/tutorial.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "detectors" in printed
