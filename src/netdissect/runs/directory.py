"""Run directories (their file names: :mod:`netdissect.runs.layout`): an exclusive lock while a run writes, the run's recorded state, overwrites.

``run.json`` holds the run's identity (the key that decides whether a directory holds the same
run), its layers and its ``state``: ``running`` while a dissection writes, then ``done`` or
``failed`` (with the error). A lock file (``.lock``, held with ``flock`` on POSIX) keeps two
processes from writing one directory at the same time.

An overwrite (a different run into a directory that holds one) is written into the staging
directory ``<run dir>/.overwrite/`` and replaces the old run only once it has finished: the old
run's entries are moved into ``<run dir>/.replaced/``, the new run's entries moved in, then the
old ones deleted, every step a rename listed beforehand in a journal, so a replacement cut
short is completed by the next run in that directory. A new run that fails or is killed leaves
the old run as it was; the same command again resumes the staged run. See docs/long-runs.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import RunDirectoryError
from ..files import atomic_write_json, layer_dirname
from .layout import (
    CHECKPOINT_DIR,
    JOURNAL_FILE,
    LOCK_FILE,
    REPLACED_DIR,
    RUN_FILE,
    STAGING_DIR,
    SUMMARY_FILE,
    is_finished_layer,
    layer_path,
)
from .results import LayerResult

if TYPE_CHECKING:
    from ..data.broden import BrodenDataset

#: Top-level report files and pages other tools linked to the run (they describe the old run).
REPORT_FILES = ("index.html", "summary.png", "report-images", "extra_pages.json")
#: The descriptions `netdissect describe` joined to the run (they describe the old run's model).
DESCRIBE_FILES = ("describe.json", "describe.html", "describe-images")

fcntl: ModuleType | None
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
) -> tuple[Path, list[str], dict[str, LayerResult]]:
    """Check the run directory (locked by the caller) and say where this run writes.

    Returns the directory to write into (``run_dir``, or its staging directory when
    ``overwrite`` replaces a different run), all its layers (earlier ones first) and those
    already finished there. A different run is refused without ``overwrite``.
    """
    finish_replacement(run_dir)
    key = json.loads(json.dumps({k: metadata[k] for k in ("model", "model_fingerprint", "dataset", "options")}))
    work = run_dir
    previous = read_run(run_dir)
    if previous and previous.get("key") != key:
        if not overwrite:
            raise RunDirectoryError(
                f"{run_dir} holds a different run (other model, dataset or options); "
                "choose another --out or pass --overwrite"
            )
        work = run_dir / STAGING_DIR
        previous = read_run(work)
        if previous.get("key") != key:  # nothing, or a staged run of other options: start afresh
            shutil.rmtree(work, ignore_errors=True)
            previous = {}
        work.mkdir(exist_ok=True)
    known_layers = list(dict.fromkeys(previous.get("layers", []) + layers))
    atomic_write_json(work / RUN_FILE, {"key": key, "layers": known_layers})
    set_state(work, "running")
    done = {}
    for name in known_layers:
        if is_finished_layer(layer_path(work, name)):
            done[name] = LayerResult.load(layer_path(work, name))
    return work, known_layers, done


def replace_run(run_dir: Path) -> None:
    """Put the finished run staged in ``run_dir/.overwrite`` in the place of the run in ``run_dir``.

    The old run's entries (its layers, run.json, summary.json, checkpoints, report pages) and
    any entry the new run brings are moved aside, the new run's entries moved in, then the old
    ones deleted. The journal of renames is written first, so :func:`finish_replacement`
    completes a replacement cut short. Other files in ``run_dir`` stay.
    """
    owned = [RUN_FILE, SUMMARY_FILE, CHECKPOINT_DIR, *REPORT_FILES, *DESCRIBE_FILES]
    owned += [layer_dirname(name) for name in read_run(run_dir).get("layers", [])]
    try:
        described = json.loads((run_dir / DESCRIBE_FILES[0]).read_text()).get("layers", [])
    except (OSError, ValueError, AttributeError):
        described = []
    owned += [layer_dirname(name) for name in described]
    swap_in_staged(run_dir, owned, skip=(CHECKPOINT_DIR,))


def swap_in_staged(run_dir: Path, owned: list[str], skip: tuple[str, ...] = ()) -> None:
    """Replace the entries ``owned`` of ``run_dir`` (and any the new output brings) by the staged ones.

    The staged output in ``run_dir/.overwrite`` (less the entries ``skip``) moves in; the old
    entries are moved aside first and deleted last, every step a rename in a journal written
    beforehand (:func:`finish_replacement` completes a swap cut short). Any command that
    stages an overwrite ends with this.
    """
    staging = run_dir / STAGING_DIR
    new = sorted(p.name for p in staging.iterdir() if p.name not in skip)
    old = [name for name in dict.fromkeys(owned + new) if (run_dir / name).exists() or (run_dir / name).is_symlink()]
    trash = run_dir / REPLACED_DIR
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    atomic_write_json(trash / JOURNAL_FILE, {"old": old, "new": new})
    _replay(run_dir)


def finish_replacement(run_dir: Path) -> None:
    """Complete a replacement that was cut short (see :func:`replace_run`); remove its leftovers."""
    trash = run_dir / REPLACED_DIR
    if (trash / JOURNAL_FILE).exists():
        _replay(run_dir)
    elif trash.exists():
        shutil.rmtree(trash, ignore_errors=True)


def _replay(run_dir: Path) -> None:
    """The journal's renames, each done once however often this runs; then the cleanup."""
    trash, staging = run_dir / REPLACED_DIR, run_dir / STAGING_DIR
    journal = json.loads((trash / JOURNAL_FILE).read_text())
    for name in journal["old"]:  # listed while they all were old entries: moved aside or not yet
        if (run_dir / name).exists() and not (trash / name).exists():
            os.replace(run_dir / name, trash / name)
    for name in journal["new"]:
        if (staging / name).exists():
            os.replace(staging / name, run_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
    (trash / JOURNAL_FILE).unlink()
    shutil.rmtree(trash, ignore_errors=True)
