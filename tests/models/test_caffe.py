"""Caffe source: prototxt + caffemodel written here through protobuf, converted and checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from google.protobuf import text_format
from torch import nn

from netdissect.errors import ModelError
from netdissect.models import LoadedModel, load_model
from netdissect.models.caffe import CAFFE_MEAN_BGR, load_caffe
from netdissect.models.caffe_layers import CaffeLRN, CaffePooling, pool_output_size
from netdissect.models.caffe_schema import NetParameter, parse_prototxt

SIZE = 64


# ---------------------------------------------------------------------------------------------
# Writing Caffe files


def add_layer(net, name, kind, bottoms, tops, **params):
    layer = net.layer.add(name=name, type=kind)
    layer.bottom.extend(bottoms)
    layer.top.extend(tops)
    for field_name, values in params.items():
        message = getattr(layer, field_name)
        for key, value in values.items():
            target = getattr(message, key)
            if isinstance(value, (list, tuple)):
                target.extend(value)
            else:
                setattr(message, key, value)
    return layer


def set_blobs(layer, *arrays, legacy=False):
    for array in arrays:
        array = np.asarray(array, dtype=np.float32)
        blob = layer.blobs.add()
        if legacy:
            dims = (1,) * (4 - array.ndim) + array.shape
            blob.num, blob.channels, blob.height, blob.width = dims
        else:
            blob.shape.dim.extend(array.shape)
        blob.data.extend(array.reshape(-1).tolist())


def write_net(tmp_path, net, name="net"):
    """Write ``net`` as a deploy prototxt (no blobs) and a caffemodel (with blobs)."""
    deploy = NetParameter()
    deploy.CopyFrom(net)
    for layer in deploy.layer:
        del layer.blobs[:]
    prototxt = tmp_path / f"{name}.prototxt"
    prototxt.write_text(text_format.MessageToString(deploy))
    weights = tmp_path / f"{name}.caffemodel"
    weights.write_bytes(net.SerializeToString())
    return prototxt, weights


def rand(*shape):
    return torch.randn(*shape)


def small_net_weights(seed=0):
    torch.manual_seed(seed)
    return {
        "conv1": (rand(8, 3, 3, 3) * 0.3, rand(8) * 0.1),
        "conv2": (rand(8, 4, 3, 3) * 0.3, rand(8) * 0.1),
        "conv3": (rand(8, 8, 3, 3) * 0.2, rand(8) * 0.1),
        "bn": (rand(8) * 0.1, torch.rand(8) + 0.5, 2.0),  # mean, var, Caffe's scale factor
        "scale": (torch.rand(8) + 0.5, rand(8) * 0.1),
        "conv4": (rand(4, 8, 1, 1) * 0.3, rand(4) * 0.1),
        "fc": (rand(5, 12) * 0.3, rand(5) * 0.1),
    }


def small_net(weights, size=SIZE):
    """conv (bias) + in-place ReLU, LRN, ceil max pool, grouped conv + leaky ReLU, dilated conv,
    Eltwise SUM with coeffs, BatchNorm + Scale + ReLU in place, ceil AVE pool with pad, Split,
    1x1 conv, Concat, global AVE pool, Flatten, InnerProduct, Dropout, Softmax."""
    net = NetParameter(name="small")
    net.input.append("data")
    net.input_dim.extend([1, 3, size, size])
    w = {k: [np.asarray(t) if isinstance(t, torch.Tensor) else t for t in v] for k, v in weights.items()}
    conv = lambda **kw: {"convolution_param": kw}  # noqa: E731
    set_blobs(
        add_layer(
            net, "conv1", "Convolution", ["data"], ["conv1"], **conv(num_output=8, kernel_size=[3], stride=[2], pad=[1])
        ),
        *w["conv1"],
    )
    add_layer(net, "relu1", "ReLU", ["conv1"], ["conv1"])
    add_layer(
        net, "norm1", "LRN", ["conv1"], ["norm1"], lrn_param={"local_size": 5, "alpha": 0.5, "beta": 0.75, "k": 2.0}
    )
    add_layer(net, "pool1", "Pooling", ["norm1"], ["pool1"], pooling_param={"pool": 0, "kernel_size": 3, "stride": 2})
    set_blobs(
        add_layer(
            net,
            "conv2",
            "Convolution",
            ["pool1"],
            ["conv2"],
            **conv(num_output=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1, group=2),
        ),
        *w["conv2"],
    )
    add_layer(net, "relu2", "ReLU", ["conv2"], ["conv2"], relu_param={"negative_slope": 0.1})
    set_blobs(
        add_layer(
            net,
            "conv3",
            "Convolution",
            ["conv2"],
            ["conv3"],
            **conv(num_output=8, kernel_size=[3], pad=[2], dilation=[2]),
        ),
        *w["conv3"],
    )
    add_layer(net, "res", "Eltwise", ["conv2", "conv3"], ["res"], eltwise_param={"operation": 1, "coeff": [1.0, -0.5]})
    mean, var, factor = w["bn"]
    set_blobs(
        add_layer(net, "bn", "BatchNorm", ["res"], ["res"], batch_norm_param={"use_global_stats": True}),
        mean * factor,
        var * factor,
        [factor],
    )
    set_blobs(add_layer(net, "scale", "Scale", ["res"], ["res"], scale_param={"bias_term": True}), *w["scale"])
    add_layer(net, "relu3", "ReLU", ["res"], ["res"])
    add_layer(
        net, "pool2", "Pooling", ["res"], ["pool2"], pooling_param={"pool": 1, "kernel_size": 3, "stride": 2, "pad": 1}
    )
    add_layer(net, "split", "Split", ["pool2"], ["pool2_a", "pool2_b"])
    set_blobs(
        add_layer(net, "conv4", "Convolution", ["pool2_b"], ["conv4"], **conv(num_output=4, kernel_size=[1])),
        *w["conv4"],
    )
    add_layer(net, "cat", "Concat", ["pool2_a", "conv4"], ["cat"], concat_param={"axis": 1})
    add_layer(net, "gpool", "Pooling", ["cat"], ["gpool"], pooling_param={"pool": 1, "global_pooling": True})
    add_layer(net, "flat", "Flatten", ["gpool"], ["flat"])
    set_blobs(add_layer(net, "fc", "InnerProduct", ["flat"], ["fc"], inner_product_param={"num_output": 5}), *w["fc"])
    add_layer(net, "drop", "Dropout", ["fc"], ["fc"], dropout_param={"dropout_ratio": 0.5})
    add_layer(net, "prob", "Softmax", ["fc"], ["prob"])
    return net


class Reference(nn.Module):
    """The small net written by hand in PyTorch, with modules named like the Caffe blobs."""

    def __init__(self, weights):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.lrn = nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=2.0)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm2d(8, eps=1e-5, affine=False)
        self.pool2 = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True)
        self.conv4 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(12, 5)
        # Taps named like the Caffe blobs, for hooks.
        self.relu1 = nn.ReLU()
        self.relu2 = nn.LeakyReLU(0.1)
        self.res = nn.ReLU()
        self.cat = nn.Identity()
        with torch.no_grad():
            for name in ("conv1", "conv2", "conv3", "conv4", "fc"):
                getattr(self, name).weight.copy_(weights[name][0])
                getattr(self, name).bias.copy_(weights[name][1])
            self.bn.running_mean.copy_(weights["bn"][0])
            self.bn.running_var.copy_(weights["bn"][1])
        self.register_buffer("gamma", weights["scale"][0].clone())
        self.register_buffer("beta", weights["scale"][1].clone())

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.pool1(self.lrn(x))
        c2 = self.relu2(self.conv2(x))
        c3 = self.conv3(c2)
        r = c2 - 0.5 * c3
        r = self.bn(r) * self.gamma[:, None, None] + self.beta[:, None, None]
        r = self.res(r)
        p = self.pool2(r)
        c = self.cat(torch.cat([p, self.conv4(p)], 1))
        return torch.softmax(self.fc(c.mean((2, 3))), 1)


@pytest.fixture
def caffe_files(tmp_path):
    weights = small_net_weights()
    prototxt, caffemodel = write_net(tmp_path, small_net(weights))
    return prototxt, caffemodel, weights


# ---------------------------------------------------------------------------------------------
# Whole net


def test_small_net_matches_pytorch(caffe_files):
    prototxt, caffemodel, weights = caffe_files
    loaded = load_caffe(prototxt, caffemodel)
    ref = Reference(weights).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE) * 50
    with torch.no_grad():
        out = loaded.module(x)
        expected = ref(x)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # Intermediate blobs too, through hooks on the Caffe names.
    taps = {"conv1": ref.relu1, "conv2": ref.relu2, "res": ref.res, "cat": ref.cat}
    got, want = {}, {}
    modules = dict(loaded.module.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o)) for n in taps]
    handles += [m.register_forward_hook(lambda mod, i, o, n=n: want.__setitem__(n, o)) for n, m in taps.items()]
    with torch.no_grad():
        loaded.module(x)
        ref(x)
    for h in handles:
        h.remove()
    for name in taps:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5)
    assert got["cat"].shape == (2, 12, 9, 9)  # 64 -> 32 -> ceil pool 16 -> ceil AVE pool 9


def test_names_blobs_after_in_place_layers(caffe_files):
    prototxt, caffemodel, _ = caffe_files
    module = load_caffe(prototxt, caffemodel).module
    names = dict(module.named_modules())
    for blob in ("data", "conv1", "norm1", "pool1", "conv2", "res", "pool2_a", "pool2_b", "cat", "fc", "prob"):
        assert blob in names, blob
    assert "layers.conv1" in names and "layers.relu1" in names and "layers.bn" in names
    assert module.output_names == ["prob"]
    seen = {}
    hooks = [
        names[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in ("conv1", "layers.conv1")
    ]
    torch.manual_seed(0)
    with torch.no_grad():
        module(torch.randn(1, 3, SIZE, SIZE) * 50)
    for h in hooks:
        h.remove()
    assert (seen["layers.conv1"] < 0).any()  # the convolution's raw output
    assert (seen["conv1"] >= 0).all()  # blob conv1 after the in-place relu1
    torch.testing.assert_close(seen["conv1"], F.relu(seen["layers.conv1"]))


def test_load_model_spec_dispatch_and_preprocess(caffe_files):
    prototxt, caffemodel, weights = caffe_files
    loaded = load_model(f"caffe:{prototxt}", weights=str(caffemodel))
    assert isinstance(loaded, LoadedModel) and not loaded.module.training
    pre = loaded.preprocess
    assert pre.bgr and pre.pixel_scale == 255 and pre.mean == CAFFE_MEAN_BGR and pre.std == (1.0, 1.0, 1.0)
    assert pre.input_size == (SIZE, SIZE)  # the net has an InnerProduct layer: its declared size
    assert loaded.module.input_shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(loaded.module.layers.conv1.weight, weights["conv1"][0])


def test_fully_convolutional_net_keeps_dataset_size(tmp_path):
    net = NetParameter()
    layer = add_layer(net, "input", "Input", [], ["data"])
    layer.input_param.shape.add().dim.extend([1, 3, 227, 227])
    set_blobs(
        add_layer(
            net,
            "conv1",
            "Convolution",
            ["data"],
            ["conv1"],
            convolution_param={"num_output": 2, "kernel_size": [3], "bias_term": False},
        ),
        np.ones((2, 3, 3, 3)),
    )
    prototxt, caffemodel = write_net(tmp_path, net)
    loaded = load_caffe(prototxt, caffemodel)
    assert loaded.preprocess.input_size is None and loaded.module.input_shape == (1, 3, 227, 227)
    out = loaded.module(torch.ones(1, 3, 10, 12))
    assert out.shape == (1, 2, 8, 10) and torch.all(out == 27)


def test_dissect_caffe_equals_pytorch(caffe_files, tmp_path):
    from netdissect import dissect
    from netdissect.data.synthetic import make_synthetic_dataset

    prototxt, caffemodel, weights = caffe_files
    data = make_synthetic_dataset(tmp_path / "synth", n=16, size=SIZE, seed=0)
    caffe = load_caffe(prototxt, caffemodel)
    ref = LoadedModel(Reference(weights).eval(), caffe.preprocess, "reference")
    options = dict(workers=0, progress=False, device="cpu")
    layers = {"conv1": "relu1", "conv2": "relu2", "res": "res"}
    got = dissect(caffe, data, list(layers), **options)
    want = dissect(ref, data, list(layers.values()), **options)
    for caffe_name, ref_name in layers.items():
        a, b = got[caffe_name], want[ref_name]
        assert a.inter.sum() > 0
        np.testing.assert_array_equal(a.truth, b.truth)
        np.testing.assert_array_equal(a.act, b.act)
        np.testing.assert_array_equal(a.inter, b.inter)


# ---------------------------------------------------------------------------------------------
# Layer semantics against hand-computed values


def test_ceil_pooling_output_size():
    assert pool_output_size(6, 3, 2, 0) == 3  # ceil(1.5) + 1; floor rounding would give 2
    assert pool_output_size(6, 3, 2, 0, ceil=False) == 2
    assert pool_output_size(4, 3, 2, 1) == 3  # ceil(1.5) + 1, last window starts at 3 < 4 + 1
    assert pool_output_size(5, 2, 2, 1) == 3  # ceil(2.5) + 1 = 4, but window 3 would start at 6 >= 5 + 1
    assert pool_output_size(227, 3, 2, 0) == 113 and pool_output_size(55, 3, 2, 0) == 27  # AlexNet


def test_ceil_max_pool_values():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = CaffePooling("MAX", (3, 3), (2, 2), (0, 0))(x)
    assert out.tolist() == [[[[10.0, 11.0], [14.0, 15.0]]]]


def test_ave_pool_divisor_counts_padding_but_not_the_ceil_overhang():
    out = CaffePooling("AVE", (3, 3), (2, 2), (1, 1))(torch.ones(1, 1, 4, 4))
    # windows start at -1, 1, 3 and end at min(start + 3, 4 + 1) = 2, 4, 5: areas 3, 3, 2 per axis;
    # pixels inside the image per axis: 2, 3, 1.
    rows = torch.tensor([2 / 3, 3 / 3, 1 / 2])
    torch.testing.assert_close(out[0, 0], rows[:, None] * rows[None, :])
    torch.testing.assert_close(out, F.avg_pool2d(torch.ones(1, 1, 4, 4), 3, 2, 1, ceil_mode=True))


def test_global_pooling():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert CaffePooling("AVE", (3, 4), (1, 1), (0, 0), global_pooling=True)(x).item() == 5.5
    assert CaffePooling("MAX", (3, 4), (1, 1), (0, 0), global_pooling=True)(x).item() == 11.0


def test_lrn_hand_computed():
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    # n = 3, alpha / n = 1, beta = 1, k = 1: scale = 1 + sum of squares over channels c-1..c+1
    out = CaffeLRN(3, alpha=3.0, beta=1.0, k=1.0)(x).flatten()
    torch.testing.assert_close(out, torch.tensor([1 / 6, 2 / 15, 3 / 14]))
    # torch's LocalResponseNorm also divides alpha by n: same values for odd n
    torch.testing.assert_close(nn.LocalResponseNorm(3, alpha=3.0, beta=1.0, k=1.0)(x).flatten(), out)
    # even n = 2: Caffe's window is c..c+1
    out = CaffeLRN(2, alpha=2.0, beta=1.0, k=1.0)(x).flatten()
    torch.testing.assert_close(out, torch.tensor([1 / 6, 2 / 14, 3 / 10]))
    # beta = 0.75, k = 2 on one channel: x / (2 + alpha/n x^2)^0.75
    y = CaffeLRN(5, alpha=1e-4, beta=0.75, k=2.0)(torch.full((1, 1, 1, 1), 10.0))
    torch.testing.assert_close(y.flatten(), torch.tensor([10 / (2 + 1e-4 / 5 * 100) ** 0.75]))


def test_lrn_within_channel():
    x = torch.ones(1, 1, 3, 3)
    out = CaffeLRN(3, alpha=9.0, beta=1.0, k=1.0, across=False)(x)
    # centre: mean of 9 ones = 1 -> 1 / (1 + 9); corner: 4 ones / 9 -> 1 / (1 + 4)
    assert out[0, 0, 1, 1].item() == pytest.approx(0.1) and out[0, 0, 0, 0].item() == pytest.approx(0.2)


def test_grouped_conv_hand_computed(tmp_path):
    net = NetParameter()
    net.input.append("data")
    shape = net.input_shape.add()
    shape.dim.extend([1, 4, 1, 1])
    layer = add_layer(
        net,
        "gconv",
        "Convolution",
        ["data"],
        ["gconv"],
        convolution_param={"num_output": 2, "kernel_size": [1], "group": 2},
    )
    set_blobs(layer, np.array([1, 10, 100, 1000], np.float32).reshape(2, 2, 1, 1), [0.5, -0.5])
    loaded = load_caffe(*write_net(tmp_path, net))
    out = loaded.module(torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1))
    assert out.flatten().tolist() == [21.5, 4299.5]
    assert loaded.preprocess.input_size is None


def test_eltwise_prod_max_and_scale_two_inputs(tmp_path):
    net = NetParameter()
    net.input.append("data")
    net.input_dim.extend([1, 2, 1, 1])
    add_layer(net, "split", "Split", ["data"], ["a", "b"])
    add_layer(net, "prod", "Eltwise", ["a", "b"], ["prod"], eltwise_param={"operation": 0})
    add_layer(net, "max", "Eltwise", ["prod", "a"], ["max"], eltwise_param={"operation": 2})
    add_layer(net, "scale", "Scale", ["max", "a"], ["s"], scale_param={"axis": 0})
    add_layer(net, "tanh", "TanH", ["a"], ["t"])
    add_layer(net, "silence", "Silence", ["t"], [])
    module = load_caffe(*write_net(tmp_path, net)).module
    out = module(torch.tensor([0.5, 3.0]).reshape(1, 2, 1, 1))
    assert out.flatten().tolist() == [0.25, 27.0]  # max(a * a, a) * a
    assert module.output_names == ["s"]


def test_legacy_blob_shapes_and_v1_format(tmp_path):
    text = """
    name: "old"
    input: "data"
    input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1
    layers { name: "fc" type: INNER_PRODUCT bottom: "data" top: "fc"
             blobs_lr: 1 blobs_lr: 2 inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
    layers { name: "relu" type: RELU bottom: "fc" top: "fc" }
    """
    prototxt = tmp_path / "old.prototxt"
    prototxt.write_text(text)
    net = parse_prototxt(text)
    set_blobs(net.layers[0], np.arange(6).reshape(3, 2), [1, -100, 0], legacy=True)  # (1,1,3,2), (1,1,1,3)
    caffemodel = tmp_path / "old.caffemodel"
    caffemodel.write_bytes(net.SerializeToString())
    loaded = load_caffe(prototxt, caffemodel)
    out = loaded.module(torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1))
    assert out.tolist() == [[3.0, 0.0, 14.0]]  # relu([0+2+1, 2+6-100, 4+10])
    assert "fc" in dict(loaded.module.named_modules())


def test_dots_in_names_become_underscores(tmp_path):
    net = NetParameter()
    net.input.append("data")
    net.input_dim.extend([1, 1, 2, 2])
    add_layer(net, "block.relu", "ReLU", ["data"], ["block.out"])
    add_layer(
        net,
        "inception_4e/pool",
        "Pooling",
        ["block.out"],
        ["inception_4e/output"],
        pooling_param={"pool": 0, "global_pooling": True},
    )
    module = load_caffe(*write_net(tmp_path, net)).module
    names = dict(module.named_modules())
    assert {"block_out", "inception_4e/output", "layers.block_relu", "layers.inception_4e/pool"} <= set(names)
    assert module(torch.tensor([-1.0, 2.0, 3.0, -4.0]).reshape(1, 1, 2, 2)).item() == 3.0


# ---------------------------------------------------------------------------------------------
# Bad input


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_unsupported_layer_type_names_type_and_layer(tmp_path):
    net = NetParameter()
    net.input.append("data")
    net.input_dim.extend([1, 3, 8, 8])
    add_layer(net, "prelu1", "PReLU", ["data"], ["prelu1"])
    prototxt, _ = write_net(tmp_path, net)
    with pytest.raises(ModelError) as exc:
        load_caffe(prototxt, None)
    message = one_line(exc)
    assert "'prelu1'" in message and "'PReLU'" in message


def test_missing_files(tmp_path, caffe_files):
    prototxt, caffemodel, _ = caffe_files
    with pytest.raises(ModelError, match=r"caffe:.*nope\.prototxt: not found") as exc:
        load_caffe(tmp_path / "nope.prototxt", caffemodel)
    one_line(exc)
    with pytest.raises(ModelError, match=r"--weights .*nope\.caffemodel: not found") as exc:
        load_model(f"caffe:{prototxt}", weights=str(tmp_path / "nope.caffemodel"))
    one_line(exc)


def test_wrong_blob_shapes_name_the_layer(tmp_path):
    weights = small_net_weights()
    weights["conv2"] = (torch.zeros(8, 8, 3, 3), weights["conv2"][1])  # ignores group 2
    prototxt, caffemodel = write_net(tmp_path, small_net(weights))
    with pytest.raises(
        ModelError,
        match=r"layer 'conv2' \(Convolution\): blob 0 has shape \(8, 8, 3, 3\), "
        r"the prototxt needs \(8, 4, 3, 3\)",
    ) as exc:
        load_caffe(prototxt, caffemodel)
    one_line(exc)


def test_weights_of_another_net_and_garbage(tmp_path, caffe_files):
    prototxt, _, _ = caffe_files
    other = NetParameter()
    set_blobs(add_layer(other, "something", "Convolution", [], []), np.zeros(3))
    wrong = tmp_path / "other.caffemodel"
    wrong.write_bytes(other.SerializeToString())
    with pytest.raises(ModelError, match="hold no blobs for layer.*'conv1'") as exc:
        load_caffe(prototxt, wrong)
    one_line(exc)
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(
        ModelError, match=r"--weights .*garbage\.caffemodel cannot be read as a binary Caffe \.caffemodel"
    ) as exc:
        load_caffe(prototxt, garbage)
    one_line(exc)


def test_malformed_prototxt_and_missing_input(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "x" type: "ReLU" bottom: "data" top: "x"\n')
    with pytest.raises(ModelError, match="cannot parse Caffe prototxt") as exc:
        load_caffe(bad)
    one_line(exc)
    bad.write_text('layer { name: "x" type: "ReLU" bottom: "data" top: "x" }\n')
    with pytest.raises(ModelError, match="declares no input"):
        load_caffe(bad)


def test_batchnorm_scale_factor_and_batch_statistics(tmp_path):
    net = NetParameter()
    net.input.append("data")
    net.input_dim.extend([1, 1, 1, 2])
    set_blobs(add_layer(net, "bn", "BatchNorm", ["data"], ["bn"], batch_norm_param={"eps": 0.0}), [4.0], [8.0], [4.0])
    set_blobs(
        add_layer(net, "bn_batch", "BatchNorm", ["data"], ["bn_batch"], batch_norm_param={"use_global_stats": False}),
        [4.0],
        [8.0],
        [4.0],
    )
    add_layer(
        net,
        "pool",
        "Pooling",
        ["data"],
        ["pool"],
        pooling_param={"pool": 0, "kernel_size": 1, "stride": 2, "round_mode": 1},
    )
    module = load_caffe(*write_net(tmp_path, net)).module
    bn, batch, pool = module(torch.tensor([3.0, 5.0]).reshape(1, 1, 1, 2))
    # stored mean 4 / factor 4 = 1, var 8 / 4 = 2: (x - 1) / sqrt(2)
    torch.testing.assert_close(bn.flatten(), torch.tensor([2.0, 4.0]) / 2**0.5)
    # the batch's own mean 4 and (biased) variance 1
    torch.testing.assert_close(batch.flatten(), torch.tensor([-1.0, 1.0]), atol=1e-4, rtol=0)
    assert pool.shape == (1, 1, 1, 1)  # FLOOR rounding: floor((2 - 1) / 2) + 1
