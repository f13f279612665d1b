"""End-to-end dissections on hand-made datasets with planted activations."""

import json

import numpy as np
import pytest
import torch

from helpers import RAW, LookupNet, tiny_maps
from netdissect import BrodenDataset, DissectionResult, dissect
from netdissect.errors import ActivationError, ModelError, RunDirectoryError

OPTIONS = dict(quantile=0.5, workers=0, progress=False, device="cpu", batch_size=1)


def tiny(tiny_dataset):
    return BrodenDataset(tiny_dataset, preprocess=RAW)


@pytest.mark.parametrize("mode", ["paper", "lite"])
def test_tiny_dataset_end_to_end(tiny_dataset, tmp_path, mode):
    # quantile 0.5 puts unit 0's threshold at 0 and unit 1's at 0.5: the masks of test_tally
    result = dissect(LookupNet(tiny_maps()), tiny(tiny_dataset), ["layer"], tmp_path / "run", iou_mode=mode, **OPTIONS)
    layer = result["layer"]
    if mode == "paper":
        assert layer.thresholds.tolist() == [0.0, 0.5]
        assert layer.act.tolist() == [[3, 2, 2], [16, 0, 0]]
    assert layer.inter.tolist() == [[0, 2, 1, 1, 2, 0], [0, 0, 0, 0, 0, 1]]
    assert layer.truth.tolist() == [0, 4, 1, 2, 16, 1]
    assert layer.label_names[layer.category_label[0, 1]] == "leg"
    tally = (tmp_path / "run" / "layer" / "tally.csv").read_text().splitlines()
    assert tally[0].startswith("unit,category,label,score,object-label,object-truth,object-activation")
    if mode == "paper":  # unit 1's best: leg (0.5) beats dog (0.4)
        assert tally[1].split(",")[:4] == ["1", "part", "leg", "0.5"]


def test_planted_detectors_score_one(tmp_path):
    """Unit k fires exactly on concept k's mask -> IoU 1.0 with concept k, in both modes."""
    from helpers import write_planted_dataset

    maps = write_planted_dataset(tmp_path / "ds")
    for mode in ("paper", "lite"):
        result = dissect(
            LookupNet(maps),
            BrodenDataset(tmp_path / "ds", preprocess=RAW),
            ["layer"],
            iou_mode=mode,
            **{**OPTIONS, "quantile": 0.4, "batch_size": 5},
        )
        layer = result["layer"]
        names = [layer.label_names[k] for k in layer.label]
        assert names == ["a", "b", "c", "s-s"]
        assert layer.score.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_results_round_trip_and_files(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    result = dissect(LookupNet(tiny_maps()), tiny(tiny_dataset), ["layer"], out, **OPTIONS)
    summary = json.loads((out / "summary.json").read_text())
    s = summary["layers"]["layer"]
    assert s["units"] == 2
    assert s["detectors"] == 2  # 0.5 and 1/16 >= 0.04
    assert set(s) >= {"unique_detectors", "unique_detectors_by_category_sum", "detectors_by_category"}
    units = json.loads((out / "layer" / "units.json").read_text())
    assert [u["unit"] for u in units["units"]] == [1, 2]
    assert units["units"][1]["label"] == "cat"
    with np.load(out / "layer" / "iou.npz") as z:
        assert z["iou"].shape == (2, 6)
        assert np.allclose(z["iou"], result["layer"].iou)
    again = DissectionResult.load(out)
    assert np.array_equal(again["layer"].inter, result["layer"].inter)
    assert again.summary() == result.summary()


def test_same_run_skips_finished_layers_and_other_run_refused(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    net = LookupNet(tiny_maps())
    dissect(net, tiny(tiny_dataset), ["layer"], out, **OPTIONS)
    before = (out / "layer" / "tally.csv").read_bytes()
    calls = net.head_calls
    dissect(net, tiny(tiny_dataset), ["layer"], out, **OPTIONS)
    assert net.head_calls == calls  # nothing recomputed
    with pytest.raises(RunDirectoryError, match="different run"):
        dissect(net, tiny(tiny_dataset), ["layer"], out, **{**OPTIONS, "quantile": 0.25})
    assert (out / "layer" / "tally.csv").read_bytes() == before  # finished result intact
    dissect(net, tiny(tiny_dataset), ["layer"], out, overwrite=True, **{**OPTIONS, "quantile": 0.25})
    assert (out / "layer" / "tally.csv").read_bytes() != before


def test_forward_stops_after_deepest_layer(tiny_dataset):
    net = LookupNet(tiny_maps())
    dissect(net, tiny(tiny_dataset), ["layer"], **OPTIONS)
    assert net.head_calls == 0  # the forward pass never got past the hooked layer


def test_cache_and_recompute_agree(tiny_dataset):
    net = LookupNet(tiny_maps())
    cached = dissect(net, tiny(tiny_dataset), ["layer"], **OPTIONS)["layer"]
    recomputed = dissect(net, tiny(tiny_dataset), ["layer"], cache_memory=0, **OPTIONS)["layer"]
    assert np.array_equal(cached.inter, recomputed.inter) and np.array_equal(cached.act, recomputed.act)


def test_unknown_layer_suggests_names(tiny_dataset):
    with pytest.raises(ModelError, match=r"unknown layer 'layr'.*did you mean layer.*netdissect layers"):
        dissect(LookupNet(tiny_maps()), tiny(tiny_dataset), ["layr"], **OPTIONS)


def test_non_spatial_layer_refused(tiny_dataset):
    with pytest.raises(ModelError, match=r"layer 'head' output is not a \(B, C, H, W\) map"):
        dissect(LookupNet(tiny_maps()), tiny(tiny_dataset), ["head"], **OPTIONS)


def test_nan_activations_named(tiny_dataset):
    maps = tiny_maps()
    maps[1, 1, 0, 0] = float("nan")
    with pytest.raises(ActivationError, match=r"layer 'layer' produced NaN or Inf activations in 1 unit"):
        dissect(LookupNet(maps), tiny(tiny_dataset), ["layer"], **OPTIONS)


def test_layers_added_to_a_run_keep_earlier_ones(tmp_path):
    """Dissecting another layer into the same run directory keeps the first in summary.json."""
    from torch import nn

    from helpers import write_tiny_dataset

    data = BrodenDataset(write_tiny_dataset(tmp_path / "ds"), preprocess=RAW)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 3, 1))
    out = tmp_path / "run"
    dissect(net, data, ["0"], out, **OPTIONS)
    result = dissect(net, data, ["1"], out, **OPTIONS)
    assert list(result.layers) == ["0", "1"]
    assert list(json.loads((out / "summary.json").read_text())["layers"]) == ["0", "1"]


