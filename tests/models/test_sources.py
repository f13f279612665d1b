"""The source registry is the only list of model sources: ``--model``'s help, the unknown-SPEC
error and the order in which ``load_model`` asks the sources all come from it."""

from __future__ import annotations

import argparse
import re

import pytest

from netdissect.cli import build_parser
from netdissect.errors import ModelError
from netdissect.model_specs import BUILTIN_SOURCES, CATCH_ALL
from netdissect.models import LoadedModel, ModelSource, Preprocess, list_sources, load_model, register_source
from netdissect.models.base import SOURCES, prefix_matcher

REGISTERED = list_sources()


def model_help(command: str = "dissect") -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if "--model" in a.option_strings)
    return str(action.help)


def unknown_spec_error() -> str:
    with pytest.raises(ModelError, match="unknown model spec") as error:
        load_model("no such spec")
    return str(error.value)


def example(syntax: str) -> str:
    """A SPEC written as ``syntax`` says: placeholders filled in, the parenthesised remark dropped."""
    return re.sub(r"<[^>]*>", "x", syntax.split(" (")[0])


@pytest.fixture
def registry():
    """The registry, restored after the test."""
    saved = list(SOURCES)
    yield SOURCES
    SOURCES[:] = saved


def test_every_builtin_source_is_registered_with_its_declared_syntax_and_priority():
    registered = {s.name: s for s in REGISTERED}
    for builtin in BUILTIN_SOURCES:
        assert (registered[builtin.name].syntax, registered[builtin.name].priority) == (
            builtin.syntax,
            builtin.priority,
        )


@pytest.mark.parametrize("source", REGISTERED, ids=lambda s: s.name)
def test_its_syntax_is_in_the_help_and_in_the_unknown_spec_error(source):
    assert source.syntax in model_help()
    assert source.syntax in unknown_spec_error()


@pytest.mark.parametrize("source", REGISTERED, ids=lambda s: s.name)
def test_a_spec_of_its_syntax_is_taken_by_it(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = example(source.syntax)
    if "/" in spec:  # a path: the file exists
        (tmp_path / spec).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / spec).write_bytes(b"")
    taker = next(s for s in list_sources() if s.matches(spec))
    assert taker.name == source.name, spec


def test_help_and_error_list_the_sources_in_the_order_they_are_asked():
    syntaxes = [s.syntax for s in REGISTERED]
    for text in (model_help(), unknown_spec_error()):
        positions = [text.index(s) for s in syntaxes]
        assert positions == sorted(positions), text


def test_a_third_party_source_is_asked_by_priority_and_listed_in_the_error(registry):
    def load(spec, weights, trust, args):
        raise AssertionError("not loaded here")

    timm = register_source(ModelSource("timm", prefix_matcher("timm:"), load, "timm:<name>"))
    last = register_source(ModelSource("last", lambda spec: True, load, "anything at all", priority=CATCH_ALL + 5))
    names = [s.name for s in list_sources()]
    assert names.index("timm") < names.index("callable") < names.index("pickle") < names.index("last")
    assert next(s for s in list_sources() if s.matches("timm:vit")) is timm  # not the callable catch-all
    registry[:] = [s for s in registry if s is not last]  # it would take the unknown SPEC
    text = unknown_spec_error()
    assert "timm:<name>" in text and text.index("timm:<name>") < text.index("package.module:callable")


def test_a_registered_source_loads_its_specs(registry):
    from torch import nn

    loaded = LoadedModel(nn.Identity(), Preprocess(), "toy:1")
    register_source(ModelSource("toy", prefix_matcher("toy:"), lambda spec, w, t, a: loaded, "toy:<n>"))
    assert load_model("toy:1") is loaded
