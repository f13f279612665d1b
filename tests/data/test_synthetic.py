"""Tests of the synthetic Broden-format dataset generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from netdissect.data.broden import BrodenDataset, BrodenMeta, decode_label_png
from netdissect.data.synthetic import (
    CATEGORIES,
    LABELS,
    RARE_OBJECT,
    draw_image,
    label_number,
    label_specs,
    label_table,
    make_synthetic_dataset,
)
from netdissect.errors import DatasetError

N = 300
SIZE = 128
CATEGORY_OF = {name: category for name, category in LABELS}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "broden", n=N, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def meta(dataset: Path) -> BrodenMeta:
    return BrodenMeta.load(dataset)


def _read_index(directory: Path) -> list[dict[str, str]]:
    with open(directory / "index.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- label table


def test_label_table_is_fixed_unique_and_in_broden_order() -> None:
    table = label_table()
    assert [number for number, _, _ in table] == list(range(1, len(LABELS) + 1))
    names = [name for _, name, _ in table]
    assert len(set(names)) == len(names)
    assert CATEGORIES == ("color", "object", "part", "material", "scene", "texture")
    categories = [category for _, _, category in table]
    assert sorted(categories, key=CATEGORIES.index) == categories  # grouped in category order
    assert set(categories) == set(CATEGORIES)
    assert all(name.endswith("-c") for name in names if CATEGORY_OF[name] == "color")
    assert all(name.endswith("-s") for name in names if CATEGORY_OF[name] == "scene")
    assert not any(name.endswith(("-c", "-s")) for name in names if CATEGORY_OF[name] not in ("color", "scene"))
    assert [spec.number for spec in label_specs()] == [number for number, _, _ in table]
    assert label_number(names[0]) == 1 and label_number(RARE_OBJECT) == names.index(RARE_OBJECT) + 1


def test_draw_image_shapes() -> None:
    drawn = draw_image(np.random.default_rng(5), size=64)
    assert drawn.image.shape == (64, 64, 3) and drawn.image.dtype == np.uint8
    for category, layers in drawn.pixel_labels.items():
        assert all(layer.shape == (32, 32) for layer in layers), category
    assert len(drawn.image_labels["scene"]) == 1


# --------------------------------------------------------------------------- reading back


def test_reads_back_with_all_categories(dataset: Path, meta: BrodenMeta) -> None:
    assert meta.categories == list(CATEGORIES)
    assert len(meta.rows) == N
    present = np.zeros(len(CATEGORIES), dtype=bool)
    data = BrodenDataset(dataset, load_images=False)
    for index in range(0, N, 3):
        item = data[index]
        assert item["seg"].dtype == torch.int32
        present |= item["present"].numpy()
    assert present.all()
    with_images = BrodenDataset(dataset, size=4)
    item = with_images[0]
    assert tuple(item["image"].shape) == (3, SIZE, SIZE)
    assert item["scalars"].dtype == torch.int64


def test_label_csv_matches_table(dataset: Path, meta: BrodenMeta) -> None:
    with open(dataset / "label.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows, "label.csv is empty"
    for row in rows:
        name = row["name"]
        assert int(row["number"]) == label_number(name)
        assert row["category"].split("(")[0] == CATEGORY_OF[name]
        assert meta.categories[meta.label_category[label_number(name)]] == CATEGORY_OF[name]
    with open(dataset / "category.csv", newline="", encoding="utf-8") as f:
        assert [r["name"] for r in csv.DictReader(f)] == list(CATEGORIES)


def test_segmentation_is_half_the_image_size(dataset: Path, meta: BrodenMeta) -> None:
    assert all((r.ih, r.iw, r.sh, r.sw) == (SIZE, SIZE, SIZE // 2, SIZE // 2) for r in meta.rows)
    item = BrodenDataset(dataset, load_images=False, size=1)[0]
    assert tuple(item["seg"].shape[1:]) == (SIZE // 2, SIZE // 2)


def test_odd_size_segmentation(tmp_path: Path) -> None:
    directory = make_synthetic_dataset(tmp_path / "odd", n=3, size=67, seed=1)
    rows = BrodenMeta.load(directory).rows
    assert all((r.ih, r.iw, r.sh, r.sw) == (67, 67, 33, 33) for r in rows)
    item = BrodenDataset(directory)[0]
    assert tuple(item["image"].shape) == (3, 67, 67) and tuple(item["seg"].shape[1:]) == (33, 33)


def test_png_labels_are_known_and_in_their_category(dataset: Path, meta: BrodenMeta) -> None:
    images = dataset / "images"
    for row in meta.rows[:60]:
        for category, paths in zip(meta.categories, row.pngs):
            for rel in paths:
                values = np.unique(decode_label_png(images / rel))
                values = values[values > 0]
                assert len(values), f"{rel} is empty"
                for value in values:
                    assert meta.known[value]
                    assert CATEGORY_OF[meta.label_names[value]] == category, (rel, value)
        for category, numbers in zip(meta.categories, row.scalars):
            assert all(CATEGORY_OF[meta.label_names[n]] == category for n in numbers)
        assert len(row.scalars[CATEGORIES.index("scene")]) == 1
        assert not row.pngs[CATEGORIES.index("scene")] and not row.pngs[CATEGORIES.index("texture")]


def test_some_rows_have_two_part_layers(dataset: Path, meta: BrodenMeta) -> None:
    part = CATEGORIES.index("part")
    multi = [i for i, r in enumerate(meta.rows) if len(r.pngs[part]) >= 2]
    assert multi, "no row has two part layers"
    row = meta.rows[multi[0]]
    assert row.pngs[part][0].endswith("_part_1.png") and row.pngs[part][1].endswith("_part_2.png")
    item = BrodenDataset(dataset, categories=["part"], load_images=False)[multi[0]]
    seg = item["seg"].numpy()
    assert seg.shape[0] >= 2
    assert ((seg[0] > 0) & (seg[1] > 0)).any(), "second part layer does not overlap the first"


def test_pixels_carry_labels_in_several_categories(dataset: Path) -> None:
    item = BrodenDataset(dataset, categories=["color", "object", "part", "material"], load_images=False)[0]
    seg = item["seg"].numpy()
    labelled = (seg > 0).sum(axis=0)
    assert labelled.max() >= 3


def test_texture_cells(meta: BrodenMeta) -> None:
    texture = CATEGORIES.index("texture")
    counts = [len(r.scalars[texture]) for r in meta.rows]
    assert 0 in counts and 1 in counts and 2 in counts
    assert max(counts) == 2


def test_rare_object_frequency(dataset: Path, meta: BrodenMeta) -> None:
    rare = label_number(RARE_OBJECT)
    data = BrodenDataset(dataset, categories=["object"], load_images=False)
    hits = sum(bool((data[i]["seg"] == rare).any()) for i in range(len(data)))
    assert 0.01 <= hits / N <= 0.06, hits


def test_scenes_roughly_balanced(meta: BrodenMeta) -> None:
    scene = CATEGORIES.index("scene")
    numbers = [r.scalars[scene][0] for r in meta.rows]
    _, counts = np.unique(numbers, return_counts=True)
    assert len(counts) == sum(1 for _, c in LABELS if c == "scene")
    assert counts.min() >= 0.5 * N / len(counts)


def test_split(dataset: Path) -> None:
    splits = [r["split"] for r in _read_index(dataset)]
    assert "train" in splits and "val" in splits
    assert splits == sorted(splits, key=["train", "val"].index)  # train rows first
    assert 0.15 <= splits.count("val") / len(splits) <= 0.25
    assert len(BrodenMeta.load(dataset, split="val").rows) == splits.count("val")


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = _tree(make_synthetic_dataset(tmp_path / "a", n=12, size=64, seed=3))
    b = _tree(make_synthetic_dataset(tmp_path / "b", n=12, size=64, seed=3))
    c = _tree(make_synthetic_dataset(tmp_path / "c", n=12, size=64, seed=4))
    assert len(a) > 12 * 5
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    assert a != c
    assert all(a[k] != c[k] for k in a if k.endswith(".jpg"))


def test_images_do_not_depend_on_n(tmp_path: Path) -> None:
    small = _tree(make_synthetic_dataset(tmp_path / "small", n=3, size=48, seed=7))
    large = _tree(make_synthetic_dataset(tmp_path / "large", n=6, size=48, seed=7))
    for name, data in small.items():
        if name.startswith("images/"):
            assert large[name] == data, name


def test_existing_dataset_is_refused(dataset: Path) -> None:
    with pytest.raises(DatasetError):
        make_synthetic_dataset(dataset, n=2, size=32)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "x", n=0)
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "y", size=8)


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_synthetic_dataset(tmp_path / "p", n=2, size=32, progress=True)
    assert "2/2" in capsys.readouterr().err
