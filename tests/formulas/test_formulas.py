"""Compositional explanations (--formula-length): exact formula IoUs against planted truth and brute force."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import RAW, LookupNet, gray_image, subprocess_env, write_planted_dataset
from netdissect import BrodenDataset, DissectConfig, LayerResult, dissect
from netdissect.cli import main
from netdissect.data.broden import collate_broden
from netdissect.data.synthetic import make_synthetic_dataset
from netdissect.data.writer import BrodenWriter, LabelSpec
from netdissect.errors import OptionError
from netdissect.formulas.search import (
    OPS,
    check_formula_length,
    evaluate_formula,
    formula_poly,
    formula_text,
    search_formulas,
)
from netdissect.formulas.signatures import SignatureTable, batch_signatures, batch_table

OPTIONS = dict(quantile=0.4, workers=0, progress=False, device="cpu", batch_size=5)


# ---------------------------------------------------------------- brute force (numpy, pixel masks)


def label_masks(seg: np.ndarray, scalars: np.ndarray, keep: np.ndarray) -> dict[int, np.ndarray]:
    """Every usable label's (N, H, W) mask: its pixels in any layer, or whole images for image-level labels."""
    out = {}
    for label in range(1, len(keep)):
        mask = (seg == label).any(1) | (scalars == label).any(1)[:, None, None]
        if keep[label] and mask.any():
            out[label] = mask
    return out


def iou(unit_mask: np.ndarray, formula_mask: np.ndarray) -> float:
    union = (unit_mask | formula_mask).sum()
    return (unit_mask & formula_mask).sum() / union if union else 0.0


def brute_beam(seg, scalars, masks, keep, length, beam, ops=OPS):
    """The beam search evaluated on pixel masks: per unit (iou, terms) of the best formula."""
    members = label_masks(seg, scalars, keep)
    results = []
    for unit_mask in masks:
        singles = sorted(((iou(unit_mask, m), label) for label, m in members.items()), key=lambda t: -t[0])
        current = [(v, ((None, label),)) for v, label in singles[:beam]]
        for _ in range(length - 1):
            candidates = []
            for _value, terms in current:
                for op in (o for o in OPS if o in ops):
                    for label in range(len(keep)):
                        if label in members:
                            new = terms + ((op, label),)
                            candidates.append((iou(unit_mask, evaluate_formula(new, members)), new))
            candidates.sort(key=lambda t: -t[0])  # stable: beam order, op, label
            merged, seen, old, i = [], set(), list(current), 0
            while len(merged) < beam and (old or i < len(candidates)):
                if old and (i >= len(candidates) or old[0][0] >= candidates[i][0]):
                    c = old.pop(0)
                else:
                    c, i = candidates[i], i + 1
                key = frozenset(formula_poly(c[1]).items())
                if key and key not in seen:
                    seen.add(key)
                    merged.append(c)
            current = merged
        results.append(current[0] if current else (0.0, ()))
    return results


def random_data(seed: int, n=6, size=5, units=4, labels=9):
    rng = np.random.default_rng(seed)
    seg = np.zeros((n, 2, size, size), int)
    seg[:, 0] = rng.integers(0, 5, (n, size, size))
    seg[:, 1] = np.where(rng.random((n, size, size)) < 0.5, rng.integers(5, 7, (n, size, size)), 0)
    scalars = np.zeros((n, 2), int)
    scalars[:, 0] = rng.integers(7, 9, n) * (rng.random(n) < 0.7)  # image-level labels 7, 8
    masks = rng.random((units, n, size, size)) < 0.3
    keep = np.ones(labels, bool)
    keep[3] = False  # a label outside the categories: never in a formula
    return seg, scalars, masks, keep


def table_of(seg, scalars, masks, keep) -> SignatureTable:
    rows, pixel_sig = batch_signatures(torch.tensor(seg), torch.tensor(scalars), torch.tensor(keep))
    units, n = masks.shape[:2]
    pair, ys, xs = torch.tensor(masks).transpose(0, 1).reshape(n * units, *masks.shape[2:]).nonzero(as_tuple=True)
    return batch_table(rows, pixel_sig, pair, ys, xs, units, len(keep))


