"""Unit tiles: masks identical to the dissection's upsampling, packing, ground truth and stored images."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import RAW, LookupNet, gray_image
from netdissect import dissect
from netdissect.data import BrodenDataset
from netdissect.data.writer import BrodenWriter, LabelSpec
from netdissect.math.masks import masked_pixels, upsample
from netdissect.report.datarows import read_rows, rows_of
from netdissect.report.strips import (
    COPY_BYTES_PER_PIXEL,
    MAX_SIDE,
    SOURCES_FILE,
    image_name,
    layer_tiles,
    pack_masks,
    store_images,
    unit_masks,
    unpack_masks,
)


def test_mask_follows_the_hot_source_pixel():
    maps = np.zeros((1, 4, 4), np.float32)
    maps[0, 1, 2] = 1.0
    mask = unit_masks(maps, 0.5, (16, 16))[0]
    ys, xs = np.nonzero(mask)
    # source pixel (1, 2) has its centre at ((1 + .5) * 4, (2 + .5) * 4) = (6, 10) in the image
    assert abs(ys.mean() + 0.5 - 6) < 0.6 and abs(xs.mean() + 0.5 - 10) < 0.6
    assert 4 <= mask.sum() <= 16  # the bilinear bump above half its height: about one source pixel
    assert not mask[:2].any() and not mask[:, :6].any()


@pytest.mark.parametrize(
    "h, w, size",
    [(7, 7, (224, 224)), (8, 8, (128, 128)), (5, 9, (37, 61)), (1, 1, (5, 5)), (16, 16, (16, 16)), (40, 40, (32, 32))],
)
def test_masks_equal_the_dissection_upsampling(h, w, size):
    """Bit-identical to ``masks.upsample(...) > threshold`` (enlarging, same size and shrinking)."""
    rng = np.random.default_rng(h * w)
    maps = rng.standard_normal((64, h, w)).astype(np.float32) ** 3
    thresholds = np.quantile(maps.reshape(64, -1), 0.9, axis=1).astype(np.float32)
    thresholds[0] = -abs(thresholds[0])  # a negative threshold too
    expected = (upsample(torch.from_numpy(maps), size) > torch.from_numpy(thresholds)[:, None, None]).numpy()
    got = unit_masks(maps, thresholds, size)
    assert got.shape == (64, *size) and got.dtype == bool
    assert np.array_equal(got, expected)
    assert expected.any() and not expected.all()


@pytest.mark.parametrize("h, w, size", [(7, 7, (224, 224)), (5, 9, (37, 61)), (3, 4, (113, 64)), (1, 1, (5, 5))])
def test_masks_equal_the_engines_masked_pixels(h, w, size):
    """Bit for bit the pixels the dissection counts (``masks.masked_pixels``, its sparse path) on random maps."""
    rng = np.random.default_rng(h * 100 + w)
    maps = rng.standard_normal((32, h, w)).astype(np.float32)
    thresholds = np.quantile(maps.reshape(32, -1), 0.8, axis=1).astype(np.float32)
    p, y, x = masked_pixels(torch.from_numpy(maps), torch.from_numpy(thresholds), size)
    engine = np.zeros((32, *size), dtype=bool)
    engine[p.numpy(), y.numpy(), x.numpy()] = True
    assert np.array_equal(unit_masks(maps, thresholds, size), engine)
    assert engine.any() and not engine.all()


def test_pack_round_trip_with_odd_sizes():
    rng = np.random.default_rng(1)
    masks = [rng.random((h, w)) > 0.5 for h, w in [(3, 5), (7, 7), (1, 1), (16, 9)]]
    text = pack_masks(masks)
    assert text.isascii()
    back = unpack_masks(text, [m.shape for m in masks])
    assert all(np.array_equal(a, b) for a, b in zip(masks, back))


@pytest.fixture
def planted(tmp_path):
    """Six gray images, one label "thing" planted in a 3x3 square moving down with the image; unit 1
    fires exactly there (and harder on later images), unit 2 at one corner."""
    n, size = 6, 16
    w = BrodenWriter(tmp_path / "ds", ["object"], [LabelSpec(1, "thing")])
    maps = torch.zeros(n, 2, 8, 8)
    segs = []
    for i in range(n):
        seg = np.zeros((8, 8), int)
        seg[i % 4 : i % 4 + 3, 2:5] = 1
        segs.append(seg)
        maps[i, 0] = torch.from_numpy(seg == 1).float() * (i + 1)
        maps[i, 1, 0, 0] = float(i)
        w.add_image(f"im{i}", gray_image(i, size), pixel_labels={"object": [seg]})
    w.close()
    data = BrodenDataset(tmp_path / "ds", preprocess=RAW)
    result = dissect(
        LookupNet(maps), data, ["layer"], workers=0, progress=False, device="cpu", quantile=0.1, top_images=3
    )["layer"]
    return data, result, segs


def test_layer_tiles_from_a_run(planted):
    """Unit masks from the saved top maps, ground truth of the unit's label on the same images."""
    data, result, segs = planted
    rows = rows_of(data)
    tiles = layer_tiles(result, rows, examples=3, workers=2)
    assert set(tiles) == {1, 2}
    assert result.top_indices[0].tolist() == [5, 4, 3]  # unit 1 fires hardest on the last images
    sizes = [(16, 16)] * 3
    unit1 = unpack_masks(tiles[1][0], sizes)
    for rank in range(3):
        expected = unit_masks(result.top_maps[0, rank : rank + 1], result.thresholds[0], (16, 16))[0]
        assert np.array_equal(unit1[rank], expected)
        assert expected.any()
    assert result.label_names[result.label[0]] == "thing"
    truth = unpack_masks(tiles[1][1], [(8, 8)] * 3)  # ground truth at the segmentation size
    for rank, index in enumerate(result.top_indices[0]):
        assert np.array_equal(truth[rank], segs[index] == 1)
    # fewer examples: fewer masks
    assert len(unpack_masks(layer_tiles(result, rows, examples=1)[1][0], [(16, 16)])) == 1


