"""The Broden reader (DESIGN §2) on real files written by the tests, and its error messages (§5)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import RAW, LookupNet, gray_image, tiny_maps, write_png
from netdissect import dissect
from netdissect.data.broden import BrodenDataset, BrodenMeta, collate_broden, decode_label_png
from netdissect.data.writer import BrodenWriter, LabelSpec
from netdissect.errors import DatasetError

FAST = dict(quantile=0.5, progress=False, device="cpu", batch_size=1)


def write_files(root: Path, **files: str) -> Path:
    """Write CSV files given as ``name=text`` (``c_object`` -> ``c_object.csv``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for name, text in files.items():
        (root / f"{name}.csv").write_text(text)
    return root


def one_line_error(fn, *fragments: str) -> DatasetError:
    """Call ``fn``; it must raise a one-line DatasetError holding every fragment."""
    with pytest.raises(DatasetError) as info:
        fn()
    exc = info.value
    text = str(exc)
    assert "\n" not in text, text
    assert exc.message == text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return exc


# --------------------------------------------------------------------------------------------
# Metadata


def test_tiny_dataset_parses_exactly(tiny_dataset):
    meta = BrodenMeta.load(tiny_dataset)
    assert meta.directory == tiny_dataset
    assert meta.categories == ["object", "part", "scene"]
    assert meta.all_categories == ["object", "part", "scene"]
    assert meta.label_names == ["-", "dog", "leg", "tail", "park-s", "cat"]
    assert meta.num_labels == 6
    # cat's coverage is written 6.25e-2 in c_object.csv: it still parses, cat is an object
    assert meta.label_category.tolist() == [-1, 0, 1, 1, 2, 0]
    assert meta.labels_of("object").tolist() == [1, 5]
    assert meta.labels_of("part").tolist() == [2, 3]
    assert meta.labels_of("scene").tolist() == [4]
    assert meta.known.tolist() == [True] * 6
    assert [r.row for r in meta.rows] == [1, 2]
    r0, r1 = meta.rows
    assert (r0.image, r0.split, r0.ih, r0.iw, r0.sh, r0.sw) == ("im0.jpg", "train", 8, 8, 4, 4)
    assert r0.pngs == (("im0_object.png",), ("im0_part_1.png", "im0_part_2.png"), ())
    assert r0.scalars == ((), (), (4,))  # "4;0": the 0 entry is dropped
    assert (r1.image, r1.split) == ("im1.jpg", "val")
    assert r1.pngs == (("im1_object.png",), ("im1_part.png",), ())
    assert r1.scalars == ((), (), ())  # scene cell "0"


def test_split_and_size_selection(tiny_dataset):
    train = BrodenMeta.load(tiny_dataset, split="train")
    assert [(r.row, r.image) for r in train.rows] == [(1, "im0.jpg")]
    val = BrodenMeta.load(tiny_dataset, split="val")
    assert [(r.row, r.image) for r in val.rows] == [(2, "im1.jpg")]  # row numbers stay the file's
    assert [r.image for r in BrodenMeta.load(tiny_dataset, size=1).rows] == ["im0.jpg"]
    assert [r.image for r in BrodenMeta.load(tiny_dataset, size=2).rows] == ["im0.jpg", "im1.jpg"]
    assert [r.image for r in BrodenMeta.load(tiny_dataset, size=10).rows] == ["im0.jpg", "im1.jpg"]
    assert [r.image for r in BrodenMeta.load(tiny_dataset, split="val", size=1).rows] == ["im1.jpg"]
    assert len(BrodenDataset(tiny_dataset, split="val")) == 1
    assert len(BrodenDataset(tiny_dataset)) == 2


def test_size_below_one_is_refused(tiny_dataset):
    for size in (0, -3):
        one_line_error(lambda size=size: BrodenMeta.load(tiny_dataset, size=size), "size", str(size))


def test_category_selection(tiny_dataset):
    meta = BrodenMeta.load(tiny_dataset, categories=["part"])
    assert meta.categories == ["part"]
    assert meta.all_categories == ["object", "part", "scene"]
    assert meta.label_names == ["-", "dog", "leg", "tail", "park-s", "cat"]  # names stay global
    assert meta.label_category.tolist() == [-1, -1, 0, 0, -1, -1]  # outside the selection: -1
    assert meta.rows[0].pngs == (("im0_part_1.png", "im0_part_2.png"),)
    assert meta.rows[0].scalars == ((),)
    # the selection keeps category.csv order, whatever order it is given in
    meta = BrodenMeta.load(tiny_dataset, categories=["scene", "object"])
    assert meta.categories == ["object", "scene"]
    assert meta.label_category.tolist() == [-1, 0, -1, -1, 1, 0]
    assert meta.rows[0].pngs == (("im0_object.png",), ())
    assert meta.rows[0].scalars == ((), (4,))
    item = BrodenDataset(tiny_dataset, categories=["scene", "object"], preprocess=RAW)[0]
    assert item["seg"].shape == (1, 4, 4)  # only the object layer
    assert item["present"].tolist() == [True, True]


def test_category_selection_does_not_need_other_c_files(tiny_dataset):
    (tiny_dataset / "c_part.csv").unlink()
    meta = BrodenMeta.load(tiny_dataset, categories=["object", "scene"])
    assert meta.categories == ["object", "scene"]


def shared_label_dataset(root: Path) -> Path:
    """Labels 1..4 listed in several categories' c_*.csv files (DESIGN §2.6)."""
    return write_files(
        root,
        category="name,first,last,count,frequency\na,1,3,3,1\nb,1,3,3,1\nc,1,1,1,1\n",
        label=(
            "number,name,category,frequency,coverage,syns\n"
            "1,tie,a(1);b(1),2,1,tie\n2,mostly-a,a(1);b(1),2,1,x\n"
            "3,mostly-b,a(1);b(1),2,1,y\n4,only-c,c(1),1,1,z\n"
        ),
        # label 1: a tie (0.5 written two ways) -> the later category b;
        # label 2: a (0.25) beats b (6.25e-2); label 3: b (2e-1) beats a (0.1)
        c_a="code,number,name,frequency,coverage\n1,1,tie,1,0.5\n2,2,mostly-a,1,0.25\n3,3,mostly-b,1,0.1\n",
        c_b="code,number,name,frequency,coverage\n1,1,tie,1,5e-1\n2,2,mostly-a,1,6.25e-2\n3,3,mostly-b,1,2e-1\n",
        c_c="code,number,name,frequency,coverage\n1,4,only-c,1,1\n",
        index="image,split,ih,iw,sh,sw,a,b,c\nx.jpg,train,8,8,4,4,,,4\n",
    )


def test_primary_category_largest_coverage_ties_to_later(tmp_path):
    root = shared_label_dataset(tmp_path / "ds")
    meta = BrodenMeta.load(root)
    assert meta.categories == ["a", "b", "c"]
    assert meta.label_category.tolist() == [-1, 1, 0, 1, 2]
    assert meta.labels_of("a").tolist() == [2]
    assert meta.labels_of("b").tolist() == [1, 3]
    # only among the selected categories
    assert BrodenMeta.load(root, categories=["a", "c"]).label_category.tolist() == [-1, 0, 0, 0, 1]
    assert BrodenMeta.load(root, categories=["b"]).label_category.tolist() == [-1, 0, 0, 0, -1]
    assert BrodenMeta.load(root, categories=["c"]).label_category.tolist() == [-1, -1, -1, -1, 0]


def test_tie_goes_to_later_category_also_with_three(tmp_path):
    root = write_files(
        tmp_path / "ds",
        category="name,first,last,count,frequency\na,1,1,1,1\nb,1,1,1,1\nc,1,1,1,1\n",
        label="number,name,category,frequency,coverage,syns\n1,l,a(1),1,1,l\n",
        c_a="code,number,name,frequency,coverage\n1,1,l,1,0.3\n",
        c_b="code,number,name,frequency,coverage\n1,1,l,1,3e-1\n",
        c_c="code,number,name,frequency,coverage\n1,1,l,1,0.2\n",
        index="image,split,ih,iw,sh,sw,a,b,c\nx.jpg,train,8,8,4,4,,,\n",
    )
    assert BrodenMeta.load(root).label_category.tolist() == [-1, 1]  # b: tied with a, later; c smaller


# --------------------------------------------------------------------------------------------
# Items


def test_items_layers_scalars_present(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    item = data[0]
    assert set(item) == {"index", "image", "seg", "scalars", "present"}
    assert item["index"] == 0
    assert item["image"].shape == (3, 8, 8) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"], torch.full((3, 8, 8), 16 / 255), atol=2 / 255)
    seg = item["seg"]
    assert seg.dtype == torch.int32 and seg.shape == (3, 4, 4)  # object + two part layers
    dog = np.zeros((4, 4), int)
    dog[:2, :2] = 1
    leg = np.zeros((4, 4), int)
    leg[0, 0] = 2
    tail = np.zeros((4, 4), int)
    tail[0, 0] = tail[1, 1] = 3
    assert seg[0].tolist() == dog.tolist()
    assert seg[1].tolist() == leg.tolist()
    assert seg[2].tolist() == tail.tolist()
    assert item["scalars"].dtype == torch.int64 and item["scalars"].tolist() == [4]
    assert item["present"].dtype == torch.bool and item["present"].tolist() == [True, True, True]

    item = data[1]
    assert item["index"] == 1
    assert item["seg"].shape == (2, 4, 4)
    cat = np.zeros((4, 4), int)
    cat[0, 0] = 5
    assert item["seg"][0].tolist() == cat.tolist()
    assert item["seg"][1].tolist() == np.zeros((4, 4), int).tolist()
    assert item["scalars"].tolist() == []  # scene cell "0" is no label
    # the all-zero part PNG and the "0" scene entry do not make their categories present
    assert item["present"].tolist() == [True, False, False]


def test_loading_options(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    no_images = data.with_options(load_images=False)
    assert no_images.meta is data.meta
    item = no_images[0]
    assert "image" not in item and item["seg"].shape == (3, 4, 4)
    item = data.with_options(load_segmentations=False)[0]
    assert item["image"].shape == (3, 8, 8)
    assert item["seg"].shape == (0, 4, 4)
    assert item["scalars"].tolist() == [4]


def label_300_dataset(root: Path) -> Path:
    """Labels 1 (a) and 300 (b): label 300 is stored as R=44, G=1."""
    write_files(
        root,
        category="name,first,last,count,frequency\nobject,1,2,2,1\n",
        label="number,name,category,frequency,coverage,syns\n1,a,object(1),1,0.5,a\n300,b,object(1),1,0.5,b\n",
        c_object="code,number,name,frequency,coverage\n1,1,a,1,0.5\n2,300,b,1,0.5\n",
        index="image,split,ih,iw,sh,sw,object\nx.jpg,train,4,4,2,2,x.png\n",
    )
    Image.fromarray(gray_image(0, 4)).save(root / "images" / "x.jpg")
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, :, 0] = 44
    rgb[0, :, 1] = 1  # 44 + 256 * 1 = 300
    rgb[1, 0, 0] = 1
    Image.fromarray(rgb, "RGB").save(root / "images" / "x.png")
    return root


def test_label_numbers_decode_as_r_plus_256_g(tmp_path):
    root = label_300_dataset(tmp_path / "ds")
    assert decode_label_png(root / "images" / "x.png").tolist() == [[300, 300], [1, 0]]
    meta = BrodenMeta.load(root)
    assert meta.num_labels == 301
    assert meta.label_names[300] == "b" and meta.label_names[1] == "a"
    assert meta.label_category[300] == 0 and meta.label_category[1] == 0
    assert meta.labels_of("object").tolist() == [1, 300]
    item = BrodenDataset(root, preprocess=RAW)[0]
    assert item["seg"].tolist() == [[[300, 300], [1, 0]]]
    assert item["present"].tolist() == [True]


def test_collate_pads_layers_and_scalars_with_zero(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    batch = collate_broden([data[1], data[0]])
    assert batch["index"].tolist() == [1, 0]
    assert batch["image"].shape == (2, 3, 8, 8)
    assert batch["seg"].shape == (2, 3, 4, 4) and batch["seg"].dtype == torch.int32
    assert torch.equal(batch["seg"][0, :2], data[1]["seg"])
    assert batch["seg"][0, 2].eq(0).all()  # padding layer: no label
    assert torch.equal(batch["seg"][1], data[0]["seg"])
    assert batch["scalars"].tolist() == [[0], [4]]
    assert batch["present"].tolist() == [[True, False, False], [True, True, True]]
    # no layers / no scalars at all
    bare = data.with_options(load_images=False, load_segmentations=False)
    batch = collate_broden([bare[1], bare[1]])
    assert "image" not in batch
    assert batch["seg"].shape == (2, 0, 4, 4)
    assert batch["scalars"].shape == (2, 0)


def test_collate_through_a_dataloader(tiny_dataset):
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=collate_broden)
    (batch,) = list(loader)
    assert batch["seg"].shape == (2, 3, 4, 4)
    assert batch["scalars"].tolist() == [[4], [0]]


# --------------------------------------------------------------------------------------------
# Writer -> reader


def test_writer_reader_round_trip(tmp_path):
    labels = [
        LabelSpec(1, "dog", ("dog", "hound")),
        LabelSpec(2, "leg"),
        LabelSpec(3, "park-s"),
        LabelSpec(4, "never-used"),
        LabelSpec(5, "rock"),
    ]
    w = BrodenWriter(tmp_path / "ds", ["object", "part", "scene"], labels)
    obj0 = np.zeros((4, 4), int)
    obj0[:2, :] = 1  # dog: half of image 0
    obj0[3, 3] = 5
    part0a = np.zeros((4, 4), int)
    part0a[0, 0] = 2
    part0b = np.zeros((4, 4), int)
    part0b[0, 1] = 1  # dog also listed as a part, with less coverage than as an object
    obj1 = np.zeros((4, 4), int)
    obj1[:, :1] = 1  # a quarter
    # added out of split order: the val image first
    w.add_image("v/im_val", gray_image(2, 8), "val", pixel_labels={"object": [obj1]})
    w.add_image(
        "im0",
        gray_image(0, 8),
        "train",
        pixel_labels={"object": [obj0], "part": [part0a, part0b]},
        image_labels={"scene": [3, 0]},
    )
    w.add_image("im1", gray_image(1, 8), "train", pixel_labels={"part": [np.zeros((4, 4), int)]})
    root = w.close()
    assert root == tmp_path / "ds"

    index = list(csv.reader((root / "index.csv").open()))
    assert index[0] == ["image", "split", "ih", "iw", "sh", "sw", "object", "part", "scene"]
    assert [r[:2] for r in index[1:]] == [["im0.jpg", "train"], ["im1.jpg", "train"], ["v/im_val.jpg", "val"]]
    assert index[1][6:] == ["im0_object.png", "im0_part_1.png;im0_part_2.png", "3"]
    assert index[2][6:] == ["", "", ""]  # the all-zero layer is not written

    meta = BrodenMeta.load(root)
    assert meta.categories == ["object", "part", "scene"]
    assert meta.label_names == ["-", "dog", "leg", "park-s", "-", "rock"]  # unused label 4 dropped
    assert meta.known.tolist() == [True, True, True, True, False, True]
    assert meta.label_category.tolist() == [-1, 0, 1, 2, -1, 0]  # dog: object beats part
    assert [(r.row, r.image, r.split) for r in meta.rows] == [
        (1, "im0.jpg", "train"),
        (2, "im1.jpg", "train"),
        (3, "v/im_val.jpg", "val"),
    ]

    def rows(name):
        return list(csv.DictReader((root / name).open()))

    label_rows = rows("label.csv")
    assert [r["number"] for r in label_rows] == ["1", "2", "3", "5"]
    dog = label_rows[0]
    assert dog["category"] == "object(2);part(1)"
    assert dog["frequency"] == "2"  # images holding the label, in any category
    assert float(dog["coverage"]) == pytest.approx(1 / 2 + 1 / 4 + 1 / 16)
    assert dog["syns"] == "dog;hound"
    assert label_rows[2]["coverage"] == "1" and label_rows[2]["category"] == "scene(1)"
    c_object = rows("c_object.csv")
    assert [(r["code"], r["number"], r["name"], r["frequency"]) for r in c_object] == [
        ("1", "1", "dog", "2"),
        ("2", "5", "rock", "1"),
    ]
    assert float(c_object[0]["coverage"]) == pytest.approx(1 / 2 + 1 / 4)
    c_part = rows("c_part.csv")
    assert [(r["code"], r["number"]) for r in c_part] == [("1", "1"), ("2", "2")]
    assert [float(r["coverage"]) for r in c_part] == [pytest.approx(1 / 16)] * 2
    categories = rows("category.csv")
    assert [(r["name"], r["count"], r["frequency"]) for r in categories] == [
        ("object", "2", "2"),
        ("part", "2", "1"),
        ("scene", "1", "1"),
    ]

    data = BrodenDataset(root, preprocess=RAW)
    item = data[0]
    assert item["seg"].tolist() == [obj0.tolist(), part0a.tolist(), part0b.tolist()]
    assert item["scalars"].tolist() == [3]
    assert item["present"].tolist() == [True, True, True]
    item = data[1]
    assert item["seg"].shape == (0, 4, 4) and item["present"].tolist() == [False, False, False]
    item = data[2]
    assert item["seg"].tolist() == [obj1.tolist()]
    assert item["present"].tolist() == [True, False, False]
    assert torch.allclose(item["image"], torch.full((3, 8, 8), 48 / 255), atol=2 / 255)


def test_writer_label_above_255_round_trips(tmp_path):
    w = BrodenWriter(tmp_path / "ds", ["object"], [LabelSpec(300, "big"), LabelSpec(1000, "bigger")])
    seg = np.zeros((4, 4), int)
    seg[0] = 300
    seg[1] = 1000
    w.add_image("x", gray_image(0, 8), pixel_labels={"object": [seg]})
    root = w.close()
    assert decode_label_png(root / "images" / "x_object.png").tolist() == seg.tolist()
    assert BrodenDataset(root)[0]["seg"][0].tolist() == seg.tolist()


# --------------------------------------------------------------------------------------------
# Errors: one line, naming the culprit


def test_missing_dataset_directory(tmp_path):
    missing = tmp_path / "no-such-dataset"
    one_line_error(lambda: BrodenMeta.load(missing), str(missing), "does not exist")
    one_line_error(lambda: BrodenDataset(missing), str(missing))


@pytest.mark.parametrize("name", ["index.csv", "label.csv", "category.csv", "c_part.csv", "c_scene.csv"])
def test_missing_required_file(tiny_dataset, name):
    (tiny_dataset / name).unlink()
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), "missing", str(tiny_dataset / name))