# ---------------------------------------------------------------- the math


def test_polynomial_is_the_formula_on_every_assignment():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(1, 5))
        labels = [int(x) for x in rng.integers(1, 4, k)]  # repeats on purpose
        terms = ((None, labels[0]),) + tuple((OPS[int(rng.integers(3))], lab) for lab in labels[1:])
        poly = formula_poly(terms)
        for bits in itertools.product([False, True], repeat=3):
            members = {lab: np.array([bits[lab - 1]]) for lab in (1, 2, 3)}
            value = sum(c for subset, c in poly.items() if all(bits[lab - 1] for lab in subset))
            assert value == int(evaluate_formula(terms, members)[0])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("length,beam", [(1, 3), (2, 2), (3, 3), (3, 1), (4, 2)])
def test_beam_search_equals_brute_force(seed, length, beam):
    seg, scalars, masks, keep = random_data(seed)
    found = search_formulas(table_of(seg, scalars, masks, keep), torch.tensor(keep), length, beam)
    for u, (value, terms) in enumerate(brute_beam(seg, scalars, masks, keep, length, beam)):
        assert found.terms[u] == terms
        assert found.iou[u] == value  # the same integers divided: bit-identical


def test_restricted_operators_equal_brute_force():
    seg, scalars, masks, keep = random_data(5)
    for ops in (("or",), ("and", "andnot")):
        found = search_formulas(table_of(seg, scalars, masks, keep), torch.tensor(keep), 3, 3, ops)
        brute = brute_beam(seg, scalars, masks, keep, 3, 3, ops)
        assert found.terms == [t for _, t in brute]
        assert all(op in (None, *ops) for terms in found.terms for op, _ in terms)


def test_wide_beam_finds_the_best_of_all_two_label_formulas():
    """With every label in the beam, length 2 is exhaustive: compare with the enumeration of all formulas."""
    seg, scalars, masks, keep = random_data(7)
    members = label_masks(seg, scalars, keep)
    found = search_formulas(table_of(seg, scalars, masks, keep), torch.tensor(keep), 2, len(members))
    for u, unit_mask in enumerate(masks):
        best = max(iou(unit_mask, m) for m in members.values())
        for a, b in itertools.product(members, repeat=2):
            for op in OPS:
                best = max(best, iou(unit_mask, evaluate_formula(((None, a), (op, b)), members)))
        assert found.iou[u] == best
        assert found.iou[u] == iou(unit_mask, evaluate_formula(found.terms[u], members))


@pytest.mark.parametrize("seed", range(10))
def test_formula_never_below_best_single_label(seed):
    seg, scalars, masks, keep = random_data(100 + seed, units=6)
    members = label_masks(seg, scalars, keep)
    found = search_formulas(table_of(seg, scalars, masks, keep), torch.tensor(keep), 3, 2)
    for u, unit_mask in enumerate(masks):
        single = max(iou(unit_mask, m) for m in members.values())
        assert found.single_iou[u] == single
        assert iou(unit_mask, members[int(found.single_label[u])]) == single
        assert found.iou[u] >= single


def test_tables_of_parts_sum_to_the_table_of_the_whole():
    """What the ranks' merge relies on: a table is a canonical sum."""
    seg, scalars, masks, keep = random_data(3)
    whole = table_of(seg, scalars, masks, keep)
    parts = SignatureTable.concat([table_of(seg[s], scalars[s], masks[:, s], keep) for s in (slice(0, 2), slice(2, 6))])
    for name in ("rows", "pixels", "unit", "sig", "count"):
        assert torch.equal(getattr(whole, name), getattr(parts, name)), name


def test_formula_text():
    names = ["-", "water", "river", "blue"]
    assert formula_text(((None, 1), ("or", 2), ("andnot", 3)), names) == "((water OR river) AND NOT blue)"
    assert formula_text(((None, 1),), names) == "water"
    assert formula_text((), names) == ""


# ---------------------------------------------------------------- planted units, through dissect()


