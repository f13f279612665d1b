"""Pages of a run made by other tools, listed in ``<run>/extra_pages.json`` for the report to link.

The file is a JSON list of ``{"title", "path"}``: ``path`` is the page relative to the run
directory, with ``/`` separators; it may lead out of the run directory with ``../`` (an ablation
written elsewhere). The report links every valid entry whose page exists and ignores the others
(a malformed file, an entry without a title, an absolute path or a URL), so a damaged list
never breaks a report.

A page is listed once: recording a page drops the entries of the same page (its path spelled
any way: ``a/../b/index.html`` is ``b/index.html``), and reading keeps the first entry of each
page file (under the last title recorded for it). Pages that share a title (two ablations of one
layer written to two folders) are told apart by their folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from ..files import atomic_write_json

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

PAGES_LOCK = ".extra.lock"  # apart from the run's .lock, which a running dissection holds

EXTRA_PAGES = "extra_pages.json"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def valid_entry(entry: object) -> bool:
    """Whether ``entry`` is ``{"title": text, "path": relative path}`` (no URL, no absolute path)."""
    if not isinstance(entry, dict):
        return False
    title, path = entry.get("title"), entry.get("path")
    if not isinstance(title, str) or not title.strip() or not isinstance(path, str) or not path:
        return False
    if path.startswith(("/", "\\")) or "\\" in path or _SCHEME.match(path) or any(ord(ch) < 32 for ch in path):
        return False
    return all(part not in ("", ".") for part in path.split("/"))


def normal_path(path: str) -> str:
    """``path`` (``/`` separators) without ``.`` parts, doubled slashes or ``dir/..`` detours."""
    return posixpath.normpath(path)


def _same_file_key(run_dir: Path, path: str) -> str:
    """What makes two paths one page: the file they reach (links followed), else the normal path."""
    try:
        return os.path.realpath(run_dir / path)
    except (OSError, ValueError):  # pragma: no cover - a path the system cannot resolve
        return normal_path(path)


def read_extra_pages(run_dir: str | Path) -> list[dict[str, str]]:
    """The valid entries of ``run_dir/extra_pages.json`` whose page exists (none without the file),
    each page once (paths normalised); titles shared by several pages get the page's folder."""
    run_dir = Path(run_dir)
    try:
        entries = json.loads((run_dir / EXTRA_PAGES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    pages: dict[str, dict[str, str]] = {}  # by the file the page is
    for entry in entries:
        if not valid_entry(entry):
            continue
        path = normal_path(entry["path"])
        if not valid_entry({"title": entry["title"], "path": path}) or not (run_dir / path).is_file():
            continue
        key = _same_file_key(run_dir, path)
        if key in pages:  # the same page again: listed once, under its latest title
            pages[key]["title"] = entry["title"].strip()
        else:
            pages[key] = {"title": entry["title"].strip(), "path": path}
    listed = list(pages.values())
    titles = [p["title"] for p in listed]
    for page in listed:
        if titles.count(page["title"]) > 1:
            folder = posixpath.dirname(page["path"])
            page["title"] = f"{page['title']} ({folder or page['path']})"
    return listed


def record_extra_page(run_dir: str | Path, title: str, path: str) -> Path:
    """Add (or retitle) the page ``path`` (relative to ``run_dir``) in ``run_dir/extra_pages.json``.

    ``path`` is stored normalised; every entry of the same page (the same normalised path, or
    another path to the same file) is replaced by this one. Entries of other pages are kept as
    they are, invalid ones included (they are ignored when read).
    """
    file = Path(run_dir) / EXTRA_PAGES
    try:
        pages = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pages = []
    if not isinstance(pages, list):
        pages = []
    path = normal_path(path)
    run_dir = Path(run_dir)
    key = _same_file_key(run_dir, path)

    def same_page(entry: object) -> bool:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
            return False
        other = normal_path(entry["path"])
        return other == path or (valid_entry(entry) and _same_file_key(run_dir, other) == key)

    pages = [p for p in pages if not same_page(p)]
    pages.append({"title": title, "path": path})
    atomic_write_json(file, pages)
    return file


@contextlib.contextmanager
def pages_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock on its list of extra pages (waits for another holder)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(Path(run_dir) / PAGES_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
