"""describe() on planted ground truth: a colour-share unit gets its colour, a noise unit nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from describe_helpers import COLOURS, ColourShares, write_images
from helpers import RAW
from netdissect import describe
from netdissect.describe.scores import average_ranks
from netdissect.models.base import LoadedModel

FAST = dict(device="cpu", progress=False, batch_size=16, min_images=5)


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("colours"))


@pytest.fixture
def model() -> LoadedModel:
    return LoadedModel(ColourShares().eval(), RAW, "colour-shares")


def brute_auc(v: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = v[positive], v[~positive]
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg]))


def test_a_colour_unit_is_its_colour_and_a_noise_unit_nothing(probes, model):
    images, labels, shares = probes
    result = describe(model, ["fc"], images=images, labels=labels, **FAST)
    layer = result["fc"]
    assert layer.best("auc")[:3] == list(COLOURS)
    present = shares > 0
    for u in range(len(COLOURS)):
        row = layer.unit_rows(u + 1, "auc")[0]
        assert row["score"] == pytest.approx(brute_auc(shares[:, u], present[:, u]), abs=1e-12)
        assert row["p_value"] < 1e-6 and row["significant"]
    assert not any(r["significant"] for r in layer.unit_rows(4, "auc"))  # the noise unit
    assert layer.summary["significant_units"] == 3


def test_the_same_unit_seen_as_a_map_gets_the_same_description(probes, model):
    images, labels, _ = probes
    result = describe(model, ["fc", "maps"], images=images, labels=labels, **FAST)
    for u in range(1, 5):
        fc, maps = result["fc"].unit_rows(u, "auc"), result["maps"].unit_rows(u, "auc")
        assert [(r["concept"], r["score"]) for r in fc] == [(r["concept"], r["score"]) for r in maps]


def test_final_layer_accuracy_of_a_classifier_reading_its_colours(probes, model):
    images, labels, _ = probes
    result = describe(model, ["head"], images=images, labels=labels, classes=list(COLOURS), **FAST)
    assert result["head"].summary["final_layer_accuracy"] == {"auc": 1.0}


def test_outputs_and_formulas(probes, model, tmp_path):
    images, labels, shares = probes
    out = tmp_path / "run"
    describe(model, ["fc"], out, images=images, labels=labels, formula_length=2, top_k=3, **FAST)
    lines = (out / "fc" / "descriptions.csv").read_text().splitlines()
    assert lines[0] == "unit,method,rank,concept,score,p_value,significant"
    auc_rows = [line.split(",") for line in lines[1:] if ",auc," in line]
    assert len(auc_rows) == 4 * 3 and auc_rows[0][:4] == ["1", "auc", "1", "red"]
    formula_rows = [line.split(",") for line in lines[1:] if ",auc-formula," in line]
    assert formula_rows and all(r[5] != "" for r in formula_rows)
    info = json.loads((out / "fc" / "descriptions.json").read_text())
    assert info["summary"]["units"] == 4
    # the best formula's AUC is at least the best single concept's (a formula of length 1 is a candidate)
    best_single = {int(r[0]): float(r[4]) for r in auc_rows if r[2] == "1"}
    best_formula = {int(r[0]): float(r[4]) for r in formula_rows if r[2] == "1"}
    assert all(best_formula[u] >= best_single[u] - 1e-12 for u in best_formula)
    # a formula's AUC is that of its boolean vector: check unit 1's best by hand
    text = next(r[3] for r in formula_rows if r[0] == "1" and r[2] == "1")
    present = {name: shares[:, c] > 0 for c, name in enumerate(COLOURS)}
    vector = _evaluate(text, present)
    assert float(next(r[4] for r in formula_rows if r[0] == "1" and r[2] == "1")) == pytest.approx(
        brute_auc(shares[:, 0], vector), abs=1e-5
    )
    assert (out / "describe.html").is_file() and (out / "netdissect.json").is_file()


def _evaluate(text: str, present: dict[str, np.ndarray]) -> np.ndarray:
    """A left-nested formula text ``((a AND b) OR c)`` on boolean vectors."""
    tokens = text.replace("(", " ").replace(")", " ").replace("AND NOT", "ANDNOT").split()
    value = present[tokens[0]].copy()
    for op, name in zip(tokens[1::2], tokens[2::2]):
        other = present[name]
        value = value & other if op == "AND" else value | other if op == "OR" else value & ~other
    return value


def test_ranks_are_one_sort_per_unit():
    values = np.random.default_rng(0).random((50, 3))
    ranks, ties = average_ranks(values)
    assert (np.sort(ranks, axis=0) == np.arange(1, 51)[:, None]).all() and (ties == 0).all()


def test_a_planted_clip_gives_each_colour_unit_its_colour_word_by_wpmi(probes, model, tmp_path):
    images, _, _ = probes
    words = tmp_path / "words.txt"
    words.write_text("red\ngreen\nblue\ndog\nsky\n")
    result = describe(
        model, ["fc"], images=images, methods=["wpmi"], clip="describe_helpers:colour_clip", concepts=words, **FAST
    )
    layer = result["fc"]
    assert layer.best("wpmi")[:3] == list(COLOURS)
    assert all(r["p_value"] is None and r["significant"] is None for r in layer.rows)
    scores = layer.arrays["wpmi"]
    for u in range(3):  # the unit's colour beats every other word clearly
        others = [scores[u, m] for m in range(5) if m != u]
        assert scores[u, u] > max(others) + 0.1


def test_a_clip_that_cannot_load_is_one_line(probes, model):
    from netdissect.errors import NetDissectError

    images, labels, _ = probes
    with pytest.raises(NetDissectError, match="no_such_module"):
        describe(model, ["fc"], images=images, labels=labels, methods=["wpmi"], clip="no_such_module:clip", **FAST)
