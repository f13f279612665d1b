"""Shared fixtures."""

from pathlib import Path

import pytest

from browser_helpers import launch_chromium, new_page
from helpers import write_tiny_dataset


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "tiny")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, one per test module (tests/browser_helpers.py); skips when it is missing."""
    with launch_chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    """A fresh 1280 x 900 page gathering console errors, page errors and dialogs in ``page.problems``."""
    page = new_page(browser)
    yield page
    page.close()
