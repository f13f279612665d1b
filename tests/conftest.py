"""Shared fixtures."""

from pathlib import Path

import pytest

from helpers import write_tiny_dataset


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "tiny")
