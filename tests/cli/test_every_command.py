"""Every subcommand against one list of bad situations: a one-line error (no traceback), finished outputs unchanged.

:data:`COMMANDS` holds, for every subcommand of the parser, how to run it on small inputs and
which situations apply; ``test_every_command_is_walked`` fails when a subcommand has no entry,
so a new command joins the walk by being registered here. Situations: ``--out`` is a file,
``--out`` belongs to another command, ``--out`` is read-only (run as an unprivileged user in one
subprocess), a binary file where a text file belongs, a missing input, garbage weights, and an
interrupted run followed by the same command (which must finish with the results of a clean run).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tqdm.std
from PIL import Image

from helpers import folder_digest as digest
from helpers import one_line_error
from netdissect.cli import build_parser, main

SEGMENTER = "netdissect.models.toy:color_segmenter"
GENERATOR = "netdissect.models.toy:toy_generator"
FAST = ["--device", "cpu", "--batch-size", "8"]


@dataclass
class World:
    """Inputs shared by the walk, built once."""

    root: Path
    syn: Path  # a synthetic Broden dataset (demo scenes as class labels)
    run: Path  # a finished dissection of the demo model's conv4 on it
    ablation: Path  # a finished ablation
    comparison: Path  # a finished comparison
    photos: Path  # a folder of images for annotate
    source: Path  # import-dataset's images/, masks/ and labels.csv
    dtd: Path  # a DTD-layout folder for build-broden
    binary: Path  # a binary file
    garbage: Path  # random bytes named like a checkpoint
    a_file: Path  # a plain file


@dataclass
class Case:
    """How to run one subcommand: ``argv(world, out)`` is a good call writing to ``out``."""

    argv: Callable[[World, str], list[str]]
    kind: str | None = None  # the output kind it writes (None: no --out)
    text: str | None = None  # an option taking a text file
    missing: Callable[[World], list[str]] | None = None  # a call naming a missing input
    weights: str | None = None  # the option taking weights
    results: tuple[str, ...] = ()  # files compared after an interrupted run and the same command again
    readonly: bool = True


def _dissect(w: World, out: str) -> list[str]:
    return ["dissect", "--model", "demo", "--layers", "conv4", "--dataset", str(w.syn), "--out", out, *FAST]


def _ablate(w: World, out: str) -> list[str]:
    return ["ablate", "--model", "demo", "--layer", "conv4", "--images", str(w.syn), "--out", out, *FAST]


def _annotate(w: World, out: str) -> list[str]:
    return [
        "annotate",
        "--segmenter",
        SEGMENTER,
        "--images",
        str(w.photos),
        "--out",
        out,
        "--workers",
        "0",
        *FAST,
        "--batch-size",
        "1",
    ]


def _generator(w: World, out: str) -> list[str]:
    return [
        "dissect-generator",
        "--generator",
        GENERATOR,
        "--segmenter",
        SEGMENTER,
        "--z-dim",
        "8",
        "--samples",
        "24",
        "--layers",
        "features",
        "--out",
        out,
        "--no-report",
        *FAST,
    ]


def _import_dataset(w: World, out: str) -> list[str]:
    s = w.source
    return ["import-dataset", "--images", str(s / "img"), "--masks", str(s / "mask"), "--labels", str(s / "labels.csv"), "--out", out]  # fmt: skip


RUN_RESULTS = ("conv4/tally.csv", "conv4/units.json", "conv4/iou.npz")
DATA_RESULTS = ("index.csv", "label.csv", "category.csv")

COMMANDS: dict[str, Case] = {
    "dissect": Case(
        _dissect,
        kind="dissection",
        missing=lambda w: [
            "dissect",
            "--model",
            "demo",
            "--layers",
            "conv4",
            "--dataset",
            str(w.root / "nope"),
            "--out",
            str(w.root / "new"),
        ],
        weights="--weights",
        results=RUN_RESULTS,
    ),
    "report": Case(
        lambda w, out: ["report", out],
        kind="dissection",
        missing=lambda w: ["report", str(w.root / "no-run")],
    ),
    "describe": Case(
        lambda w, out: [
            "describe",
            "--model",
            "demo",
            "--layers",
            "conv4",
            "fc",
            "--dataset",
            str(w.syn),
            "--out",
            out,
            "--min-images",
            "2",
            *FAST,
        ],
        kind="description",
        text="--classes",
        missing=lambda w: [
            "describe",
            "--model",
            "demo",
            "--layers",
            "fc",
            "--dataset",
            str(w.root / "nope"),
            "--out",
            str(w.root / "new"),
        ],
        weights="--weights",
        results=("fc/descriptions.csv", "conv4/descriptions.csv"),
    ),
    "explain": Case(  # explain: a photo by the demo run's conv4
        lambda w, out: ["explain", "--run", str(w.run), "--images", str(w.photos / "p0.png"), "--out", out, *FAST],
        kind="explanation",
        text="--classes",
        missing=lambda w: [
            "explain",
            "--run",
            str(w.run),
            "--images",
            str(w.root / "nope.png"),
            "--out",
            str(w.root / "new"),
        ],
        weights="--weights",
    ),
    "layers": Case(
        lambda w, out: ["layers", "--model", "demo", "--input-size", "64"],
        missing=lambda w: ["layers", "--model", str(w.root / "nope.onnx")],
        weights="--weights",
        readonly=False,
    ),
    "demo": Case(
        lambda w, out: ["demo", "--out", out, "--images", "24", "--no-ablation", "--device", "cpu"],
        kind="dissection",
        results=RUN_RESULTS,
    ),
    "compare": Case(
        lambda w, out: ["compare", str(w.run), "--out", out],
        kind="comparison",
        missing=lambda w: ["compare", str(w.root / "no-run"), "--out", str(w.root / "new")],
    ),
    "rotation-sweep": Case(
        lambda w, out: ["rotation-sweep", *_dissect(w, out)[1:], "--powers", "0", "1"],
        kind="rotation-sweep",
        weights="--weights",
        results=("power_1.00/conv4/tally.csv", "rotation_sweep.json"),
    ),
    "ablate": Case(
        _ablate,
        kind="ablation",
        text="--classes",
        missing=lambda w: [
            "ablate",
            "--model",
            "demo",
            "--layer",
            "conv4",
            "--images",
            str(w.root / "nope"),
            "--out",
            str(w.root / "new"),
        ],
        weights="--weights",
        results=("ablation.npz",),
    ),
    "import-results": Case(
        lambda w, out: ["import-results", str(w.run / "conv4" / "tally.csv"), "--layer", "conv4", "--out", out],
        kind="imported-results",
        missing=lambda w: ["import-results", str(w.root / "no.csv"), "--layer", "x", "--out", str(w.root / "new")],
    ),
    "prepare": Case(
        lambda w, out: ["prepare", str(w.syn), "--model", "demo", "--out", out, "--workers", "0"],
        kind="prepared-dataset",
        missing=lambda w: ["prepare", str(w.root / "nope"), "--out", str(w.root / "new")],
        weights="--weights",
    ),
    "download": Case(
        lambda w, out: ["download", "broden1_224", "--dir", out, "--url", (w.root / "no.zip").as_uri()],
        missing=lambda w: [
            "download",
            "broden1_224",
            "--dir",
            str(w.root / "dl"),
            "--url",
            (w.root / "no.zip").as_uri(),
        ],
        readonly=False,
    ),
    "resize-dataset": Case(
        lambda w, out: ["resize-dataset", str(w.syn), "--size", "32", "--out", out],
        kind="dataset",
        missing=lambda w: ["resize-dataset", str(w.root / "nope"), "--size", "32", "--out", str(w.root / "new")],
        results=DATA_RESULTS,
    ),
    "build-broden": Case(
        lambda w, out: ["build-broden", "--out", out, "--dtd", str(w.dtd), "--size", "32", "--min-images", "1"],
        kind="dataset",
        missing=lambda w: ["build-broden", "--out", str(w.root / "new"), "--dtd", str(w.root / "nope")],
        results=DATA_RESULTS,
    ),
    "import-dataset": Case(
        _import_dataset,
        kind="dataset",
        text="--labels",
        missing=lambda w: [
            "import-dataset",
            "--images",
            str(w.root / "nope"),
            "--masks",
            str(w.source / "mask"),
            "--labels",
            str(w.source / "labels.csv"),
            "--out",
            str(w.root / "new"),
        ],
        results=DATA_RESULTS,
    ),
    "make-dataset": Case(
        lambda w, out: ["make-dataset", "--out", out, "--n", "6", "--size", "32"],
        kind="dataset",
        results=DATA_RESULTS,
    ),
    "annotate": Case(
        _annotate,
        kind="dataset",
        text="--classes",
        missing=lambda w: [
            "annotate",
            "--segmenter",
            SEGMENTER,
            "--images",
            str(w.root / "nope"),
            "--out",
            str(w.root / "new"),
        ],
        weights="--segmenter-weights",
        results=DATA_RESULTS,
    ),
    "dissect-generator": Case(
        _generator,
        kind="generator-dissection",
        text="--classes",
        weights="--generator-weights",
        results=("features/tally.csv", "features/units.json"),
    ),
}


def test_every_command_is_walked():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert set(sub.choices) == set(COMMANDS), "register every subcommand in COMMANDS"


# --------------------------------------------------------------------------------------------
# the shared inputs


def _jpg(path: Path, value: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("walk")
    os.chmod(root, 0o755)
    for parent in root.parents:  # the read-only walk runs as an unprivileged user
        if parent == Path(tempfile_root()) or str(parent).startswith("/tmp/pytest-of"):
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    env_cache = root / "cache"
    os.environ["NETDISSECT_CACHE"] = str(env_cache)
    from netdissect.data.synthetic import make_synthetic_dataset

    syn = make_synthetic_dataset(root / "syn", n=16, size=64, seed=1)
    assert main(_dissect(World(root, syn, *[root] * 9), str(root / "run")) + ["--no-progress"]) == 0
    assert main(_ablate(World(root, syn, *[root] * 9), str(root / "ablation")) + ["--no-progress", "--no-report"]) == 0
    assert main(["compare", str(root / "run"), "--out", str(root / "comparison")]) == 0
    photos = root / "photos"
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)]):
        photos.mkdir(exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(photos / f"p{i}.png")
    source = root / "source"
    for i in range(4):
        _jpg(source / "img" / f"p{i}.jpg", 40 * i, 20)
        mask = np.zeros((20, 20), np.uint8)
        mask[:10, :10] = 1
        (source / "mask").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask, "L").save(source / "mask" / f"p{i}.png")
    (source / "labels.csv").write_text("value,name,category\n0,background,object\n1,cat,object\n")
    dtd = root / "dtd"
    for i in range(3):
        _jpg(dtd / "images" / "banded" / f"banded_{i:04d}.jpg", 30 * i)
    binary = root / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    garbage = root / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    a_file = root / "a-file"
    a_file.write_text("not a folder\n")
    return World(root, syn, root / "run", root / "ablation", root / "comparison", photos, source, dtd, binary, garbage, a_file)  # fmt: skip


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


# --------------------------------------------------------------------------------------------
# the situations


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.kind])
def test_out_is_a_file(command, world, capsys):
    before = world.a_file.read_bytes()
    line = one_line_error(capsys, COMMANDS[command].argv(world, str(world.a_file)))
    assert str(world.a_file) in line
    assert world.a_file.read_bytes() == before


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.kind])
def test_out_of_another_command(command, world, capsys, tmp_path):
    case = COMMANDS[command]
    other = world.ablation if case.kind != "ablation" else world.comparison
    out = copy_of(other, tmp_path / "other")
    before = digest(out)
    line = one_line_error(capsys, case.argv(world, str(out)))
    assert str(out) in line and ("netdissect ablate" in line or "netdissect compare" in line), line
    assert digest(out) == before


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.text])
def test_binary_text_file(command, world, capsys, tmp_path):
    case = COMMANDS[command]
    argv = case.argv(world, str(tmp_path / "out"))
    if case.text in argv:
        argv[argv.index(case.text) + 1] = str(world.binary)
    else:
        argv += [case.text, str(world.binary)]
    line = one_line_error(capsys, argv)
    assert str(world.binary) in line and case.text in line


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.missing])
def test_missing_input(command, world, capsys):
    line = one_line_error(capsys, COMMANDS[command].missing(world))
    assert "nope" in line or "no-run" in line or "no.csv" in line or "no.zip" in line, line


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.weights])
def test_garbage_weights(command, world, capsys, tmp_path):
    case = COMMANDS[command]
    line = one_line_error(capsys, case.argv(world, str(tmp_path / "out")) + [case.weights, str(world.garbage)])
    assert str(world.garbage) in line


def test_report_after_a_dataset_image_vanished(world, capsys, tmp_path):
    data = copy_of(world.syn, tmp_path / "syn")
    run = tmp_path / "run"
    assert main(_dissect(world, str(run))[:-8] + ["--dataset", str(data), "--out", str(run), *FAST, "--no-report", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    before = digest(run)
    for image in (data / "images").rglob("*.jpg"):
        image.unlink()
    line = one_line_error(capsys, ["report", str(run), "--no-progress"])
    assert str(data) in line
    assert {k: v for k, v in digest(run).items() if "/" in k and not k.startswith("report-images")} == {
        k: v for k, v in before.items() if "/" in k
    }


# --------------------------------------------------------------------------------------------
# interrupted, then the same command


def interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C at the ``step``-th progress step of any tqdm bar (shown or not)."""
    count = [0]
    update, iterate = tqdm.std.tqdm.update, tqdm.std.tqdm.__iter__

    def tick() -> None:
        count[0] += 1
        if count[0] == step:
            raise KeyboardInterrupt

    def new_update(self, n=1):
        tick()
        return update(self, n)

    def new_iter(self):
        for item in iterate(self):
            tick()
            yield item

    monkeypatch.setattr(tqdm.std.tqdm, "update", new_update)
    monkeypatch.setattr(tqdm.std.tqdm, "__iter__", new_iter)


