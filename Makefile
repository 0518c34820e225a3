# Two commands on a fresh machine: `make run` and `make test`.
# Both create .venv with pip when it is missing and install the package with its test extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Pinned for this project's machines (local wheels); pyproject.toml accepts newer releases.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: run test clean browser

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[test]'
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

# The report's browser test drives the system Chromium (Debian's package) with Playwright; it is
# installed here where missing and possible (root with apt-get), else the test says it is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)); } || \
	  echo "chromium could not be installed: the report's browser test will be skipped"

run: $(STAMP)
	$(VENV)/bin/cnnlab report --quick

test: $(STAMP)
	$(PY) -m pytest -q -n auto

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
