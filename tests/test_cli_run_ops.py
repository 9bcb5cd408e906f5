"""Runs: ``flow-run retry | delete | reindex``, the state history in ``inspect``,
``ls`` by flow, state name and queue id, ``logs --tail/--head``, runs by name, and
``watch_run``: through the CLI (Click's runner) against real Redis (6.2, 7, cluster)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from runq.broker import Broker, FlowRun, FlowRunNotFound, StateType
from tests.agent_helpers import wait_for
from tests.cli_helpers import Invoke, cells

ON_CLUSTER = True


def ids(output: str) -> list[str]:
    return [run["id"] for run in json.loads(output)]


def one_line(text: str) -> str:
    assert len(text.splitlines()) == 1, text
    return text


def ended(broker: Broker, queue: str, state: StateType, *, name: str | None = None) -> FlowRun:
    """A run claimed, started and ended in ``state`` on ``queue``."""
    run = broker.create_flow_run(queue, name=name)
    (claimed,) = broker.claim(queue, "agent-1")
    broker.set_state(claimed.id, StateType.RUNNING, token=claimed.claim_token)
    if state is StateType.CANCELLED:
        broker.cancel_flow_run(run.id)  # RUNNING -> CANCELLING
        broker.set_state(claimed.id, state, token=claimed.claim_token)
    elif state is not StateType.RUNNING:
        broker.set_state(claimed.id, state, token=claimed.claim_token, message=f"it {state.value}")
    return broker.read_flow_run(run.id)


# ---- retry ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])
def test_retry_puts_an_ended_run_back_due_now(runq: Invoke, broker: Broker, state) -> None:
    run = ended(broker, "q", state, name="to-retry")
    out = runq("flow-run", "retry", "to-retry").stdout
    assert out.startswith(f"Retrying flow run 'to-retry' ({run.id})")
    again = broker.read_flow_run(run.id)
    assert again.state.type is StateType.SCHEDULED
    assert again.run_count == run.run_count, "counted when it runs, not when retried"
    assert again.expected_start_time <= broker.server_time()
    (claimed,) = broker.claim("q", "agent-2")
    assert claimed.id == run.id


def test_retry_refuses_a_run_that_has_not_ended_badly(runq: Invoke, broker: Broker) -> None:
    scheduled = broker.create_flow_run("q")
    completed = ended(broker, "q", StateType.COMPLETED)
    for run in (scheduled, completed):
        before = broker.read_flow_run(run.id)
        one_line(runq("flow-run", "retry", str(run.id), code=1).stderr)
        assert broker.read_flow_run(run.id) == before
    one_line(runq("flow-run", "retry", "no-such-run", code=1).stderr)
    runq("flow-run", "retry", code=2)


# ---- delete -----------------------------------------------------------------------------


def test_delete_asks_unless_yes_and_refuses_a_run_in_flight(runq: Invoke, broker: Broker) -> None:
    running = ended(broker, "q", StateType.RUNNING, name="busy")
    error = one_line(runq("flow-run", "delete", "busy", "--yes", code=1).stderr)
    assert "RUNNING" in error and "cancel" in error
    assert broker.read_flow_run(running.id).state.type is StateType.RUNNING

    done = ended(broker, "q", StateType.COMPLETED, name="done")
    broker.append_logs(done.id, [("stdout", "hello")])
    result = runq("flow-run", "delete", "done", code=1)  # no answer: nothing deleted
    assert "Aborted" in result.stderr
    assert broker.read_flow_run(done.id).id == done.id

    result = CliInput(runq, "n\n")("flow-run", "delete", str(done.id), code=1)
    assert broker.read_flow_run(done.id).id == done.id
    result = CliInput(runq, "y\n")("flow-run", "delete", str(done.id))
    assert f"Deleted flow run 'done' ({done.id})" in result.stdout
    with pytest.raises(FlowRunNotFound):
        broker.read_flow_run(done.id)
    assert not broker.client.exists(broker.keys.queue("q").logs(str(done.id)))
    one_line(runq("flow-run", "logs", str(done.id), code=1).stderr)

    failed = ended(broker, "q", StateType.FAILED)
    runq("flow-run", "delete", str(failed.id), "-y")
    with pytest.raises(FlowRunNotFound):
        broker.read_flow_run(failed.id)
    assert ids(runq("flow-run", "ls", "-o", "json").stdout) == [str(running.id)]


class CliInput:
    """``runq`` with text on its stdin (a confirmation answer)."""

    def __init__(self, runq: Invoke, text: str) -> None:
        self.runq, self.text = runq, text

    def __call__(self, *args: str, code: int = 0):  # noqa: ANN204 - click's Result
        from click.testing import CliRunner

        from runq.control.cli import cli

        result = CliRunner().invoke(cli, list(args), input=self.text, catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result


# ---- inspect: the state history -----------------------------------------------------------


def test_inspect_shows_the_state_history(runq: Invoke, broker: Broker) -> None:
    run = ended(broker, "q", StateType.FAILED, name="hist")
    data = json.loads(runq("flow-run", "inspect", "hist", "-o", "json").stdout)
    assert [(s["type"], s["name"]) for s in data["state_history"]] == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("FAILED", "Failed"),
    ]
    assert data["state_history"][-1]["message"] == "it FAILED"
    out = runq("flow-run", "inspect", str(run.id)).stdout
    assert "State History" in out and "state_history" not in out
    failed = cells(out, " it FAILED │")
    assert failed[1:] == ["FAILED", "Failed", "it FAILED"]


# ---- names or ids -----------------------------------------------------------------------


def test_every_command_takes_a_name_and_refuses_a_shared_one(runq: Invoke, broker: Broker) -> None:
    first = broker.create_flow_run("q", name="twin")
    second = broker.create_flow_run("q", name="twin")
    solo = broker.create_flow_run("q", name="solo")
    for command in (["inspect"], ["logs"], ["cancel"], ["retry"], ["delete", "-y"]):
        error = one_line(runq("flow-run", command[0], "twin", *command[1:], code=1).stderr)
        assert str(first.id) in error and str(second.id) in error
        missing = one_line(runq("flow-run", command[0], "nobody", *command[1:], code=1).stderr)
        assert "nobody" in missing
    assert broker.read_flow_run(first.id).state.type is StateType.SCHEDULED
    assert json.loads(runq("flow-run", "inspect", "solo", "-o", "json").stdout)["id"] == str(
        solo.id
    )
    runq("flow-run", "cancel", "solo")
    assert broker.read_flow_run(solo.id).state.type is StateType.CANCELLED


# ---- ls ---------------------------------------------------------------------------------


def test_ls_by_flow_name_state_name_and_queue_id(runq: Invoke, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="a.py:extract", work_queue_name="q1")
    broker.create_deployment(name="rep", entrypoint="b.py:report", work_queue_name="q2")
    extract = broker.create_flow_run(deployment="etl")
    report = broker.create_flow_run(deployment="rep")
    late = broker.create_flow_run(
        "q2", scheduled_start_time=broker.server_time() - timedelta(minutes=5)
    )
    crashed = ended(broker, "q3", StateType.CRASHED)
    failed = ended(broker, "q3", StateType.FAILED)
    (retrying,) = [broker.create_flow_run("q3")]
    (claimed,) = broker.claim("q3", "agent-9")
    broker.set_state(claimed.id, StateType.RUNNING, token=claimed.claim_token)
    broker.set_state(
        claimed.id,
        StateType.SCHEDULED,
        name="AwaitingRetry",
        token=claimed.claim_token,
        scheduled_start_time=broker.server_time() + timedelta(hours=1),
    )

    def listed(*args: str) -> list[str]:
        return ids(runq("flow-run", "ls", *args, "-o", "json").stdout)

    assert listed("--flow-name", "extract") == [str(extract.id)]
    assert listed("--flow-name", "report") == [str(report.id)]
    assert listed("--flow-name", "nothing") == []
    assert listed("--state", "late") == [str(late.id)]
    assert listed("--state", "AWAITINGRETRY") == [str(retrying.id)]
    assert listed("--state", "Crashed", "--state", "failed") == [str(failed.id), str(crashed.id)]
    assert listed("--state", "crashed", "--state", "CRASHED") == [str(crashed.id)]
    queue_id = str(broker.read_work_queue("q2").id)
    assert listed("--queue", queue_id) == [str(late.id), str(report.id)]
    assert listed("--queue", "q3", "--limit", "1") == [str(retrying.id)]
    assert listed("--queue", "q3", "--before", str(retrying.id)) == [
        str(failed.id),
        str(crashed.id),
    ]

    usage = runq("flow-run", "ls", "--state", "bogus", code=2).stderr
    assert "'bogus' is not a state type" in usage
    one_line(runq("flow-run", "ls", "--queue", "nope", code=1).stderr)
    one_line(runq("flow-run", "ls", "--before", "nobody", code=1).stderr)
    runq("flow-run", "ls", "--limit", "0", code=2)


def test_ls_lists_the_history_of_a_deleted_queue(runq: Invoke, broker: Broker) -> None:
    done = ended(broker, "gone", StateType.COMPLETED)
    broker.delete_work_queue("gone")
    listed = ids(runq("flow-run", "ls", "--queue", "gone", "-o", "json").stdout)
    assert listed == [str(done.id)]
    assert str(done.id) in ids(runq("flow-run", "ls", "-o", "json").stdout)


# ---- logs --tail / --head ---------------------------------------------------------------


def test_logs_tail_and_head(runq: Invoke, broker: Broker) -> None:
    run = broker.create_flow_run("q", name="chatty")
    broker.append_logs(run.id, [("stdout", f"line {i}") for i in range(3000)])

    def messages(*args: str) -> list[str]:
        out = runq("flow-run", "logs", "chatty", *args).stdout
        return [line.split(" | ", 2)[2] for line in out.splitlines()]

    assert messages("-n", "3") == ["line 2997", "line 2998", "line 2999"]
    assert messages("--tail", "1") == ["line 2999"]
    assert messages("--head", "2") == ["line 0", "line 1"]
    assert messages("--tail", "5000") == [f"line {i}" for i in range(3000)]
    broker.cancel_flow_run(run.id)
    assert messages("--tail", "2", "--follow") == ["line 2998", "line 2999"]

    runq("flow-run", "logs", "chatty", "--tail", "0", code=2)
    runq("flow-run", "logs", "chatty", "--head", "-1", code=2)
    runq("flow-run", "logs", "chatty", "--head", "1", "--follow", code=2)
    runq("flow-run", "logs", "chatty", "--head", "1", "--tail", "1", code=2)
    broker.create_flow_run("q", name="quiet")
    assert "No logs yet" in runq("flow-run", "logs", "quiet", "--tail", "5").stdout


def node_of(broker: Broker, key: str):  # noqa: ANN201 - a redis.Redis of the key's node
    """The server holding ``key`` (on a cluster: its master's client)."""
    if broker.cluster:
        return broker.client.get_node_from_key(key).redis_connection
    return broker.client


def as_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_tail_and_head_read_only_what_they_return(broker: Broker) -> None:
    """One XREVRANGE/XRANGE with COUNT: the reply is the lines asked for, not the log.

    The commands are read back from the server's SLOWLOG with a threshold of 0 (every
    command is logged with its arguments), so what is checked is what Redis ran."""
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", f"l{i}") for i in range(5000)])
    key = broker.keys.queue("q").logs(str(run.id))
    server = node_of(broker, key)
    threshold = server.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    server.config_set("slowlog-log-slower-than", 0)
    try:
        for read, expected, command in [
            (broker.read_log_tail, ["l4998", "l4999"], ["XREVRANGE", key, "+", "-", "COUNT", "2"]),
            (broker.read_log_head, ["l0", "l1"], ["XRANGE", key, "-", "+", "COUNT", "2"]),
        ]:
            server.slowlog_reset()
            assert [line.message for line in read(run.id, 2)] == expected
            ran = [as_text(entry["command"]).split() for entry in server.slowlog_get(128)]
            on_log = [args for args in ran if key in args]
            assert on_log == [command], ran
    finally:
        server.config_set("slowlog-log-slower-than", threshold)


def test_tail_after_drops_says_so_and_follow_goes_on_after_it(broker: Broker) -> None:
    small = Broker.from_url(
        broker.url, settings=broker.settings.model_copy(update={"log_max_bytes_per_run": 4096})
    )
    try:
        run = small.create_flow_run("q")
        small.append_logs(run.id, [("stdout", "x" * 100) for _ in range(200)])
        kept = small.read_log_tail(run.id, 1000)
        assert kept[0].stream == "engine" and "dropped" in kept[0].message
        assert all(line.stream == "stdout" for line in kept[1:])
        assert small.read_log_tail(run.id, 3)[0].stream == "stdout"
        assert small.read_log_head(run.id, 3)[0].stream == "engine"
        assert len(small.read_log_head(run.id, 3)) == 4
    finally:
        small.close()


def test_tail_then_follow_prints_new_lines_until_the_run_ends(runq: Invoke, broker: Broker) -> None:
    run = broker.create_flow_run("q", name="live")
    broker.append_logs(run.id, [("stdout", f"old {i}") for i in range(10)])
    server = node_of(broker, broker.keys.queue("q").logs(str(run.id)))

    def blocked() -> bool:  # the follower printed the tail and waits in XREAD
        return int(server.info("clients")["blocked_clients"]) > 0

    def writer() -> None:
        wait_for(blocked, what="the follower to block")
        broker.append_logs(run.id, [("stdout", "new 0")])
        broker.cancel_flow_run(run.id)

    thread = threading.Thread(target=writer)
    thread.start()
    out = runq("flow-run", "logs", "live", "-n", "2", "-f").stdout
    thread.join(timeout=60)
    assert [line.split(" | ", 2)[2] for line in out.splitlines()] == ["old 8", "old 9", "new 0"]


# ---- reindex ----------------------------------------------------------------------------


def test_reindex_says_what_it_did(runq: Invoke, broker: Broker) -> None:
    broker.create_flow_run("q")
    broker.create_flow_run("r")
    result = runq("flow-run", "reindex")
    assert result.stderr.splitlines() == [
        "[1/2] Indexing the runs of work queue 'q'...",
        "[2/2] Indexing the runs of work queue 'r'...",
    ]
    assert result.stdout.startswith("Indexed ") and "every work queue" in result.stdout
    result = runq("flow-run", "reindex", "--queue", "q")
    assert "work queue 'q'" in result.stdout
    one_line(runq("flow-run", "reindex", "--queue", "nope", code=1).stderr)
