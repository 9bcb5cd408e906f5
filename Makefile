# The two commands of the README: `make demo` and `make test`. Each creates or updates
# the local virtual environment (.venv) by itself.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick test-under-load screenshots typecheck lint bench bench-peers reliability clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	RUNQ=$(VENV)/bin/runq PY=$(PY) examples/demo.sh

# The whole suite, every failure reported (no -x: one failure must not hide the rest).
# pytest exits non-zero when a test fails and 5 when no test ran.
# Two workers (pytest-xdist): most tests wait on processes and servers, not on the CPU,
# so two share two cores well; JOBS=1 runs the suite in one process. The Docker tests
# share one worker (an xdist group: tests/conftest.py).
JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -rfEs -n $(JOBS) --dist loadgroup

# The suite while one CPU-bound process per core keeps the machine busy: the tests wait on
# conditions, never on the machine's speed (tests/load.sh stops the load however it ends).
test-under-load: $(STAMP)
	tests/load.sh $(MAKE) test

# The screenshots of the README and docs/ui.md: the browser tests, saving their
# screenshots in docs/screenshots/ (the tests alone save them in a temporary folder).
screenshots: $(STAMP)
	RUNQ_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/test_ui_browser.py -q -rfEs

# mypy in strict mode over the runq package, read from the source tree (runq/ links to
# the top-level folders), and basedpyright for imports that do not resolve, as editors see them.
typecheck: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,typecheck]'
	$(PY) -m mypy -p runq
	$(VENV)/bin/basedpyright --pythonpath $(PY)

# ruff (lint and format check) and the layers (import-linter), as .pre-commit-config.yaml runs them.
lint: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,lint]'
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The inner loop: no slow, Docker, browser or cluster test (each marked in tests/conftest.py).
test-quick: $(STAMP)
	$(PY) -m pytest -q -rfEs -n $(JOBS) -m "not slow and not docker and not browser and not cluster"

bench: $(STAMP)
	$(PY) bench/claim.py
	$(PY) bench/dispatch.py
	$(PY) bench/schedule.py
	$(PY) bench/logs.py
	$(PY) bench/listing.py
	$(PY) bench/ui.py
	$(PY) bench/metrics.py
	$(PY) bench/scale.py
	$(PY) bench/limits.py

# runq side by side with Prefect 2.20's agent and with RQ 2.x (each installed into
# ~/.cache/runq-bench once; takes minutes). Not part of `make test` or CI.
bench-peers: $(STAMP)
	$(PY) bench/versus_prefect.py
	$(PY) bench/versus_rq.py

reliability: $(STAMP)
	$(PY) docs/reliability.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache build
