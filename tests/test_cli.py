"""The ``netdissect`` command line: in process through ``cli.main`` and as a real subprocess."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netdissect import BrodenDataset, dissect
from netdissect.cli import main

FAST = ["--workers", "0", "--no-progress", "--device", "cpu"]

MODEL_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, channels=4):
            super().__init__()
            self.conv = nn.Conv2d(3, channels, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(channels, 2)
            for p in self.parameters():  # constant init: weights from a checkpoint show
                nn.init.zeros_(p)

        def forward(self, x):
            return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


    def make(channels=4):
        return Net(channels)
    """
)


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    """A python module defining ``make()`` in tmp_path, which becomes the working directory.

    Returns the module's (unique) name; sys.path and sys.modules are restored afterwards.
    """
    name = f"cli_model_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(MODEL_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def make_net(module_name: str, **kwargs) -> nn.Module:
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(module_name).make(**kwargs)


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def cli_error(capsys, argv: list[str], *fragments: str) -> str:
    """Run the CLI; it must fail with one line on stderr holding every fragment."""
    rc, out, err = run_main(capsys, argv)
    assert rc != 0
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("netdissect: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def dissect_argv(model: str, dataset: Path, out: str = "out", layers=("conv",), *extra: str) -> list[str]:
    return ["dissect", "--model", model, "--layers", *layers, "--dataset", str(dataset), "--out", out, *FAST, *extra]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# Help


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ["dissect", "layers", "make-dataset", "demo", "--version"]:
        assert word in out


SUBCOMMAND_OPTIONS = {
    "dissect": [
        "--model",
        "--weights",
        "--model-args",
        "--trust-pickle",
        "--layers",
        "--dataset",
        "--out",
        "--categories",
        "--split",
        "--size",
        "--overwrite",
        "--iou-mode",
        "--quantile",
        "--iou-threshold",
        "--batch-size",
        "--workers",
        "--device",
        "--top-images",
        "--threshold-memory",
        "--cache-memory",
        "--no-progress",
    ],
    "layers": ["--model", "--weights", "--model-args", "--trust-pickle", "--input-size"],
    "make-dataset": ["--out", "--n", "--size", "--seed", "--no-progress"],
    "demo": ["--out", "--images", "--seed", "--iou-mode", "--quantile", "--workers", "--device", "--no-progress"],
}


@pytest.mark.parametrize("command", sorted(SUBCOMMAND_OPTIONS))
def test_subcommand_help(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: netdissect {command}")
    for option in SUBCOMMAND_OPTIONS[command]:
        assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", out), (command, option)


def test_version(capsys):
    from netdissect import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"netdissect {__version__}"


def test_help_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "netdissect", "dissect", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: netdissect dissect") and "--layers" in proc.stdout


# --------------------------------------------------------------------------------------------
# layers


def layer_line(out: str, name: str) -> str:
    (line,) = [line for line in out.splitlines() if line.split() and line.split()[0] == name]
    return line


def test_layers_torchvision(capsys):
    rc, out, err = run_main(capsys, ["layers", "--model", "torchvision:resnet18", "--input-size", "64"])
    assert rc == 0, err
    assert out.splitlines()[0].split()[:2] == ["layer", "type"]
    line = layer_line(out, "layer4.1.conv2")
    assert "Conv2d" in line and "[1, 512, 2, 2]" in line and line.rstrip().endswith("yes")
    line = layer_line(out, "fc")
    assert "Linear" in line and "[1, 1000]" in line and not line.rstrip().endswith("yes")
    assert layer_line(out, "layer1").rstrip().endswith("yes")


def test_layers_callable(capsys, model_module):
    rc, out, err = run_main(capsys, ["layers", "--model", f"{model_module}:make", "--input-size", "8"])
    assert rc == 0, err
    assert "[1, 4, 8, 8]" in layer_line(out, "conv") and layer_line(out, "conv").rstrip().endswith("yes")
    assert not layer_line(out, "fc").rstrip().endswith("yes")


# --------------------------------------------------------------------------------------------
# dissect end to end


def test_dissect_callable_end_to_end(capsys, model_module, tiny_dataset, tmp_path):
    rc, out, err = run_main(capsys, dissect_argv(f"{model_module}:make", tiny_dataset))
    assert rc == 0, err
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["layers"]["conv"]["units"] == 4
    tally = (tmp_path / "out" / "conv" / "tally.csv").read_text().splitlines()
    assert tally[0].startswith("unit,category,label,score,object-label")
    assert sorted(int(row.split(",")[0]) for row in tally[1:]) == [1, 2, 3, 4]
    units = json.loads((tmp_path / "out" / "conv" / "units.json").read_text())
    assert len(units["units"]) == 4
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["layer", "units", "detectors"]
    assert lines[1].split()[:2] == ["conv", "4"]
    assert lines[-2] == f"results: {(tmp_path / 'out').resolve()}"
    assert lines[-1] == f"report: {(tmp_path / 'out' / 'index.html').resolve()}"
    assert (tmp_path / "out" / "conv" / "index.html").is_file()


def test_no_report(capsys, model_module, tiny_dataset, tmp_path):
    rc, out, err = run_main(capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--no-report"))
    assert rc == 0, err
    assert not (tmp_path / "out" / "index.html").exists() and "report:" not in out
    # `netdissect report` rebuilds it from the saved results, without the model
    rc, out, err = run_main(capsys, ["report", "out", "--examples", "2", "--no-progress"])
    assert rc == 0, err
    assert out.strip() == f"report: {(tmp_path / 'out' / 'index.html').resolve()}"
    assert (tmp_path / "out" / "conv" / "masks.js").is_file()
    rc, out, err = run_main(capsys, ["report", "nowhere"])
    assert rc == 1 and err.startswith("netdissect: error:") and len(err.strip().splitlines()) == 1


def test_model_args(capsys, model_module, tiny_dataset, tmp_path):
    rc, _out, err = run_main(
        capsys,
        dissect_argv(
            f"{model_module}:make",
            tiny_dataset,
            "out",
            ("conv",),
            "--model-args",
            '{"channels": 3}',
            "--categories",
            "part",
            "--split",
            "train",
            "--size",
            "1",
        ),
    )
    assert rc == 0, err
    layer = json.loads((tmp_path / "out" / "conv" / "units.json").read_text())
    assert len(layer["units"]) == 3
    assert list(layer["units"][0]["categories"]) == ["part"]
    assert layer["metadata"]["dataset"]["images"] == 1


def test_weights_checkpoint_with_module_prefix(capsys, model_module, tiny_dataset, tmp_path):
    torch.manual_seed(0)
    trained = make_net(model_module)
    with torch.no_grad():
        for p in trained.parameters():
            p.normal_()
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}, tmp_path / "ckpt.pth")

    rc, _, err = run_main(
        capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "with", ("conv",), "--weights", "ckpt.pth")
    )
    assert rc == 0, err
    rc, _out, err = run_main(capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "without"))
    assert rc == 0, err

    def thresholds(run):
        units = json.loads((tmp_path / run / "conv" / "units.json").read_text())["units"]
        return np.array([u["threshold"] for u in units])

    reference = make_net(model_module)
    reference.load_state_dict(state)
    expected = dissect(reference, BrodenDataset(tiny_dataset), ["conv"], workers=0, progress=False, device="cpu")[
        "conv"
    ].thresholds
    assert np.array_equal(thresholds("with"), expected.astype(np.float64))
    assert np.abs(expected).max() > 0
    assert np.array_equal(thresholds("without"), np.zeros(4))  # the zero init: the weights did count


