"""The trivial jobs of ``bench/versus_rq.py``: one module, run by both sides.

RQ's work horse imports it by name (its worker starts with ``--path`` on this folder);
runq's engine imports it by path (the deployment's entrypoint names this file). The same
code on both sides, so the figures compare the systems that start it, not the jobs.
It imports only the standard library: RQ's virtual environment has no runq.
"""

from __future__ import annotations

import os
import time

#: The file each ``stamp`` job appends its start time to (set in the environment of the
#: RQ worker or runq agent, which their job processes inherit).
STAMPS_ENV = "VERSUS_RQ_STAMPS"


def noop() -> None:
    """Does nothing: what a throughput figure costs is the system around it."""


def stamp() -> None:
    """Records when the job's own code started (the wall clock, one line per job), so the
    enqueuer, which recorded when it enqueued, can tell the start latency."""
    started = time.time()
    with open(os.environ[STAMPS_ENV], "a", encoding="ascii") as stamps:
        stamps.write(f"{started!r}\n")
