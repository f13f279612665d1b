"""The one headless-Chromium setup of the browser tests (Playwright driving Debian's chromium).

CI installs chromium and the playwright package (.ci/run) and must run these tests; elsewhere a
test that asks for the ``browser`` or ``page`` fixture (tests/conftest.py) skips when either is
missing. Screenshots go under ``test-artifacts/`` (or $NETDISSECT_ARTIFACTS) through
:func:`screenshot`.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("NETDISSECT_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 1280, "height": 900}


@contextmanager
def launch_chromium(*extra_args: str):
    """Chromium launched by Playwright, closed on exit; the test skips when Chromium or Playwright
    is missing (and fails on CI, which must run it)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium (see .ci/run)", pytrace=False)
        pytest.skip("chromium is not installed")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*LAUNCH_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, *, width: int = VIEWPORT["width"], height: int = VIEWPORT["height"]):
    """A page of ``width`` x ``height`` whose ``problems`` list gathers console errors, uncaught page
    errors and dialogs (dismissed): a test asserts ``page.problems == []``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.problems = problems
    return page


def screenshot(target, name: str, **options) -> Path:
    """Save a screenshot of ``target`` (a page or an element) as ``ARTIFACTS/name``; its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    target.screenshot(path=str(path), **options)
    return path


def open_layer(page, run: Path, layer: str = "conv4"):
    """Open a report's layer page and wait until its cards are drawn and its tiles ready."""
    page.goto((run / layer / "index.html").as_uri())
    page.wait_for_selector(".unit-card")
    page.wait_for_selector("body[data-tiles=ready]")
    return page


def demo_report(root: Path, *, rename: tuple[str, str] | None = None, edit=None, **dissect_options) -> Path:
    """The demo model's conv4 dissected on 40 synthetic images under ``root``, and its report: the run
    folder. ``rename`` = (label, new name) renames a label of the dataset first; ``edit(run)`` changes
    the run's files before the report is written; ``dissect_options`` go to ``dissect``."""
    from helpers import rename_label
    from netdissect import dissect
    from netdissect.data.synthetic import make_synthetic_dataset
    from netdissect.models import load_model
    from netdissect.report import write_report

    data = make_synthetic_dataset(root / "data", n=40, size=64, seed=3)
    if rename is not None:
        rename_label(data, *rename)
    out = root / "run"
    options = {"workers": 0, "progress": False, "device": "cpu", "quantile": 0.02, **dissect_options}
    dissect(load_model("demo"), data, ["conv4"], out, **options)
    if edit is not None:
        edit(out)
    write_report(out, progress=False)
    return out
