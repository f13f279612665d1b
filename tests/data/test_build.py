"""build_broden: tiny fixtures in each source's native layout, read back with our reader."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdissect.data.broden import BrodenDataset, BrodenMeta, decode_label_png
from netdissect.data.build import build_broden, canonical_name
from netdissect.data.colors import COLOR_NAMES, COLOR_TERMS, color_names
from netdissect.errors import DatasetError

H, W = 24, 32


def _jpg(path: Path, seed: int, color=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8) if color is None else np.full((H, W, 3), color, np.uint8)
    Image.fromarray(img).save(path, quality=95)


def _labels(root: Path) -> dict[str, dict]:
    with open(root / "label.csv", newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def make_dtd(root: Path) -> Path:
    for i in range(3):
        _jpg(root / "images" / "banded" / f"banded_{i:04d}.jpg", i)
    _jpg(root / "images" / "dotted" / "dotted_0001.jpg", 10)  # 1 image: dropped at min_images=2
    return root


def make_ade(root: Path) -> Path:
    (root).mkdir(parents=True)
    # class 1 wall, 2 people (merges with Pascal "person"), 3 rare, 300 door (G + 256 * R/10)
    names = ["wall", "people, individual"] + ["rare"] + [f"filler{i}" for i in range(4, 300)] + ["door"]
    (root / "objectnames.txt").write_text("\n".join(names) + "\n")
    for i in range(3):
        folder = root / "images" / "training" / "a" / "abbey"
        stem = f"ADE_train_{i:08d}"
        _jpg(folder / f"{stem}.jpg", 100 + i)
        cls = np.zeros((H, W), np.int64)
        cls[:, : W // 2] = 1
        cls[:, W // 2 :] = 2
        if i == 0:
            cls[:4, :4] = 3  # rare: one image, tiny
        seg = np.zeros((H, W, 3), np.uint8)
        seg[..., 0] = cls // 256 * 10
        seg[..., 1] = cls % 256
        seg[..., 2] = 7  # instance id, ignored
        Image.fromarray(seg).save(folder / f"{stem}_seg.png")
        part = np.zeros((H, W, 3), np.uint8)
        part[: H // 2, :, 0] = 300 // 256 * 10
        part[: H // 2, :, 1] = 300 % 256
        Image.fromarray(part).save(folder / f"{stem}_parts_1.png")
    return root


def make_pascal(root: Path) -> Path:
    (root / "trainval").mkdir(parents=True)
    (root / "labels.txt").write_text("1: person\n2: sky\n3: aeroplane\n")
    for i in range(3):
        stem = f"2008_{i:06d}"
        _jpg(root / "JPEGImages" / f"{stem}.jpg", 200 + i)
        lab = np.full((H, W), 2, np.uint8)
        lab[H // 2 :, :] = 1
        Image.fromarray(lab, "L").save(root / "trainval" / f"{stem}.png")
    _jpg(root / "JPEGImages" / "2008_999999.jpg", 299)  # no annotation: skipped
    return root


def make_opensurfaces(root: Path) -> Path:
    (root / "photos-labels").mkdir(parents=True)
    (root / "label-substance-colors.csv").write_text("substance_name,red_color\nWood,5\nGlass,9\n")
    for i in range(2):
        _jpg(root / "photos" / f"{1000 + i}.jpg", 300 + i)
        lab = np.zeros((H, W, 3), np.uint8)
        lab[:, : W // 2, 0] = 5
        lab[:, W // 2 :, 0] = 9
        Image.fromarray(lab).save(root / "photos-labels" / f"{1000 + i}.png")
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sources")
    return {
        "dtd": make_dtd(base / "dtd"),
        "ade20k": make_ade(base / "ADE20K_2016_07_26"),
        "pascal": make_pascal(base / "pascal"),
        "opensurfaces": make_opensurfaces(base / "opensurfaces"),
    }


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "mini"
    return build_broden(out, size=16, colors=False, min_images=2, min_coverage=0.5, progress=False, **sources)


def test_labels_merges_and_drops(built):
    meta = BrodenMeta.load(built)
    assert meta.categories == ["object", "part", "material", "scene", "texture"]
    labels = _labels(built)
    # ADE "people, individual" and Pascal "person" are one label; Pascal "aeroplane" never occurs
    assert "person" in labels and "people" not in labels
    assert labels["person"]["frequency"] == "6"
    assert labels["person"]["category"] == "object(6)"
    assert {"wall", "sky", "door", "wood", "glass", "abbey-s", "banded"} <= set(labels)
    assert "rare" not in labels and "dotted" not in labels and "airplane" not in labels
    # numbered by descending frequency
    numbers = sorted(labels.values(), key=lambda r: int(r["number"]))
    assert [int(r["number"]) for r in numbers] == list(range(1, len(numbers) + 1))
    freqs = [int(r["frequency"]) for r in numbers]
    assert freqs == sorted(freqs, reverse=True)
    assert numbers[0]["name"] == "person"
    assert len(meta.rows) == 3 + 3 + 3 + 2 + 1  # dtd kept + dotted image (kept, no labels) + ...


def test_reads_back(built):
    meta = BrodenMeta.load(built)
    names = meta.label_names
    ds = BrodenDataset(built, meta=meta)
    seen_rows = 0
    for i, row in enumerate(meta.rows):
        item = ds[i]
        assert item["image"].shape == (3, 16, 16)
        assert (row.ih, row.iw, row.sh, row.sw) == (16, 16, 8, 8)
        if row.image.startswith("ade20k/"):
            seen_rows += 1
            seg = item["seg"].numpy()
            assert seg.shape == (2, 8, 8)  # object + part layer
            obj = {names[v] for v in np.unique(seg[0])}
            assert obj in ({"wall", "person"}, {"-", "wall", "person"})  # dropped "rare" pixels -> 0
            assert names[seg[0, 4, 0]] == "wall" and names[seg[0, 4, 7]] == "person"
            assert names[seg[1, 0, 0]] == "door" and seg[1, 7, 0] == 0
            assert [names[s] for s in item["scalars"].tolist()] == ["abbey-s"]
        if row.image.startswith("dtd/banded"):
            assert [names[s] for s in item["scalars"].tolist()] == ["banded"]
        if row.image.startswith("opensurfaces/"):
            seg = item["seg"].numpy()[0]
            assert names[seg[0, 0]] == "wood" and names[seg[0, 7]] == "glass"
    assert seen_rows == 3


def test_splits_stable(sources, built, tmp_path):
    again = build_broden(tmp_path / "again", size=16, colors=False, min_images=2, progress=False, **sources)
    assert (again / "index.csv").read_text() == (built / "index.csv").read_text()
    assert (again / "label.csv").read_text() == (built / "label.csv").read_text()
    # second call on a complete dataset is a no-op
    assert build_broden(again, dtd=sources["dtd"], progress=False) == again
    assert not (tmp_path / "again.partial").exists()


def test_min_coverage_drops(sources, tmp_path):
    # door covers half of 3 part maps (1.5 images): dropped at min_coverage 2; wall (1.5) too
    out = build_broden(
        tmp_path / "cov",
        size=16,
        colors=False,
        min_images=1,
        min_coverage=2.0,
        ade20k=sources["ade20k"],
        progress=False,
    )
    labels = _labels(out)
    assert "door" not in labels and "wall" not in labels
    assert "abbey-s" in labels  # image-level: 3 images of coverage 1


def test_colors_two_colour_image(tmp_path):
    root = tmp_path / "dtd"
    for i in range(2):
        img = np.zeros((H, W, 3), np.uint8)
        img[:, : W // 2] = (230, 20, 20)
        img[:, W // 2 :] = (20, 30, 220)
        (root / "images" / "plain").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / "plain" / f"p{i}.jpg", quality=98)
    out = build_broden(tmp_path / "col", size=32, dtd=root, min_images=1, progress=False)
    meta = BrodenMeta.load(out)
    assert meta.categories == ["color", "texture"]
    labels = _labels(out)
    assert {"red-c", "blue-c", "plain"} <= set(labels)
    row = meta.rows[0]
    seg = decode_label_png(out / "images" / row.pngs[0][0])
    assert seg.shape == (16, 16)
    assert meta.label_names[seg[8, 2]] == "red-c" and meta.label_names[seg[8, 13]] == "blue-c"


def test_color_names_and_synonyms():
    names = ["black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow"]
    for n in names:
        px = np.array([[COLOR_TERMS[n]]], np.uint8)
        assert COLOR_NAMES[color_names(px)[0, 0]] == n
    assert canonical_name("people, persons", "object") == "person"
    assert canonical_name("TVMonitor", "object") == "television"
    assert canonical_name("living room", "scene") == "living_room-s"
    assert canonical_name("background", "object") is None


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match="at least one source"):
        build_broden(tmp_path / "x", progress=False)
    with pytest.raises(DatasetError, match="not a directory"):
        build_broden(tmp_path / "x", dtd=tmp_path / "missing", progress=False)
    (tmp_path / "ade").mkdir()
    (tmp_path / "ade" / "images").mkdir()
    with pytest.raises(DatasetError, match="objectnames"):
        build_broden(tmp_path / "x", ade20k=tmp_path / "ade", progress=False)


def test_resume_after_interruption(sources, built, tmp_path, monkeypatch):
    import netdissect.data.build as build

    kwargs = dict(size=16, colors=False, min_images=2, progress=False, **sources)
    real = build.read_rgb
    calls = []

    def flaky(path):
        if path.suffix == ".jpg":  # source images (label PNGs are read with the same helper)
            calls.append(path)
        if len(calls) == 12 + 5:  # 12 images scanned, then 4 written, the 5th is cut
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(build, "read_rgb", flaky)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_broden(out, **kwargs)
    assert not out.exists() and (tmp_path / "resumed.partial" / ".build-done.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(build, "read_rgb", lambda p: (p.suffix == ".jpg" and calls.append(p), real(p))[1])
    build_broden(out, **kwargs)
    assert len(calls) == 12 - 4  # no scan, only the images not yet written
    for name in ("index.csv", "label.csv", "category.csv", "c_object.csv"):
        assert (out / name).read_text() == (built / name).read_text()
    assert not (tmp_path / "resumed.partial").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in built.iterdir())


def test_cli_build_broden_errors_are_one_line(tmp_path, capsys):
    from netdissect.cli import main

    assert main(["build-broden", "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("netdissect: error:") and len(err.strip().splitlines()) == 1
    assert main(["build-broden", "--out", str(tmp_path / "o"), "--dtd", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


def test_cli_build_broden(sources, tmp_path, capsys):
    from netdissect.cli import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "build-broden",
                "--out",
                str(out),
                "--size",
                "32",
                "--dtd",
                str(sources["dtd"]),
                "--min-images",
                "1",
                "--min-coverage",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    meta = BrodenMeta.load(out)
    assert "texture" in meta.categories and all(r.ih == 32 and r.sh == 16 for r in meta.rows)
