"""The ``netdissect`` program's exit (:func:`netdissect.cli.run`): status, output and exit handlers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import atexit, sys
    atexit.register(lambda: print("exit handler ran", flush=True))
    sys.argv = ["netdissect", *sys.argv[1:]]
    from netdissect.cli import run
    run()
    """
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300)


def test_run_with_torch_loaded_keeps_status_output_and_exit_handlers():
    done = _run("layers", "--model", "demo")  # loads torch: the process ends with os._exit
    assert done.returncode == 0, done.stderr
    assert "conv4" in done.stdout  # the whole table reached the pipe
    assert done.stdout.rstrip().endswith("exit handler ran")


def test_run_returns_the_error_status_with_torch_loaded():
    done = _run("layers", "--model", "demo", "--input-size", "0")
    assert done.returncode == 1
    assert done.stderr.startswith("netdissect: error:")
    assert "exit handler ran" in done.stdout


def test_run_without_torch_exits_normally():
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.startswith("netdissect ")
