# medlit: `make demo` runs the main job on generated data, `make test` runs the tests.
# Both create .venv and install what is missing first (quick when already installed).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medlit-installed
DATA ?= data/HAM10000
GENERATED := data/generated
CLS := $(PY) -m lesion_cls

.PHONY: setup demo demo-data test smoke test-all lint train-cls-ce train-cls-focal clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo-data: setup
	$(PY) -m lesion_cls.synthetic --out $(GENERATED)/ham10000 --n-images 1200

## The main job on generated data: cross-entropy vs cross-entropy + focal loss.
demo: demo-data
	$(CLS) fit --config experiments/cls_ce.yaml --config experiments/demo/cls.yaml
	$(CLS) fit --config experiments/cls_ce_focal.yaml --config experiments/demo/cls.yaml

## Tests: everything but `slow` (unit, smoke, ddp, and real-data tests where ../shared/data exists).
test: setup
	$(PY) -m pytest -m "not slow"

smoke: setup
	$(PY) -m pytest -m smoke

test-all: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

## The seed's configurations on real data: make train-cls-ce DATA=/path/to/HAM10000
train-cls-ce: setup
	$(CLS) fit --config experiments/cls_ce.yaml --data.root $(DATA)

train-cls-focal: setup
	$(CLS) fit --config experiments/cls_ce_focal.yaml --data.root $(DATA)

clean:
	rm -rf runs/demo $(GENERATED)