def test_rows_read_without_torch_equal_the_datasets(planted, tmp_path):
    data, _result, _ = planted
    recorded = {"images": len(data), "first_row": 1, "last_row": len(data)}
    assert read_rows(data.directory, recorded) == rows_of(data)
    assert read_rows(data.directory, {"images": 2, "first_row": 3, "last_row": 4}) is None  # no such selection


def test_formula_tiles_are_the_formula_on_the_label_maps(tmp_path):
    """A unit firing exactly on "a OR b" gets that formula; its tiles' third entry is the formula's
    mask on each top image (5x5 segmentations: 25 bits, so the packed padding is exercised), and
    so is any other formula's, AND NOT included."""
    import dataclasses

    from netdissect.formulas.terms import evaluate_formula

    n, seg_size = 5, 5
    rng = np.random.default_rng(7)
    w = BrodenWriter(tmp_path / "ds", ["object"], [LabelSpec(1, "a"), LabelSpec(2, "b")])
    maps, segs = torch.zeros(n, 2, seg_size, seg_size), []
    for i in range(n):
        seg = rng.integers(0, 3, (seg_size, seg_size))
        segs.append(seg)
        maps[i, 0] = torch.from_numpy(seg > 0).float()  # unit 1: exactly "a OR b" (threshold 0)
        maps[i, 1] = torch.from_numpy(rng.random((seg_size, seg_size))).float()
        w.add_image(f"im{i}", gray_image(i, 2 * seg_size), pixel_labels={"object": [seg]})
    w.close()
    data = BrodenDataset(tmp_path / "ds", preprocess=RAW)
    result = dissect(
        LookupNet(maps), data, ["layer"], workers=0, progress=False, device="cpu", quantile=0.9, formula_length=2
    )["layer"]
    assert result.formula[0] in ("(a OR b)", "(b OR a)") and result.formula_iou[0] == 1.0
    rows = rows_of(data)

    def check(formulas) -> None:
        tiles = layer_tiles(dataclasses.replace(result, formulas=formulas), rows, examples=3, workers=2)
        for u in (1, 2):
            terms = formulas.terms[u - 1]
            shown = result.top_indices[u - 1, :3].tolist()
            got = unpack_masks(tiles[u][2], [(seg_size, seg_size)] * len(shown))
            for image, mask in zip(shown, got):
                members = {label: segs[image] == label for _, label in terms}
                assert np.array_equal(mask, evaluate_formula(terms, members))

    check(result.formulas)
    check(dataclasses.replace(result.formulas, terms=[((None, 1), ("andnot", 2)), ((None, 2), ("and", 1))]))
    plain = layer_tiles(dataclasses.replace(result, formulas=None), rows, examples=3, workers=2)
    assert all(len(entry) == 2 for entry in plain.values())  # no formula: unit and ground truth only


