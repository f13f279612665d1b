"""Layer capture on dotted names: one forward pass, stopped after the deepest requested layer."""

import pytest
import torch
from torch import nn

from netdissect.capture.hooks import LayerCapture, as_feature_map, layer_shapes
from netdissect.errors import ModelError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 5, 1)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 2)
        self.fc_calls = 0

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        self.fc_calls += 1
        return self.fc(x)


def test_captures_nested_layers_in_one_pass_and_stops_early():
    net = Net().eval()
    x = torch.randn(2, 3, 8, 8)
    with LayerCapture(net, ["features.2.0", "features.0"]) as cap:
        out = cap(x)
    assert list(out) == ["features.2.0", "features.0"]
    assert torch.allclose(out["features.0"], net.features[0](x))
    assert out["features.2.0"].shape == (2, 5, 8, 8)
    assert net.fc_calls == 0  # stopped after the deepest requested layer
    assert not net.features[0]._forward_hooks  # hooks removed on exit


def test_unknown_layer_suggests_close_names():
    with pytest.raises(ModelError, match=r"unknown layer 'feature.0'; did you mean features.0"):
        LayerCapture(Net(), ["feature.0"])


def test_layer_not_called():
    with LayerCapture(Net(), ["features.0", "fc"]) as cap:
        cap.model.forward = lambda x: cap.model.features(x)  # fc never runs
        with pytest.raises(ModelError, match="'fc' was not called"):
            cap(torch.randn(1, 3, 8, 8))


def test_feature_map_check():
    assert as_feature_map("a", (torch.zeros(1, 2, 3, 3), None)).shape == (1, 2, 3, 3)
    with pytest.raises(ModelError, match=r"layer 'fc' output is not a \(B, C, H, W\) map: got \(1, 2\)"):
        as_feature_map("fc", torch.zeros(1, 2))


def test_layer_shapes_lists_every_module():
    rows = {name: (kind, shape) for name, kind, shape in layer_shapes(Net().eval(), torch.zeros(1, 3, 8, 8))}
    assert rows["features.2.0"] == ("Conv2d", (1, 5, 8, 8))
    assert rows["fc"] == ("Linear", (1, 2))
    with pytest.raises(ModelError, match="dummy input"):
        layer_shapes(Net(), torch.zeros(1, 2, 8, 8))
