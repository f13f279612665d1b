"""docs/segmenter.md and its README section: every command parses, the offline example and the Python run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from netdissect.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "segmenter.md"
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
SMALLER = {"--n 200": "--n 24", "--samples 200": "--samples 60", "samples=200": "samples=60"}


def commands(text: str) -> list[str]:
    return [
        line.strip()
        for block in FENCE.findall(text)
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip().startswith("netdissect ")
    ]


def smaller(text: str) -> str:
    for big, small in SMALLER.items():
        text = text.replace(big, small)
    return text


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("### Concepts from a segmentation model") : text.index("### Python API")]


@pytest.mark.parametrize("command", commands(PAGE.read_text()) + commands(readme_section()))
def test_shown_commands_parse(command):
    build_parser().parse_args(shlex.split(command)[1:])


def test_readme_example_offline_asks_for_the_weights_file(tmp_path, monkeypatch, capsys):
    """Offline, the README's command stops with one line saying where to put the weights."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "photos").mkdir()
    [command] = commands(readme_section())
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", _offline)
    assert main([*shlex.split(command)[1:], "--no-progress", "--workers", "0"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "cannot download COCO_WITH_VOC_LABELS_V1 weights of deeplabv3_resnet50" in err[0]


def _offline(*args, **kwargs):
    raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")


def test_offline_example_and_python_api_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = smaller(PAGE.read_text())
    section = text[text.index("## An offline example") : text.index("## Python API")]
    for command in commands(section):
        argv = shlex.split(command)[1:]
        extra = ["--no-progress"] + (["--workers", "0", "--device", "cpu"] if argv[0] != "make-dataset" else [])
        extra += ["--no-report"] if argv[0] in ("dissect", "dissect-generator") else []
        assert main(argv + extra) == 0, command
    out = capsys.readouterr().out
    assert "features: red " in out and "of pixels -> 0.00 % with unit(s) 1" in out
    assert "features: green " in out and "of pixels -> 0.00 % with unit(s) 2" in out
    [code] = re.findall(r"```python\n(.*?)```", text[text.index("## Python API") :], re.S)
    exec(compile(code, str(PAGE), "exec"), {})  # as written (with fewer samples)
    printed = capsys.readouterr().out
    assert "detectors" in printed and "['red', 'green']" in printed
