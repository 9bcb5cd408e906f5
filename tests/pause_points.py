"""Pause points for tests that must act at one instant inside an agent's processes.

Two tests need a process held still at a point nothing outside can see: an agent
between a claim and its launch (to kill it exactly there), and a warm engine between a
start request and its fork (to kill it, or to keep it from ever answering). runq has no
such switch: the tests set ``RUNQ_TEST_PAUSE_AFTER_CLAIM`` or
``RUNQ_TEST_WARM_PAUSE_BEFORE_FORK`` (seconds) in the environment of the processes they
start, and the autouse fixture :func:`pause_points` puts a ``sitecustomize`` on their
``PYTHONPATH`` that, in the agent or the warm engine only, wraps the function at that
point with the pause. A test module takes the fixture by importing it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Seconds an agent waits between a claim and the launch (``Claiming.submit``).
PAUSE_AFTER_CLAIM_ENV = "RUNQ_TEST_PAUSE_AFTER_CLAIM"
#: Seconds a warm engine waits after a start request, before it forks; it says so on
#: stderr first (``runq: warm engine: test pause before a fork``).
PAUSE_BEFORE_FORK_ENV = "RUNQ_TEST_WARM_PAUSE_BEFORE_FORK"

SITECUSTOMIZE = f"""
import os, sys, time

def _seconds(name):
    return float(os.environ.get(name, "0") or 0)

if _seconds({PAUSE_AFTER_CLAIM_ENV!r}) and sys.orig_argv[1:5] == ["-m", "runq", "agent", "start"]:
    from runq.agent.claiming import Claiming

    _submit = Claiming.submit

    def _paused_submit(self, flight):
        time.sleep(_seconds({PAUSE_AFTER_CLAIM_ENV!r}))
        return _submit(self, flight)

    Claiming.submit = _paused_submit

if _seconds({PAUSE_BEFORE_FORK_ENV!r}) and sys.argv[:1] == ["-c"]:
    from runq.agent.infrastructure.warm_client import BOOT

    if BOOT in sys.orig_argv:
        import runq.agent.infrastructure.warm_engine as _warm

        _checked = _warm.checked_request

        def _paused_request(message, fds):
            request = _checked(message, fds)
            os.write(2, b"runq: warm engine: test pause before a fork\\n")
            time.sleep(_seconds({PAUSE_BEFORE_FORK_ENV!r}))
            return request

        _warm.checked_request = _paused_request
"""


@pytest.fixture(autouse=True)
def pause_points(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The pause points' ``sitecustomize`` first on ``PYTHONPATH`` for every process the
    test starts (inert unless a pause variable is set)."""
    hooks = tmp_path_factory.getbasetemp() / "pause-points"
    if not (hooks / "sitecustomize.py").exists():
        hooks.mkdir(exist_ok=True)
        (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    )
    yield hooks
