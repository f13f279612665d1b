"""The GAN Dissection pages: the causal page states the units zeroed per concept as they are, and a
generator run's pages show its latent input, not an image preprocessing it never had."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from netdissect import dissect_generator
from netdissect.report import write_report
from netdissect.report.causal_page import CausalEffect, write_causal_page

SEGMENTER = "netdissect.models.toy:color_segmenter"
GENERATOR = "netdissect.models.toy:toy_generator"


def text(html: str) -> str:
    """The page's text (tags dropped, spaces collapsed)."""
    body = html.split("<body>", 1)[-1]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def effect(label: int, name: str, units: list[int]) -> CausalEffect:
    image = np.zeros((4, 4, 3), np.uint8)
    return CausalEffect(label, name, units, 0.3, 0.06, [(0, image, image)])


def test_one_detector_is_one_unit_zeroed(tmp_path):
    page = write_causal_page(tmp_path, "layer4", "gan", [effect(1, "tree", [7])], samples=16, ablate_top=20)
    shown = text(page.read_text())
    assert "20" not in shown  # no count that is not in the data
    assert "its best detector unit (by IoU) is set to zero" in shown
    assert "1 unit zeroed: 7" in shown
    assert "units" not in shown.split("Causal effects", 2)[-1]  # singular all through: one unit per concept


def test_unit_counts_follow_each_concept(tmp_path):
    effects = [effect(1, "tree", [7]), effect(2, "sky", [3, 9, 12])]
    shown = text(write_causal_page(tmp_path, "layer4", "gan", effects, samples=1, ablate_top=20).read_text())
    assert "best 20 detector units" not in shown
    assert "up to 20, fewer where it has fewer detectors" in shown
    assert "1 unit zeroed: 7" in shown and "3 units zeroed: 3, 9, 12" in shown
    assert "the same 1 sample is generated again" in shown
    same = write_causal_page(tmp_path, "layer4", "gan", [effect(2, "sky", [3, 9])], samples=16, ablate_top=20)
    assert "its best 2 detector units (by IoU) are set to zero" in text(same.read_text())


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """The toy generator (two drawing units, each the one detector of its colour) dissected with
    the default --ablate-top (20), and its report."""
    out = tmp_path_factory.mktemp("gan") / "run"
    dissect_generator(
        GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=32, seed=3, device="cpu", workers=0, progress=False
    )
    write_report(out, progress=False)
    return out


def test_generator_pages_match_the_data(toy_run):
    causal = text((toy_run / "features" / "causal.html").read_text())
    assert "best 20" not in causal and "its best detector unit (by IoU) is set to zero" in causal
    assert causal.count("1 unit zeroed") == 2  # red: unit 1, green: unit 2
    run_page = text((toy_run / "index.html").read_text())
    assert "input latents z ~ N(0, I): 32 of dimension 8" in run_page
    for page in (run_page, causal, text((toy_run / "features" / "index.html").read_text())):
        assert "preprocess" not in page and "0.485" not in page and "0.229" not in page


def test_generator_pages_in_the_browser(page, toy_run):
    """In headless Chromium (the ``page`` fixture, tests/conftest.py; skipped when it is missing)."""
    page.goto((toy_run / "features" / "causal.html").as_uri())
    assert "its best detector unit (by IoU) is set to zero" in page.inner_text("#causal-intro")
    units = page.eval_on_selector_all("p.units", "ps => ps.map(p => p.innerText)")
    assert sorted(units) == ["1 unit zeroed: 1", "1 unit zeroed: 2"]
    page.goto((toy_run / "index.html").as_uri())
    shown = page.inner_text("main")
    assert "latents z ~ N(0, I)" in shown and "preprocess" not in shown and "0.485" not in shown
