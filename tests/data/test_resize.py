"""resize-dataset: a Broden-format copy at another resolution."""

import numpy as np
import pytest

from netdissect.data import BrodenDataset, BrodenMeta
from netdissect.data.resize import resize_dataset
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.errors import DatasetError


def test_resize_round_trip(tmp_path):
    source = make_synthetic_dataset(tmp_path / "src", n=8, size=64, seed=1)
    out = resize_dataset(source, 32, tmp_path / "small", progress=False)
    before, after = BrodenMeta.load(source), BrodenMeta.load(out)
    assert [(r.ih, r.iw, r.sh, r.sw) for r in after.rows] == [(32, 32, 16, 16)] * 8
    assert [r.split for r in after.rows] == [r.split for r in before.rows]
    assert [r.scalars for r in after.rows] == [r.scalars for r in before.rows]  # image-level labels kept
    assert after.categories == before.categories
    big, small = BrodenDataset(source), BrodenDataset(out)
    for i in range(8):
        a, b = big[i], small[i]
        assert b["image"].shape == (3, 32, 32)
        # nearest resizing never invents labels: every label in the copy was in the original
        assert set(np.unique(b["seg"].numpy())) <= set(np.unique(a["seg"].numpy()))
        # a 2x nearest downsample samples every second pixel (the centre of each 2x2 block)
        for layer_a, layer_b in zip(a["seg"].numpy(), b["seg"].numpy()):
            assert np.array_equal(layer_a[1::2, 1::2], layer_b)


def test_resize_refuses_bad_size_and_same_directory(tmp_path):
    source = make_synthetic_dataset(tmp_path / "src", n=2, size=32, seed=0)
    with pytest.raises(DatasetError, match="--size must be >= 2"):
        resize_dataset(source, 1, tmp_path / "x", progress=False)
    with pytest.raises(DatasetError, match="--out must differ"):
        resize_dataset(source, 16, source, progress=False)


def test_cli_resize_dataset(tmp_path, capsys):
    from netdissect.cli import main

    source = make_synthetic_dataset(tmp_path / "src", n=3, size=32, seed=0)
    assert main(["resize-dataset", str(source), "--size", "16", "--out", str(tmp_path / "tiny"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'tiny'}"
    assert [(r.ih, r.sh) for r in BrodenMeta.load(tmp_path / "tiny").rows] == [(16, 8)] * 3
