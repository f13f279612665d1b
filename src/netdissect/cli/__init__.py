"""The ``netdissect`` command line: parse arguments, call the Python API, print.

Each subcommand group lives in its own module with a ``register(subparsers)`` function;
:func:`build_parser` adds them in :data:`COMMAND_MODULES` order. Heavy libraries (torch,
matplotlib) are imported inside the commands, so ``netdissect --help`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
from typing import NoReturn

from .._version import __version__

#: Subcommand modules, in the order their commands appear in ``--help`` (explain: cli/explain.py).
COMMAND_MODULES = ("run", "describe", "explain", "compare", "ablate", "results", "data", "segment")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (the CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(
        prog="netdissect",
        description="Network Dissection: label the hidden units of vision networks with the concepts they detect.",
        epilog="Each command marks the folder it writes (netdissect.json) and refuses, before writing, a --out "
        "that is a file, cannot be written, or holds another command's output. See docs/long-runs.md.",
    )
    parser.add_argument("--version", action="version", version=f"netdissect {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 with a one-line message on bad input)."""
    from ..errors import NetDissectError, os_error_message

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NetDissectError as exc:
        return _fail(exc.message)
    except OSError as exc:  # read-only or full disk, a file where a folder belongs, a vanished input
        return _fail(os_error_message(exc))
    except UnicodeDecodeError as exc:  # a text file that is not UTF-8 text, read outside files.read_text_lines
        return _fail(f"a text file is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except MemoryError:
        return _fail("out of memory: try a smaller --batch-size or image size")
    except KeyboardInterrupt:
        print("netdissect: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    """Print ``message`` as the command's one-line error; the exit status 1."""
    print(f"netdissect: error: {message}", file=sys.stderr)
    return 1


def run() -> NoReturn:
    """The ``netdissect`` program: :func:`main`, then exit.

    Once torch is loaded the process ends with :func:`os._exit` after the exit handlers have run
    and the output is flushed: the interpreter's own exit would then run the C++ static
    destructors of torch's CUDA libraries, which page about 125 MB of them back in (raising the
    command's peak RSS by as much) and do nothing useful. Every file a command writes is closed
    before :func:`main` returns.
    """
    status = main()
    if "torch" not in sys.modules:
        sys.exit(status)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
