# Two commands do everything on a fresh machine: `make lab` and `make test`.
# Both create .venv on first use; later runs reuse it until pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build: installs in seconds here and works everywhere. A learner with a GPU installs
# a CUDA build of torch into .venv first; this step then leaves it alone.
TORCH  := torch==2.13.0

export PATH := $(BIN):$(PATH)
# JupyterLab refuses to run as root unless told; workshop containers often run as root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

.PHONY: lab test lessons solutions bench clean

lab: $(STAMP)
	cd lessons && jupyter lab $(LAB_FLAGS) 00_welcome.ipynb

test: $(STAMP)
	$(BIN)/gptcourse build-lessons --check
	$(BIN)/python -m pytest

lessons: $(STAMP)
	$(BIN)/gptcourse build-lessons

# Re-executes every solution notebook in place, refreshing its stored outputs (for authors).
solutions: $(STAMP)
	$(BIN)/gptcourse build-lessons --run-solutions

bench: $(STAMP)
	$(BIN)/python bench/run.py

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "gptcourse needs Python 3.10 or newer; run: make PYTHON=python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