@pytest.mark.parametrize(
    "name, old, new, row, expected, got",
    [
        ("label.csv", "3,tail,part(1),1,0.125,tail", "3,tail,part(1),1,0.125", 3, 6, 5),
        ("category.csv", "part,1,2,2,1", "part,1,2,2,1,9", 2, 5, 6),
        ("c_object.csv", "2,5,cat,1,6.25e-2", "2,5,cat,1", 2, 5, 4),
        (
            "index.csv",
            "im1.jpg,val,8,8,4,4,im1_object.png,im1_part.png,0",
            "im1.jpg,val,8,8,4,4,im1_object.png,im1_part.png",
            2,
            9,
            8,
        ),
        (
            "index.csv",
            "im0.jpg,train,8,8,4,4,im0_object.png,im0_part_1.png;im0_part_2.png,4;0",
            "im0.jpg,train,8,8,4,4,im0_object.png,im0_part_1.png,im0_part_2.png,4;0",
            1,
            9,
            10,
        ),
    ],
)
def test_wrong_column_count(tiny_dataset, name, old, new, row, expected, got):
    path = tiny_dataset / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    one_line_error(
        lambda: BrodenMeta.load(tiny_dataset), str(path), f"row {row}", f"expected {expected} columns, got {got}"
    )


def test_unknown_label_number_in_index_cell(tiny_dataset):
    path = tiny_dataset / "index.csv"
    path.write_text(path.read_text().replace("im1_part.png,0\n", "im1_part.png,0;9\n"))
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), str(path), "row 2", "unknown label number 9", "column scene")
    # a label number inside the range of label.csv but not listed in it
    (tiny_dataset / "index.csv").write_text(path.read_text().replace("0;9\n", "0\n").replace(",4;0\n", ",4;7\n"))
    label = tiny_dataset / "label.csv"
    label.write_text(label.read_text() + "8,eight,scene(1),1,1,eight\n")
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), "row 1", "unknown label number 7", "column scene")


