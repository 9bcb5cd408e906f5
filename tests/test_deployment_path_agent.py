"""A deployment's ``path`` with real agent processes: the code is found wherever the agent
runs (an agent started from ``/`` failed ``--entrypoint etl.py:main``).

The agent is started from ``/`` and the deployment is made by ``deployment create`` in a
project directory; ``deployment run --watch`` follows the run to its end and exits with
its outcome. Waits are on conditions with timeouts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import FAST, ended, wait_for
from tests.cli_helpers import Invoke

redis_server = agent_helpers.redis_server  # one Redis for these slow tests

pytestmark = pytest.mark.slow

ETL = """
import os


def main(day: str, rows: int = 3) -> str:
    print(f"etl for {day} in {os.getcwd()}")
    return f"{day}:{rows}:{os.getcwd()}"


def fails(day: str) -> None:
    raise RuntimeError(f"no data for {day}")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project holding etl.py and a package; the commands run in it."""
    root = tmp_path / "project"
    (root / "jobs").mkdir(parents=True)
    (root / "etl.py").write_text(ETL)
    (root / "jobs" / "__init__.py").write_text("")
    (root / "jobs" / "nightly.py").write_text(ETL)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def agent_from_root(redis_url: str, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Starts `runq agent start -q QUEUE` with `/` as its working directory."""
    procs: list[subprocess.Popen] = []

    def start(queue: str) -> subprocess.Popen:
        log = open(tmp_path / f"agent-{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runq",
                "agent",
                "start",
                "--hide-welcome",
                "--api",
                redis_url,
                "-q",
                queue,
            ],
            cwd="/",
            env={**os.environ, **FAST},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_an_agent_started_from_root_runs_a_relative_entrypoint(
    runq: Invoke, broker: Broker, project: Path, agent_from_root
) -> None:
    runq("deployment", "create", "etl", "--entrypoint", "etl.py:main", "-q", "paths")
    assert broker.read_deployment("etl").path == str(project.resolve())
    agent_from_root("paths")
    out = runq("deployment", "run", "main/etl", "--param", "day=2024-05-01", "--watch")
    assert "Completed" in out.stdout and "Running" in out.stdout, out.stdout
    (run,) = broker.list_flow_runs(deployment_id=broker.read_deployment("etl").id)
    assert run.state.type is StateType.COMPLETED
    assert run.result == f"2024-05-01:3:{project.resolve()}"  # the engine entered the path


def test_a_module_entrypoint_imports_from_the_path_and_watch_exits_1_on_failure(
    runq: Invoke, broker: Broker, project: Path, agent_from_root
) -> None:
    runq("deployment", "create", "nightly", "--entrypoint", "jobs.nightly:main", "-q", "mods")
    assert broker.read_deployment("nightly").path == str(project.resolve())
    runq("deployment", "create", "broken", "--entrypoint", "etl.py:fails", "-q", "mods")
    agent_from_root("mods")
    ok = broker.create_flow_run(deployment="nightly", parameters={"day": "d1", "rows": 5})
    failed = runq("deployment", "run", "broken", "--param", "day=d2", "--watch", code=1)
    assert "Failed" in failed.stdout, failed.stdout
    wait_for(lambda: ended(broker, ok.id), 120, "the module run to end")
    done = broker.read_flow_run(ok.id)
    assert (done.state.type, done.result) == (StateType.COMPLETED, f"d1:5:{project.resolve()}")


def test_the_engine_still_validates_what_was_not_checked(
    runq: Invoke, broker: Broker, project: Path, agent_from_root
) -> None:
    runq(
        "deployment",
        "create",
        "loose",
        "--entrypoint",
        "etl.py:main",
        "-q",
        "loose",
        "--skip-validation",
    )
    assert broker.read_deployment("loose").parameter_schema is None
    agent_from_root("loose")
    out = runq(
        "deployment", "run", "loose", "--param", "day=d", "--param", "bogus=1", "--watch", code=1
    )
    assert "Failed" in out.stdout
    (run,) = broker.list_flow_runs("loose")
    assert run.state.type is StateType.FAILED and "bogus" in (run.state.message or "")