def test_planted_union_gets_the_or_formula(tmp_path):
    maps = write_planted_dataset(tmp_path / "ds", n=12, scene_unit=False)
    union = maps[:, :1] + maps[:, 1:2]  # a OR b (the bars never overlap: different labels on one layer)
    net = LookupNet(torch.cat([maps, union], 1))
    result = dissect(net, BrodenDataset(tmp_path / "ds", preprocess=RAW), ["layer"], formula_length=2, **OPTIONS)
    layer = result["layer"]
    assert layer.formula[3] in ("(a OR b)", "(b OR a)")
    assert sorted(name for _, name in layer.formula_terms[3]) == ["a", "b"]
    assert [op for op, _ in layer.formula_terms[3]] == [None, "OR"]
    assert layer.formula_iou[3] == 1.0
    assert layer.formula_single_iou[3] < 1.0
    assert layer.formula[:3] == ["a", "b", "c"]  # single-label units keep their label (IoU 1)
    assert layer.formula_iou[:3].tolist() == [1.0, 1.0, 1.0]


def write_not_dataset(root: Path) -> torch.Tensor:
    """Objects x, y (pixel labels) and scene s-s (image level) on 4x4 images; maps of planted units.

    Unit 0 = x AND NOT y: on image 1, which has no y at all, NOT y is the whole image.
    Unit 1 = y AND NOT s-s: y on the images without the scene. Unit 2 = s-s OR x.
    """
    w = BrodenWriter(root, ["object", "scene"], [LabelSpec(1, "x"), LabelSpec(2, "y"), LabelSpec(3, "s-s")])
    segs, scenes = [], [[3], [], [3], []]
    for i in range(4):
        seg = np.zeros((4, 4), int)
        seg[:, : 2 + i % 2] = 1  # x: left columns
        if i != 1:
            seg[:2, 1:] = 2  # y: top rows, on x in part (y wins there)
        segs.append(seg)
        w.add_image(f"im{i}", gray_image(i, 8), pixel_labels={"object": [seg]}, image_labels={"scene": scenes[i]})
    w.close()
    maps = torch.zeros(4, 3, 4, 4)
    for i, seg in enumerate(segs):
        x, y, s = torch.from_numpy(seg == 1), torch.from_numpy(seg == 2), bool(scenes[i])
        maps[i, 0] = (x & ~y).float()
        maps[i, 1] = (y & (not s)).float()
        maps[i, 2] = (x | s).float()
    return maps


def test_not_and_image_level_semantics(tmp_path):
    maps = write_not_dataset(tmp_path / "ds")
    result = dissect(
        LookupNet(maps),
        BrodenDataset(tmp_path / "ds", preprocess=RAW),
        ["layer"],
        formula_length=2,
        beam=3,
        **{**OPTIONS, "quantile": 0.9},  # every unit covers < 90 % of the pixels: its threshold is 0
    )
    layer = result["layer"]
    # x and y never share a pixel (one layer), so (x AND NOT y) is x itself: both have IoU 1
    assert layer.formula_iou.tolist() == [1.0, 1.0, 1.0]
    assert layer.formula[1] == "(y AND NOT s-s)"  # NOT of an image-level label: the images without it
    assert layer.formula[2] in ("(x OR s-s)", "(s-s OR x)")  # an image-level label covers its images
    # unit 2's mask: images 0 and 2 whole (32 pixels, the scene) and x on images 1 and 3 (12 + 8);
    # x alone and s-s alone each cover 32 of its 52 pixels and nothing else
    assert layer.formula_single_iou[2] == 32 / 52


def test_not_on_images_without_the_label():
    """Image 1 has no y: NOT y covers all of it, so (x AND NOT y) keeps all of x there."""
    seg = np.zeros((2, 2, 2, 2), int)  # two annotation layers: x (1) and y (2) may overlap
    seg[0, 0] = [[1, 0], [1, 0]]  # image 0: x on the left column
    seg[0, 1] = [[2, 2], [0, 0]]  # and y on the top row
    seg[1, 0] = [[1, 1], [0, 0]]  # image 1: x on the top row, no y anywhere
    scalars = np.zeros((2, 1), int)
    keep = np.array([False, True, True])
    unit = np.zeros((1, 2, 2, 2), bool)
    unit[0, 0, 1, 0] = True  # x minus y on image 0
    unit[0, 1, 0, :] = True  # all of x on image 1
    found = search_formulas(table_of(seg, scalars, unit, keep), torch.tensor(keep), 2, 2)
    assert found.terms[0] == ((None, 1), ("andnot", 2))
    assert found.iou[0] == 1.0
    assert found.single_label[0] == 1 and found.single_iou[0] == 3 / 4


