"""MkDocs hook: the command-line reference, generated from netdissect's argparse parser at build time.

A page holding the line ``<!-- cli-reference -->`` gets it replaced by one section per
subcommand with its full ``--help`` text, so the reference can never drift from the code.
"""

from __future__ import annotations

import argparse

MARKER = "<!-- cli-reference -->"


def cli_reference_markdown() -> str:
    """Markdown for ``netdissect --help`` and every subcommand's ``--help``."""
    from netdissect.cli import build_parser

    parser = build_parser()
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
    parts = ["## netdissect\n", "```text\n" + parser.format_help() + "```\n"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        command.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
        parts.append(f"## netdissect {name}\n")
        parts.append("```text\n" + command.format_help() + "```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference_markdown())
    return markdown