VOLATILE = {
    "timings",
    "updated",
    "pid",
    "seconds",
    "created",
    "path",
}  # "path": the samples of a GAN dissection live in its --out


def same_result(a: Path, b: Path) -> None:
    if a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            assert sorted(x.files) == sorted(y.files)
            for name in x.files:
                np.testing.assert_array_equal(x[name], y[name], err_msg=f"{b} {name}")
    elif a.suffix == ".json":

        def strip(value):
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
            return [strip(v) for v in value] if isinstance(value, list) else value

        assert strip(json.loads(a.read_text())) == strip(json.loads(b.read_text())), b
    else:
        assert a.read_bytes() == b.read_bytes(), b


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.results])
def test_interrupted_then_the_same_command(command, world, capsys, tmp_path, monkeypatch):
    case = COMMANDS[command]
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert main(case.argv(world, str(clean))) == 0, capsys.readouterr().err[-2000:]
    with monkeypatch.context() as patched:
        interrupt_at(patched, 2)
        assert main(case.argv(world, str(out))) == 130  # it was interrupted
    assert "netdissect: interrupted" in capsys.readouterr().err
    assert main(case.argv(world, str(out))) == 0, capsys.readouterr().err[-2000:]
    for name in case.results:
        same_result(clean / name, out / name)


# --------------------------------------------------------------------------------------------
# read-only output folders: a read-only bind mount (root writes anywhere else)


@pytest.mark.parametrize("command", [c for c, case in COMMANDS.items() if case.kind and case.readonly])
def test_read_only_out(command, world, capsys, read_only):
    source, lock = read_only
    copy_of(world.run, source / "run")
    (source / "run" / "index.html").unlink()  # a report to write (an unchanged one is not rewritten)
    locked = lock()
    run = locked / "run"
    before = digest(run)
    out = str(run) if command == "report" else str(locked / "new")
    line = one_line_error(capsys, COMMANDS[command].argv(world, out))
    assert str(locked) in line and "read-only" in line, line
    assert digest(run) == before
