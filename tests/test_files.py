"""Atomic writes (``netdissect.files``)."""

import os

from netdissect.files import atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_changed_content(tmp_path):
    path = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two!")
    assert path.read_bytes() == b"two!"
    assert os.listdir(path.parent) == ["a.bin"]  # no temporary file left


def test_atomic_write_leaves_identical_content_untouched(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"x": 1})
    before = path.stat()
    atomic_write_json(path, {"x": 1})
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    atomic_write_json(path, {"x": 2})  # same length, other bytes: written
    assert path.read_text().strip().endswith("}") and '"x": 2' in path.read_text()
    assert path.stat().st_ino != before.st_ino
