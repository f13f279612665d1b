"""Pages of a run made by other tools, listed in ``<run>/extra_pages.json`` for the report to link.

The file is a JSON list of ``{"title", "path"}``: ``path`` is the page relative to the run
directory, with ``/`` separators; it may lead out of the run directory with ``../`` (an ablation
written elsewhere). The report links every valid entry whose page exists and ignores the others
(a malformed file, an entry without a title, an absolute path or a URL), so a damaged list
never breaks a report.
"""

from __future__ import annotations

import contextlib
import json
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


def read_extra_pages(run_dir: str | Path) -> list[dict[str, str]]:
    """The valid entries of ``run_dir/extra_pages.json`` whose page exists (none without the file)."""
    run_dir = Path(run_dir)
    try:
        entries = json.loads((run_dir / EXTRA_PAGES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    pages, seen = [], set()
    for entry in entries:
        if valid_entry(entry) and entry["path"] not in seen and (run_dir / entry["path"]).is_file():
            seen.add(entry["path"])
            pages.append({"title": entry["title"].strip(), "path": entry["path"]})
    return pages


def record_extra_page(run_dir: str | Path, title: str, path: str) -> Path:
    """Add (or retitle) the page ``path`` (relative to ``run_dir``) in ``run_dir/extra_pages.json``.

    Entries of other pages are kept as they are, invalid ones included (they are ignored when read).
    """
    file = Path(run_dir) / EXTRA_PAGES
    try:
        pages = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pages = []
    if not isinstance(pages, list):
        pages = []
    pages = [p for p in pages if not (isinstance(p, dict) and p.get("path") == path)]
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
