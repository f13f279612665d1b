"""A missing or unreadable weights file is one line naming the option and the path, never a traceback.

Every case runs through ``netdissect.cli.main`` as a user would meet it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from netdissect.cli import main
from netdissect.errors import ModelError
from netdissect.models import load_model

CALLABLE = "tinynets:make"
TINYNETS = "from torch import nn\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n"
PROTOTXT = """name: "tiny"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 8
input_dim: 8
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 2 kernel_size: 3 } }
"""


def error_line(capsys, argv: list[str]) -> str:
    """Run the CLI: exit status 1 and exactly one ``netdissect: error:`` line on stderr, no traceback."""
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert err.count("\n") == 1 and err.startswith("netdissect: error: "), err
    return err.strip()


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Broken weights files, and a callable model module importable from the current directory."""
    rng = np.random.default_rng(7)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.pth"
    text.write_text("these are not the weights you are looking for\n")
    (tmp_path / "folder.pth").mkdir()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "tinynets.py").write_text(TINYNETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


SPECS = ["torchvision:resnet18", "demo", CALLABLE, "places365:resnet18"]


@pytest.mark.parametrize("spec", SPECS)
def test_missing_weights_file_is_not_found(files, capsys, spec):
    for missing in (files / "nope.pth", files / "sub" / "nope"):  # with and without a checkpoint extension
        line = error_line(capsys, ["layers", "--model", spec, "--weights", str(missing)])
        assert line == f"netdissect: error: --weights {missing}: not found"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("name", ["garbage.pth", "notes.pth", "empty.pth"])
def test_unreadable_weights_file_cannot_be_read_as_a_checkpoint(files, capsys, spec, name):
    path = files / name
    for trust in ([], ["--trust-pickle"]):  # trusting the pickles does not make garbage readable
        line = error_line(capsys, ["layers", "--model", spec, "--weights", str(path), *trust])
        assert line.startswith(f"netdissect: error: --weights {path} cannot be read as a checkpoint: ")
        assert len(line.split("cannot be read as a checkpoint: ", 1)[1]) > 0


def test_folder_and_non_state_dict_weights(files, capsys):
    folder = files / "folder.pth"
    line = error_line(capsys, ["layers", "--model", "torchvision:resnet18", "--weights", str(folder)])
    assert line == f"netdissect: error: --weights {folder} is a folder, not a checkpoint file"
    torch.save({"epoch": 3, "model": {"w": 1}}, files / "trainer.pth")
    line = error_line(capsys, ["layers", "--model", CALLABLE, "--weights", str(files / "trainer.pth")])
    assert f"--weights {files / 'trainer.pth'} holds a dict with keys epoch, model, not a state dict" in line


def test_pickled_objects_still_ask_for_trust(files, capsys):
    """A real pickled module is not 'unreadable': it needs --trust-pickle."""
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), files / "whole.pt")
    line = error_line(capsys, ["layers", "--model", CALLABLE, "--weights", str(files / "whole.pt")])
    assert "holds pickled Python objects" in line and "--trust-pickle" in line
    assert main(["layers", "--model", CALLABLE, "--weights", str(files / "whole.pt"), "--trust-pickle"]) == 0


def test_pickled_model_spec_names_model(files, capsys):
    line = error_line(capsys, ["layers", "--model", str(files / "garbage.pth"), "--trust-pickle"])
    assert line.startswith(f"netdissect: error: --model {files / 'garbage.pth'} cannot be read as a checkpoint: ")


def test_caffe_weights(files, capsys):
    prototxt = files / "tiny.prototxt"
    prototxt.write_text(PROTOTXT)
    spec = f"caffe:{prototxt}"
    line = error_line(capsys, ["layers", "--model", spec, "--weights", str(files / "nope.caffemodel")])
    assert line == f"netdissect: error: --weights {files / 'nope.caffemodel'}: not found"
    line = error_line(capsys, ["layers", "--model", spec, "--weights", str(files / "garbage.pth")])
    assert line.startswith(f"netdissect: error: --weights {files / 'garbage.pth'} cannot be read as a binary Caffe")
    line = error_line(capsys, ["layers", "--model", f"caffe:{files / 'nope.prototxt'}"])
    assert line == f"netdissect: error: --model caffe:{files / 'nope.prototxt'}: not found"
    assert main(["layers", "--model", spec]) == 0  # the prototxt alone: random init


def test_onnx_takes_no_weights(files, capsys):
    """An ONNX file holds its weights: --weights is refused, not silently ignored."""
    (files / "model.onnx").write_bytes(b"\x08\x07")
    line = error_line(capsys, ["layers", "--model", str(files / "model.onnx"), "--weights", str(files / "w.pth")])
    assert line.endswith(
        f"--weights {files / 'w.pth'} does not apply to ONNX models: --model {files / 'model.onnx'} holds its weights"
    )


def test_segmenter_weights_are_named_as_such(files, capsys):
    (files / "images").mkdir()
    argv = ["annotate", "--segmenter", "torchvision:lraspp_mobilenet_v3_large", "--images", str(files / "images")]
    line = error_line(capsys, [*argv, "--segmenter-weights", str(files / "nope.pth"), "--out", str(files / "out")])
    assert line == f"netdissect: error: --segmenter-weights {files / 'nope.pth'}: not found"


def test_api_errors_name_the_role(files):
    with pytest.raises(ModelError, match=r"^--generator-weights .*notes\.pth cannot be read as a checkpoint: "):
        load_model(CALLABLE, weights=str(files / "notes.pth"), role="generator")
