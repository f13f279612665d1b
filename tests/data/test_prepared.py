"""Prepared datasets: the same items as the file reader, keyed so a changed dataset is never read stale."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers import RAW, LookupNet, gray_image, write_planted_dataset, write_png
from netdissect import dissect
from netdissect.data import BrodenDataset, find_prepared, open_prepared, prepare_dataset
from netdissect.data import prepared as prepared_module
from netdissect.data.broden import collate_broden
from netdissect.data.prepared import PreparedData, dataset_key, default_cache_dir, default_prepared_path
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.errors import DatasetError
from netdissect.models.preprocess import Preprocess

CAFFE = Preprocess(mean=(109.5388, 118.6897, 124.6901), std=(1.0, 1.0, 1.0), bgr=True, pixel_scale=255.0)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "syn", n=16, size=32, seed=3)


def assert_same_items(direct: BrodenDataset, prepared: BrodenDataset) -> None:
    assert prepared.prepared is not None and direct.prepared is None
    assert len(direct) == len(prepared)
    for i in range(len(direct)):
        a, b = direct[i], prepared[i]
        assert a.keys() == b.keys() and a["index"] == b["index"] == i
        for k in a.keys() - {"index"}:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (i, k)


def touch(path: Path, seconds: float = 10.0) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


# --------------------------------------------------------------------------------------------
# Preprocess split


def test_preprocess_split_is_bit_identical(tiny_dataset):
    from PIL import Image

    with Image.open(tiny_dataset / "images" / "im0.jpg") as im:
        im = im.convert("RGB")
    for pre in (Preprocess(), CAFFE, Preprocess(input_size=(5, 11))):
        pixels = pre.resize(im)
        assert pixels.dtype == np.uint8 and pixels.shape == ((5, 11, 3) if pre.input_size else (8, 8, 3))
        x = pre(im)
        assert torch.equal(pre.normalize(pixels), x) and x.dtype == torch.float32
        # the reference: what __call__ computed before the split
        ref = im.resize((11, 5), Image.BILINEAR) if pre.input_size else im
        ref = np.asarray(ref, dtype=np.float32) * (pre.pixel_scale / 255.0)
        ref = ref[..., ::-1] if pre.bgr else ref
        ref = (ref - np.asarray(pre.mean, dtype=np.float32)) / np.asarray(pre.std, dtype=np.float32)
        assert torch.equal(x, torch.from_numpy(np.ascontiguousarray(ref.transpose(2, 0, 1))))


# --------------------------------------------------------------------------------------------
# Same items


@pytest.mark.parametrize("input_size", [None, (20, 28)])
@pytest.mark.parametrize("preprocess", [RAW, CAFFE], ids=["raw", "caffe"])
def test_items_equal_the_readers_tiny(tiny_dataset, input_size, preprocess):
    pre = Preprocess(**{**preprocess.__dict__, "input_size": input_size})
    direct = BrodenDataset(tiny_dataset, preprocess=pre)
    path = prepare_dataset(direct, progress=False, workers=0)
    assert path == default_prepared_path(direct) and path.parent == default_cache_dir() / "prepared"
    assert path.name.startswith("tiny-")
    assert_same_items(direct, BrodenDataset(tiny_dataset, preprocess=pre, prepared="auto"))
    assert_same_items(direct, BrodenDataset(tiny_dataset, preprocess=pre, prepared=path))
    info = json.loads((path / "prepared.json").read_text())
    assert info["images"] == 2 and info["label_dtype"] == "uint16"
    assert np.load(path / "labels.npy").size == 5 * 16  # compact: the 5 layers of the rows, no padding


@pytest.mark.parametrize("input_size", [None, (24, 40)])
def test_items_equal_the_readers_synthetic(synthetic, input_size):
    pre = Preprocess(input_size=input_size)
    direct = BrodenDataset(synthetic, preprocess=pre)
    prepare_dataset(direct, progress=False, workers=2)
    prepared = BrodenDataset(synthetic, preprocess=pre, prepared="auto")
    assert_same_items(direct, prepared)
    for options in ({"load_images": False}, {"load_segmentations": False}):
        assert_same_items(direct.with_options(**options), prepared.with_options(**options))
    # through DataLoader workers (memmaps opened lazily in each), batched
    loaders = [DataLoader(d, batch_size=5, num_workers=2, collate_fn=collate_broden) for d in (direct, prepared)]
    for a, b in zip(*loaders):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_a_selection_is_its_own_prepared_dataset(synthetic):
    full = BrodenDataset(synthetic)
    prepare_dataset(full, progress=False, workers=0)
    subsets = [
        BrodenDataset(synthetic, split="val"),
        BrodenDataset(synthetic, size=5),
        BrodenDataset(synthetic, categories=["object", "scene"]),
        BrodenDataset(synthetic, preprocess=Preprocess(input_size=(16, 16))),
    ]
    keys = {dataset_key(full), *(dataset_key(d) for d in subsets)}
    assert len(keys) == 5
    assert BrodenDataset(synthetic, prepared="auto").prepared is not None
    for d in subsets:
        assert find_prepared(d) is None
        with pytest.raises(DatasetError, match="different dataset or input size"):
            open_prepared(d, default_prepared_path(full))
    subset = subsets[2]
    prepare_dataset(subset, progress=False, workers=0)
    assert_same_items(subset, BrodenDataset(synthetic, categories=["object", "scene"], prepared="auto"))


def test_labels_above_uint16_are_stored_as_int32(tmp_path):
    from netdissect.data.writer import BrodenWriter, LabelSpec

    w = BrodenWriter(tmp_path / "wide", ["object", "scene"], [LabelSpec(300, "a"), LabelSpec(70000, "big-s")])
    seg = np.zeros((4, 4), int)
    seg[1:3, 1:3] = 300
    w.add_image("im0", gray_image(0, 8), pixel_labels={"object": [seg]}, image_labels={"scene": [70000]})
    w.close()
    direct = BrodenDataset(tmp_path / "wide", preprocess=RAW)
    path = prepare_dataset(direct, progress=False, workers=0)
    assert np.load(path / "labels.npy").dtype == np.int32
    assert_same_items(direct, BrodenDataset(tmp_path / "wide", preprocess=RAW, prepared=path))
    assert direct[0]["scalars"].tolist() == [70000] and direct[0]["seg"].max() == 300


def test_pickling_carries_no_pixels(synthetic):
    pre = Preprocess()
    prepare_dataset(BrodenDataset(synthetic, preprocess=pre), progress=False, workers=0)
    data = BrodenDataset(synthetic, preprocess=pre, prepared="auto")
    data[0], data[len(data) - 1]  # maps opened
    pixels = np.load(data.prepared.path / "images.npy", mmap_mode="r").nbytes
    blob = pickle.dumps(data)
    assert len(blob) < pixels / 4
    copy = pickle.loads(blob)
    assert copy.prepared._images is None and torch.equal(copy[3]["image"], data[3]["image"])


def test_with_options_keeps_the_prepared_copy_and_follows_the_input_size(tiny_dataset):
    small = Preprocess(input_size=(4, 4))
    prepare_dataset(BrodenDataset(tiny_dataset), progress=False, workers=0)
    data = BrodenDataset(tiny_dataset, prepared="auto")
    assert data.with_options(load_images=False).prepared is data.prepared
    assert data.with_options(preprocess=CAFFE).prepared is data.prepared  # normalisation is applied at read time
    assert data.with_options(preprocess=small).prepared is None  # no copy at 4x4 yet: decode
    prepare_dataset(BrodenDataset(tiny_dataset, preprocess=small), progress=False, workers=0)
    resized = data.with_options(preprocess=small)
    assert resized.prepared is not None and resized.prepared.path != data.prepared.path
    assert resized[0]["image"].shape == (3, 4, 4)
    assert data.with_options(prepared=None).prepared is None


# --------------------------------------------------------------------------------------------
# Dissection results


def test_dissect_on_a_prepared_dataset_gives_identical_results(tmp_path):
    root = tmp_path / "planted"
    maps = write_planted_dataset(root, n=12, random_units=3)
    direct = BrodenDataset(root, preprocess=RAW)
    prepare_dataset(direct, progress=False, workers=0)
    prepared = BrodenDataset(root, preprocess=RAW, prepared="auto")
    assert prepared.prepared is not None
    options = dict(quantile=0.1, progress=False, device="cpu", batch_size=4, workers=0, cache_memory=0)
    a = dissect(LookupNet(maps), direct, ["layer"], tmp_path / "a", **options)
    b = dissect(LookupNet(maps), prepared, ["layer"], tmp_path / "b", **options)
    tally = [(tmp_path / run / "layer" / "tally.csv").read_bytes() for run in ("a", "b")]
    assert tally[0] == tally[1]
    la, lb = a.layers["layer"], b.layers["layer"]
    assert np.array_equal(la.thresholds, lb.thresholds)
    for name in ("inter", "act", "truth", "top_indices"):
        assert np.array_equal(getattr(la, name), getattr(lb, name)), name
    assert la.detectors.sum() >= 3  # the planted units are found: the comparison is not vacuous


# --------------------------------------------------------------------------------------------
# Invalidation


def test_a_changed_dataset_is_never_read_from_a_stale_copy(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    path = prepare_dataset(data, progress=False, workers=0)
    key = dataset_key(data)
    png = tiny_dataset / "images" / "im0_part_2.png"
    original = png.stat()

    def stale() -> None:
        fresh = BrodenDataset(tiny_dataset, preprocess=RAW)
        assert dataset_key(fresh) != key
        assert BrodenDataset(tiny_dataset, preprocess=RAW, prepared="auto").prepared is None  # decodes instead
        with pytest.raises(DatasetError) as info:
            BrodenDataset(tiny_dataset, preprocess=RAW, prepared=path)
        assert str(info.value) == (
            f"{path} was prepared from a different dataset or input size (or the dataset "
            "changed since); run `netdissect prepare` again"
        )

    touch(png)
    stale()
    os.utime(png, ns=(original.st_atime_ns, original.st_mtime_ns))
    assert dataset_key(BrodenDataset(tiny_dataset, preprocess=RAW)) == key  # back as it was: valid again
    assert BrodenDataset(tiny_dataset, preprocess=RAW, prepared="auto").prepared is not None

    tail = np.zeros((4, 4), int)
    tail[3, 3] = 3
    write_png(png, tail)  # new content
    stale()
    fresh = BrodenDataset(tiny_dataset, preprocess=RAW, prepared="auto")
    assert fresh[0]["seg"][2, 3, 3] == 3  # the decoded, current labels


def test_edited_csv_or_replaced_image_invalidates(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    prepare_dataset(data, progress=False, workers=0)
    auto = lambda: BrodenDataset(tiny_dataset, preprocess=RAW, prepared="auto").prepared  # noqa: E731
    assert auto() is not None
    index = tiny_dataset / "index.csv"
    text = index.read_text()
    index.write_text(text.replace("4;0", "4"))  # same rows and labels, other bytes
    assert auto() is None
    index.write_text(text)
    assert auto() is not None
    jpg = tiny_dataset / "images" / "im1.jpg"
    from PIL import Image

    Image.fromarray(gray_image(5, 8)).save(jpg, quality=80)
    touch(jpg)
    assert auto() is None
    label = tiny_dataset / "label.csv"
    label.write_text(label.read_text().replace("dog", "hound"))
    assert auto() is None


# --------------------------------------------------------------------------------------------
# Atomic writes


def test_an_interrupted_prepare_leaves_nothing_that_looks_valid(tiny_dataset, monkeypatch):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    target = default_prepared_path(data)
    real_write = prepared_module._write

    def crash(dataset, directory, *args):
        real_write(dataset, directory, *args)
        raise KeyboardInterrupt  # after every file is written, before the rename

    monkeypatch.setattr(prepared_module, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(data, progress=False, workers=0)
    assert not target.exists() and list(target.parent.iterdir()) == []  # the temporary directory is gone
    assert find_prepared(data) is None
    monkeypatch.setattr(prepared_module, "_write", real_write)
    assert prepare_dataset(data, progress=False, workers=0) == target
    assert find_prepared(data) is not None


def test_half_written_and_foreign_directories_are_ignored(tiny_dataset, tmp_path):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    complete = prepare_dataset(data, out=tmp_path / "complete", progress=False, workers=0)
    target = default_prepared_path(data)
    target.parent.mkdir(parents=True)
    # a temporary directory (a killed prepare), even with every file in it, is never used
    shutil.copytree(complete, target.parent / f".tmp-{target.name}-x")
    assert find_prepared(data) is None
    # the final name without prepared.json (a half copy): not used, and named in the error
    shutil.copytree(complete, target)
    (target / "prepared.json").unlink()
    assert find_prepared(data) is None
    with pytest.raises(DatasetError, match="is not a prepared dataset"):
        BrodenDataset(tiny_dataset, prepared=target)
    # prepare replaces it
    assert prepare_dataset(data, progress=False, workers=0) == target
    assert find_prepared(data).path == target


def test_abandoned_temporary_directories_are_removed(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    target = default_prepared_path(data)
    target.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    for name, pid in (("dead", int(dead.stdout)), ("alive", os.getpid())):
        tmp = target.parent / f".tmp-{target.name}-{name}"
        tmp.mkdir()
        (tmp / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    prepare_dataset(data, progress=False, workers=0)
    left = sorted(p.name for p in target.parent.iterdir())
    assert left == sorted([f".tmp-{target.name}-alive", target.name])


def test_out_holding_something_else_is_refused(tiny_dataset, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="exists and is not a prepared dataset"):
        prepare_dataset(BrodenDataset(tiny_dataset), out=out, progress=False, workers=0)
    assert (out / "notes.txt").read_text() == "keep me"
    # an existing, matching copy is kept as it is
    path = prepare_dataset(BrodenDataset(tiny_dataset), out=tmp_path / "p", progress=False, workers=0)
    stamp = (path / "images.npy").stat().st_mtime_ns
    assert prepare_dataset(BrodenDataset(tiny_dataset), out=path, progress=False, workers=0) == path
    assert (path / "images.npy").stat().st_mtime_ns == stamp


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("workers", [0, 2])
def test_prepare_reports_the_readers_errors(tiny_dataset, workers):
    png = tiny_dataset / "images" / "im1_part.png"
    png.unlink()
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    with pytest.raises(DatasetError) as expected:
        data[1]
    with pytest.raises(DatasetError) as info:
        prepare_dataset(data, progress=False, workers=workers)
    assert info.value.message == str(info.value) == expected.value.message == f"missing PNG {png} (index.csv row 2)"
    assert not (default_cache_dir() / "prepared").exists() or not any((default_cache_dir() / "prepared").iterdir())


def test_unreadable_image_and_unknown_label(tiny_dataset):
    jpg = tiny_dataset / "images" / "im0.jpg"
    jpg.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"^cannot read image .*im0\.jpg \(index\.csv row 1\)"):
        prepare_dataset(BrodenDataset(tiny_dataset), progress=False, workers=0)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(gray_image(0, 8)).save(jpg)
    write_png(tiny_dataset / "images" / "im1_object.png", np.full((4, 4), 9))
    with pytest.raises(DatasetError, match="holds unknown label number 9"):
        prepare_dataset(BrodenDataset(tiny_dataset), progress=False, workers=0)


def test_open_checks_the_directory(tmp_path, tiny_dataset):
    with pytest.raises(DatasetError, match="is not a prepared dataset"):
        PreparedData.open(tmp_path / "nothing")
    path = prepare_dataset(BrodenDataset(tiny_dataset), out=tmp_path / "p", progress=False, workers=0)
    info = json.loads((path / "prepared.json").read_text())
    (path / "prepared.json").write_text(json.dumps({**info, "format": 999}))
    with pytest.raises(DatasetError, match="is not a prepared dataset"):
        PreparedData.open(path)


def test_rows_keep_their_csv_order(synthetic):
    """Row i of the prepared copy is index.csv's selected row i (not a neighbour)."""
    with open(synthetic / "index.csv", newline="") as f:
        images = [r["image"] for r in csv.DictReader(f)]
    data = BrodenDataset(synthetic, preprocess=Preprocess(mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=255))
    prepare_dataset(data, progress=False, workers=2)
    prepared = BrodenDataset(synthetic, preprocess=data.preprocess, prepared="auto")
    from PIL import Image

    for i in (0, 7, len(images) - 1):
        with Image.open(synthetic / "images" / images[i]) as im:
            expected = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1).copy())
        assert torch.equal(prepared[i]["image"], expected)
