"""The output-folder rule: kinds, marks, and folders written before the mark existed."""

from __future__ import annotations

import json

import pytest

from netdissect.errors import RunDirectoryError
from netdissect.runs.outputs import (
    ABLATION,
    COMPARISON,
    DATASET,
    DISSECTION,
    GENERATOR,
    IMPORTED,
    KINDS,
    MANIFEST,
    check_output,
    claim_output,
    read_kind,
)


def test_claim_marks_a_new_folder_and_leaves_its_own_kind_alone(tmp_path):
    out = claim_output(tmp_path / "a" / "b", COMPARISON)
    assert json.loads((out / MANIFEST).read_text()) == {"kind": "comparison"}
    before = (out / MANIFEST).stat().st_mtime_ns
    claim_output(out, COMPARISON)
    assert (out / MANIFEST).stat().st_mtime_ns == before  # not rewritten
    assert read_kind(out) is COMPARISON


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        (["ablation-run.json"], ABLATION),
        (["run.json", "samples-0123/index.csv"], GENERATOR),
        (["run.json", "conv4/imported.csv"], IMPORTED),
        (["run.json", "conv4/units.json"], DISSECTION),
        (["compare.json"], COMPARISON),
        (["index.csv", "label.csv"], DATASET),
        (["notes.txt"], None),
    ],
)
def test_folders_without_a_mark_are_known_by_their_files(tmp_path, files, kind):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert read_kind(tmp_path) is kind


def test_another_kind_a_file_and_a_broken_link_are_refused(tmp_path):
    run = claim_output(tmp_path / "run", DISSECTION)
    with pytest.raises(RunDirectoryError, match=r"--out .*run holds a dissection run \(written by `netdissect dissect` or `demo`\), not a unit ablation"):  # fmt: skip
        check_output(run, ABLATION)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file, not a folder"):
        claim_output(tmp_path / "file", ABLATION)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(RunDirectoryError, match="broken link"):
        claim_output(tmp_path / "link", ABLATION)
    with pytest.raises(
        RunDirectoryError, match="--dir .* holds a Broden-format dataset \\(written by a dataset command\\)"
    ):
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "index.csv").write_text("")
        check_output(tmp_path / "data", COMPARISON, option="--dir")


def test_a_damaged_mark_falls_back_to_the_files(tmp_path):
    (tmp_path / MANIFEST).write_text("not json")
    (tmp_path / "compare.json").write_text("{}")
    assert read_kind(tmp_path) is COMPARISON
    (tmp_path / MANIFEST).write_text('{"kind": "unknown-kind"}')
    assert read_kind(tmp_path) is COMPARISON


def test_every_kind_names_its_commands():
    assert all(kind.commands and kind.what for kind in KINDS.values())