def test_dissect_in_a_subprocess(model_module, tiny_dataset, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "netdissect", *dissect_argv(f"{model_module}:make", tiny_dataset)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --no-progress: nothing but results
    assert proc.stdout.splitlines()[1].split()[:2] == ["conv", "4"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["layers"]["conv"]["units"] == 4
    # bad input, here met in a DataLoader worker: one line on stderr, exit status 1
    png = tiny_dataset / "images" / "im0_part_2.png"
    png.unlink()
    argv = dissect_argv(f"{model_module}:make", tiny_dataset, "o2") + ["--workers", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "netdissect", *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"netdissect: error: missing PNG {png} (index.csv row 1)\n"


# --------------------------------------------------------------------------------------------
# Bad input: one line on stderr, no traceback, nonzero exit


def test_unknown_layer(capsys, model_module, tiny_dataset, tmp_path):
    cli_error(
        capsys,
        dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("convv",)),
        "unknown layer 'convv'",
        "did you mean conv",
    )
    assert not (tmp_path / "out").exists()


def test_missing_dataset_dir(capsys, model_module, tmp_path):
    cli_error(capsys, dissect_argv(f"{model_module}:make", tmp_path / "nowhere"), str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("no_such_model_file.pt", ["unknown model spec 'no_such_model_file.pt'"]),
        ("no_such_package_xyz.models:make", ["cannot import 'no_such_package_xyz.models'"]),
        ("{module}:no_such_factory", ["has no attribute 'no_such_factory'"]),
        ("torchvision:resnet1800", ["unknown torchvision model 'resnet1800'", "resnet18"]),
    ],
)
def test_unknown_model_spec(capsys, model_module, tiny_dataset, spec, fragments):
    spec = spec.format(module=model_module)
    cli_error(capsys, dissect_argv(spec, tiny_dataset), *fragments)
    cli_error(capsys, ["layers", "--model", spec], *fragments)


def test_checkpoint_that_does_not_fit(capsys, model_module, tiny_dataset, tmp_path):
    state = make_net(model_module).state_dict()
    state["conv.weight"] = torch.zeros(4, 3, 5, 5)
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    cli_error(
        capsys,
        dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--weights", "bad.pth"),
        "bad.pth",
        "do not fit",
        "missing keys fc.bias",
        "unexpected keys extra.weight",
        "shape mismatch at conv.weight",
    )
    cli_error(
        capsys,
        dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--weights", "none.pth"),
        "none.pth",
        "not found",
    )
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    cli_error(
        capsys,
        dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--weights", "junk.pth"),
        "junk.pth",
    )
    assert not (tmp_path / "out").exists()


def test_pickled_whole_model_needs_trust(capsys, model_module, tiny_dataset, tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 2, 3, padding=1), act=nn.ReLU()))
    torch.save(model, tmp_path / "whole.pt")
    cli_error(capsys, dissect_argv("whole.pt", tiny_dataset), "whole.pt", "--trust-pickle")
    assert not (tmp_path / "out").exists()
    rc, _out, err = run_main(capsys, dissect_argv("whole.pt", tiny_dataset, "out", ("conv",), "--trust-pickle"))
    assert rc == 0, err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["layers"]["conv"]["units"] == 2


