"""The warm engine end to end: real `runq agent start` processes fork real flows.

What a forked run must not have of its warm engine (descriptors, threads, a Redis
connection), what happens when the warm engine is SIGKILLed between runs and in the
middle of a submission (a new one starts; no run is lost or started twice), runs that
outlive it, and the two ways to turn it off (the agent's flag, the infrastructure's
setting). The flows record what they see in files, so the checks rest on what executed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runq.agent.infrastructure import warm_client, warm_wire
from runq.agent.infrastructure.warm_client import WarmEngine, start_up_env
from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, records, state_of, wait_for
from tests.pause_points import PAUSE_BEFORE_FORK_ENV, pause_points  # noqa: F401 (autouse)

redis_server = agent_helpers.redis_server
agents = agent_helpers.agents

pytestmark = pytest.mark.slow

PROBE = """
import json, os, sys, threading, time


def probe(record_to: str, hold: str = "") -> int:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor, closed already
    with open(record_to, "a") as out:
        out.write(json.dumps({
            "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
            "fds": fds, "threads": [t.name for t in threading.enumerate()], "cwd": os.getcwd(),
            "argv": sys.argv, "marker": os.environ.get("PROBE_MARKER"),
        }) + "\\n")
    deadline = time.monotonic() + 120
    while hold and not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid()
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(agent_helpers.FLOWS + PROBE)
    return tmp_path


