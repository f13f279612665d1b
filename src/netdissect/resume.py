"""Checkpoints of a dissection's accumulators, so a killed run continues where it stopped.

A checkpoint is one file per process (rank) in ``<run dir>/checkpoints/``: a header line, the
SHA-256 of the payload and the payload (``torch.save`` of tensors, numbers and strings, read back
with ``weights_only=True``). It is written through a temporary file and a rename, so a kill
leaves the previous checkpoint or the new one, never half of one. A checkpoint carries the key of
everything that determines the accumulators (model, dataset, options, layers, batch size, shard);
one with another key is ignored, and one whose bytes do not match its hash is reported as corrupt
and ignored, so the pass restarts cleanly from its beginning.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .results import atomic_write_bytes

MAGIC = b"netdissect-checkpoint 1\n"
CHECKPOINT_DIR = "checkpoints"


def checkpoint_key(parts: dict[str, Any]) -> str:
    """A short digest of ``parts`` (JSON-serialisable) naming what a checkpoint belongs to."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def save_checkpoint(path: Path, key: str, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) under ``key``."""
    buffer = io.BytesIO()
    torch.save({"key": key, "state": state}, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    atomic_write_bytes(path, MAGIC + digest + b"\n" + payload)


def load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
    """The state saved at ``path`` under ``key``; ``None`` when absent, stale or corrupt.

    A corrupt file (truncated, altered, unreadable) gives a warning naming it and is removed.
    """
    if not path.exists():
        return None
    data = path.read_bytes()
    header, _, rest = data.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    problem = None
    if header + b"\n" != MAGIC:
        problem = "not a netdissect checkpoint"
    elif hashlib.sha256(payload).hexdigest().encode() != digest:
        problem = "its contents do not match its checksum"
    else:
        try:
            saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds on bad pickles
            problem = f"unreadable ({type(exc).__name__})"
    if problem is not None:
        warnings.warn(f"checkpoint {path} is corrupt ({problem}); restarting the pass from its beginning", stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return saved["state"]


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

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run and process, if any."""
        return load_checkpoint(self.path, self.key) if self.path is not None else None

    def due(self) -> bool:
        """Whether ``every`` seconds have passed since the last checkpoint (or the start)."""
        return self.path is not None and time.monotonic() - self._last >= self.every

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` now."""
        if self.path is not None:
            save_checkpoint(self.path, self.key, state)
            self._last = time.monotonic()

    def clear(self) -> None:
        """Remove the checkpoint (the run finished)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # other ranks' checkpoints remain
                self.path.parent.rmdir()
