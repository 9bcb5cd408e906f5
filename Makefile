# The two commands of the README: `make demo` and `make test`. Each creates or updates
# the local virtual environment (.venv) by itself.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench reliability clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	RUNQ=$(VENV)/bin/runq PY=$(PY) examples/demo.sh

test: $(STAMP)
	$(PY) -m pytest -x -q

bench: $(STAMP)
	$(PY) bench/claim.py
	$(PY) bench/dispatch.py
	$(PY) bench/schedule.py
	$(PY) bench/logs.py

reliability: $(STAMP)
	$(PY) docs/reliability.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
