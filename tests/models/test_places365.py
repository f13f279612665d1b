"""places365:<arch>: checkpoints in the CSAIL form, the download and its errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from netdissect.cli import main
from netdissect.errors import ModelError
from netdissect.models import load_model, model_fingerprint
from netdissect.models.places365 import ARCHS, build_places365, checkpoint_url


def csail_checkpoint(model: nn.Module, path) -> None:
    """Save like the Places365 project did: DataParallel prefixes, no BatchNorm counters."""
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": state, "best_prec1": 54.7}, path)


def test_checkpoint_with_module_prefixes_loads(tmp_path):
    model = build_places365("resnet18")
    path = tmp_path / "resnet18_places365.pth.tar"
    csail_checkpoint(model, path)
    loaded = load_model("places365:resnet18", weights=str(path))
    assert loaded.spec == "places365:resnet18" and not loaded.module.training
    assert loaded.module.fc.out_features == 365
    assert model_fingerprint(loaded.module) == model_fingerprint(model)
    assert loaded.preprocess.mean == (0.485, 0.456, 0.406) and loaded.preprocess.pixel_scale == 1.0


def test_wideresnet18_is_resnet18_without_maxpool(tmp_path):
    model = build_places365("wideresnet18").eval()
    assert isinstance(model.maxpool, nn.Identity) and model.fc.out_features == 365
    shapes = {}
    model.layer4.register_forward_hook(lambda m, i, o: shapes.update(layer4=o.shape))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert shapes["layer4"] == (1, 512, 14, 14)  # the "wide" 14x14 last conv map
    path = tmp_path / "wrn.pth.tar"
    csail_checkpoint(model, path)
    assert model_fingerprint(load_model("places365:wideresnet18", weights=str(path)).module) == model_fingerprint(model)


def test_old_densenet_keys_are_renamed(tmp_path):
    model = build_places365("densenet161")
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        for new, old in (
            (".norm1.", ".norm.1."),
            (".norm2.", ".norm.2."),
            (".conv1.", ".conv.1."),
            (".conv2.", ".conv.2."),
        ):
            if "denselayer" in key:
                key = key.replace(new, old)
        state[f"module.{key}"] = value
    assert any(".norm.1." in k for k in state)
    path = tmp_path / "densenet161_places365.pth.tar"
    torch.save({"state_dict": state}, path)
    assert model_fingerprint(load_model("places365:densenet161", weights=str(path)).module) == model_fingerprint(model)


def test_whole_model_pickle_needs_trust(tmp_path):
    model = build_places365("alexnet")
    path = tmp_path / "whole_alexnet_places365_python36.pth.tar"
    torch.save(model, path)
    with pytest.raises(ModelError, match="--trust-pickle"):
        load_model("places365:alexnet", weights=str(path))
    loaded = load_model("places365:alexnet", weights=str(path), trust_pickle=True)
    assert model_fingerprint(loaded.module) == model_fingerprint(model)


def test_unknown_arch_and_wrong_weights(tmp_path):
    with pytest.raises(
        ModelError,
        match=r"unknown places365 architecture 'resnet152'; available: resnet18, resnet50, alexnet, densenet161, wideresnet18",
    ):
        load_model("places365:resnet152")
    path = tmp_path / "r18.pth.tar"
    csail_checkpoint(build_places365("resnet18"), path)
    with pytest.raises(ModelError, match=r"do not fit the model: missing keys features\.0\.weight"):
        load_model("places365:alexnet", weights=str(path))
    with pytest.raises(ModelError, match=r"--weights .*none\.pth: not found"):
        load_model("places365:resnet18", weights=str(tmp_path / "none.pth"))


def test_download_goes_to_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = build_places365("resnet18")
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        csail_checkpoint(model, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    loaded = load_model("places365:resnet18")
    assert calls == ["http://places2.csail.mit.edu/models_places365/resnet18_places365.pth.tar"]
    assert loaded.weights == str(tmp_path / "hub" / "checkpoints" / "resnet18_places365.pth.tar")
    assert model_fingerprint(loaded.module) == model_fingerprint(model)
    load_model("places365:resnet18")
    assert len(calls) == 1  # cached


def test_offline_error_names_file_and_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = tmp_path / "hub" / "checkpoints" / "resnet50_places365.pth.tar"
    with pytest.raises(ModelError) as info:
        load_model("places365:resnet50")
    message = str(info.value)
    assert "\n" not in message
    assert checkpoint_url("resnet50") in message and f"put it at {target}" in message and "--weights PATH" in message
    assert main(["layers", "--model", "places365:resnet50"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resnet50_places365.pth.tar" in err


def test_every_arch_builds_with_365_classes():
    for arch in ARCHS:
        model = build_places365(arch).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 365)
