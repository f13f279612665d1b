"""Token layers: (B, N, C) sequences and channels-last maps become (B, C, h, w) maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from netdissect import DissectConfig, dissect
from netdissect.capture.hooks import as_feature_map
from netdissect.capture.tokens import looks_channels_last, parse_tokens, token_grid, tokens_to_map
from netdissect.cli import main
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.errors import ModelError, OptionError

FAST = dict(workers=0, progress=False, device="cpu")


def numbered(prefix: int, h: int, w: int, channels: int = 2, batch: int = 2) -> torch.Tensor:
    """Tokens whose value tells what they are: -1 for leading tokens, the patch index otherwise."""
    x = torch.full((batch, prefix + h * w, channels), -1.0)
    x[:, prefix:, :] = torch.arange(h * w, dtype=torch.float32).view(1, -1, 1)
    x[:, :, 1] *= 10  # channel 1 = 10 x channel 0
    return x


def test_class_token_dropped_and_patches_row_major():
    x = numbered(1, 3, 3)
    m = tokens_to_map("blk", x, "auto", (48, 48), batch=2)
    assert m.shape == (2, 2, 3, 3) and m.is_contiguous()
    assert m[0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert m[1, 1].tolist() == [[0, 10, 20], [30, 40, 50], [60, 70, 80]]


def test_registers_and_no_class_token():
    assert token_grid(197, (224, 224)) == (1, 14, 14)
    assert token_grid(261, (224, 224)) == (5, 16, 16)  # class + 4 registers
    assert token_grid(196, (224, 224)) == (0, 14, 14)  # global-pool ViT: no class token
    m = tokens_to_map("blk", numbered(5, 4, 4), "auto", (64, 64))
    assert m[0, 0, 0].tolist() == [0, 1, 2, 3] and (m >= 0).all()
    m = tokens_to_map("blk", numbered(5, 4, 4), 5, (64, 64))
    assert m[0, 0, 3].tolist() == [12, 13, 14, 15]


def test_non_square_grid_follows_input_aspect():
    # 1 + 14x16 = 225 tokens would read as 15x15 without the input's shape
    assert token_grid(225, (224, 256)) == (1, 14, 16)
    assert token_grid(225, None) == (0, 15, 15)
    m = tokens_to_map("blk", numbered(1, 2, 3), "auto", (32, 48))
    assert m.shape == (2, 2, 2, 3) and m[0, 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    # floor rounding of the patch grid: 224x250 with 16-pixel patches -> 14x15
    assert token_grid(1 + 14 * 15, (224, 250)) == (1, 14, 15)


def test_explicit_count_and_errors_name_layer_and_shape():
    with pytest.raises(
        ModelError,
        match=r"layer 'blk' output \(2, 19, 2\): its 19 tokens form no patch grid for a 64x64 input \(tried dropping 2 leading token",
    ):
        tokens_to_map("blk", torch.zeros(2, 19, 2), 2, (64, 64))
    with pytest.raises(ModelError, match=r"layer 'blk' output \(2, 23, 2\).*no patch grid.*--tokens") as info:
        tokens_to_map("blk", torch.zeros(2, 23, 2), 0, (64, 64))
    assert "\n" not in str(info.value)
    with pytest.raises(
        ModelError,
        match=r"layer 'seq' output \(17, 2, 8\) is not a batch-first .* batch of 2 \(it looks sequence-first",
    ):
        tokens_to_map("seq", torch.zeros(17, 2, 8), "auto", (64, 64), batch=2)
    with pytest.raises(
        ModelError,
        match=r"layer 'blk' output is not a \(B, C, H, W\) map: got \(2, 17, 8\) \(a token sequence: --tokens off",
    ):
        as_feature_map("blk", torch.zeros(2, 17, 8), tokens="off")
    with pytest.raises(
        ModelError,
        match=r"layer 'fc' output is not a \(B, C, H, W\) map: got \(2, 8\); `netdissect describe` describes",
    ):
        as_feature_map("fc", torch.zeros(2, 8))


def test_parse_tokens():
    assert parse_tokens("auto") == "auto" and parse_tokens("OFF") == "off"
    assert parse_tokens("5") == 5 and parse_tokens(0) == 0
    for bad in ("-1", "two", -2, True, "1.5"):
        with pytest.raises(OptionError, match="--tokens must be auto, off or a number"):
            parse_tokens(bad)
    with pytest.raises(OptionError, match="--tokens"):
        DissectConfig(tokens="some")
    assert DissectConfig(tokens="3").tokens == 3


def test_channels_last():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # (B, H, W, C)
    m = as_feature_map("stage", x, channels_last=True)
    assert m.shape == (2, 5, 3, 4) and torch.equal(m[1, 2], x[1, :, :, 2])
    assert looks_channels_last((1, 56, 56, 96), (224, 224))
    assert not looks_channels_last((1, 96, 56, 56), (224, 224))
    assert not looks_channels_last((1, 8, 8, 8), (64, 64))  # ambiguous: taken as channels-first


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    ).eval()


class PatchMaps(nn.Module):
    """The ViT's first encoder block, read out as (B, C, 4, 4) maps the hand-written way."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.out = nn.Identity()

    def forward(self, x):
        captured = {}
        handle = self.vit.encoder.layers.encoder_layer_0.register_forward_hook(
            lambda m, i, o: captured.setdefault("o", o)
        )
        try:
            self.vit(x)
        finally:
            handle.remove()
        tokens = captured["o"][:, 1:, :]  # drop the class token
        b, _n, c = tokens.shape
        return self.out(tokens.transpose(1, 2).reshape(b, c, 4, 4))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", n=16, size=64, seed=0)