def is_warm_engine(pid: int) -> bool:
    """A warm engine process (its runs share its command line, not its name)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "runq-warm"
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def warm_engines_of(agent_pid: int) -> list[int]:
    """The live warm engine processes the agent started (its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_warm_engine(int(entry.name)) and alive(int(entry.name)):
            try:
                ppid = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == agent_pid:
                found.append(int(entry.name))
    return found


def fd_targets(pid: int) -> dict[str, str]:
    targets = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets[fd.name] = os.readlink(fd)
        except OSError:
            pass
    return targets


def probe_run(
    broker: Broker, name: str, queue: str, trace: Path, hold: Path | None = None, **fields
) -> str:
    parameters = {"record_to": str(trace), "hold": str(hold or "")}
    deploy(broker, name, "probe", queue, parameters=parameters, **fields)
    return str(broker.create_flow_run(deployment=name).id)


def test_a_forked_run_has_nothing_of_its_warm_engine(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace, hold = workdir / "trace.jsonl", workdir / "release"
    run_id = probe_run(
        broker,
        "probe",
        "warm",
        trace,
        hold,
        infrastructure={"type": "process", "env": {"PROBE_MARKER": "from-the-deployment"}},
    )
    agent = agents.start("warm")
    seen = wait_for(lambda: records(trace), 120, "the flow to record itself")[0]
    server = seen["ppid"]
    assert server != agent.pid and is_warm_engine(server), "forked by the warm engine"
    assert seen["sid"] == seen["pgid"] == seen["pid"], "its own session and process group"
    assert Path(f"/proc/{seen['pid']}/comm").read_text().strip() == "runq-flow-run"
    assert seen["marker"] == "from-the-deployment" and seen["cwd"] == str(workdir)
    assert seen["argv"][1:3] == ["flow-run", "execute"]
    # The warm engine: one thread, one socket (to its agent: no Redis connection).
    assert len(list(Path(f"/proc/{server}/task").iterdir())) == 1
    server_fds = fd_targets(server)
    assert sum(target.startswith("socket:") for target in server_fds.values()) == 1
    # The flow holds none of the warm engine's descriptors beyond what 0, 1, 2 became.
    shared = {target for fd, target in server_fds.items() if fd not in ("0", "1", "2")} & {
        target for fd, target in seen["fds"].items() if fd not in ("0", "1", "2")
    }
    assert not shared, f"descriptors of the warm engine crossed the fork: {shared}"
    assert not any("pidfd" in target for target in seen["fds"].values())
    assert all(name == "MainThread" or name.startswith("runq-") for name in seen["threads"])
    hold.touch()
    wait_for(lambda: state_of(broker, run_id) is StateType.COMPLETED, 120, "COMPLETED")
    done = broker.read_flow_run(run_id)
    assert done.infrastructure_id and done.infrastructure_id.endswith(f":{seen['pid']}")


def test_a_warm_engine_killed_between_runs_is_replaced(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    first = probe_run(broker, "first", "replaced", trace)
    agent = agents.start("replaced")
    wait_for(lambda: state_of(broker, first) is StateType.COMPLETED, 120, "the first run")
    killed = records(trace)[0]["ppid"]
    assert is_warm_engine(killed)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not alive(killed), 120, "the warm engine to die")
    second = probe_run(broker, "second", "replaced", trace)
    wait_for(lambda: state_of(broker, second) is StateType.COMPLETED, 120, "the second run")
    runs = records(trace)
    assert len(runs) == 2, "each run executed once"
    assert runs[1]["ppid"] != killed and is_warm_engine(runs[1]["ppid"])
    assert warm_engines_of(agent.pid) == [runs[1]["ppid"]]


def test_a_warm_engine_killed_during_a_submission_starts_it_once(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    run_id = probe_run(broker, "in-flight", "submission", trace)
    agent = agents.start("submission", env={"RUNQ_TEST_WARM_PAUSE_BEFORE_FORK": "1.5"})
    log = workdir / "agent-0.log"
    wait_for(
        lambda: "test pause before a fork" in log.read_text(), 120, "the request in the warm engine"
    )
    (killed,) = warm_engines_of(agent.pid)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: state_of(broker, run_id) is StateType.COMPLETED, 120, "the run to complete")
    runs = records(trace)
    assert len(runs) == 1, "started exactly once"
    assert runs[0]["ppid"] != killed and is_warm_engine(runs[0]["ppid"]), "by the new warm engine"
    done = broker.read_flow_run(run_id)
    assert done.run_count == 1 and done.state.type is StateType.COMPLETED


def test_runs_outlive_their_warm_engine_and_can_still_be_cancelled(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(broker, "parent", "with_grandchild", "outlive", parameters={"record_to": str(trace)})
    run_id = broker.create_flow_run(deployment="parent").id
    agent = agents.start("outlive")
    child = wait_for(lambda: records(trace), 120, "the grandchild to start")[0]["child"]
    engine_pid = agent_helpers.engine_pid_when_running(broker, run_id)
    (server,) = warm_engines_of(agent.pid)
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not alive(server), 120, "the warm engine to die")
    wait_for(
        lambda: [pid for pid in warm_engines_of(agent.pid) if pid != server],
        120,
        "a new warm engine",
    )
    assert alive(engine_pid) and alive(child) and state_of(broker, run_id) is StateType.RUNNING
    broker.cancel_flow_run(run_id)
    wait_for(lambda: state_of(broker, run_id) is StateType.CANCELLED, 120, "CANCELLED")
    for pid in (engine_pid, child):
        wait_for(lambda: not alive(pid), 120, f"process {pid} to be gone")


def test_the_agent_flag_turns_the_warm_engine_off(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    run_id = probe_run(broker, "cold", "flag", trace)
    agent = agents.start("flag", args=("--no-warm-engine",))
    wait_for(lambda: state_of(broker, run_id) is StateType.COMPLETED, 120, "COMPLETED")
    assert records(trace)[0]["ppid"] == agent.pid, "a child of the agent: the cold way"
    assert warm_engines_of(agent.pid) == []


def test_the_infrastructure_setting_and_a_start_up_variable_take_the_cold_path(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    cold = probe_run(
        broker, "cold", "setting", trace, infrastructure={"type": "process", "warm_engine": False}
    )
    agent = agents.start("setting")
    wait_for(lambda: state_of(broker, cold) is StateType.COMPLETED, 120, "the cold run")
    path = probe_run(
        broker,
        "own-path",
        "setting",
        trace,
        infrastructure={"type": "process", "env": {"PYTHONPATH": str(workdir)}},
    )
    wait_for(
        lambda: state_of(broker, path) is StateType.COMPLETED,
        120,
        "the run with its own PYTHONPATH",
    )
    warm = probe_run(broker, "warm", "setting", trace)
    wait_for(lambda: state_of(broker, warm) is StateType.COMPLETED, 120, "the warm run")
    parents = [seen["ppid"] for seen in records(trace)]
    assert parents[:2] == [agent.pid, agent.pid]
    assert parents[2] != agent.pid and is_warm_engine(parents[2])


def test_start_up_variables_are_the_ones_a_fork_cannot_honour() -> None:
    env = {
        "PYTHONPATH": "/x",
        "PYTHONUNBUFFERED": "1",
        "LD_PRELOAD": "y.so",
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": "/root",
        "RUNQ_API_URL": "redis://x",
        "TZ": "UTC",
    }
    assert start_up_env(env) == {
        "PYTHONPATH": "/x",
        "LD_PRELOAD": "y.so",
        "LANG": "C",
        "LC_ALL": "C",
    }
    assert json.dumps(start_up_env({})) == "{}"


def test_the_engine_imports_no_schedule_code_and_croniter_starts_no_process() -> None:
    """croniter 7 runs `file -b <python>` when imported (platform.architecture): engines
    never import it, and the scheduler's lazy import of it starts no process."""
    import subprocess
    import sys

    script = (
        "import subprocess, sys\n"
        "import runq.engine.entry, runq.engine.execution\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('croniter')"
        " or m in ('runq.broker.schedules', 'runq.broker.scheduling'))\n"
        "started = []\n"
        "real = subprocess.Popen.__init__\n"
        "def spy(self, *args, **kwargs):\n"
        "    started.append(args[0])\n"
        "    real(self, *args, **kwargs)\n"
        "subprocess.Popen.__init__ = spy\n"
        "from runq.broker.cron import _cron_plan\n"
        "_cron_plan('0 9 * * 1-5', True)\n"
        "print(loaded, started, 'croniter' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] [] True"


@pytest.fixture
def devnull_stdio() -> Iterator[tuple[int, int, int]]:
    fds = tuple(os.open(os.devnull, os.O_RDWR) for _ in range(3))
    yield fds  # type: ignore[misc]
    warm_wire.close_all(fds)


def test_close_does_not_wait_for_a_submission_holding_the_lock(
    monkeypatch: pytest.MonkeyPatch, devnull_stdio: tuple[int, int, int]
) -> None:
    """A submission waits for the warm engine's answer with the lock held (here for as
    long as the reply may take, made 300 s); close() gives it up at once instead of
    waiting its turn, and the submission answers None (the cold path)."""
    monkeypatch.setattr(warm_client, "REPLY_SECONDS", 300.0)
    monkeypatch.setenv(PAUSE_BEFORE_FORK_ENV, "300")  # it never answers in the test's time
    engine = WarmEngine()
    assert engine.wait_ready()
    results: list[object] = []
    submitting = threading.Thread(
        target=lambda: results.append(
            engine.start_run(
                ["--help"], dict(os.environ, PYTHONUNBUFFERED="1"), os.getcwd(), devnull_stdio
            )
        )
    )
    submitting.start()
    wait_for(engine._lock.locked, 120, "the submission to hold the lock")
    server = engine.pid
    engine.close()
    submitting.join(timeout=60)  # far below REPLY_SECONDS: it gave up because of close()
    assert not submitting.is_alive() and results == [None]
    assert engine.pid is None and server is not None and not alive(server)
    assert not engine.wait_ready(), "a closed warm engine starts no other"


def test_descriptors_past_1024_work(devnull_stdio: tuple[int, int, int]) -> None:
    """select() cannot watch a descriptor past 1024 (ValueError); an agent with many
    runs has them. The wire and the warm engine's handles poll() instead."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip("the descriptor limit is below 1400")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        left, right = warm_wire.socket_pair()
        assert left.fileno() > 1024
        warm_wire.send(right, {"op": "hello"})
        assert warm_wire.receive(left, 5) == ({"op": "hello"}, [])
        assert warm_wire.receive(left, 0) is None
        left.close()
        right.close()
        engine = WarmEngine()
        try:
            handle = engine.start_run(
                ["--help"], dict(os.environ, PYTHONUNBUFFERED="1"), os.getcwd(), devnull_stdio
            )
            assert handle is not None, "the warm engine took the run"
            wait_for(lambda: handle.poll() is not None, 120, "the forked run to end")
            assert handle.poll() == 0
        finally:
            engine.close()
    finally:
        warm_wire.close_all(filler)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