# ---------------------------------------------------------------- outputs, options, resume


def test_outputs_files_and_round_trip(tmp_path):
    maps = write_planted_dataset(tmp_path / "ds", n=12, random_units=3)
    data = BrodenDataset(tmp_path / "ds", preprocess=RAW)
    plain = dissect(LookupNet(maps), data, ["layer"], tmp_path / "plain", **OPTIONS)
    result = dissect(LookupNet(maps), data, ["layer"], tmp_path / "f", formula_length=3, beam=2, **OPTIONS)
    assert plain["layer"].formula is None
    assert (tmp_path / "plain" / "layer" / "tally.csv").read_bytes() == (
        tmp_path / "f" / "layer" / "tally.csv"
    ).read_bytes()
    assert not (tmp_path / "plain" / "layer" / "formulas.csv").exists()
    units = json.loads((tmp_path / "f" / "layer" / "units.json").read_text())
    assert units["formulas"]["length"] == 3 and units["formulas"]["beam"] == 2
    layer = result["layer"]
    for u, record in enumerate(units["units"]):
        assert record["formula"] == layer.formula[u]
        assert record["formula_iou"] == layer.formula_iou[u]
        assert record["formula_terms"][0][0] is None
        assert all(op in ("AND", "OR", "AND NOT") for op, _ in record["formula_terms"][1:])
        assert record["formula_single_iou"] <= record["formula_iou"]
    with open(tmp_path / "f" / "layer" / "formulas.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["unit", "formula", "formula_iou", "single_label", "single_iou"]
    assert [r[1] for r in rows[1:]] == layer.formula
    loaded = LayerResult.load(tmp_path / "f" / "layer")
    assert loaded.formula == layer.formula and loaded.formula_terms == layer.formula_terms
    assert np.array_equal(loaded.formula_iou, layer.formula_iou)
    assert loaded.formula_single_label == layer.formula_single_label
    # brute force on the dataset's own annotations and the dissection's masks (no upsampling: 4x4)
    batch = collate_broden([data.with_options(load_images=False)[i] for i in range(len(data))])
    seg, scalars = batch["seg"].numpy(), batch["scalars"].numpy()
    masks = (maps.numpy() > layer.thresholds[None, :, None, None]).transpose(1, 0, 2, 3)
    keep = layer.label_category >= 0
    for u, (value, terms) in enumerate(brute_beam(seg, scalars, masks, keep, 3, 2)):
        assert layer.formulas.terms[u] == terms and layer.formula_iou[u] == value


def test_run_key_unchanged_without_formulas():
    base = DissectConfig(device="cpu").result_options()
    assert "formula_length" not in base
    assert DissectConfig(device="cpu", formula_length=1, formula_ops="andnot,or,and").result_options() == base
    assert DissectConfig(device="cpu", formula_length=2).result_options()["formula_ops"] == ["and", "or", "andnot"]


@pytest.mark.parametrize(
    "options,message",
    [
        ({"formula_length": 0}, "--formula-length must be >= 1, got 0"),
        ({"beam": 0}, "--beam must be >= 1, got 0"),
        ({"formula_ops": "and,xor"}, "--formula-ops: unknown operator 'xor'"),
        ({"formula_ops": ""}, "--formula-ops needs at least one"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(OptionError, match=message):
        DissectConfig(device="cpu", **options)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"beam": 9}, "--beam 9 applies only to formulas: add --formula-length N (N >= 2), or leave it out"),
        ({"formula_ops": "or"}, "--formula-ops or applies only to formulas: add --formula-length N (N >= 2)"),
        (
            {"beam": 2, "formula_ops": ["and", "andnot"]},
            "--beam 2 and --formula-ops and,andnot apply only to formulas: add --formula-length N (N >= 2), "
            "or leave them out",
        ),
    ],
)
def test_formula_options_without_formulas_are_refused(options, message):
    """--beam and --formula-ops do nothing at --formula-length 1: refused rather than silently ignored."""
    with pytest.raises(OptionError) as info:
        DissectConfig(device="cpu", **options)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    DissectConfig(device="cpu", formula_length=2, **options)  # with formulas they apply


