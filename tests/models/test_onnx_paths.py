"""ONNX paths are checked before the optional packages: these tests run with or without onnx installed."""

from __future__ import annotations

import sys

import pytest

from netdissect.cli import main
from netdissect.errors import ModelError
from netdissect.models import load_model


@pytest.fixture
def without_onnx(monkeypatch):
    """As if onnx and onnx2torch were not installed (an import of either fails)."""
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnx2torch", None)


@pytest.mark.parametrize("installed", [True, False])
def test_missing_onnx_file_is_not_found_not_missing_packages(tmp_path, request, installed):
    if not installed:
        request.getfixturevalue("without_onnx")
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(ModelError) as info:
        load_model(str(missing))
    assert str(info.value) == f"--model {missing}: ONNX file not found"
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelError, match=r"folder\.onnx is a folder, not an ONNX file"):
        load_model(str(tmp_path / "folder.onnx"))


def test_existing_file_without_the_packages_asks_for_them(tmp_path, without_onnx):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(ModelError, match=r"ONNX models need the packages onnx and onnx2torch .*pip install"):
        load_model(str(path))


def test_cli_missing_onnx_file_one_line(tmp_path, capsys, without_onnx):
    missing = tmp_path / "nowhere.onnx"
    assert main(["layers", "--model", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == f"netdissect: error: --model {missing}: ONNX file not found\n"


def test_missing_onnx_segmenter_names_the_segmenter_option(tmp_path, without_onnx):
    from netdissect import load_segmenter

    with pytest.raises(ModelError, match=r"^--segmenter .*nowhere\.onnx: ONNX file not found$"):
        load_segmenter(str(tmp_path / "nowhere.onnx"), ["background", "thing"])
