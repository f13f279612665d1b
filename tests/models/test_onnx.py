"""ONNX models: files exported several ways convert exactly and dissect like the original."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx", reason="ONNX support needs the optional packages onnx and onnx2torch (extra [onnx])")
pytest.importorskip("onnx2torch", reason="ONNX support needs the optional packages onnx and onnx2torch (extra [onnx])")

import onnx
from onnx import TensorProto, helper

from netdissect import dissect
from netdissect.cli import main
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.errors import ModelError
from netdissect.models import load_model
from netdissect.models.onnx import load_onnx

FAST = dict(workers=0, progress=False, device="cpu")


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval vs train mode shows
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
    return model.eval()


def export(model: nn.Module, path, size: int = 64, **kwargs) -> str:
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kwargs.get("dynamo"):
            pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
            torch.onnx.export(
                model, (x,), str(path), dynamo=True, verbose=False, dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
            )
        else:
            torch.onnx.export(
                model,
                (x,),
                str(path),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}},
                **kwargs,
            )
    return str(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", n=16, size=64, seed=0)


def assert_same_counts(a, b):
    np.testing.assert_array_equal(a.inter, b.inter)
    np.testing.assert_array_equal(a.act, b.act)
    np.testing.assert_array_equal(a.truth, b.truth)
    np.testing.assert_allclose(a.thresholds, b.thresholds, rtol=0, atol=1e-5)


EXPORTS = {
    "legacy": dict(dynamo=False, do_constant_folding=False),
    "legacy-folded": dict(dynamo=False, do_constant_folding=True),
    "dynamo": dict(dynamo=True),
}


@pytest.mark.parametrize("how", list(EXPORTS))
def test_small_cnn_converts_exactly_and_dissects_the_same(tmp_path, synthetic, how):
    model = small_cnn()
    path = export(model, tmp_path / "small.onnx", **EXPORTS[how])
    loaded = load_model(path)
    assert loaded.spec == path and not loaded.module.training
    assert loaded.preprocess.mean == (0.485, 0.456, 0.406) and not loaded.preprocess.bgr
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(x), rtol=0, atol=1e-5)
    names = [n for n, _ in loaded.module.named_modules() if n]
    relu = [n for n in names if "relu" in n.lower()][-1]  # the second ReLU, whatever the exporter calls it
    onnx_result = dissect(loaded, synthetic, [relu], **FAST)
    torch_result = dissect(model, synthetic, ["relu2"], **FAST)
    assert_same_counts(onnx_result.layers[relu], torch_result.layers["relu2"])


@pytest.mark.parametrize("folding", [False, True])
def test_resnet18_converts_exactly_and_dissects_the_same(tmp_path, synthetic, folding):
    import torchvision

    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=10).eval()
    path = export(model, tmp_path / "r18.onnx", dynamo=False, do_constant_folding=folding)
    module = load_onnx(path).module
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=0, atol=1e-5)
    layer = "layer3/layer3/1/relu_1/Relu"  # the output of torchvision's layer3
    assert layer in dict(module.named_modules())
    onnx_result = dissect(module, synthetic, [layer], **FAST)
    torch_result = dissect(model, synthetic, ["layer3"], **FAST)
    assert_same_counts(onnx_result.layers[layer], torch_result.layers["layer3"])


def test_cli_layers_and_dissect(tmp_path, synthetic, capsys):
    path = export(small_cnn(), tmp_path / "small.onnx", dynamo=False)
    assert main(["layers", "--model", path, "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "relu2/Relu" in out and "[1, 6, 16, 16]" in out
    argv = [
        "dissect",
        "--model",
        path,
        "--layers",
        "relu2/Relu",
        "--dataset",
        str(synthetic),
        "--out",
        str(tmp_path / "run"),
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
        "--no-report",
    ]
    assert main(argv) == 0
    assert (tmp_path / "run" / "relu2-Relu" / "tally.csv").is_file()


def test_missing_unreadable_and_unconvertible_files(tmp_path):
    with pytest.raises(ModelError, match=r"--model .*nowhere\.onnx: ONNX file not found"):
        load_model(str(tmp_path / "nowhere.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file at all\xff" * 10)
    with pytest.raises(ModelError, match=r"cannot read ONNX file .*junk\.onnx") as info:
        load_model(str(junk))
    assert "\n" not in str(info.value)
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="example.custom")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    )
    odd = tmp_path / "odd.onnx"
    onnx.save(model, str(odd))
    with pytest.raises(ModelError, match=r"cannot convert ONNX file .*odd\.onnx with onnx2torch: .*Frobnicate") as info:
        load_model(str(odd))
    assert "\n" not in str(info.value)
