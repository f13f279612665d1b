"""Fixtures of the ablation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablation_helpers import COLOURS, PLANTED_CLASSES, PlantedNet, write_folders
from helpers import RAW
from netdissect.models.base import LoadedModel


@pytest.fixture
def planted(tmp_path: Path) -> tuple[LoadedModel, Path, Path]:
    """The planted model, an ImageFolder of pure red/green/blue images, and its class file."""
    images = write_folders(tmp_path / "images", {"red": 3, "green": 2, "blue": 4}, colours=COLOURS)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(PLANTED_CLASSES) + "\n")
    return LoadedModel(PlantedNet().eval(), RAW, "planted"), images, classes
