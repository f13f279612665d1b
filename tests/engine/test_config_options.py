"""Every option of a dissection is declared once (``run_options.RUN_OPTIONS``), and what is derived from it.

These tests keep docs/development.md's "How to add a run option" true: a ``DissectConfig`` field
without its ``RunOption`` (or with two) fails here, and so does a flag that does not reach its
field, or a change to the keys of existing runs.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

from netdissect.cli import build_parser
from netdissect.cli.options import _config
from netdissect.engine.config import DissectConfig
from netdissect.engine.run_options import GROUPS, KEYS, NEITHER, RESULT, RUN_OPTIONS, run_option

FIELDS = [f.name for f in fields(DissectConfig)]
DISSECT = ["dissect", "--model", "demo", "--layers", "conv1", "--dataset", "d", "--out", "o"]

#: Fields that are neither on the command line nor in a key: the Python API only, on purpose.
API_ONLY = {"chunk_pixels"}


def _subparser(name: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def test_every_field_is_declared_exactly_once():
    counts = Counter(option.name for option in RUN_OPTIONS)
    assert {name: n for name, n in counts.items() if n > 1} == {}
    assert sorted(counts) == sorted(FIELDS)


def test_every_declaration_says_where_the_option_goes():
    for option in RUN_OPTIONS:
        assert option.key in KEYS, option.name
        if option.flag is None:  # neither on the command line nor in a key: only if marked API-only
            assert option.group is None and option.help is None, option.name
            assert option.key != NEITHER or option.name in API_ONLY, option.name
        else:
            assert option.group in GROUPS and option.help, option.name
    assert {o.name for o in RUN_OPTIONS if o.flag is None and o.key == NEITHER} == API_ONLY


def test_every_flag_reaches_its_field():
    parser = _subparser("dissect")  # dissect takes every run option's flag
    flags = {s for action in parser._actions for s in action.option_strings}
    for option in RUN_OPTIONS:
        if option.flag is not None:
            assert option.flag in flags, option.name
    # the flags' defaults are the fields' defaults, through their units (MiB, --no-progress)
    config = _config(build_parser().parse_args([*DISSECT, "--device", "cpu"]))
    assert config == DissectConfig(device="cpu")
    given = build_parser().parse_args(
        [*DISSECT, "--threshold-memory", "1.5", "--no-progress", "--formula-length", "2", "--formula-ops", "or,and"]
    )
    config = _config(given)
    assert (config.threshold_memory, config.progress, config.formula_ops) == (3 << 19, False, ("and", "or"))


@pytest.mark.parametrize("command", ["dissect", "rotation-sweep", "demo", "dissect-generator"])
def test_commands_that_dissect_take_the_run_group(command):
    dests = {action.dest for action in _subparser(command)._actions}
    for option in RUN_OPTIONS:
        if option.group == "run":
            assert option.dest in dests, (command, option.name)


def test_keys_of_existing_runs_unchanged():
    """The run key and the checkpoint key as they were written by hand before RUN_OPTIONS."""
    base = {
        "quantile": 0.005,
        "iou_threshold": 0.04,
        "iou_mode": "paper",
        "top_images": 10,
        "tokens": "auto",
        "channels_last": False,
        "rotate": None,
        "rotation_power": None,
        "rotation_match": None,
        "null_samples": 0,
        "memory_format": "contiguous",
        "amp": False,
    }
    config = DissectConfig(device="cpu", rotation_power=0.5, rotation_match=True, beam=5)
    assert list(config.result_options().items()) == list(base.items())  # run.json keeps its order
    assert config.checkpoint_options() == {"batch_size": 32, "threshold_memory": 1 << 30}
    config = DissectConfig(device="cpu", rotate=3, rotation_power=0.5, formula_length=2, formula_ops="or,and")
    assert config.result_options() == {
        **base,
        "rotate": 3,
        "rotation_power": 0.5,
        "rotation_match": False,
        "formula_length": 2,
        "beam": 5,
        "formula_ops": ["and", "or"],
    }
    omitted = {o for o in FIELDS if run_option(o).omit_off and not run_option(o).key_if(config)}  # off here
    assert omitted == {"image_values"}
    assert list(config.result_options()) == [o for o in FIELDS if run_option(o).key == RESULT and o not in omitted]
    # an option added later joins the key only when it is on
    assert DissectConfig(device="cpu", image_values=True).result_options() == {**base, "image_values": True}


def test_the_recipe_names_what_exists():
    text = Path(__file__).parents[2].joinpath("docs", "development.md").read_text()
    recipe = text.split("### How to add a run option", 1)[1].split("\n### ", 1)[0]
    import netdissect.cli.options as cli_options
    import netdissect.engine.config as config
    import netdissect.engine.run_options as run_options

    assert "`DissectConfig`" in recipe and "`engine/config.py`" in recipe and hasattr(config, "DissectConfig")
    for name in ("RunOption", "RUN_OPTIONS", "RESULT", "CHECKPOINT", "NEITHER"):
        assert f"`{name}`" in recipe and hasattr(run_options, name), name
    assert "`engine/run_options.py`" in recipe
    for name in ("_add_run_options", "_add_layout_options", "_add_option", "_config"):
        assert re.search(rf"`{name}\b", recipe) and hasattr(cli_options, name), name
    for field in ("key", "flag", "help", "group", "key_if", "omit_off", "to_flag", "from_flag"):
        assert f"`{field}`" in recipe and hasattr(RUN_OPTIONS[0], field), field
    assert "tests/engine/test_config_options.py" in recipe
