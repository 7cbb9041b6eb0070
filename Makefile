# Every target creates the venv and installs what it needs first.
# In this workplace the weights and sample clips lie in ../shared (the asset mirror).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline mirror, when there is one beside the checkout; elsewhere Ultralytics may download weights.
ifneq ($(wildcard ../shared/models),)
export ITS_FAUST_ASSET_DIR ?= $(abspath ../shared)
export YOLO_OFFLINE ?= 1
endif

.PHONY: venv demo run test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	@echo "setting up $(VENV): the project and its test tools (PyTorch, Ultralytics, Faust, ONNX Runtime; minutes the first time)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv  ## the main job: broker, worker and a camera on a sample clip, live figures (Ctrl-C stops)
	$(VENV)/bin/its-faust demo $(ARGS)

run: venv  ## a whole clip through the pipeline, summary in out/summary.json
	$(VENV)/bin/its-faust run --source $(or $(SOURCE),dual_carriageway_abhishek.mp4) --summary out/summary.json

test: venv  ## the whole suite: unit, integration (real broker, real model, real clips), fault
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/its-faust bench --repeat 5 --out benchmarks/results/bench.json

clean:
	rm -rf $(VENV) .its-faust out .pytest_cache
