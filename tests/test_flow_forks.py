"""A flow that forks: only the engine's own process reports the run, cold or warm.

A process the flow forks (``os.fork()`` without an exec) runs the flow's code on, and when
that code returns or raises it comes back into the engine's frames. It must end there,
at once, with the status the interpreter would give it: the run is its parent's to
report (a copy writing FAILED over a flow that went on to complete is a wrong end), and
the copy holds the engine's locks as its threads held them at the fork (a copy that
waits on them never ends, and a parent waiting for it never does either). So a run ends
the same way whether the agent forks it from its warm engine or starts a cold
``runq flow-run execute``, and nothing is left running. Real agents, on one Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, ended, records, wait_for
from tests.figures import Figure

redis_server = agent_helpers.redis_server
agents = agent_helpers.agents

pytestmark = pytest.mark.slow

FORKS = '''

def forking(record_to: str, child: str, parent: str) -> str:
    """Prints (so the engine's log threads are busy at the fork), forks; the child
    raises or exits as ``child`` says, the parent waits for it, records its status,
    then returns or raises as ``parent`` says."""
    for i in range(200):
        print(f"before the fork {i}", flush=True)
    pid = os.fork()
    if pid == 0:
        if child == "raise":
            raise RuntimeError("boom in the child")
        if child == "exit":
            sys.exit(7)
        return "the child's result"
    _, status = os.waitpid(pid, 0)
    record(record_to, child=pid, status=os.waitstatus_to_exitcode(status))
    if parent == "raise":
        raise RuntimeError("boom in the parent")
    return "the parent's result"
'''

MODES = {"warm": (), "cold": ("--no-warm-engine",)}
CASES = {  # (the child, the parent): the run's end, the child's exit status
    "child-raises": (("raise", "return"), StateType.COMPLETED, 1),
    "child-exits": (("exit", "return"), StateType.COMPLETED, 7),
    "child-returns": (("return", "return"), StateType.COMPLETED, 0),
    "parent-raises": (("raise", "raise"), StateType.FAILED, 1),
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(agent_helpers.FLOWS + FORKS)
    return tmp_path


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", list(CASES))
def test_a_forked_child_of_a_flow_ends_without_reporting_the_run(
    broker: Broker, agents: Agents, workdir: Path, mode: str, case: str, figure: Figure
) -> None:
    (child, parent), end, status = CASES[case]
    trace = workdir / "trace.jsonl"
    deploy(
        broker,
        "forking",
        "forking",
        "forks",
        parameters={"record_to": str(trace), "child": child, "parent": parent},
    )
    runs = [broker.create_flow_run(deployment="forking") for _ in range(3)]
    agents.start("forks", args=MODES[mode])
    wait_for(lambda: ended(broker, *(run.id for run in runs)), 90, "every run to end")
    done = [broker.read_flow_run(run.id) for run in runs]
    figure("runs_stuck_or_reported_by_a_forked_child", sum(r.state.type is not end for r in done))
    assert [r.state.type for r in done] == [end] * 3, [r.state for r in done]
    assert all(r.run_count == 1 for r in done)
    if end is StateType.COMPLETED:
        assert [r.result for r in done] == ["the parent's result"] * 3
    else:
        assert all("boom in the parent" in str(r.state.message) for r in done)
    assert [entry["status"] for entry in records(trace)] == [status] * 3
    if child == "raise":  # the child's traceback reaches the run's log, as its output does
        for run in runs:
            lines = [line.message for line in broker.read_logs(run.id, count=10_000)]
            assert any("boom in the child" in line for line in lines)