def test_unknown_label_number_in_c_file(tiny_dataset):
    path = tiny_dataset / "c_part.csv"
    path.write_text(path.read_text() + "3,17,x,1,0.1\n")
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), str(path), "row 3", "unknown label number 17")


def test_malformed_numbers(tiny_dataset):
    path = tiny_dataset / "c_object.csv"
    original = path.read_text()
    path.write_text(original.replace("6.25e-2", "lots"))
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), str(path), "row 2", "'lots'")
    path.write_text(original)
    path = tiny_dataset / "label.csv"
    path.write_text(path.read_text().replace("4,park-s", "four,park-s"))
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), str(path), "row 4", "'four'")


def test_index_header_must_match_categories(tiny_dataset):
    path = tiny_dataset / "index.csv"
    path.write_text(path.read_text().replace("object,part,scene", "object,scene,part", 1))
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), str(path), "header")


def test_unknown_label_number_inside_png(tiny_dataset):
    png = tiny_dataset / "images" / "im1_object.png"
    bad = np.zeros((4, 4), int)
    bad[2, 2] = 7  # beyond label.csv's largest number
    write_png(png, bad)
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    data[0]  # other rows are fine
    one_line_error(lambda: data[1], str(png), "index.csv row 2", "unknown label number 7")


def test_unlisted_label_number_inside_png(tmp_path):
    root = label_300_dataset(tmp_path / "ds")
    png = root / "images" / "x.png"
    write_png(png, np.array([[300, 2], [1, 0]]))  # 2 < 300 but not in label.csv
    one_line_error(lambda: BrodenDataset(root)[0], str(png), "index.csv row 1", "unknown label number 2")


