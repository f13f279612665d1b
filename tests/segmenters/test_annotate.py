"""``annotate``: a Broden-format dataset from a segmenter's labels, readable and dissectable as any other."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdissect import BrodenDataset, annotate_images, dissect, load_segmenter
from netdissect.data.broden import decode_label_png
from netdissect.data.colors import COLOR_NAMES, color_layer
from netdissect.errors import DatasetError, OptionError
from netdissect.models.toy import ColorSegmenter

TOY = "netdissect.models.toy:color_segmenter"
FAST = dict(device="cpu", workers=0, progress=False)


def color_rule(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.int64)
    labels = np.zeros(x.shape[:-1], dtype=np.int64)
    for c in range(3):
        labels[x[..., c] - np.maximum(x[..., (c + 1) % 3], x[..., (c + 2) % 3]) > 51] = c + 1
    return labels


def blocks(seed: int, size: int = 16, colours=((200, 20, 20), (20, 200, 20), (120, 120, 120))) -> np.ndarray:
    """An image of 4 x 4 blocks of the given colours, drawn at random."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(colours), (4, 4))
    cells = np.asarray(colours, np.uint8)[pick]
    return cells.repeat(size // 4, 0).repeat(size // 4, 1)


def write_images(folder: Path, n: int, size: int = 16, **kw) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = [blocks(i, size, **kw) for i in range(n)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"im{i:02d}.png")
    return images


def test_labels_equal_the_rule_and_the_set_reads_and_dissects(tmp_path):
    images = write_images(tmp_path / "in", 6)  # no blue anywhere: the label is dropped
    out = annotate_images(TOY, tmp_path / "in", tmp_path / "ds", seg_size=16, batch_size=4, **FAST)
    dataset = BrodenDataset(out)
    meta = dataset.meta
    assert meta.categories == ["object"]
    assert [meta.label_names[n] for n in (1, 2)] == ["red", "green"] and meta.num_labels == 3
    for i, image in enumerate(images):
        row = next(r for r in meta.rows if r.image == f"im{i:02d}.jpg")
        assert (row.ih, row.iw, row.sh, row.sw) == (16, 16, 16, 16)
        assert np.array_equal(decode_label_png(out / "images" / row.pngs[0][0]), color_rule(image))
    # statistics as the writer computes them: images holding each label, summed coverage
    with open(out / "c_object.csv", newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    for number, name in ((1, "red"), (2, "green")):
        maps = [color_rule(im) == number for im in images]
        assert int(rows[name]["frequency"]) == sum(m.any() for m in maps)
        assert float(rows[name]["coverage"]) == pytest.approx(sum(m.mean() for m in maps), rel=1e-5)
    assert "blue" not in (out / "label.csv").read_text()
    result = dissect("demo", out, ["conv1"], quantile=0.2, batch_size=3, **FAST)
    layer = result["conv1"]
    assert layer.truth[1] == sum(int((color_rule(im) == 1).sum()) for im in images)
    assert {layer.label_names[n] for n in layer.label} <= {"red", "green"}


def test_sizes_formats_colors_and_min_confidence(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    wide = blocks(1, 16).repeat(2, 1)[:, :24]  # 16 x 24
    Image.fromarray(wide).save(folder / "wide.bmp")
    Image.fromarray(blocks(2, 20)).convert("RGBA").save(folder / "sub.png")
    Image.fromarray(blocks(3, 12)[..., 0]).save(folder / "grey.jpg")  # greyscale: never a dominant channel
    (folder / "notes.txt").write_text("not an image")
    out = annotate_images(TOY, folder, tmp_path / "kept", colors=True, **FAST)
    meta = BrodenDataset(out).meta
    assert meta.categories == ["color", "object"]
    sizes = {r.image: (r.ih, r.iw, r.sh, r.sw) for r in meta.rows}
    assert sizes == {"wide.jpg": (16, 24, 8, 12), "sub.jpg": (20, 20, 10, 10), "grey.jpg": (12, 12, 6, 6)}
    wide_row = next(r for r in meta.rows if r.image == "wide.jpg")
    codes, _ = color_layer(wide, (8, 12))
    stored = decode_label_png(out / "images" / wide_row.pngs[0][0])
    assert np.array_equal(stored, codes + 3)  # colour term c is label 3 + c (after the 3 object classes)
    assert meta.label_names[4 + COLOR_NAMES.index("red")] == "red-c"
    assert wide_row.pngs[1] and not next(r for r in meta.rows if r.image == "grey.jpg").pngs[1]

    resized = annotate_images(TOY, folder, tmp_path / "resized", size=8, pattern="*.png", **FAST)
    assert [(r.image, r.ih, r.iw, r.sh, r.sw) for r in BrodenDataset(resized).meta.rows] == [("sub.jpg", 8, 8, 4, 4)]

    # confidence: the red blocks' softmax probability is about 0.48 (logits 0.2, 0.71, -0.71, -0.71)
    strict = annotate_images(TOY, folder, tmp_path / "strict", min_confidence=0.5, pattern="*.bmp", **FAST)
    assert "red" not in (strict / "label.csv").read_text()


class Counting(ColorSegmenter):
    """The colour rule, counting the images it labels and failing once ``fail_after`` were labelled."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.seen, self.fail_after = 0, fail_after

    def forward(self, x):
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise KeyboardInterrupt
        self.seen += x.shape[0]
        return super().forward(x)


def dataset_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path):
    write_images(tmp_path / "in", 7)
    options = dict(batch_size=2, colors=True, **FAST)
    whole = annotate_images(load_segmenter(Counting()), tmp_path / "in", tmp_path / "whole", **options)
    broken = Counting(fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        annotate_images(load_segmenter(broken), tmp_path / "in", tmp_path / "ds", **options)
    assert not (tmp_path / "ds").exists() and (tmp_path / "ds.partial").is_dir()
    again = Counting()
    out = annotate_images(load_segmenter(again), tmp_path / "in", tmp_path / "ds", **options)
    assert again.seen == 3  # the 4 images written before the interruption were not labelled again
    assert dataset_bytes(out) == dataset_bytes(whole)
    assert not (tmp_path / "ds.partial").exists()
    done = Counting()
    assert annotate_images(load_segmenter(done), tmp_path / "in", out, **options) == out and done.seen == 0
    with pytest.raises(DatasetError, match="already holds a dataset"):
        annotate_images(TOY, tmp_path / "in", out, **FAST)


def test_bad_inputs_stop_with_one_line(tmp_path):
    write_images(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.jpg"):
        annotate_images(TOY, tmp_path / "in", tmp_path / "a", **FAST)
    with pytest.raises(DatasetError, match="no images matching '\\*.tif'"):
        annotate_images(TOY, tmp_path / "in", tmp_path / "b", pattern="*.tif", **FAST)
    with pytest.raises(DatasetError, match="is not a directory"):
        annotate_images(TOY, tmp_path / "nowhere", tmp_path / "c", **FAST)
    with pytest.raises(OptionError, match="--min-confidence must lie in"):
        annotate_images(TOY, tmp_path / "in", tmp_path / "d", min_confidence=1.5, **FAST)
    (tmp_path / "in" / "broken.jpg").unlink()
    (tmp_path / "in" / "im00.jpg").write_bytes((tmp_path / "in" / "im01.png").read_bytes())
    with pytest.raises(DatasetError, match="two images would be stored as 'im00'"):
        annotate_images(TOY, tmp_path / "in", tmp_path / "e", **FAST)