def test_top_image_maps_are_kept(tiny_dataset, tmp_path):
    """Pass 2 keeps each unit's maps on its top images (for the report's strips), without a new pass."""
    maps = tiny_maps()
    result = dissect(LookupNet(maps), tiny(tiny_dataset), ["layer"], tmp_path / "run", top_images=2, **OPTIONS)
    layer = result["layer"]
    assert layer.top_indices.tolist() == [[0, 1], [1, 0]]  # ties broken by image index
    for u in range(2):
        for r, image in enumerate(layer.top_indices[u]):
            assert np.array_equal(layer.top_maps[u, r], maps[image, u].numpy())
    again = DissectionResult.load(tmp_path / "run")["layer"]
    assert np.array_equal(again.top_maps, layer.top_maps)


def test_channels_last_and_amp_forward(tmp_path):
    """The faster forward passes: results close to the exact one, and recorded in the run's key."""
    from helpers import SmallCNN
    from netdissect.data.synthetic import make_synthetic_dataset

    data = BrodenDataset(make_synthetic_dataset(tmp_path / "d", n=12, size=32, seed=1, progress=False))
    options = dict(OPTIONS, quantile=0.05, batch_size=4)
    exact = dissect(SmallCNN(), data, ["conv2"], tmp_path / "run", **options)["conv2"]
    nhwc = dissect(SmallCNN(), data, ["conv2"], tmp_path / "nhwc", memory_format="channels_last", **options)["conv2"]
    amp = dissect(SmallCNN(), data, ["conv2"], tmp_path / "amp", amp=True, **options)["conv2"]
    assert np.allclose(nhwc.thresholds, exact.thresholds, rtol=1e-5, atol=1e-6)
    assert np.allclose(amp.thresholds, exact.thresholds, rtol=3e-2, atol=1e-2)
    assert not np.array_equal(amp.thresholds, exact.thresholds)  # bfloat16 did run
    assert amp.thresholds.dtype == np.float32 and amp.inter.dtype == np.int64
    assert nhwc.metadata["options"]["memory_format"] == "channels_last" and amp.metadata["options"]["amp"]
    with pytest.raises(RunDirectoryError, match="different run"):  # another forward: another run
        dissect(SmallCNN(), data, ["conv2"], tmp_path / "run", amp=True, **options)
    with pytest.raises(Exception, match="--memory-format must be one of"):
        dissect(SmallCNN(), data, ["conv2"], memory_format="nchw", **options)