def test_formula_option_defaults_pass_without_formulas():
    assert DissectConfig(device="cpu").formula_length == 1
    DissectConfig(device="cpu", beam=5, formula_ops="and,or,andnot")  # the defaults, given explicitly
    DissectConfig(device="cpu", formula_ops=["andnot", "and", "or"])  # the same set in another order


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--beam", "3"], "--beam 3 applies only to formulas: add --formula-length N (N >= 2)"),
        (["--formula-ops", "and"], "--formula-ops and applies only to formulas"),
        (["--formula-length", "1", "--beam", "3", "--formula-ops", "or"], "--beam 3 and --formula-ops or apply"),
        (["--formula-length", "0"], "--formula-length must be >= 1"),
        (["--beam", "-1"], "--beam must be >= 1"),
        (["--formula-ops", "and,nand"], "unknown operator 'nand'"),
    ],
)
def test_bad_options_on_the_command_line(tmp_path, capsys, flags, message):
    write_planted_dataset(tmp_path / "ds", n=3)
    argv = ["dissect", "--model", "demo", "--layers", "conv1", "--dataset", str(tmp_path / "ds")]
    rc = main([*argv, "--out", str(tmp_path / "out"), "--workers", "0", "--no-progress", "--device", "cpu", *flags])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("netdissect: error: ") and message in err


def test_cli_writes_formulas(tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "syn", n=8, size=32, seed=1)
    argv = ["dissect", "--model", "demo", "--layers", "conv4", "--dataset", str(data), "--out", str(tmp_path / "o")]
    flags = [
        "--workers",
        "0",
        "--no-progress",
        "--no-report",
        "--device",
        "cpu",
        "--formula-length",
        "3",
        "--beam",
        "2",
    ]
    assert main([*argv, *flags, "--formula-ops", "and,or"]) == 0
    capsys.readouterr()
    layer = LayerResult.load(tmp_path / "o" / "conv4")
    assert len(layer.formula) == layer.units
    assert all("AND NOT" not in text for text in layer.formula)
    assert (layer.formula_iou >= layer.formula_single_iou).all()


def counting_net(maps: torch.Tensor, forwards: list) -> LookupNet:
    net = LookupNet(maps)
    net.layer.register_forward_hook(lambda *_: forwards.append(1))
    return net


