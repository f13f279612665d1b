"""Run-directory file helpers shared by the engine and the report, without torch.

:func:`layer_dirname` names a layer's directory; :func:`atomic_write_bytes` and
:func:`atomic_write_json` replace a file in one step (a temporary file and a rename), so a
killed process never leaves a half-written result behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def layer_dirname(layer: str) -> str:
    """The directory name of a layer's results (path separators replaced)."""
    return layer.replace("/", "-").replace(os.sep, "-")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A file that already holds exactly ``data`` is left as it is: rebuilding a report rewrites
    mostly unchanged files, and renaming over an existing file makes ext4 flush it to disk.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def read_text_lines(path: str | os.PathLike, option: str) -> list[str]:
    """The stripped, non-empty lines of a UTF-8 text file given as ``option`` (e.g. ``--classes``).

    A missing file, a folder, a binary file or one that is not UTF-8 gives one line naming the
    option and the path.
    """
    from .errors import OptionError

    path = Path(path)
    if not path.exists():
        raise OptionError(f"{option} {path}: not found")
    if path.is_dir():
        raise OptionError(f"{option} {path} is a folder, not a text file")
    data = path.read_bytes()
    if b"\0" in data:
        raise OptionError(f"{option} {path} is a binary file, not a text file of one entry per line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OptionError(f"{option} {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
