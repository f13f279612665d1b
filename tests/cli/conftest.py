"""Fixtures of the command-line tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def read_only(tmp_path):
    """``(source, lock)``: fill ``source``, then ``lock()`` returns it read-only (a bind mount; needs root)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a read-only mount")
    source, locked = tmp_path / "source", tmp_path / "locked"
    source.mkdir()
    locked.mkdir()
    mounted = []

    def lock() -> Path:
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(locked)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
        mounted.append(locked)
        return locked

    yield source, lock
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)
