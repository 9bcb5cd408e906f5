"""The warm engine's own faults, met by real `runq agent start` processes.

An agent that leaves while its warm engine still imports (``--run-once`` on an empty
queue) leaves no traceback behind; a warm engine killed while idle is noticed when it
dies, and replaced then, not when the next run comes. Conditions are waited on, never
durations: the ordering that made the old code fail is forced by a sitecustomize hook
that holds the warm engine's first message back until its agent has hung up.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from runq.agent.infrastructure.warm_client import BOOT, WarmEngine
from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, records, state_of, wait_for
from tests.figures import Figure
from tests.test_warm_engine import PROBE, alive, is_warm_engine, warm_engines_of

redis_server = agent_helpers.redis_server
agents = agent_helpers.agents

pytestmark = pytest.mark.slow

#: In the warm engine only: note its pid, and hold its "ready" back until the agent has
#: closed its end of the socket (the agent left while the warm engine imported).
LATE_READY = f"""
import os, select, sys
if sys.argv[:1] == ["-c"] and {BOOT!r} in sys.orig_argv:
    with open(os.environ["WARM_PIDS"], "a") as pids:
        pids.write(f"{{os.getpid()}}\\n")
    import runq.agent.infrastructure.warm_engine as warm
    serve = warm.serve

    def late_serve(sock):
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)  # hang-up is reported too
        poller.poll(120_000)
        return serve(sock)

    warm.serve = late_serve
"""


def with_hooks(directory: Path) -> str:
    """PYTHONPATH with ``directory`` (a sitecustomize) first."""
    return os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(agent_helpers.FLOWS + PROBE)
    return tmp_path


def test_run_once_on_an_empty_queue_leaves_no_traceback(agents: Agents, workdir: Path) -> None:
    hooks, pids = workdir / "hooks", workdir / "warm-pids"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(LATE_READY)
    env = {"PYTHONPATH": with_hooks(hooks), "WARM_PIDS": str(pids)}
    agent = agents.start("empty", args=("--run-once",), env=env)
    assert agent.wait(timeout=120) == 0
    (warm,) = [int(pid) for pid in pids.read_text().split()]
    wait_for(lambda: not alive(warm), 30, "the warm engine to be gone")
    output = (workdir / "agent-0.log").read_text()
    assert "Traceback" not in output and "WireError" not in output, output
    assert "stopped" in output


def test_a_warm_engine_killed_while_idle_is_replaced_before_the_next_run(
    broker: Broker, agents: Agents, workdir: Path, figure: Figure
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(broker, "probe", "probe", "idle", parameters={"record_to": str(trace), "hold": ""})
    first = broker.create_flow_run(deployment="probe")
    agent = agents.start("idle")
    log = workdir / "agent-0.log"
    wait_for(lambda: state_of(broker, first.id) is StateType.COMPLETED, 60, "the first run")
    # The agent has settled the run: nothing of it reads from the warm engine any more.
    wait_for(
        lambda: re.search(rf"Flow run '{first.name}' ended", log.read_text()),
        30,
        "the agent to settle it",
    )
    killed = records(trace)[0]["ppid"]
    assert is_warm_engine(killed)
    os.kill(killed, signal.SIGKILL)
    # No run is submitted: the agent notices the death by itself, says so, starts another.
    replacement = wait_for(
        lambda: [pid for pid in warm_engines_of(agent.pid) if pid != killed],
        60,
        "a new warm engine",
    )
    figure("runs_submitted_before_the_replacement", 0)
    assert (
        f"The warm engine (pid {killed}) was killed by SIGKILL; starting a new one."
        in log.read_text()
    )
    assert agent.poll() is None
    second = broker.create_flow_run(deployment="probe")
    wait_for(lambda: state_of(broker, second.id) is StateType.COMPLETED, 60, "the second run")
    assert records(trace)[1]["ppid"] == replacement[0], "forked by the warm engine started then"
    figure("next_run_forked_by_the_replacement", True)


def test_a_warm_engine_that_dies_importing_is_not_restarted_in_a_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm engine that cannot start (here: it exits before its imports) is not
    respawned by the thread that watches it: runs start cold, and a later submission
    tries again after a pause."""
    (tmp_path / "sitecustomize.py").write_text(
        f"import sys\nif sys.argv[:1] == ['-c'] and {BOOT!r} in sys.orig_argv:\n    raise SystemExit(3)\n"
    )
    monkeypatch.setenv("PYTHONPATH", with_hooks(tmp_path))
    engine = WarmEngine()
    try:
        engine.start()
        assert engine.pid is not None
        wait_for(lambda: engine.generation == 1, 60, "the watcher to notice the death")
        assert engine.pid is None, "not started again by the watcher"
        assert not engine.wait_ready(), "nor by the next submission, right away"
        assert engine.pid is None
    finally:
        engine.close()
