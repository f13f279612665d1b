"""Pages other tools link to a run (``extra_pages.json``): each page is listed and linked once."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from fake_run import write_fake_run
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.report import add_extra_page, write_report, write_run_page
from netdissect.report.extra import EXTRA_PAGES, read_extra_pages, record_extra_page

TITLE = "Unit ablation · conv4"


def page(path: Path, title: str = "t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<title>{title}</title>")
    return path


def links(html_file: Path) -> list[tuple[str, str]]:
    """``(href, text)`` of the page's links to extra pages."""
    found = re.findall(r'<a class="extra-page" href="([^"]*)">([^<]*)</a>', html_file.read_text(encoding="utf-8"))
    return [(href, text) for href, text in found]


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("extra")
    data = make_synthetic_dataset(root / "data", n=12, size=32, seed=1)
    run = write_fake_run(root / "run", data, units=8)
    write_report(run, progress=False)
    return run


def test_recording_one_page_twice_lists_it_once(tmp_path):
    page(tmp_path / "ablation" / "index.html")
    record_extra_page(tmp_path, TITLE, "ablation/index.html")
    record_extra_page(tmp_path, TITLE, "ablation/index.html")
    record_extra_page(tmp_path, TITLE, "ablation//index.html")  # the same page, spelled otherwise
    record_extra_page(tmp_path, TITLE, "other/../ablation/index.html")
    listed = json.loads((tmp_path / EXTRA_PAGES).read_text())
    assert listed == [{"title": TITLE, "path": "ablation/index.html"}]
    assert read_extra_pages(tmp_path) == [{"title": TITLE, "path": "ablation/index.html"}]


def test_recording_the_same_page_through_a_link_replaces_it(tmp_path):
    page(tmp_path / "ablation" / "index.html")
    os.symlink(tmp_path / "ablation", tmp_path / "latest")
    record_extra_page(tmp_path, TITLE, "ablation/index.html")
    record_extra_page(tmp_path, "Unit ablation · conv4 (latest)", "latest/index.html")
    assert read_extra_pages(tmp_path) == [{"title": "Unit ablation · conv4 (latest)", "path": "latest/index.html"}]


def test_reading_a_list_with_duplicates_gives_each_page_once(tmp_path):
    page(tmp_path / "ablation" / "index.html")
    page(tmp_path / "conv4" / "causal.html")
    entries = [
        {"title": TITLE, "path": "ablation/index.html"},
        {"title": "Causal effects: conv4", "path": "conv4/causal.html"},
        {"title": TITLE, "path": "ablation/index.html"},
        {"title": "Unit ablation, again", "path": "conv4/../ablation/index.html"},
    ]
    (tmp_path / EXTRA_PAGES).write_text(json.dumps(entries))
    assert read_extra_pages(tmp_path) == [
        {"title": "Unit ablation, again", "path": "ablation/index.html"},  # first place, latest title
        {"title": "Causal effects: conv4", "path": "conv4/causal.html"},
    ]


def test_two_pages_with_one_title_are_told_apart(tmp_path):
    run = tmp_path / "run"
    page(run / "ablation" / "index.html")
    page(tmp_path / "ablation2" / "index.html")
    record_extra_page(run, TITLE, "ablation/index.html")
    record_extra_page(run, TITLE, "../ablation2/index.html")
    titles = [p["title"] for p in read_extra_pages(run)]
    assert len(set(titles)) == 2 and all(t.startswith(TITLE) for t in titles)
    assert titles == [f"{TITLE} (ablation)", f"{TITLE} (../ablation2)"]


def test_two_ablations_of_one_page_give_one_link(reported_run, tmp_path):
    """The run page links an ablation once (in the top bar and in the list), however often and
    however spelled it was recorded."""
    ablation = page(reported_run / "ablation" / "index.html", TITLE)
    add_extra_page(reported_run, TITLE, ablation)
    add_extra_page(reported_run, TITLE, reported_run / "layer4" / ".." / "ablation" / "index.html")
    record_extra_page(reported_run, TITLE, "./ablation/index.html")
    write_run_page(reported_run)
    assert links(reported_run / "index.html") == [("ablation/index.html", TITLE)] * 2
