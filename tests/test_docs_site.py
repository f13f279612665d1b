"""The documentation site as ``mkdocs build`` writes it: browsable from ``file://`` (every internal
link names an ``.html`` file that exists, none lands on a folder) and holding only documentation
(no ``docs/hooks`` source). Skipped without mkdocs (the ``docs`` extra)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed")

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r'<a\s[^>]*?href="([^"]*)"')
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def internal_links(page: Path) -> list[str]:
    """The page's links to other pages of the site (no anchors within the page, no URLs)."""
    links = []
    for href in LINK.findall(page.read_text(encoding="utf-8")):
        target = href.split("#", 1)[0].split("?", 1)[0]
        if target and not SCHEME.match(target):
            links.append(unquote(target))
    return links


def test_site_holds_no_python_source(site):
    assert (site / "index.html").is_file()
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*.py")) == []
    assert not (site / "hooks").exists()


def test_index_links_name_html_files(site):
    links = internal_links(site / "index.html")
    assert len(links) >= 20  # the navigation at least
    folders = [link for link in links if link.endswith("/") or not link.endswith(".html")]
    assert folders == [], f"links that land on a folder listing from file://: {folders}"
    missing = [link for link in links if not (site / link).resolve().is_file()]
    assert missing == []


def test_every_page_links_existing_html_files(site):
    """From file:// a link to a folder shows its listing: every internal link of every page (but
    the 404 page, which links from the site's root) must name an existing file."""
    broken = []
    for page in site.rglob("*.html"):
        if page.name == "404.html":
            continue
        for link in internal_links(page):
            target = (page.parent / link).resolve()
            if link.endswith("/") or not target.is_file():
                broken.append(f"{page.relative_to(site)} -> {link}")
    assert broken == []


def test_cli_reference_is_generated_into_the_site(site):
    """Excluding docs/hooks from the pages keeps the hook itself running."""
    text = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    assert "netdissect dissect" in text and "--layers" in text
