# entropic-nas: `make demo` runs the main job on its embedded default, `make test` the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch/torchvision pinned to the builds that lie on this machine's disk; on a CUDA cluster
# install the package with the torch build that matches your drivers (see README).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
SHARED_DATA ?= $(abspath ../shared/data)

.PHONY: setup demo test test-fast lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev,bench]'
	touch $(STAMP)

demo: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/entropic-nas demo --out runs/quickstart

test: setup
	ENTROPIC_NAS_SHARED_DATA=$(SHARED_DATA) WANDB_MODE=offline $(BIN)/python -m pytest -q tests

test-fast: setup
	ENTROPIC_NAS_SHARED_DATA=$(SHARED_DATA) WANDB_MODE=offline $(BIN)/python -m pytest -q -m "not slow" tests

lint: setup
	$(BIN)/ruff check pruning search_spaces nas tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
