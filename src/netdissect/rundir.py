"""Run directories: an exclusive lock while a run writes, and the run's recorded state.

``run.json`` holds the run's identity (the key that decides whether a directory holds the same
run), its layers and its ``state``: ``running`` while a dissection writes, then ``done`` or
``failed`` (with the error). A lock file (``.lock``, held with ``flock`` on POSIX) keeps two
processes from writing one directory at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RunDirectoryError
from .results import UNITS_FILE, LayerResult, atomic_write_json, layer_dirname
from .resume import CHECKPOINT_DIR

if TYPE_CHECKING:
    from .data.broden import BrodenDataset

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


def dataset_identity(dataset: BrodenDataset) -> dict:
    """What identifies a dataset selection in a run's key: its CSVs' digest, size and preprocessing."""
    meta = dataset.meta
    digest = hashlib.sha256()
    for name in ["index.csv", "label.csv", "category.csv", *(f"c_{c}.csv" for c in meta.categories)]:
        digest.update((meta.directory / name).read_bytes())
    rows = meta.rows
    return {
        "path": str(meta.directory.resolve()),
        "csv_sha256": digest.hexdigest()[:16],
        "categories": list(meta.categories),
        "images": len(rows),
        "first_row": rows[0].row,
        "last_row": rows[-1].row,
        "preprocess": asdict(dataset.preprocess),
    }


def prepare_run_dir(
    run_dir: Path, metadata: dict, layers: list[str], overwrite: bool
) -> tuple[list[str], dict[str, LayerResult]]:
    """Check the run directory; return all its layers (earlier ones first) and those finished."""
    key = json.loads(json.dumps({k: metadata[k] for k in ("model", "model_fingerprint", "dataset", "options")}))
    run_file = run_dir / RUN_FILE
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous.get("key") != key:
            if not overwrite:
                raise RunDirectoryError(
                    f"{run_dir} holds a different run (other model, dataset or options); "
                    "choose another --out or pass --overwrite"
                )
            _clear_run(run_dir, previous.get("layers", []))
            previous = {"layers": []}
    else:
        previous = {"layers": []}
    known_layers = list(dict.fromkeys(previous.get("layers", []) + layers))
    atomic_write_json(run_file, {"key": key, "layers": known_layers})
    set_state(run_dir, "running")
    done = {}
    for name in known_layers:
        if (run_dir / layer_dirname(name) / UNITS_FILE).exists():
            done[name] = LayerResult.load(run_dir / layer_dirname(name))
    return known_layers, done


def _clear_run(run_dir: Path, layers: list[str]) -> None:
    for name in layers:
        directory = run_dir / layer_dirname(name)
        for child in directory.glob("*") if directory.is_dir() else []:
            if child.is_file():
                child.unlink()
    for name in (RUN_FILE, "summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    for stale in (run_dir / CHECKPOINT_DIR).glob("*.ckpt"):
        stale.unlink()