def test_out_holding_a_different_run(capsys, model_module, tiny_dataset, tmp_path):
    argv = dissect_argv(f"{model_module}:make", tiny_dataset)
    rc, _, err = run_main(capsys, argv)
    assert rc == 0, err
    before = snapshot(tmp_path / "out")
    assert "conv/tally.csv" in before and "summary.json" in before
    other = argv + ["--quantile", "0.01"]
    cli_error(capsys, other, str(Path("out")), "different run", "--overwrite")
    assert snapshot(tmp_path / "out") == before  # untouched
    # the same run again is fine (and changes nothing that matters)
    rc, _, err = run_main(capsys, argv)
    assert rc == 0, err
    assert snapshot(tmp_path / "out")["conv/tally.csv"] == before["conv/tally.csv"]
    rc, _, err = run_main(capsys, other + ["--overwrite"])
    assert rc == 0, err
    units = json.loads((tmp_path / "out" / "conv" / "units.json").read_text())
    assert units["metadata"]["options"]["quantile"] == 0.01


@pytest.mark.parametrize("value, fragment", [("{channels: 3}", "not valid JSON"), ("[3]", "JSON object")])
def test_model_args_not_json(capsys, model_module, tiny_dataset, tmp_path, value, fragment):
    cli_error(
        capsys,
        dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--model-args", value),
        "--model-args",
        fragment,
    )
    cli_error(capsys, ["layers", "--model", f"{model_module}:make", "--model-args", value], "--model-args", fragment)
    assert not (tmp_path / "out").exists()


