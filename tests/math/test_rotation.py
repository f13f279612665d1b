"""The random-rotation baseline: Haar rotations, fractional powers, and their effect on detectors."""

import json

import numpy as np
import pytest
import torch

from helpers import RAW, LookupNet, gray_image
from netdissect import dissect
from netdissect.cli import main
from netdissect.data import BrodenDataset
from netdissect.data.writer import BrodenWriter, LabelSpec
from netdissect.engine.rotation_sweep import rotation_sweep
from netdissect.errors import OptionError
from netdissect.math.rotation import haar_rotation, match_units, rotate_units, rotation_power


@pytest.mark.parametrize("n", [2, 3, 8, 64])
def test_haar_rotation_is_a_proper_rotation(n):
    r = haar_rotation(n, seed=n)
    assert torch.allclose(r @ r.T, torch.eye(n, dtype=torch.float64), atol=1e-10)
    assert torch.linalg.det(r).item() == pytest.approx(1.0)
    assert torch.equal(r, haar_rotation(n, seed=n)) and not torch.equal(r, haar_rotation(n, seed=n + 1))


def test_rotation_power_interpolates():
    r = haar_rotation(6, seed=0)
    assert torch.equal(rotation_power(r, 0.0), torch.eye(6, dtype=torch.float64))
    assert torch.equal(rotation_power(r, 1.0), r)
    half = rotation_power(r, 0.5)
    assert torch.allclose(half @ half, r, atol=1e-9)  # two half turns make the whole rotation
    assert torch.allclose(half @ half.T, torch.eye(6, dtype=torch.float64), atol=1e-9)
    quarter = rotation_power(r, 0.25)
    assert torch.allclose(torch.linalg.matrix_power(quarter, 4), r, atol=1e-9)
    with pytest.raises(ValueError):
        rotation_power(r, 1.5)


def test_rotate_units_mixes_the_unit_axis():
    acts = torch.randn(2, 3, 4, 4)
    m = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.equal(rotate_units(acts, m), acts[:, [1, 0, 2]])


def planted(tmp_path, n=12):
    """Units 1-4 fire exactly on concepts a, b, c, d (disjoint masks): four IoU-1 detectors."""
    rng = np.random.default_rng(0)
    labels = [LabelSpec(k, name) for k, name in enumerate("abcd", 1)]
    w = BrodenWriter(tmp_path / "ds", ["object"], labels)
    maps = torch.zeros(n, 4, 4, 4)
    for i in range(n):
        seg = np.zeros((4, 4), int)
        for k in range(1, 5):
            if rng.random() < 0.5:
                seg[k - 1, rng.integers(0, 4)] = k  # one pixel in row k - 1
        for k in range(1, 5):
            maps[i, k - 1] = torch.from_numpy(seg == k).float()
        w.add_image(f"im{i}", gray_image(i, 8), pixel_labels={"object": [seg]})
    w.close()
    return LookupNet(maps), BrodenDataset(tmp_path / "ds", preprocess=RAW)


OPTIONS = dict(quantile=0.1, workers=0, progress=False, device="cpu")


def test_power_zero_is_the_unrotated_run_and_full_rotation_loses_detectors(tmp_path):
    net, data = planted(tmp_path)
    plain = dissect(net, data, ["layer"], **OPTIONS)["layer"]
    assert plain.score.tolist() == [1.0, 1.0, 1.0, 1.0]
    zero = dissect(net, data, ["layer"], rotate=5, rotation_power=0.0, **OPTIONS)["layer"]
    assert np.array_equal(zero.inter, plain.inter) and np.array_equal(zero.act, plain.act)
    rotated = dissect(net, data, ["layer"], rotate=5, rotation_power=1.0, **OPTIONS)["layer"]
    assert rotated.score.max() < 1.0  # no rotated direction is a perfect detector any more
    assert rotated.score.mean() < plain.score.mean()


def test_rotation_options_checked_and_on_the_cli(tmp_path, capsys):
    with pytest.raises(OptionError, match="--rotation-power must lie in"):
        dissect(*planted(tmp_path), ["layer"], rotate=1, rotation_power=2.0, **OPTIONS)
    args = [
        "dissect",
        "--model",
        "demo",
        "--layers",
        "conv4",
        "--dataset",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "run"),
        "--rotate",
        "3",
        "--rotation-power",
        "0.5",
        "--workers",
        "0",
        "--no-progress",
        "--no-report",
        "--device",
        "cpu",
        "--input-size",
        "32",
    ]
    assert main(args) == 0
    options = json.loads((tmp_path / "run" / "conv4" / "units.json").read_text())["metadata"]["options"]
    assert options["rotate"] == 3 and options["rotation_power"] == 0.5


def test_match_units_undoes_a_permutation():
    r = rotation_power(haar_rotation(5, seed=2), 0.1)  # close to the identity
    shuffled = r[[3, 0, 4, 1, 2]]
    order = match_units(shuffled)
    assert torch.equal(shuffled[order], r)


def test_rotation_sweep_writes_curves_and_plot(tmp_path):
    net, data = planted(tmp_path)
    curves = rotation_sweep(net, data, ["layer"], tmp_path / "sweep", seed=5, powers=(0.0, 1.0), **OPTIONS)
    assert curves["powers"] == [0.0, 1.0]
    detectors = curves["layers"]["layer"]["unique_detectors"]
    assert detectors[0] == 4  # the planted units: four concepts
    assert json.loads((tmp_path / "sweep" / "rotation_sweep.json").read_text())["layers"]["layer"] == {
        "detectors": curves["layers"]["layer"]["detectors"],
        "unique_detectors": detectors,
    }
    assert not (tmp_path / "sweep" / "rotation_sweep.png").exists()  # the engine draws nothing: the CLI does
    assert (tmp_path / "sweep" / "power_1.00" / "summary.json").is_file()


def test_rotation_match_and_sweep_on_the_cli(tmp_path, capsys):
    net, data = planted(tmp_path)
    matched = dissect(net, data, ["layer"], rotate=5, rotation_power=0.1, rotation_match=True, **OPTIONS)["layer"]
    assert matched.metadata["options"]["rotation_match"] is True
    args = [
        "rotation-sweep",
        "--model",
        "demo",
        "--layers",
        "conv4",
        "--dataset",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "sweep"),
        "--powers",
        "0",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
        "--input-size",
        "32",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("conv4") and "rotation_sweep.png" in out
    assert (tmp_path / "sweep" / "rotation_sweep.png").stat().st_size > 1000
    assert (tmp_path / "sweep" / "power_0.00" / "conv4" / "tally.csv").is_file()
