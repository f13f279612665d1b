"""The report in a real browser (headless Chromium driven by Playwright).

CI installs Debian's chromium and the playwright package (.ci/run); elsewhere the tests skip
when either is missing. A screenshot of the layer page is saved under ``test-artifacts/``
(or $NETDISSECT_ARTIFACTS).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import rename_label
from netdissect import dissect
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.models import load_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("NETDISSECT_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
EVIL = "<script>alert(1)</script>"

if os.environ.get("CI") and not CHROMIUM:
    raise RuntimeError("CI must run the browser tests: install Debian's chromium (see .ci/run)")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from netdissect.report import write_report

    root = tmp_path_factory.mktemp("browser")
    data = make_synthetic_dataset(root / "data", n=40, size=64, seed=3)
    rename_label(data, "ball", EVIL)  # a hostile label name must show as text
    out = root / "run"
    dissect(load_model("demo"), data, ["conv4"], out, workers=0, progress=False, device="cpu", quantile=0.02)
    write_report(out, progress=False)
    return out


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.problems = problems
    yield page
    page.close()


def open_layer(page, report: Path):
    page.goto((report / "conv4" / "index.html").as_uri())
    page.wait_for_selector(".unit-card")
    return page


def visible_cards(page) -> list[dict]:
    return page.eval_on_selector_all(
        ".unit-card",
        """cards => cards.filter(c => c.offsetParent !== null).map(c => ({
            unit: c.dataset.unit, label: c.dataset.label, category: c.dataset.category}))""",
    )


def test_pages_load_without_errors_and_every_strip_loads(page, report):
    page.goto((report / "index.html").as_uri())
    assert "conv4" in page.content()
    open_layer(page, report)
    assert len(visible_cards(page)) == 128
    page.eval_on_selector_all("img.strip", "imgs => imgs.forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("() => [...document.querySelectorAll('img.strip')].every(i => i.complete)", timeout=30_000)
    broken = page.eval_on_selector_all("img.strip", "imgs => imgs.filter(i => !i.naturalWidth).map(i => i.src)")
    assert broken == []
    assert page.eval_on_selector_all("img.strip", "imgs => imgs.length") == 128
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-layer.png"), full_page=False)
    assert (ARTIFACTS / "report-layer.png").stat().st_size > 10_000
    assert page.problems == []


def test_sort_by_label_orders_cards(page, report):
    open_layer(page, report)
    before = [c["unit"] for c in visible_cards(page)]
    page.select_option("#sort", "label")
    labels = [c["label"] for c in visible_cards(page)]
    in_order = page.evaluate("ls => ls.every((l, i) => i === 0 || ls[i - 1].localeCompare(l) <= 0)", labels)
    assert in_order
    assert [c["unit"] for c in visible_cards(page)] != before
    page.select_option("#sort", "unit")
    assert [int(c["unit"]) for c in visible_cards(page)] == list(range(1, 129))
    assert page.problems == []


def test_category_filter_hides_other_cards(page, report):
    open_layer(page, report)
    all_cards = visible_cards(page)
    category = max({c["category"] for c in all_cards}, key=lambda k: sum(c["category"] == k for c in all_cards))
    page.select_option("#category", category)
    shown = visible_cards(page)
    assert shown and all(c["category"] == category for c in shown)
    assert len(shown) == sum(c["category"] == category for c in all_cards)
    page.select_option("#category", "")
    assert len(visible_cards(page)) == len(all_cards)
    assert page.problems == []


def test_search_and_viewer_with_ground_truth_toggle(page, report):
    open_layer(page, report)
    first = visible_cards(page)[0]
    page.fill("#search", first["label"])
    shown = visible_cards(page)
    assert shown and all(first["label"].lower() in c["label"].lower() for c in shown)
    page.click(f".unit-card[data-unit='{first['unit']}']")
    page.wait_for_selector("#viewer", state="visible")
    src = page.get_attribute("#viewer-img", "src")
    page.click("#toggle-truth")
    assert page.get_attribute("#viewer-img", "src") != src
    assert "_concept" in page.get_attribute("#viewer-img", "src")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.problems == []


def test_hostile_label_is_text(page, report):
    open_layer(page, report)
    page.select_option("#sort", "label")
    page.fill("#search", "alert")
    assert page.problems == []  # no alert dialog ran
    scripts = page.eval_on_selector_all("script", "ss => ss.map(s => s.textContent)")
    assert not any("alert(1)" in s for s in scripts)  # no injected script element
    if any(c["label"] == EVIL for c in visible_cards(page)):  # a unit is labelled with it
        assert page.locator(".unit-card", has_text=EVIL).first.is_visible()  # shown literally
    for html in [report / "index.html", report / "conv4" / "index.html"]:
        assert EVIL not in html.read_text()  # only ever written escaped
