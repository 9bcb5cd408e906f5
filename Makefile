# The two commands of the README: `make demo` and `make test`. Each creates or updates
# the local virtual environment (.venv) by itself.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test typecheck bench bench-peers reliability clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	RUNQ=$(VENV)/bin/runq PY=$(PY) examples/demo.sh

test: $(STAMP)
	$(PY) -m pytest -x -q

# mypy in strict mode over the runq package. mypy resolves imports from the source tree
# and cannot follow the install's mapping of broker/ to runq.broker, so it reads a small
# tree of links (.typecheck/runq/broker -> ../../broker, ...) shaped like the install.
typecheck: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,typecheck]'
	rm -rf .typecheck && mkdir -p .typecheck/runq
	for part in broker agent control ui runq/__init__.py runq/__main__.py; do \
		ln -s "$(CURDIR)/$$part" .typecheck/runq/$$(basename $$part); done
	cd .typecheck && $(CURDIR)/$(PY) -m mypy --config-file $(CURDIR)/pyproject.toml -p runq

bench: $(STAMP)
	$(PY) bench/claim.py
	$(PY) bench/dispatch.py
	$(PY) bench/schedule.py
	$(PY) bench/logs.py
	$(PY) bench/listing.py
	$(PY) bench/ui.py
	$(PY) bench/metrics.py
	$(PY) bench/scale.py

# runq side by side with Prefect 2.20's agent (installs Prefect into ~/.cache/runq-bench
# once; takes minutes). Not part of `make test` or CI.
bench-peers: $(STAMP)
	$(PY) bench/versus_prefect.py

reliability: $(STAMP)
	$(PY) docs/reliability.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .typecheck build
