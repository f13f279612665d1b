"""Pass 2's image-level values (``--image-values``): each unit's map mean per image, kept with the
run, and ``describe`` of the run reading them instead of running the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import RAW, LookupNet, subprocess_env, tiny_maps
from netdissect import BrodenDataset, DissectionResult, describe, dissect, load_model
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.describe.values import unit_values
from netdissect.engine.collectors import Batch, ImageValueCollector, LayerBatch
from netdissect.engine.distributed import Shard

FAST = dict(device="cpu", workers=0, progress=False)


def test_collector_fills_rows_by_dataset_index():
    collector = ImageValueCollector({"layer": 2}, images=3)
    acts = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 2)  # two images, two units
    empty = torch.zeros(0, dtype=torch.long)
    collector.start_batch(Batch(0, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([2, 0])))
    collector.add(LayerBatch("layer", acts, torch.zeros(2), (empty, empty, empty)))
    restored = ImageValueCollector({"layer": 2}, images=3)
    restored.load_state_dict(collector.state_dict())
    restored.merge(Shard())
    values = restored.finish()["layer"]["image_values"]
    # image 2 is the batch's first: units' means 1.5 and 5.5; image 0 the second: 9.5, 13.5; image 1 unseen
    assert values.tolist() == [[9.5, 13.5], [0.0, 0.0], [1.5, 5.5]]


def test_planted_maps_give_their_means_and_load_back(tiny_dataset, tmp_path):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    maps = tiny_maps()
    result = dissect(LookupNet(maps), data, ["layer"], tmp_path / "run", quantile=0.5, batch_size=1,
                     image_values=True, **FAST)  # fmt: skip
    expected = maps.mean(dim=(2, 3)).numpy()
    assert np.array_equal(result.layers["layer"].image_values, expected)
    loaded = DissectionResult.load(tmp_path / "run").layers["layer"]
    assert loaded.image_values.dtype == np.float32 and np.array_equal(loaded.image_values, expected)


def test_off_by_default_and_the_run_key_unchanged(tiny_dataset, tmp_path):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    result = dissect(LookupNet(tiny_maps()), data, ["layer"], tmp_path / "run", quantile=0.5, **FAST)
    assert result.layers["layer"].image_values is None
    with np.load(tmp_path / "run" / "layer" / "iou.npz") as z:
        assert "image_values" not in z.files
    key = json.loads((tmp_path / "run" / "run.json").read_text())["key"]
    assert "image_values" not in key["options"]  # earlier runs keep their keys


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "d", n=24, size=64, seed=1, progress=False)


@pytest.fixture(scope="module")
def demo_run(synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    dissect(load_model("demo"), synthetic, ["conv3", "conv4"], out, image_values=True, batch_size=5, **FAST)
    return out


def test_values_are_describes_values(synthetic, demo_run):
    """The dissection's values equal describe's own pass over the same images (same batches)."""
    data = BrodenDataset(synthetic)
    paths = [data.meta.directory / "images" / row.image for row in data.meta.rows]
    theirs, _ = unit_values(load_model("demo"), ["conv3", "conv4"], paths, torch.device("cpu"), 5, progress=False)
    run = DissectionResult.load(demo_run)
    for layer in ("conv3", "conv4"):
        assert np.array_equal(run.layers[layer].image_values, theirs[layer])


def counted_model():
    model = load_model("demo")
    calls = []
    model.module.register_forward_pre_hook(lambda *_: calls.append(1))  # the capture stops the forward early
    return model, calls


@pytest.mark.parametrize("layers", [["conv4"], ["conv3", "conv4"]])
def test_describe_of_the_run_reads_the_values_without_the_model(synthetic, demo_run, tmp_path, layers):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    model, calls = counted_model()
    joined = describe(model, layers, run, dataset=synthetic, methods=["auc"], batch_size=5, report=False, **FAST)
    assert calls == []  # every layer's values came from the dissection
    fresh = describe(load_model("demo"), layers, tmp_path / "fresh", dataset=synthetic, methods=["auc"],
                     batch_size=5, report=False, **FAST)  # fmt: skip
    for layer in layers:
        assert joined[layer].rows == fresh[layer].rows
        assert sorted(joined[layer].arrays) == sorted(fresh[layer].arrays)
        for name, array in fresh[layer].arrays.items():
            assert np.array_equal(joined[layer].arrays[name], array, equal_nan=True), name


def test_describe_runs_the_model_when_the_images_differ(synthetic, demo_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    model, calls = counted_model()
    describe(model, ["conv4"], run, dataset=synthetic, methods=["auc"], size=20, min_images=2, batch_size=5,
             report=False, **FAST)  # fmt: skip
    assert len(calls) == 4  # 20 images of the 24 dissected: describe's own pass, in 4 batches


def test_cli_flag_reaches_the_run(synthetic, tmp_path):
    import subprocess

    out = tmp_path / "cli"
    argv = [sys.executable, "-m", "netdissect", "dissect", "--model", "demo", "--layers", "conv4", "--dataset",
            str(synthetic), "--out", str(out), "--image-values", "--device", "cpu", "--no-progress", "--no-report"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "conv4" / "iou.npz") as z:
        assert z["image_values"].shape == (24, 128)


def test_readers_that_do_not_need_the_values_skip_them(demo_run):
    assert DissectionResult.load(demo_run, values=False).layers["conv4"].image_values is None
    assert DissectionResult.load(demo_run).layers["conv4"].image_values.shape == (24, 128)