def test_store_images_once_copied_or_reencoded(planted, tmp_path):
    data, _, _ = planted
    rows = rows_of(data)
    written = store_images(rows, [3, 1, 3, 1, 0], tmp_path / "images", workers=2)
    files = sorted(p.name for p in (tmp_path / "images").glob("*.jpg"))
    assert files == [image_name(0), image_name(1), image_name(3)]
    assert written == sum((tmp_path / "images" / f).stat().st_size for f in files)
    for i in (0, 1, 3):
        source, stored = rows.image_path(i), tmp_path / "images" / image_name(i)
        small = source.stat().st_size <= COPY_BYTES_PER_PIXEL * 16 * 16
        if source.read_bytes()[:3] == b"\xff\xd8\xff" and small:  # a small JPEG is copied byte for byte
            assert stored.read_bytes() == source.read_bytes()
        with Image.open(stored) as im:
            assert im.format == "JPEG" and im.size == (16, 16)


def test_store_images_keeps_images_whose_source_did_not_change(planted, tmp_path):
    """A rebuild keeps a stored image whose source has the same size and time; a source changed
    since (even to an older time) is stored again; images no longer shown are removed."""
    import os

    data, _, _ = planted
    rows = rows_of(data)
    images = tmp_path / "images"
    store_images(rows, [0, 1, 3], images, workers=1)
    kept, redone = images / image_name(0), images / image_name(1)
    kept.write_bytes(b"marker")  # its source did not change: kept as it is
    redone.write_bytes(b"stale")
    source = rows.image_path(1)
    earlier = source.stat().st_mtime_ns - 10**9
    os.utime(source, ns=(earlier, earlier))  # another file now, with an older time
    written = store_images(rows, [0, 1], images, workers=1)
    assert kept.read_bytes() == b"marker"
    with Image.open(redone) as im:
        assert im.format == "JPEG"
    assert written == kept.stat().st_size + redone.stat().st_size
    assert sorted(p.name for p in images.iterdir()) == [SOURCES_FILE, image_name(0), image_name(1)]


def test_large_images_are_reencoded_smaller(tmp_path):
    """A big JPEG is re-encoded (smaller), an image over MAX_SIDE is scaled down to it."""
    rng = np.random.default_rng(0)
    noisy = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    w = BrodenWriter(tmp_path / "ds", ["object"], [LabelSpec(1, "thing")])
    w.add_image("noisy", noisy, pixel_labels={"object": [np.zeros((32, 32), int)]})
    w.add_image(
        "big",
        np.full((MAX_SIDE * 2, MAX_SIDE, 3), 90, np.uint8),
        pixel_labels={"object": [np.zeros((MAX_SIDE, MAX_SIDE // 2), int)]},
    )
    w.close()
    rows = rows_of(BrodenDataset(tmp_path / "ds"))
    store_images(rows, [0, 1], tmp_path / "images")
    source, stored = rows.image_path(0), tmp_path / "images" / image_name(0)
    assert stored.stat().st_size < source.stat().st_size
    with Image.open(tmp_path / "images" / image_name(1)) as im:
        assert im.size == (MAX_SIDE // 2, MAX_SIDE)