def test_bad_option_values(capsys, model_module, tiny_dataset):
    cli_error(
        capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--quantile", "1.5"), "--quantile"
    )
    cli_error(
        capsys,
        dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--categories", "texture"),
        "'texture'",
    )
    cli_error(capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), "--size", "0"), "size")


# Known gaps (reported, not fixed here): these inputs still end in a traceback. Not strict, so a
# fix shows up as XPASS in the summary: then drop the marker.
GAPS = [
    pytest.param(["--out", "afile"], "afile", id="out-is-a-file"),
    pytest.param(["--device", "bogus"], "bogus", id="device-bogus"),
    pytest.param(["--model-args", '{"nope": 1}'], "nope", id="model-args-unknown-keyword"),
    pytest.param(
        ["--device", "cuda"],
        "cuda",
        id="device-cuda-without-cuda",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
    ),
]


@pytest.mark.parametrize("extra, fragment", GAPS)
def test_more_bad_input_is_one_line(capsys, model_module, tiny_dataset, tmp_path, extra, fragment):
    (tmp_path / "afile").write_text("not a directory")
    argv = dissect_argv(f"{model_module}:make", tiny_dataset, "out") + extra
    cli_error(capsys, argv, fragment)


def test_input_size_resizes_whole_image(capsys, model_module, tiny_dataset, tmp_path):
    """--input-size feeds resized images to the model; masks still compare at the seg size."""
    assert main(dissect_argv(f"{model_module}:make", tiny_dataset, "big", ("conv",), "--input-size", "16")) == 0
    units = json.loads((tmp_path / "big" / "conv" / "units.json").read_text())
    assert units["metadata"]["dataset"]["preprocess"]["input_size"] == [16, 16]
    with np.load(tmp_path / "big" / "conv" / "iou.npz") as z:
        assert z["truth"].sum() > 0 and z["intersect"].shape[0] == 4


# --------------------------------------------------------------------------------------------
# Preprocessing overrides


def test_preprocess_overrides_reach_the_dataset(capsys, model_module, tiny_dataset, tmp_path):
    argv = dissect_argv(
        f"{model_module}:make",
        tiny_dataset,
        "out",
        ("conv",),
        "--no-report",
        "--mean",
        "100",
        "110",
        "120",
        "--std",
        "50",
        "60",
        "70",
        "--bgr",
        "--pixel-scale",
        "255",
        "--input-size",
        "16",
    )
    rc, _, err = run_main(capsys, argv)
    assert rc == 0, err
    units = json.loads((tmp_path / "out" / "conv" / "units.json").read_text())
    assert units["metadata"]["dataset"]["preprocess"] == {
        "mean": [100.0, 110.0, 120.0],
        "std": [50.0, 60.0, 70.0],
        "bgr": True,
        "pixel_scale": 255.0,
        "input_size": [16, 16],
    }
    # no override: the source's own preprocessing (ImageNet's for a callable)
    rc, _, err = run_main(capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "plain", ("conv",), "--no-report"))
    assert rc == 0, err
    pre = json.loads((tmp_path / "plain" / "conv" / "units.json").read_text())["metadata"]["dataset"]["preprocess"]
    assert pre == {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "bgr": False,
        "pixel_scale": 1.0,
        "input_size": None,
    }
    # only --std: the rest stays the source's
    rc, _out, err = run_main(
        capsys,
        dissect_argv(
            f"{model_module}:make", tiny_dataset, "std", ("conv",), "--no-report", "--std", "1", "1", "1", "--rgb"
        ),
    )
    assert rc == 0, err
    pre = json.loads((tmp_path / "std" / "conv" / "units.json").read_text())["metadata"]["dataset"]["preprocess"]
    assert pre["std"] == [1.0, 1.0, 1.0] and pre["mean"] == [0.485, 0.456, 0.406] and pre["bgr"] is False


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--mean", "1", "2"], ["--mean takes 3 values", "got 2"]),
        (["--std", "1", "2", "3", "4"], ["--std takes 3 values", "got 4"]),
        (["--std", "1", "0", "1"], ["--std values must be > 0"]),
        (["--pixel-scale", "0"], ["--pixel-scale must be > 0"]),
        (["--input-size", "0"], ["--input-size must be >= 1"]),
        (["--tokens", "-3"], ["--tokens must be auto, off or a number"]),
    ],
)
def test_bad_preprocess_and_token_options(capsys, model_module, tiny_dataset, tmp_path, extra, fragments):
    cli_error(capsys, dissect_argv(f"{model_module}:make", tiny_dataset, "out", ("conv",), *extra), *fragments)
    assert not (tmp_path / "out").exists()