def test_missing_png(tiny_dataset):
    png = tiny_dataset / "images" / "im0_part_2.png"
    png.unlink()
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    data.with_options(load_segmentations=False)[0]  # images alone still load
    one_line_error(lambda: data[0], "missing PNG", str(png), "index.csv row 1")


def test_png_of_wrong_size(tiny_dataset):
    png = tiny_dataset / "images" / "im1_part.png"
    write_png(png, np.zeros((3, 4), int))
    one_line_error(lambda: BrodenDataset(tiny_dataset)[1], str(png), "index.csv row 2", "3x4", "4x4")


def test_unreadable_image(tiny_dataset):
    jpg = tiny_dataset / "images" / "im1.jpg"
    jpg.write_bytes(b"this is not a JPEG \x00\xff\x13garbage" * 10)
    data = BrodenDataset(tiny_dataset, preprocess=RAW)
    data[0]
    one_line_error(lambda: data[1], "cannot read image", str(jpg), "index.csv row 2")
    data.with_options(load_images=False)[1]  # the segmentations alone still load


def test_missing_image(tiny_dataset):
    jpg = tiny_dataset / "images" / "im0.jpg"
    jpg.unlink()
    one_line_error(lambda: BrodenDataset(tiny_dataset)[0], str(jpg), "index.csv row 1")


