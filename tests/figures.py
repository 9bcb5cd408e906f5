"""Figures the reliability tests reach, recorded for ``docs/reliability.md``.

A test asserts its property; the numbers it observed on the way (runs lost, seconds until
a dead agent's slot came back, the most runs ever in flight) are recorded with the
``figure`` fixture instead, never asserted against, so that the table in
``docs/reliability.md`` comes from measurements and a slow machine cannot fail a test.
``docs/reliability.py`` sets ``RUNQ_FIGURES_FILE`` and reads the file back; without that
variable recording costs one dictionary lookup and writes nothing.

Each line of the file is one JSON object:

- ``{"kind": "figure", "test": NODE_ID, "name": ..., "value": ..., "unit": ...}``
- ``{"kind": "outcome", "test": NODE_ID, "when": "setup|call|teardown",
  "outcome": "passed|failed|skipped", "duration": SECONDS, "reason": TEXT}``
- ``{"kind": "collected", "tests": [NODE_ID, ...]}`` once the session has collected,
  so the reader knows how many outcomes to expect.

Registered for the whole suite by ``pytest_plugins = ["tests.figures"]`` in conftest.py.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

import pytest

FIGURES_FILE = "RUNQ_FIGURES_FILE"


class Figure(Protocol):
    """The ``figure`` fixture: ``figure("runs_lost", 0)``, ``figure("reclaim", 2.4, unit="s")``."""

    def __call__(self, name: str, value: float | int | bool | str, unit: str = "") -> None: ...


def _append(record: dict) -> None:
    """One JSON line, one write: the file is shared by every test of the session."""
    path = os.environ.get(FIGURES_FILE)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record a named measurement of this test (a no-op unless RUNQ_FIGURES_FILE is set)."""
    test = request.node.nodeid

    def record(name: str, value: float | int | bool | str, unit: str = "") -> None:
        if os.environ.get(FIGURES_FILE):
            _append({"kind": "figure", "test": test, "name": name, "value": value, "unit": unit})

    return record


def pytest_collection_finish(session: pytest.Session) -> None:
    """Announce what will run, so a reader can show progress and spot tests that never ran."""
    _append({"kind": "collected", "tests": [item.nodeid for item in session.items]})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each phase's outcome (after conftest's RUNQ_TEST_NO_SKIP rewrite), with a skip's reason."""
    if not os.environ.get(FIGURES_FILE):
        return
    reason = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        reason = report.head_line or report.when
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message.splitlines()[0] if crash and crash.message else reason
    _append(
        {
            "kind": "outcome",
            "test": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "duration": round(report.duration, 3),
            "reason": reason,
        }
    )