def test_interrupted_search_restarts_without_the_passes(tmp_path, monkeypatch):
    """A run killed during the beam search continues from pass 2's final checkpoint."""
    import netdissect.engine.formula_collector as formula_pass  # FormulaCollector.finish runs the search

    maps = write_planted_dataset(tmp_path / "ds", n=12, random_units=3)
    data = BrodenDataset(tmp_path / "ds", preprocess=RAW)
    options = dict(OPTIONS, formula_length=3, checkpoint_every=3600)  # only the checkpoints at the passes' ends
    reference = dissect(LookupNet(maps), data, ["layer"], tmp_path / "ref", **options)["layer"]
    real = formula_pass.find_formulas

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(formula_pass, "find_formulas", killed)
    with pytest.raises(KeyboardInterrupt):
        dissect(LookupNet(maps), data, ["layer"], tmp_path / "run", **options)
    assert (tmp_path / "run" / "checkpoints" / "rank0.ckpt").exists()
    monkeypatch.setattr(formula_pass, "find_formulas", real)
    layer = dissect(counting_net(maps, forwards := []), data, ["layer"], tmp_path / "run", **options)["layer"]
    assert forwards == []  # neither pass ran the model again
    assert layer.formula == reference.formula and np.array_equal(layer.formula_iou, reference.formula_iou)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_interrupted_pass2_resumes_the_tables(tmp_path, monkeypatch):
    from netdissect.engine.formula_collector import FormulaCollector

    maps = write_planted_dataset(tmp_path / "ds", n=12, random_units=3)
    data = BrodenDataset(tmp_path / "ds", preprocess=RAW)
    options = dict(OPTIONS, formula_length=3, checkpoint_every=0, batch_size=2, cache_memory=0)
    reference = dissect(LookupNet(maps), data, ["layer"], tmp_path / "ref", **options)["layer"]
    real, calls = FormulaCollector.add, []

    def add(self, *args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(FormulaCollector, "add", add)
    with pytest.raises(KeyboardInterrupt):
        dissect(LookupNet(maps), data, ["layer"], tmp_path / "run", **options)
    monkeypatch.setattr(FormulaCollector, "add", real)
    layer = dissect(counting_net(maps, forwards := []), data, ["layer"], tmp_path / "run", **options)["layer"]
    assert len(forwards) == len(data) // 2 - 3  # pass 2 continued after its third batch
    assert layer.formula == reference.formula and np.array_equal(layer.formula_iou, reference.formula_iou)


def test_torchrun_gives_the_formulas_of_one_process(tmp_path):
    data = make_synthetic_dataset(tmp_path / "syn", n=13, size=32, seed=3)

    def argv(out: Path) -> list[str]:
        return [
            *("-m", "netdissect", "dissect", "--model", "helpers:small_cnn", "--layers", "conv2"),
            *("--dataset", str(data), "--out", str(out), "--batch-size", "4", "--workers", "0"),
            *("--device", "cpu", "--no-progress", "--no-report", "--formula-length", "3", "--beam", "3"),
        ]

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    for cmd in ([sys.executable, *argv(tmp_path / "one")], [*torchrun, *argv(tmp_path / "two")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=subprocess_env())
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (tmp_path / d / "conv2" / "formulas.csv" for d in ("one", "two"))
    assert one.read_bytes() == two.read_bytes()
    assert len(one.read_text().splitlines()) == 17  # header + 16 units


def test_demo_command_with_formulas(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    flags = ["--workers", "0", "--no-progress", "--device", "cpu", "--no-report"]
    assert main(["demo", "--images", "16", "--out", str(out), "--formula-length", "3", *flags]) == 0
    capsys.readouterr()
    for layer in ("conv1", "conv4"):
        rows = list(csv.DictReader((out / layer / "formulas.csv").open(newline="")))
        assert rows and all(float(r["formula_iou"]) >= float(r["single_iou"]) for r in rows)
        assert any(" AND " in r["formula"] or " OR " in r["formula"] for r in rows)


def test_too_long_formulas_for_exact_keys_are_refused():
    seg, scalars, masks, keep = random_data(0)
    table = table_of(seg, scalars, masks, keep)
    table.labels = 1 << 16  # as if the dataset had 65536 labels: subsets of 4 labels overflow int64 keys
    with pytest.raises(OptionError, match="--formula-length 5 is too long"):
        search_formulas(table, torch.ones(1 << 16, dtype=torch.bool), 5, 2)


def test_too_long_formula_message_names_the_given_length_and_the_longest_that_fits():
    """--formula-length 30 is reported as 30 (not as the first length that overflows) with the longest that fits."""
    seg, scalars, masks, keep = random_data(0)
    table = table_of(seg, scalars, masks, keep)
    table.labels = 1 << 16  # (units + 1) * 65536**4 >= 2**62: formulas of 5 labels overflow, of 4 fit
    with pytest.raises(OptionError) as info:
        search_formulas(table, torch.ones(1 << 16, dtype=torch.bool), 30, 2)
    assert str(info.value) == (
        f"--formula-length 30 is too long to count exactly over 65536 labels and {table.units} units: "
        "the longest that fits is 4"
    )
    check_formula_length(4, table.units, 1 << 16)  # fits: no error
    with pytest.raises(OptionError, match=r"--formula-length 3 .* over 4611686018427387904 labels .*no formula fits"):
        check_formula_length(3, 1, 1 << 62)
