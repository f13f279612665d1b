# Contributor shortcuts; CI runs the same steps through .ci/run.
PYTHON ?= python

.PHONY: install lint format types test docs bench check

install:  ## the pinned torch pair, then the package with every extra
	$(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e '.[test,dev,docs]'

lint:
	ruff check src tests benchmarks scripts docs/hooks
	ruff format --check src tests benchmarks scripts docs/hooks

format:
	ruff check --fix src tests benchmarks scripts docs/hooks
	ruff format src tests benchmarks scripts docs/hooks

types:
	mypy

test:
	$(PYTHON) -m pytest

docs:
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir build/site

bench:
	$(PYTHON) benchmarks/bench_core.py
	$(PYTHON) benchmarks/bench_scale.py

check: lint types test docs
