"""GAN Dissection: a planted generator's drawing units are detectors of what they draw; zeroing them removes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netdissect import BrodenDataset, dissect_generator
from netdissect.data.broden import decode_label_png
from netdissect.errors import ModelError, OptionError, RunDirectoryError
from netdissect.models.toy import ToyGenerator
from netdissect.segmenters.generator import sample_latents

SEGMENTER = "netdissect.models.toy:color_segmenter"
GENERATOR = "netdissect.models.toy:toy_generator"
# dissect's default quantile (0.005): the toy's squares cover about 0.2 % of the unit maps, so the threshold is 0
FAST = dict(device="cpu", workers=0, progress=False, batch_size=16)


def samples_dir(run: Path) -> Path:
    """The run's one samples directory (named by the samples' identity)."""
    (found,) = run.glob("samples-*")
    return found


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    result = dissect_generator(GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=48, seed=3, **FAST)
    return out, result


def test_drawing_units_are_detectors_and_their_ablation_removes_the_object(toy_run):
    out, result = toy_run
    layer = result["features"]
    assert [layer.label_names[n] for n in layer.label[:2]] == ["red", "green"]
    assert layer.score[:2].tolist() == [1.0, 1.0]  # the units' masks are the segmenter's labels, pixel for pixel
    assert layer.detectors[:2].all() and not layer.detectors[2:].any()
    causal = json.loads((out / "features" / "causal.json").read_text())
    assert set(causal) == {"red", "green"}
    assert causal["red"]["units"] == [1] and causal["green"]["units"] == [2]
    for concept in ("red", "green"):
        assert causal[concept]["pixel_fraction_before"] > 0
        assert causal[concept]["pixel_fraction_after"] == 0.0
    # before: the red share of the samples' pixels = the share of unit 0's cells that are on (2 x 2 pixels each)
    drawn = ToyGenerator().features(sample_latents(48, 8, 3))[:, 0].mean().item()
    assert causal["red"]["pixel_fraction_before"] == pytest.approx(drawn, rel=1e-6)


def test_run_directory_samples_and_pages(toy_run):
    out, result = toy_run
    for name in ("run.json", "summary.json", "features/tally.csv", "features/units.json", "features/iou.npz"):
        assert (out / name).is_file(), name
    samples = BrodenDataset(samples_dir(out))
    assert len(samples) == 48 and samples.meta.rows[0].image == "sample/000000.jpg"
    assert np.array_equal(np.load(samples_dir(out) / "latents.npy"), sample_latents(48, 8, 3).numpy())
    # the stored labels are the segmenter's at half the image size: the red square where unit 0 draws it
    units = ToyGenerator().features(sample_latents(48, 8, 3))
    for row in samples.meta.rows:
        i = int(row.image.split("/")[1][:6])
        labels = decode_label_png(samples_dir(out) / "images" / row.pngs[0][0]) if row.pngs[0] else np.zeros((16, 16))
        assert np.array_equal(labels == 1, units[i, 0].numpy() > 0)
    pages = json.loads((out / "extra_pages.json").read_text())
    assert pages == [{"title": "Causal effects: features", "path": "features/causal.html"}]
    html = (out / "features" / "causal.html").read_text()
    assert "red" in html and "causal/label0001_sample" in html
    pairs = sorted((out / "features" / "causal").glob("label0001_*"))
    assert pairs and len(pairs) % 2 == 0
    assert result.metadata["model"] == GENERATOR


def test_same_call_reuses_the_samples_and_results(toy_run):
    out, result = toy_run
    stamps = [
        (out / name).stat().st_mtime_ns
        for name in (samples_dir(out).relative_to(out) / "index.csv", "features/causal.json")
    ]
    again = dissect_generator(GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=48, seed=3, **FAST)
    assert [
        (out / name).stat().st_mtime_ns
        for name in (samples_dir(out).relative_to(out) / "index.csv", "features/causal.json")
    ] == stamps
    assert np.array_equal(again["features"].inter, result["features"].inter)


class ImageLatents(nn.Module):
    """A generator that takes (B, D, 1, 1) latents only, as DCGAN-style generators do."""

    def __init__(self) -> None:
        super().__init__()
        self.toy = ToyGenerator()

    def forward(self, z):
        if z.dim() != 4:
            raise RuntimeError(f"expected 4-D input, got {z.dim()}-D")
        return self.toy(z.flatten(1))


def test_z_shape_image_and_one_line_errors(tmp_path):
    result = dissect_generator(
        ImageLatents(), SEGMENTER, ["toy.features"], tmp_path / "image", z_dim=8, samples=16, z_shape="image", **FAST
    )
    assert result["toy.features"].units == 8
    with pytest.raises(ModelError, match=r"failed on latents of shape \(1, 8\) .*check --z-dim and --z-shape"):
        dissect_generator(ImageLatents(), SEGMENTER, ["toy.features"], tmp_path / "v", z_dim=8, samples=4, **FAST)
    with pytest.raises(ModelError, match=r"returned \(1, 8, 16, 16\), expected images \(B, 3, H, W\)"):
        dissect_generator(
            nn.Sequential(ToyGenerator().features), SEGMENTER, ["0"], tmp_path / "f", z_dim=8, samples=4, **FAST
        )
    with pytest.raises(ModelError, match="unknown layer 'featurez'"):
        dissect_generator(ToyGenerator(), SEGMENTER, ["featurez"], tmp_path / "l", z_dim=8, samples=4, **FAST)
    with pytest.raises(OptionError, match="--z-shape must be one of vector, image"):
        dissect_generator(ToyGenerator(), SEGMENTER, ["features"], tmp_path / "s", z_dim=8, z_shape="grid", **FAST)
    with pytest.raises(OptionError, match="--samples must be >= 1"):
        dissect_generator(ToyGenerator(), SEGMENTER, ["features"], tmp_path / "n", z_dim=8, samples=0, **FAST)
    assert sample_latents(2, 3, 0).equal(sample_latents(2, 3, 0)) and not sample_latents(2, 3, 0).equal(
        sample_latents(2, 3, 1)
    )


def test_other_run_refused_unless_overwrite_and_no_torchrun(tmp_path, monkeypatch):
    out = tmp_path / "run"
    dissect_generator(GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=16, seed=0, ablate_top=0, **FAST)
    assert not (out / "features" / "causal.json").exists()
    with pytest.raises(RunDirectoryError, match="holds the samples of another generator run"):
        dissect_generator(GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=16, seed=1, **FAST)
    result = dissect_generator(
        GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=16, seed=1, overwrite=True, ablate_top=0, **FAST
    )
    assert np.array_equal(np.load(samples_dir(out) / "latents.npy"), sample_latents(16, 8, 1).numpy())
    assert result.metadata["dataset"]["images"] == 16
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(OptionError, match="without torchrun"):
        dissect_generator(GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=16, **FAST)


def test_same_counts_as_dissect_replaying_the_layer(tmp_path):
    """dissect_generator == dissect of a model replaying the generator layer's maps on the same segmentations."""
    import shutil

    from PIL import Image

    from helpers import RAW, LookupNet, gray_image
    from netdissect import dissect

    n, options = 14, dict(FAST, quantile=0.1, batch_size=4)
    result = dissect_generator(GENERATOR, SEGMENTER, ["features"], tmp_path / "gan", z_dim=8, samples=n, **options)
    replay = tmp_path / "replay"
    shutil.copytree(samples_dir(tmp_path / "gan"), replay)
    for i in range(n):  # each image now encodes its index for LookupNet
        Image.fromarray(gray_image(i, 32)).save(replay / "images" / "sample" / f"{i:06d}.jpg", quality=95)
    maps = ToyGenerator().features(sample_latents(n, 8, 0))
    expected = dissect(LookupNet(maps), BrodenDataset(replay, preprocess=RAW), ["layer"], **options)["layer"]
    got = result["features"]
    assert np.array_equal(got.thresholds, expected.thresholds)
    for name in ("inter", "act", "truth", "top_indices"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert got.inter[2:].any()  # the shading units overlap the squares: more than the planted units are tested


def test_zeroed_units_hook():
    from netdissect.segmenters.generator import zeroed_units

    conv = nn.Conv2d(2, 3, 1)
    x = torch.randn(2, 2, 4, 4)
    with zeroed_units(conv, [0, 2]):
        y = conv(x)
    assert (y[:, [0, 2]] == 0).all() and torch.equal(y[:, 1], conv(x)[:, 1])
    assert (conv(x)[:, 0] != 0).any()  # the hook is gone afterwards
    swin = nn.Identity()
    with zeroed_units(swin, [1], channels_last=True):
        assert torch.equal(swin(torch.ones(1, 2, 2, 3))[..., 1], torch.zeros(1, 2, 2))
    tokens = nn.Identity()
    with zeroed_units(tokens, [0]), pytest.raises(ModelError, match=r"this layer gives \(2, 5, 3\)"):
        tokens(torch.ones(2, 5, 3))


def test_a_failed_overwrite_leaves_the_old_run_and_its_samples(tmp_path, monkeypatch):
    import netdissect.segmenters.generator as generator_module

    out = tmp_path / "run"
    dissect_generator(GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=16, seed=0, ablate_top=0, **FAST)
    old_samples = samples_dir(out)
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    def fail(*args, **kwargs):
        raise RuntimeError("the new run dies")

    monkeypatch.setattr(generator_module, "run_dissection", fail)
    with pytest.raises(RuntimeError, match="the new run dies"):
        dissect_generator(
            GENERATOR, SEGMENTER, ["features"], out, z_dim=8, samples=16, seed=1, overwrite=True, ablate_top=0, **FAST
        )
    # the old run's files are untouched, its samples included; the new samples wait beside them
    assert all(p.read_bytes() == data for p, data in before.items())
    assert np.array_equal(np.load(old_samples / "latents.npy"), sample_latents(16, 8, 0).numpy())
    assert len(list(out.glob("samples-*"))) == 2