def test_layers_channels_last_hint(capsys, tmp_path, monkeypatch):
    (tmp_path / "swinlike.py").write_text(
        "from torch import nn\n"
        "class ToLast(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x.permute(0, 2, 3, 1)\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 24, 4, stride=4), ToLast(), nn.LayerNorm(24))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, err = run_main(capsys, ["layers", "--model", "swinlike:make", "--input-size", "64"])
    assert rc == 0, err
    assert "yes (looks channels-last: pass --channels-last)" in next(l for l in out.splitlines() if l.startswith("2 "))
    rc, out, err = run_main(capsys, ["layers", "--model", "swinlike:make", "--input-size", "64", "--channels-last"])
    assert "yes (channels-last: 24 units, 16x16)" in next(l for l in out.splitlines() if l.startswith("2 "))


# --------------------------------------------------------------------------------------------
# netdissect prepare, --prepared


@pytest.fixture
def synthetic_small(tmp_path, monkeypatch) -> Path:
    """A small synthetic dataset, with the cache directory in tmp_path."""
    from netdissect.data.synthetic import make_synthetic_dataset

    monkeypatch.setenv("NETDISSECT_CACHE", str(tmp_path / "cache"))
    return make_synthetic_dataset(tmp_path / "syn", n=10, size=32, seed=1)


def test_prepare_help_and_prepared_option(capsys):
    for command, options in [
        (
            "prepare",
            [
                "--data-dir",
                "--categories",
                "--split",
                "--size",
                "--input-size",
                "--model",
                "--out",
                "--workers",
                "--no-progress",
            ],
        ),
        ("dissect", ["--prepared"]),
        ("demo", ["--prepared"]),
        ("rotation-sweep", ["--prepared"]),
    ]:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        for option in options:
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", out), (command, option)


def test_prepare_then_dissect_reads_the_copy_with_identical_results(capsys, synthetic_small, tmp_path):
    rc, out, err = run_main(capsys, ["prepare", str(synthetic_small), "--workers", "0", "--no-progress"])
    assert rc == 0, err
    (prepared,) = (tmp_path / "cache" / "prepared").iterdir()
    assert out.startswith(f"prepared 10 images at the dataset's own size: {prepared.resolve()} (")
    runs = {}
    for mode in ("auto", "off", str(prepared)):
        run = tmp_path / f"run-{len(runs)}"
        rc, out, err = run_main(
            capsys, dissect_argv("demo", synthetic_small, str(run), ("conv2",), "--no-report", "--prepared", mode)
        )
        assert rc == 0, err
        assert ("reading the prepared dataset" in out) == (mode != "off"), (mode, out)
        runs[mode] = run
    tallies = {mode: (run / "conv2" / "tally.csv").read_text() for mode, run in runs.items()}
    assert len(set(tallies.values())) == 1
    assert len(tallies["off"].splitlines()) == 1 + 64  # header and one row per unit


def test_prepared_dir_of_another_input_size_is_refused(capsys, synthetic_small, tmp_path):
    out_dir = tmp_path / "prep16"
    rc, out, err = run_main(
        capsys,
        [
            "prepare",
            str(synthetic_small),
            "--input-size",
            "16",
            "--out",
            str(out_dir),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert rc == 0, err
    assert f"at 16x16: {out_dir.resolve()}" in out and f"--prepared {out_dir}" in out
    # the same input size reads it
    rc, out, err = run_main(
        capsys,
        dissect_argv(
            "demo",
            synthetic_small,
            str(tmp_path / "a"),
            ("conv1",),
            "--no-report",
            "--input-size",
            "16",
            "--prepared",
            str(out_dir),
        ),
    )
    assert rc == 0, err
    assert f"reading the prepared dataset {out_dir}" in out
    # another input size (or another dataset selection) is refused with one line
    line = cli_error(
        capsys,
        dissect_argv(
            "demo", synthetic_small, str(tmp_path / "b"), ("conv1",), "--no-report", "--prepared", str(out_dir)
        ),
        str(out_dir),
        "was prepared from a different dataset or input size",
        "netdissect prepare",
    )
    assert not (tmp_path / "b").exists(), line
    cli_error(
        capsys,
        dissect_argv(
            "demo",
            synthetic_small,
            str(tmp_path / "c"),
            ("conv1",),
            "--no-report",
            "--input-size",
            "16",
            "--size",
            "5",
            "--prepared",
            str(out_dir),
        ),
        "was prepared from a different dataset",
    )
    cli_error(
        capsys,
        dissect_argv(
            "demo",
            synthetic_small,
            str(tmp_path / "d"),
            ("conv1",),
            "--no-report",
            "--prepared",
            str(tmp_path / "nowhere"),
        ),
        "is not a prepared dataset",
    )


def test_prepare_takes_the_models_input_size(capsys, synthetic_small, tmp_path, monkeypatch):
    import netdissect.cli.data as cli_data
    from netdissect.models import LoadedModel, Preprocess

    loaded = LoadedModel(nn.Identity(), Preprocess(input_size=(12, 20)), "fake", None)
    monkeypatch.setattr(cli_data, "_load", lambda args: loaded)
    rc, out, err = run_main(
        capsys,
        [
            "prepare",
            str(synthetic_small),
            "--model",
            "fake",
            "--out",
            str(tmp_path / "m"),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert rc == 0, err
    assert "at 12x20" in out
    assert json.loads((tmp_path / "m" / "prepared.json").read_text())["input_size"] == [12, 20]
    # --input-size wins over the model's
    rc, out, err = run_main(
        capsys,
        [
            "prepare",
            str(synthetic_small),
            "--model",
            "fake",
            "--input-size",
            "8x6",
            "--out",
            str(tmp_path / "n"),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert rc == 0, err
    assert "at 8x6" in out
    data = BrodenDataset(synthetic_small, preprocess=Preprocess(input_size=(8, 6)), prepared=tmp_path / "n")
    assert data[0]["image"].shape == (3, 8, 6)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--input-size", "0"], ["--input-size takes N or HxW", "'0'"]),
        (["--input-size", "12x"], ["--input-size takes N or HxW"]),
        (["--workers", "-1"], ["--workers must be >= 0"]),
        (["--categories", "nosuch"], ["unknown category 'nosuch'"]),
    ],
)
def test_prepare_bad_options(capsys, synthetic_small, tmp_path, extra, fragments):
    cli_error(capsys, ["prepare", str(synthetic_small), "--no-progress", *extra], *fragments)
    assert not (tmp_path / "cache" / "prepared").exists()


def test_prepare_bad_dataset_and_out(capsys, synthetic_small, tmp_path):
    cli_error(capsys, ["prepare", str(tmp_path / "missing"), "--no-progress"], "does not exist")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    cli_error(
        capsys,
        ["prepare", str(synthetic_small), "--out", str(mine), "--workers", "0", "--no-progress"],
        str(mine),
        "is not a prepared dataset",
    )
    assert (mine / "keep.txt").read_text() == "x"
    png = next((synthetic_small / "images").rglob("*.png"))
    png.write_bytes(b"not a png")
    cli_error(capsys, ["prepare", str(synthetic_small), "--workers", "0", "--no-progress"], "cannot read PNG", str(png))
    assert not any((tmp_path / "cache" / "prepared").iterdir())


def test_model_args_must_be_a_json_object(capsys):
    cli_error(capsys, ["layers", "--model", "demo", "--model-args", "{width: 2}"], "--model-args is not valid JSON")
    cli_error(capsys, ["layers", "--model", "demo", "--model-args", "[2]"], "--model-args must be a JSON object")
