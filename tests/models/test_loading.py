"""Model SPECs, checkpoints and their error messages."""

import sys
import urllib.error

import pytest
import torch
from torch import nn

from netdissect.errors import ModelError
from netdissect.models import demo_model, load_model, model_fingerprint
from netdissect.models.loading import load_checkpoint


def small():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_torchvision_random_init_and_checkpoint(tmp_path):
    loaded = load_model("torchvision:resnet18")
    assert loaded.module.fc.out_features == 1000 and not loaded.module.training
    state = torch.random.get_rng_state()
    other = load_model("torchvision:resnet18")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    # a seeded random init: the same weights in every process (torchrun ranks) and run
    assert model_fingerprint(loaded.module) == model_fingerprint(other.module)
    assert loaded.module.conv1.weight.std() > 0
    with torch.no_grad():
        loaded.module.fc.bias += 1
    assert model_fingerprint(loaded.module) != model_fingerprint(other.module)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in loaded.module.state_dict().items()}}, path)
    again = load_model("torchvision:resnet18", weights=str(path))
    assert model_fingerprint(again.module) == model_fingerprint(loaded.module)


def test_torchvision_unknown_name_and_weights():
    with pytest.raises(ModelError, match="unknown torchvision model 'resnet181'; did you mean resnet18"):
        load_model("torchvision:resnet181")
    with pytest.raises(ModelError, match="has no weights 'NOPE'; available: IMAGENET1K_V1"):
        load_model("torchvision:resnet18", weights="NOPE")


def test_torchvision_download_offline_names_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(
        ModelError,
        match=r"cannot download IMAGENET1K_V1 weights of resnet18 from https://\S+resnet18-\w+\.pth .*put it at .*checkpoints/resnet18-\w+\.pth",
    ):
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1")


def test_callable_spec_with_args(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\ndef make(width=4):\n    return nn.Sequential(nn.Conv2d(3, width, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    loaded = load_model("mymodels:make", model_args={"width": 6})
    assert loaded.module[0].out_channels == 6
    with pytest.raises(ModelError, match="has no attribute 'nothere'"):
        load_model("mymodels:nothere")
    with pytest.raises(ModelError, match="cannot import 'nomodule'"):
        load_model("nomodule:make")


def test_unknown_spec():
    with pytest.raises(ModelError, match="unknown model spec 'nonsense'"):
        load_model("nonsense")


def test_checkpoint_mismatch_names_keys(tmp_path):
    path = tmp_path / "bad.pt"
    state = small().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["2.bias"]
    state["0.weight"] = torch.zeros(5, 3, 3, 3)
    torch.save(state, path)
    with pytest.raises(
        ModelError, match=r"missing keys 2.bias; unexpected keys extra.weight; shape mismatch at 0.weight"
    ):
        load_checkpoint(small(), path)
    with pytest.raises(ModelError, match=r"^--weights .*missing\.pt: not found$"):
        load_checkpoint(small(), tmp_path / "missing.pt")


def test_pickled_model_needs_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(small(), path)
    with pytest.raises(ModelError, match="--trust-pickle"):
        load_model(str(path))
    assert isinstance(load_model(str(path), trust_pickle=True).module, nn.Sequential)


def test_demo_weights_load():
    model = demo_model()
    assert model.fc.out_features >= 2 and not model.training
    assert load_model("demo").module.conv4.out_channels == 128


def offline_torchvision(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)


def test_offline_hint_names_the_weights_option_of_what_is_loaded(monkeypatch, tmp_path):
    """A model's hint says --weights; a segmenter's --segmenter-weights; a generator's --generator-weights."""
    from netdissect import load_segmenter

    offline_torchvision(monkeypatch, tmp_path)
    with pytest.raises(ModelError) as info:
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1")
    assert str(info.value).endswith("or pass --weights PATH")
    with pytest.raises(ModelError) as info:
        load_segmenter("torchvision:lraspp_mobilenet_v3_large", weights="COCO_WITH_VOC_LABELS_V1")
    message = str(info.value)
    assert message.endswith("or pass --segmenter-weights PATH") and "\n" not in message
    with pytest.raises(ModelError) as info:
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1", role="generator")
    assert str(info.value).endswith("or pass --generator-weights PATH")
    with pytest.raises(ValueError, match="unknown role 'painter'"):
        load_model("demo", role="painter")


def test_segmenter_cli_offline_hint_names_segmenter_weights(monkeypatch, tmp_path, capsys):
    from netdissect.cli import main

    offline_torchvision(monkeypatch, tmp_path)
    (tmp_path / "images").mkdir()
    argv = ["annotate", "--segmenter", "torchvision:lraspp_mobilenet_v3_large", "--images", str(tmp_path / "images")]
    assert main([*argv, "--segmenter-weights", "COCO_WITH_VOC_LABELS_V1", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("netdissect: error: cannot download COCO_WITH_VOC_LABELS_V1 weights")
    assert err.count("\n") == 1 and "or pass --segmenter-weights PATH" in err and "--weights PATH" not in err
