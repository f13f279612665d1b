"""``python -m netdissect``: the command line."""

from .cli import run

run()
