"""The reliability cases users met in the newer commands: each gives one line or works, and finished results stay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import folder_digest
from helpers import one_line_error as one_line
from netdissect.cli import main
from netdissect.data.synthetic import make_synthetic_dataset

FAST = ["--device", "cpu", "--no-progress", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("safety") / "data", n=16, size=64, seed=2)


def ablate_argv(images: Path, out: Path, layer: str = "conv4") -> list[str]:
    return ["ablate", "--model", "demo", "--layer", layer, "--images", str(images), "--out", str(out), *FAST]


def digest(folder: Path) -> dict[str, str]:
    """Every file's SHA-256 (a staged overwrite left out)."""
    return folder_digest(folder, skip=(".overwrite",))


def test_a_failed_ablate_overwrite_keeps_the_finished_results(data, tmp_path, capsys):
    out = tmp_path / "ablation"
    assert main(ablate_argv(data, out)) == 0
    capsys.readouterr()
    before = digest(out)
    assert {"ablation.npz", "ablation.json", "index.html"} <= set(before)
    # a typo in the layer: refused before anything is written
    assert "conv9" in one_line(capsys, [*ablate_argv(data, out, "conv9"), "--overwrite"])
    assert digest(out) == before
    # a corrupt image in the new run's images: the new run fails mid-way, the old results stay
    broken = shutil.copytree(data, tmp_path / "broken")
    victim = sorted((broken / "images").rglob("*.jpg"))[-1]
    victim.write_bytes(b"not a jpeg")
    assert victim.name in one_line(capsys, [*ablate_argv(broken, out), "--overwrite"])
    assert digest(out) == before
    # a good overwrite replaces the old ablation once finished, leaving no staging behind
    assert main([*ablate_argv(data, out, "conv3"), "--overwrite"]) == 0
    assert not (out / ".overwrite").exists() and not (out / ".replaced").exists()
    assert digest(out)["ablation.npz"] != before["ablation.npz"]


def test_a_different_ablation_without_overwrite_is_refused(data, tmp_path, capsys):
    out = tmp_path / "ablation"
    assert main(ablate_argv(data, out)) == 0
    capsys.readouterr()
    before = digest(out)
    assert "--overwrite" in one_line(capsys, ablate_argv(data, out, "conv3"))
    assert digest(out) == before


def test_annotate_refuses_a_seg_size_that_cannot_fit(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(photos / "a.png")
    argv = ["annotate", "--segmenter", "netdissect.models.toy:color_segmenter", "--images", str(photos)]
    line = one_line(capsys, [*argv, "--out", str(tmp_path / "out"), "--seg-size", "100000", "--device", "cpu"])
    assert "--seg-size 100000" in line and "TiB" in line and "available" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_dissect_generator_refuses_another_commands_folder_before_writing_samples(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["dissect", "--model", "demo", "--layers", "conv4", "--dataset", str(data), "--out", str(run), *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    before = digest(run)
    argv = ["dissect-generator", "--generator", "netdissect.models.toy:toy_generator", "--z-dim", "8"]
    argv += ["--segmenter", "netdissect.models.toy:color_segmenter", "--samples", "8", "--layers", "features"]
    assert "netdissect dissect" in one_line(capsys, [*argv, "--out", str(run), *FAST])
    assert digest(run) == before and not list(run.glob("samples-*"))


def test_demo_without_report_leaves_no_page_linking_a_removed_report(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--images", "24", *FAST]
    assert main(argv) == 0
    assert (out / "index.html").exists() and (out / "ablation" / "index.html").exists()
    assert main([*argv, "--formula-length", "3", "--no-report"]) == 0
    capsys.readouterr()
    assert not (out / "index.html").exists()  # the old report described the old run
    assert not (out / "ablation" / "index.html").exists()  # so no page links to it
    assert (out / "ablation" / "ablation.npz").exists()


def test_ablate_with_a_read_only_dissection_works_and_leaves_it_alone(data, tmp_path, capsys, read_only):
    source, lock = read_only
    argv = ["dissect", "--model", "demo", "--layers", "conv4", "--dataset", str(data), "--out", str(source / "run")]
    assert main([*argv, *FAST]) == 0
    run = lock() / "run"
    before = digest(run)
    assert main([*ablate_argv(data, tmp_path / "ablation"), "--dissection", str(run)]) == 0
    assert digest(run) == before
    assert (tmp_path / "ablation" / "index.html").exists()
