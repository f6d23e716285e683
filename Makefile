# Two commands do everything on a fresh machine: `make lab` and `make test`.
# Both create .venv on first use; later runs reuse it until pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Which build `pip install torch==2.13.0` gets depends on where it looks: PyPI's wheel for Linux
# is the CUDA build (with about 3 GB of NVIDIA libraries), its macOS and Windows wheels are CPU
# builds, and a pip configured with a local wheel folder (as on the course's build machines)
# takes that. For the CPU build on Linux, name PyTorch's CPU index:
#   make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A learner who installed a torch into .venv first (a CUDA build, say) keeps it.
TORCH  := torch==2.13.0
TORCH_INDEX ?=

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
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
