"""``runq flow-run ...`` and ``runq agent ls`` through Click's runner, against a real Redis."""

from __future__ import annotations

import json
from datetime import timedelta

from runq.broker import Broker, StateType
from tests.cli_helpers import Invoke, cells


def ids(output: str) -> list[str]:
    return [run["id"] for run in json.loads(output)]


def test_ls_filters_by_queue_state_and_deployment(runq: Invoke, broker: Broker) -> None:
    etl = broker.create_deployment(name="etl", entrypoint="a.py:f", work_queue_name="q1")
    first = broker.create_flow_run(deployment="etl", name="first-run")
    second = broker.create_flow_run("q2", name="second-run")
    third = broker.create_flow_run(deployment="etl", name="third-run")
    (claimed,) = broker.claim("q1", "agent-1")
    assert claimed.id == first.id

    assert ids(runq("flow-run", "ls", "-o", "json").stdout) == [
        str(third.id),
        str(second.id),
        str(first.id),
    ]
    assert ids(runq("flow-run", "ls", "--queue", "q2", "-o", "json").stdout) == [str(second.id)]
    assert ids(runq("flow-run", "ls", "--state", "pending", "-o", "json").stdout) == [str(first.id)]
    out = runq(
        "flow-run",
        "ls",
        "--state",
        "SCHEDULED",
        "--state",
        "PENDING",
        "--deployment",
        "etl",
        "-o",
        "json",
    ).stdout
    assert ids(out) == [str(third.id), str(first.id)]
    assert ids(runq("flow-run", "ls", "-d", str(etl.id), "--limit", "1", "-o", "json").stdout) == [
        str(third.id)
    ]

    out = runq("flow-run", "ls").stdout
    for header in ["ID", "Name", "Flow", "Deployment", "Work Queue", "State", "When"]:
        assert header in out
    first_row = next(line for line in out.splitlines() if "first-run" in line)
    assert str(first.id) in first_row and "etl" in first_row and "Pending" in first_row

    assert (
        runq("flow-run", "ls", "--queue", "nope", code=1).stderr
        == "No work queue named 'nope' found.\n"
    )
    assert "No deployment named 'nope'" in runq("flow-run", "ls", "-d", "nope", code=1).stderr
    runq("flow-run", "ls", "--state", "bogus", code=2)
    runq("flow-run", "ls", "--limit", "0", code=2)


def test_late_runs_show_as_late(runq: Invoke, broker: Broker) -> None:
    run = broker.create_flow_run(
        "q", scheduled_start_time=broker.server_time() - timedelta(minutes=1)
    )
    data = json.loads(runq("flow-run", "inspect", str(run.id), "-o", "json").stdout)
    assert data["state"] == {**data["state"], "type": "SCHEDULED", "name": "Late"}
    assert "Late" in runq("flow-run", "ls").stdout


def test_inspect_shows_every_field(runq: Invoke, broker: Broker) -> None:
    run = broker.create_flow_run("q", parameters={"n": 1}, tags=["t"], start_in_seconds=600)
    out = runq("flow-run", "inspect", str(run.id)).stdout
    assert out.startswith(f"FlowRun(\n    id='{run.id}',\n    name='{run.name}',")
    for text in [
        "work_queue_name='q'",
        "parameters={'n': 1}",
        "tags=['t']",
        "run_count=0",
        "'type': 'SCHEDULED'",
        "expected_start_time='in 10 minutes (",
        "start_time=None",
    ]:
        assert text in out, out
    data = json.loads(runq("flow-run", "inspect", str(run.id), "--output", "json").stdout)
    assert data["id"] == str(run.id) and data["state"]["name"] == "Scheduled"
    assert (
        runq("flow-run", "inspect", "123", code=1).stderr
        == "'123' is not a valid flow run id, nor the name of a flow run.\n"
    )


def test_cancel_scheduled_pending_and_running(runq: Invoke, broker: Broker) -> None:
    created = [broker.create_flow_run("q") for _ in range(3)]
    running, pending = broker.claim("q", "agent-1", max_runs=2)
    broker.set_state(running.id, StateType.RUNNING, token=running.claim_token)
    (scheduled,) = [run for run in created if run.id not in {running.id, pending.id}]

    for run in (scheduled, pending):
        out = runq("flow-run", "cancel", str(run.id)).stdout
        assert out == f"Cancelled flow run '{run.name}' ({run.id})\n"
        assert broker.read_flow_run(run.id).state.type is StateType.CANCELLED
    out = runq("flow-run", "cancel", str(running.id)).stdout
    assert (
        out == f"Flow run '{running.name}' ({running.id}) is cancelling: its agent will stop it.\n"
    )
    assert broker.read_flow_run(running.id).state.type is StateType.CANCELLING
    error = runq("flow-run", "cancel", str(pending.id), code=1).stderr
    assert "is CANCELLED; it cannot become" in error and len(error.splitlines()) == 1


def test_logs_say_there_are_none_yet(runq: Invoke, broker: Broker) -> None:
    run = broker.create_flow_run("q")
    out = runq("flow-run", "logs", str(run.id)).stdout
    assert out == f"No logs yet for flow run '{run.name}' ({run.id}).\n"
    missing = "01a22748-18a4-7000-9b82-2c275dfe1df9"
    assert (
        runq("flow-run", "logs", missing, code=1).stderr
        == f"No flow run with id '{missing}' found.\n"
    )


def test_logs_print_lines_and_follow_stops_when_the_run_has_ended(
    runq: Invoke, broker: Broker
) -> None:
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", "first line"), ("stderr", "oops")])
    out = runq("flow-run", "logs", str(run.id)).stdout.splitlines()
    assert [line.split(" | ", 2)[1:] for line in out] == [
        ["stdout", "first line"],
        ["stderr", "oops"],
    ]
    broker.cancel_flow_run(run.id)
    followed = runq("flow-run", "logs", str(run.id), "--follow").stdout.splitlines()
    assert followed == out


def test_logs_print_every_line_not_only_the_first_page(runq: Invoke, broker: Broker) -> None:
    """The log is read in pages of 1000 lines: a long log must still print whole."""
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", f"line {i}") for i in range(2500)])
    out = runq("flow-run", "logs", str(run.id)).stdout.splitlines()
    assert [line.split(" | ", 2)[2] for line in out] == [f"line {i}" for i in range(2500)]


def test_agent_ls(runq: Invoke, broker: Broker) -> None:
    assert json.loads(runq("agent", "ls", "-o", "json").stdout) == []
    broker.register_agent("agent-a1", name="laptop", work_queues=["high", "low"], hostname="box-1")
    out = runq("agents", "ls").stdout
    agent_cells = cells(out, "agent-a1")
    assert agent_cells[:4] == ["agent-a1", "laptop", "high, low", "box-1"]
    assert agent_cells[5] == "online"
    (data,) = json.loads(runq("agent", "ls", "-o", "json").stdout)
    assert (data["id"], data["work_queues"], data["hostname"], data["status"]) == (
        "agent-a1",
        ["high", "low"],
        "box-1",
        "online",
    )
    assert "last_heartbeat" in data
