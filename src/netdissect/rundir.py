"""Run directories: an exclusive lock while a run writes, and the run's recorded state.

``run.json`` holds the run's identity (the key that decides whether a directory holds the same
run), its layers and its ``state``: ``running`` while a dissection writes, then ``done`` or
``failed`` (with the error). A lock file (``.lock``, held with ``flock`` on POSIX) keeps two
processes from writing one directory at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

from .errors import RunDirectoryError
from .results import atomic_write_json

RUN_FILE = "run.json"
LOCK_FILE = ".lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration; another holder makes this fail at once with one line."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"--out {run_dir} is a file, not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise RunDirectoryError(
                    f"{run_dir} is being written by another netdissect run (pid {holder}); "
                    "wait for it to finish or choose another --out"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def read_run(run_dir: Path) -> dict:
    """The contents of ``run.json`` ({} when there is none)."""
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def set_state(run_dir: Path, state: str, error: str | None = None) -> None:
    """Record the run's state (``running``, ``done`` or ``failed``) in ``run.json``."""
    record = read_run(run_dir)
    record.update(state=state, pid=os.getpid(), updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if error is not None:
        record["error"] = error
    else:
        record.pop("error", None)
    atomic_write_json(run_dir / RUN_FILE, record)
