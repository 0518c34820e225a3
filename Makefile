# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv with pip when it is missing and install the package with its test extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Pinned for this project's machines (local wheels); pyproject.toml accepts newer releases.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: run test clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cnnlab models

test: $(STAMP)
	$(PY) -m pytest -q -n auto

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
