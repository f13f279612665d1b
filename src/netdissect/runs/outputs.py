"""Output folders: which command wrote a folder, and the one rule every command follows before writing.

Every command that writes a folder calls :func:`claim_output` first. It refuses, before anything
is written, a path that is a file, a folder it cannot write, and a folder that another kind of
command wrote (naming what is there and how to go on); then it marks the folder with
``netdissect.json`` (``{"kind": ...}``). Folders written before the mark existed
are recognised by their files (:attr:`OutputKind.markers`). The kinds live in one registry,
:data:`KINDS`; a new command registers its kind with :func:`register_kind`.

This module imports neither torch nor numpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunDirectoryError
from ..files import atomic_write_json
from .layout import RUN_FILE

MANIFEST = "netdissect.json"


@dataclass(frozen=True)
class OutputKind:
    """What one kind of command writes.

    Attributes:
        name: the kind recorded in ``netdissect.json``.
        what: the folder's contents in words ("a dissection run").
        commands: the subcommands that write it (the first one is named in messages).
        markers: files or folder globs that identify a folder of this kind written without a mark.
    """

    name: str
    what: str
    commands: tuple[str, ...]
    markers: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        return self.commands[0]

    @property
    def written_by(self) -> str:
        """The commands that write this kind, for messages (`netdissect dissect` or `demo`)."""
        if len(self.commands) > 2:
            return "a dataset command"
        return " or ".join(f"`{'netdissect ' if i == 0 else ''}{c}`" for i, c in enumerate(self.commands))


#: Every output kind, by name: the only list.
KINDS: dict[str, OutputKind] = {}


def register_kind(kind: OutputKind) -> OutputKind:
    """Add ``kind`` to :data:`KINDS` (a later registration of the same name replaces it)."""
    KINDS[kind.name] = kind
    return kind


# Marker order matters for folders without a mark: the most specific kinds come first.
ABLATION = register_kind(OutputKind("ablation", "a unit ablation", ("ablate",), ("ablation-run.json",)))
GENERATOR = register_kind(
    OutputKind("generator-dissection", "a GAN dissection run", ("dissect-generator",), ("samples-*",))
)
IMPORTED = register_kind(OutputKind("imported-results", "imported results", ("import-results",), ("*/imported.csv",)))
DISSECTION = register_kind(OutputKind("dissection", "a dissection run", ("dissect", "demo"), (RUN_FILE,)))
DESCRIPTION = register_kind(OutputKind("description", "unit descriptions", ("describe",), ("describe.json",)))
# explain: images explained by a dissected layer (netdissect.explain)
EXPLANATION = register_kind(OutputKind("explanation", "explanations of images", ("explain",), ("explain.json",)))
COMPARISON = register_kind(OutputKind("comparison", "a comparison of runs", ("compare",), ("compare.json",)))
ROTATION = register_kind(
    OutputKind("rotation-sweep", "a rotation sweep", ("rotation-sweep",), ("rotation_sweep.json", "power_*"))
)
PREPARED = register_kind(OutputKind("prepared-dataset", "a prepared dataset copy", ("prepare",), ("prepared.json",)))
DATASET = register_kind(
    OutputKind(
        "dataset",
        "a Broden-format dataset",
        ("make-dataset", "annotate", "build-broden", "import-dataset", "resize-dataset", "download"),
        ("index.csv",),
    )
)


def read_kind(folder: str | os.PathLike) -> OutputKind | None:
    """The kind of output in ``folder``: from its mark, else from its files; None for anything else."""
    folder = Path(folder)
    try:
        recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded in KINDS:
        return KINDS[recorded]
    if not folder.is_dir():
        return None
    for kind in KINDS.values():
        if any(next(iter(folder.glob(marker)), None) is not None for marker in kind.markers):
            return kind
    return None


def check_output(folder: str | os.PathLike, kind: OutputKind, option: str = "--out") -> None:
    """Refuse ``folder`` for ``kind`` with one line: a file, or a folder another kind of command wrote.

    Nothing is written; :func:`claim_output` checks and then marks.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunDirectoryError(f"{option} {folder} is a file, not a folder: choose a folder for the output")
    if folder.is_symlink() and not folder.exists():
        raise RunDirectoryError(f"{option} {folder} is a broken link")
    found = read_kind(folder)
    if found is not None and found.name != kind.name:
        raise RunDirectoryError(
            f"{option} {folder} holds {found.what} (written by {found.written_by}), "
            f"not {kind.what}: choose another {option}, or remove that folder first"
        )


def claim_output(folder: str | os.PathLike, kind: OutputKind, option: str = "--out") -> Path:
    """Check ``folder`` (see :func:`check_output`), create it and mark it as ``kind``'s; returns it.

    A folder that cannot be created or written fails here, before any work, with the OS's reason
    (the command line prints it as one line naming the path).
    """
    folder = Path(folder)
    check_output(folder, kind, option)
    folder.mkdir(parents=True, exist_ok=True)
    mark = {"kind": kind.name}
    path = folder / MANIFEST
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current != mark:
        atomic_write_json(path, mark)
    elif not os.access(folder, os.W_OK):
        raise PermissionError(13, "Permission denied", str(folder))
    return folder