def test_vit_encoder_blocks_dissect(synthetic, tmp_path):
    vit = tiny_vit()
    layers = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    result = dissect(vit, synthetic, layers, out=tmp_path / "run", **FAST)
    for name in layers:
        layer = result.layers[name]
        assert layer.thresholds.shape == (32,)
        assert layer.top_maps.shape[-2:] == (4, 4)  # 4x4 patches of a 64x64 image
    reference = dissect(PatchMaps(tiny_vit()), synthetic, ["out"], **FAST).layers["out"]
    ours = result.layers["encoder.layers.encoder_layer_0"]
    np.testing.assert_array_equal(ours.inter, reference.inter)
    np.testing.assert_array_equal(ours.act, reference.act)
    np.testing.assert_array_equal(ours.thresholds, reference.thresholds)
    units = json.loads((tmp_path / "run" / "encoder.layers.encoder_layer_0" / "units.json").read_text())
    assert units["metadata"]["options"]["tokens"] == "auto"


def test_vit_with_explicit_token_count_and_off(synthetic):
    vit = tiny_vit()
    layer = "encoder.layers.encoder_layer_0"
    auto = dissect(vit, synthetic, [layer], **FAST).layers[layer]
    one = dissect(vit, synthetic, [layer], tokens=1, **FAST).layers[layer]
    np.testing.assert_array_equal(auto.inter, one.inter)
    with pytest.raises(
        ModelError,
        match=r"layer 'encoder.layers.encoder_layer_0' output \(\d+, 17, 32\): its 17 tokens form no patch grid for a 64x64 input \(tried dropping 2 leading",
    ):
        dissect(vit, synthetic, [layer], tokens=2, **FAST)
    with pytest.raises(ModelError, match="--tokens off"):
        dissect(vit, synthetic, [layer], tokens="off", **FAST)


def test_cli_layers_marks_token_layers(capsys, tmp_path, monkeypatch):
    (tmp_path / "vitmodels.py").write_text(
        "import torchvision\n"
        "def make():\n"
        "    return torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=2,\n"
        "        num_heads=2, hidden_dim=32, mlp_dim=64)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["layers", "--model", "vitmodels:make", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("encoder.layers.encoder_layer_0 "))
    assert "[1, 17, 32]" in line and "yes (tokens: 32 units, 4x4, drop 1)" in line
    heads = next(l for l in out.splitlines() if l.startswith("heads "))
    assert "yes" not in heads
    assert main(["layers", "--model", "vitmodels:make", "--input-size", "64", "--tokens", "off"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("encoder.layers.encoder_layer_0 "))
    assert "yes" not in line
    rc = main(["layers", "--model", "vitmodels:make", "--tokens", "many"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--tokens must be auto, off or a number" in err
