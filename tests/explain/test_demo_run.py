"""Explaining images by a real dissection of the demo model, and the demo's explain step."""

from __future__ import annotations

import json

import numpy as np
import torch

from netdissect import explain
from netdissect.cli import main
from netdissect.data import BrodenDataset
from netdissect.math.masks import masked_pixels, upsample
from netdissect.runs.results import LayerResult


def test_masks_are_the_runs_masks_on_its_top_images(demo_run):
    """Every unit's mask on one of its top images is the dissection's mask of that image: the pixels
    masked_pixels keeps from the top map the run saved (up to pixels within float rounding of the threshold)."""
    data, run = demo_run
    layer = LayerResult.load(run / "conv4")
    assert layer.top_maps is not None
    dataset = BrodenDataset(data)
    size = (dataset.meta.rows[0].sh, dataset.meta.rows[0].sw)
    units = [0, 5, 17, 64, 127]
    paths = [data / "images" / dataset.meta.rows[int(layer.top_indices[u, 0])].image for u in units]
    result = explain(run, paths, top_units=layer.units, device="cpu")
    assert result.metadata["segmentation_size"] == list(size) and result.metadata["input_size"] == [64, 64]
    compared = 0
    for explained, u in zip(result.images, units):
        top_map = torch.from_numpy(layer.top_maps[u, 0])[None]
        threshold = torch.tensor([float(layer.thresholds[u])])
        _, y, x = masked_pixels(top_map, threshold, size)
        expected = np.zeros(size, dtype=bool)
        expected[y.numpy(), x.numpy()] = True
        values = upsample(top_map, size)[0].numpy()
        clear = np.abs(values - threshold.item()) > 1e-4 * max(1.0, abs(threshold.item()))
        got = explained.masks[u + 1]
        assert expected.any()  # a top image: the unit fires there
        assert np.array_equal(got[clear], expected[clear]), u
        compared += int(clear.sum())
    assert compared > 0.99 * len(units) * size[0] * size[1]


def test_segmentation_pixels_come_from_firing_detectors(demo_run):
    data, run = demo_run
    layer = LayerResult.load(run / "conv4", maps=False)
    images = sorted((data / "images").rglob("*.jpg"))[:3]
    result = explain(run, images, top_units=layer.units, device="cpu", iou_threshold=0.0)
    detectors = (layer.score >= 0.0) & (layer.label > 0)
    for explained in result.images:
        fired = np.zeros(explained.segmentation.shape, dtype=bool)
        for u in np.flatnonzero(detectors):
            fired |= explained.masks[int(u) + 1]
        assert np.array_equal(explained.segmentation > 0, fired)  # painted exactly where a detector fires
        names = {layer.label_names[int(layer.label[u])] for u in np.flatnonzero(detectors)}
        assert set(explained.legend.values()) <= names


def test_the_demo_explains_a_few_images_and_links_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    fast = ["--images", "24", "--no-ablation", "--no-describe", "--device", "cpu", "--no-progress", "--workers", "0"]
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *fast]) == 0
    printed = capsys.readouterr().out
    assert "explaining 4 images by conv4" in printed and "explanations:" in printed
    record = json.loads((out / "explain" / "explain.json").read_text())
    assert len(record["images"]) == 4 and {r["layer"] for r in record["images"]} == {"conv4"}
    assert all(r["predictions"][0]["class"] in {"kitchen", "bedroom", "beach", "street", "forest"} for r in record["images"])  # fmt: skip
    pages = json.loads((out / "extra_pages.json").read_text())
    assert {"title": "Explained images · conv4", "path": "explain/index.html"} in pages
    assert 'href="explain/index.html"' in (out / "index.html").read_text()
    # --no-report: the explanation without a page; --no-explain: none
    quiet = tmp_path / "quiet"
    assert main(["demo", "--out", str(quiet), "--no-report", *fast]) == 0
    assert (quiet / "explain" / "explain.json").is_file() and not (quiet / "explain" / "index.html").exists()
    assert not (quiet / "extra_pages.json").exists()
    none = tmp_path / "none"
    assert main(["demo", "--out", str(none), "--no-explain", "--no-report", *fast]) == 0
    assert not (none / "explain").exists()


def test_the_run_page_links_the_page_and_drops_it_with_no_report(demo_run, tmp_path):
    data, run = demo_run
    images = sorted((data / "images").rglob("*.jpg"))[:1]
    out = tmp_path / "explained"
    explain(run, images, out, device="cpu")
    listed = json.loads((run / "extra_pages.json").read_text())
    path = next(
        p["path"] for p in listed if p["title"].startswith("Explained images · conv4") and "explained" in p["path"]
    )
    assert (run / path).resolve() == (out / "index.html").resolve()
    assert path in (run / "index.html").read_text()
    explain(run, images, out, device="cpu", report=False)
    assert not (out / "index.html").exists()
    assert path not in (run / "index.html").read_text()  # the run page no longer links it
