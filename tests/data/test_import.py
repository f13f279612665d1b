"""import-dataset: images + class-map PNGs + a label list (+ image-level labels) -> Broden format."""

import numpy as np
import pytest
from PIL import Image

from netdissect.cli import main
from netdissect.data import BrodenDataset, BrodenMeta
from netdissect.data.importer import import_dataset
from netdissect.errors import DatasetError


def make_source(root, n=6):
    (root / "img" / "sub").mkdir(parents=True)
    (root / "mask" / "sub").mkdir(parents=True)
    for i in range(n):
        rel = f"sub/p{i}" if i % 2 else f"p{i}"
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(root / "img" / f"{rel}.jpg")
        mask = np.zeros((20, 20), np.uint8)
        mask[:10, :10] = 1  # cat everywhere
        if i < 2:
            mask[10:, 10:] = 7  # grass (a material) on two images
        Image.fromarray(mask, "L").save(root / "mask" / f"{rel}.png")
    (root / "labels.csv").write_text("value,name,category\n0,background,object\n1,cat,object\n7,grass,material\n")
    (root / "scenes.csv").write_text("image,label\np0.jpg,park\np1,park\np2,kitchen\n")


def test_import_round_trip(tmp_path):
    make_source(tmp_path)
    out = import_dataset(
        tmp_path / "img",
        tmp_path / "mask",
        tmp_path / "labels.csv",
        tmp_path / "out",
        image_labels=tmp_path / "scenes.csv",
        progress=False,
    )
    meta = BrodenMeta.load(out)
    assert meta.categories == ["object", "material", "scene"]
    names = {meta.label_names[n]: n for n in range(1, meta.num_labels)}
    assert set(names) == {"cat", "grass", "park", "kitchen"}
    assert len(meta.rows) == 6 and {r.split for r in meta.rows} <= {"train", "val"}
    assert all((r.ih, r.iw, r.sh, r.sw) == (20, 20, 10, 10) for r in meta.rows)
    items = {r.image: BrodenDataset(out)[i] for i, r in enumerate(meta.rows)}
    first = items["p0.jpg"]
    seg = first["seg"].numpy()
    assert (seg == names["cat"]).sum() == 25 and (seg == names["grass"]).sum() == 25
    assert first["scalars"].tolist() == [names["park"]]
    assert items["sub/p3.jpg"]["scalars"].tolist() == []
    again = import_dataset(
        tmp_path / "img",
        tmp_path / "mask",
        tmp_path / "labels.csv",
        tmp_path / "out2",
        image_labels=tmp_path / "scenes.csv",
        progress=False,
    )
    assert (again / "index.csv").read_bytes() == (out / "index.csv").read_bytes()  # stable splits


def test_import_errors(tmp_path):
    make_source(tmp_path)
    (tmp_path / "short.csv").write_text("value,name\n1,cat\n")
    with pytest.raises(DatasetError, match=r"holds value 7, which .*short.csv does not list"):
        import_dataset(tmp_path / "img", tmp_path / "mask", tmp_path / "short.csv", tmp_path / "o", progress=False)
    (tmp_path / "mask" / "p0.png").unlink()
    with pytest.raises(DatasetError, match=r"no class map .*p0.png"):
        import_dataset(tmp_path / "img", tmp_path / "mask", tmp_path / "labels.csv", tmp_path / "o2", progress=False)


def test_cli_import(tmp_path, capsys):
    make_source(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("cat\nunused\nx\ny\nz\nw\ngrass\n")  # one name per line: values 1..7
    code = main(
        [
            "import-dataset",
            "--images",
            str(tmp_path / "img"),
            "--masks",
            str(tmp_path / "mask"),
            "--labels",
            str(names),
            "--out",
            str(tmp_path / "o"),
            "--size",
            "10",
            "--no-progress",
        ]
    )
    assert code == 0
    meta = BrodenMeta.load(tmp_path / "o")
    assert {meta.label_names[n] for n in range(1, meta.num_labels) if meta.known[n]} == {"cat", "grass"}
    assert all((r.ih, r.sh) == (10, 5) for r in meta.rows)