def test_image_of_wrong_size(tiny_dataset):
    jpg = tiny_dataset / "images" / "im1.jpg"
    Image.fromarray(gray_image(1, 6)).save(jpg)
    one_line_error(lambda: BrodenDataset(tiny_dataset)[1], str(jpg), "index.csv row 2", "6x6", "8x8")


def test_bad_split(tiny_dataset):
    one_line_error(lambda: BrodenMeta.load(tiny_dataset, split="test"), "'test'", "train or val")
    path = tiny_dataset / "index.csv"
    path.write_text(path.read_text().replace("im1.jpg,val,", "im1.jpg,validation,"))
    one_line_error(lambda: BrodenMeta.load(tiny_dataset), str(path), "row 2", "'validation'")


def test_unknown_category(tiny_dataset):
    exc = one_line_error(lambda: BrodenMeta.load(tiny_dataset, categories=["part", "texture"]), "'texture'")
    assert "object, part, scene" in exc.message  # and lists the known ones


def test_no_rows_selected(tiny_dataset):
    path = tiny_dataset / "index.csv"
    path.write_text(path.read_text().replace("im1.jpg,val,", "im1.jpg,train,"))
    one_line_error(lambda: BrodenMeta.load(tiny_dataset, split="val"), str(path), "no rows")


