"""Checkpoints of a dissection's accumulators, so a killed run continues where it stopped.

A checkpoint is one file per process (rank) in ``<run dir>/checkpoints/`` (:func:`netdissect.runs.layout.checkpoint_path`): a header line, the
SHA-256 of the payload and the payload (``torch.save`` of tensors, numbers and strings, read back
with ``weights_only=True``). A new checkpoint is written to a temporary file, read back and
checked against its hash, and only then renamed into place; the one it replaces is kept as
``<name>.prev``. A kill therefore leaves a whole checkpoint (the new one, or the previous one
when it struck between the two renames), never half of one. A checkpoint carries the key of
everything that determines the accumulators (model, dataset, options, layers, batch size,
shard); one with another key is ignored. One whose bytes do not match its hash (truncated by a
full disk, a copy cut short, altered) is reported with one warning and removed, and the run
continues from the previous checkpoint, or from the beginning when that one is bad too. See
docs/long-runs.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

MAGIC = b"netdissect-checkpoint 1\n"
PREVIOUS_SUFFIX = ".prev"


def checkpoint_key(parts: dict[str, Any]) -> str:
    """A short digest of ``parts`` (JSON-serialisable) naming what a checkpoint belongs to."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def previous_path(path: Path) -> Path:
    """Where the checkpoint before the current one is kept: ``<name>.prev``."""
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def _encode(key: str, state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"key": key, "state": state}, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _decode(data: bytes) -> tuple[Any, str | None]:
    """The saved object of a checkpoint's bytes and ``None``, or ``None`` and what is wrong with them."""
    header, _, rest = data.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if header + b"\n" != MAGIC:
        return None, "not a netdissect checkpoint"
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None, "its contents do not match its checksum"
    try:
        saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on bad pickles
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        return None, "not a saved state"
    return saved, None


def save_checkpoint(path: Path, key: str, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) under ``key``; keep the previous one.

    The new file is flushed to disk, read back and checked before it replaces the current
    checkpoint, which becomes ``<name>.prev``. Raises ``OSError`` when the file cannot be
    written intact (e.g. the disk is full); the checkpoints on disk are then unchanged.
    """
    data = _encode(key, state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if tmp.read_bytes() != data:
            raise OSError(f"{tmp} did not read back as written")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def _read(path: Path) -> tuple[dict | None, str | None]:
    if not path.exists():
        return None, None
    try:
        return _decode(path.read_bytes())
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or type(exc).__name__})"


def read_checkpoint(path: Path) -> tuple[str, dict[str, Any]] | None:
    """The key and state saved at ``path`` as they are; ``None`` when there is no file.

    For looking into a checkpoint (tools, tests watching a run): no key is checked, nothing is
    removed and the previous checkpoint is not consulted; a run resumes through
    :func:`load_checkpoint`. A corrupt file raises ``ValueError`` saying what is wrong with it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # none yet, or between the two renames of a save
        return None
    saved, problem = _decode(data)
    if problem is not None:
        raise ValueError(f"checkpoint {path}: {problem}")
    return saved["key"], saved["state"]


def load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
    """The last good state saved at ``path`` under ``key``; ``None`` when there is none.

    A corrupt checkpoint (truncated, altered, unreadable) gives one warning naming it and is
    removed; the previous checkpoint (``<name>.prev``) is used instead when it is good.
    """
    saved, problem = _read(path)
    prev = previous_path(path)
    if problem is None and saved is None:  # killed between the two renames of a save: the previous one stands
        saved, _ = _read(prev)
    elif problem is not None:
        saved, prev_problem = _read(prev)
        if saved is not None and saved.get("key") == key:
            state = saved["state"]
            then = f"continuing from the previous checkpoint {prev.name}"
            if "pass" in state:  # a dissection's: say where it stands
                then += f" (pass {state['pass']}" + (
                    f", batch {state['next_batch']})" if "next_batch" in state else ")"
                )
        else:
            then = "restarting from the beginning" + (f" ({prev.name} is corrupt too)" if prev_problem else "")
        warnings.warn(f"checkpoint {path} is corrupt ({problem}); {then}", stacklevel=2)
        path.unlink(missing_ok=True)
        if prev_problem:
            prev.unlink(missing_ok=True)
    if saved is None or saved.get("key") != key:
        return None
    return saved["state"]


def resume_together(saved: dict[str, Any] | None, passes: list[int]) -> dict[str, Any] | None:
    """The state this rank resumes from, given every rank's saved pass (0: none).

    Ranks must run the same pass (pass 1 ends by merging every rank's statistics): a pass-2
    state is set aside, and pass 1 run again, when another rank has no pass-2 state.
    """
    if saved is not None and saved["pass"] == 2 and min(passes) < 2:
        warnings.warn("another process has no checkpoint of pass 2: running pass 1 again", stacklevel=2)
        return None
    return saved


class Checkpointer:
    """Saves a process's accumulators at most every ``every`` seconds (0: at every call).

    Args:
        path: the checkpoint file, or ``None`` to checkpoint nothing.
        key: see :func:`checkpoint_key`.
        every: seconds between checkpoints.
    """

    def __init__(self, path: Path | None, key: str, every: float) -> None:
        self.path, self.key, self.every = path, key, every
        self._last = time.monotonic()
        self._failed = False

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run and process, if any."""
        return load_checkpoint(self.path, self.key) if self.path is not None else None

    def due(self) -> bool:
        """Whether ``every`` seconds have passed since the last checkpoint (or the start)."""
        return self.path is not None and time.monotonic() - self._last >= self.every

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` now; a write that fails (disk full) warns once and the run goes on."""
        if self.path is None:
            return
        try:
            save_checkpoint(self.path, self.key, state)
        except OSError as exc:
            if not self._failed:
                warnings.warn(
                    f"cannot write checkpoint {self.path} ({exc.strerror or exc}); the run goes on, "
                    "and a restart continues from the last checkpoint written",
                    stacklevel=2,
                )
            self._failed = True
        self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the checkpoint (the run finished)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            previous_path(self.path).unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):  # another rank may remove the emptied directory
                for stale in list(self.path.parent.glob(f".{self.path.name}.tmp*")):  # a killed write's
                    stale.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # other ranks' checkpoints remain
                self.path.parent.rmdir()