def dissect_error(dataset: Path, out: Path | None, workers: int) -> DatasetError:
    """The DatasetError of a dissection, with its traceback dropped.

    The traceback holds the DataLoader iterator: kept alive (e.g. by ``pytest.raises``), its
    worker process would only be shut down at interpreter exit, which takes seconds.
    """
    data = BrodenDataset(dataset, preprocess=RAW)
    try:
        dissect(LookupNet(tiny_maps()), data, ["layer"], out, workers=workers, **FAST)
    except DatasetError as exc:
        return exc.with_traceback(None)
    raise AssertionError("no DatasetError raised")


def test_worker_error_reaches_caller_as_one_line(tiny_dataset, tmp_path):
    png = tiny_dataset / "images" / "im1_part.png"
    png.unlink()
    messages = []
    for workers in (0, 1):
        exc = dissect_error(tiny_dataset, tmp_path / f"run{workers}", workers)
        assert "\n" not in str(exc)
        assert exc.message == str(exc)
        messages.append(exc.message)
    assert messages[0] == messages[1] == f"missing PNG {png} (index.csv row 2)"


def test_error_in_worker_during_first_pass(tiny_dataset):
    jpg = tiny_dataset / "images" / "im0.jpg"
    jpg.write_bytes(b"garbage")
    exc = dissect_error(tiny_dataset, None, workers=1)
    assert "\n" not in str(exc)
    assert exc.message.startswith(f"cannot read image {jpg} (index.csv row 1)")


def test_copied_dataset_reads_the_same(tiny_dataset, tmp_path):
    """A copy of the dataset elsewhere reads the same (paths are relative to the root)."""
    copy = Path(shutil.copytree(tiny_dataset, tmp_path / "copy"))
    a, b = BrodenDataset(tiny_dataset, preprocess=RAW), BrodenDataset(copy, preprocess=RAW)
    assert b.directory == copy
    for i in range(2):
        assert torch.equal(a[i]["seg"], b[i]["seg"]) and torch.equal(a[i]["image"], b[i]["image"])
