"""``runq work-queue ...`` through Click's runner, against a real Redis."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner

from runq.broker import Broker
from runq.control.cli import cli
from tests.cli_helpers import Invoke, cells, row


def test_create_prints_properties_and_hints(runq: Invoke, broker: Broker) -> None:
    out = runq("work-queue", "create", "test-queue", "-l", "5", "-d", "nightly jobs").stdout
    queue = broker.read_work_queue("test-queue")
    assert (queue.concurrency_limit, queue.description) == (5, "nightly jobs")
    assert out.splitlines()[:4] == [
        "Created work queue with properties:",
        "    name - 'test-queue'",
        f"    id - {queue.id}",
        "    concurrency limit - 5",
    ]
    assert "    runq agent start -q 'test-queue'" in out
    assert "    runq work-queue inspect 'test-queue'" in out


def test_create_of_an_existing_name_fails_and_changes_nothing(runq: Invoke, broker: Broker) -> None:
    first = broker.create_work_queue("dup", concurrency_limit=1)
    result = runq("work-queue", "create", "dup", "--limit", "9", code=1)
    assert result.stderr == "Work queue 'dup' already exists.\n" and result.stdout == ""
    again = broker.read_work_queue("dup")
    assert (again.id, again.concurrency_limit) == (first.id, 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["create", "a{b"], "Invalid work queue name 'a{b'"),
        (["create", "q", "--limit", "-1"], "Invalid concurrency limit -1"),
        (["set-concurrency-limit", "q", "-2"], "Invalid concurrency limit -2"),
        (["inspect", "nope"], "No work queue named 'nope' found."),
        (["pause", "nope"], "No work queue named 'nope' found."),
        (["preview", "nope"], "No work queue named 'nope' found."),
    ],
)
def test_mistakes_are_one_line_and_exit_1(runq: Invoke, broker: Broker, args, message) -> None:
    if args[0] == "set-concurrency-limit":
        broker.create_work_queue("q")
    result = runq("work-queue", *args, code=1)
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_ls_shows_counts_status_and_marks_paused_queues(runq: Invoke, broker: Broker) -> None:
    broker.create_work_queue("busy", concurrency_limit=2)
    broker.create_work_queue("held")
    broker.pause_work_queue("held")
    broker.create_flow_runs("busy", [{}, {}, {"start_in_seconds": 3600}])
    broker.register_agent("agent-1", name="a", work_queues=["busy"])  # a live agent
    assert len(broker.claim("busy", "agent-1")) == 1
    out = runq("work-queues", "ls").stdout  # the plural alias
    for header in ["Name", "ID", "Concurrency Limit", "Active", "Scheduled", "Agents", "Status"]:
        assert header in out
    assert "(**) denotes a paused queue" in out
    busy = cells(out, "busy")
    assert busy[0] == "busy" and busy[2:] == ["2", "1", "2", "1", "healthy"]
    assert cells(out, "held")[0] == "held (**)"
    assert "paused" in row(out, "held")


def test_ls_json_and_prefix_match(runq: Invoke, broker: Broker) -> None:
    for name in ["k8s-a", "k8s-b", "other"]:
        broker.create_work_queue(name)
    data = json.loads(runq("work-queue", "ls", "-m", "k8s-", "--output", "json").stdout)
    assert [q["name"] for q in data] == ["k8s-a", "k8s-b"]
    first = data[0]
    assert {"id", "name", "concurrency_limit", "is_paused", "created", "active_runs"} <= set(first)
    assert (first["status"], first["is_healthy"], first["late_runs"]) == ("unhealthy", False, 0)


def test_inspect_by_name_or_id_shows_every_field(runq: Invoke, broker: Broker) -> None:
    queue = broker.create_work_queue("test-queue", concurrency_limit=3, description="d")
    broker.register_agent("agent-7", name="a", work_queues=["test-queue"])  # a live agent
    broker.claim("test-queue", "agent-7")
    for key in ("test-queue", str(queue.id)):
        out = runq("work-queue", "inspect", key).stdout
        assert out.startswith("WorkQueue(\n") and f"    id='{queue.id}'," in out
        for field in [
            "concurrency_limit=3",
            "is_paused=False",
            "active_runs=0",
            "scheduled_runs=0",
            "late_runs=0",
            "is_healthy=True",
            "status='healthy'",
        ]:
            assert f"    {field}," in out
        for field in ("created", "updated", "last_polled"):
            assert re.search(
                rf"    {field}='(just now|\d+ seconds? ago) \(\d{{4}}-\d\d-\d\d ", out
            ), out
        assert "agent-7 (polled " in out
    data = json.loads(runq("work-queue", "inspect", "test-queue", "-o", "json").stdout)
    assert data["id"] == str(queue.id) and data["agents"][0]["id"] == "agent-7"
    assert data["last_polled"] is not None and data["is_healthy"] is True


def test_health_needs_a_recent_poll_and_no_late_run(
    runq: Invoke, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.create_work_queue("q")
    out = runq("work-queue", "inspect", "q").stdout
    assert "status='unhealthy (never polled by an agent)'" in out
    broker.pause_work_queue("q")
    broker.register_agent("agent-1", name="a", work_queues=["q"])  # a live agent
    broker.claim("q", "agent-1")  # a poll, answered "paused"
    broker.resume_work_queue("q")
    broker.create_flow_run("q", scheduled_start_time=broker.server_time() - timedelta(minutes=5))
    out = runq("work-queue", "inspect", "q").stdout
    assert "late_runs=1," in out and "status='unhealthy (1 late run)'" in out
    monkeypatch.setenv("RUNQ_LATE_RUNS_AFTER_SECONDS", "600")
    assert "status='healthy'" in runq("work-queue", "inspect", "q").stdout
    monkeypatch.setenv("RUNQ_LATE_RUNS_AFTER_SECONDS", "soon")
    assert "RUNQ_LATE_RUNS_AFTER_SECONDS" in runq("work-queue", "inspect", "q", code=1).stderr


def test_preview_lists_due_runs_oldest_first_and_marks_late_ones(
    runq: Invoke, broker: Broker
) -> None:
    now = broker.server_time()
    deployment = broker.create_deployment(
        name="etl", entrypoint="flows/etl.py:main", work_queue_name="q"
    )
    late = broker.create_flow_run(
        deployment="etl", name="late-run", scheduled_start_time=now - timedelta(minutes=2)
    )
    soon = broker.create_flow_run("q", name="soon-run", start_in_seconds=1800)
    later = broker.create_flow_run("q", name="later-run", start_in_seconds=2 * 3600)
    claimed = broker.create_flow_run(
        "q", name="claimed-run", scheduled_start_time=now - timedelta(minutes=3)
    )
    assert [r.id for r in broker.claim("q", "agent-1")] == [claimed.id]

    out = runq("work-queue", "preview", "q").stdout
    assert cells(out, "Run ID") == ["Scheduled Start", "Run ID", "Name", "Deployment"]
    assert "(**) denotes a late run" in out
    assert out.index("late-run") < out.index("soon-run")
    assert "later-run" not in out and "claimed-run" not in out
    assert "(**)" in row(out, "late-run") and "(**)" not in row(out, "soon-run")
    assert str(late.id) in row(out, "late-run") and "etl" in row(out, "late-run")

    data = json.loads(runq("work-queue", "preview", "q", "--hours", "3", "-o", "json").stdout)
    assert [r["id"] for r in data] == [str(late.id), str(soon.id), str(later.id)]
    assert [r["is_late"] for r in data] == [True, False, False]
    assert [r["state"]["name"] for r in data] == ["Late", "Scheduled", "Scheduled"]
    assert (
        data[0]["deployment_id"] == str(deployment.id) and data[0]["state"]["type"] == "SCHEDULED"
    )


def test_preview_of_an_empty_queue_says_so(runq: Invoke, broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.create_flow_run("q", start_in_seconds=7200)
    assert (
        runq("work-queue", "preview", "q").stdout
        == "No runs scheduled on work queue 'q' in the next 1 hour.\n"
    )
    assert runq("work-queue", "preview", "q", "--hours", "-1", code=2).exit_code == 2


def test_pause_resume_and_limits_confirm_in_one_line(runq: Invoke, broker: Broker) -> None:
    broker.create_work_queue("x")
    assert runq("work-queue", "pause", "x").stdout == "Paused work queue 'x'\n"
    assert broker.read_work_queue("x").is_paused
    assert runq("work-queue", "resume", "x").stdout == "Resumed work queue 'x'\n"
    assert not broker.read_work_queue("x").is_paused
    out = runq("work-queue", "set-concurrency-limit", "x", "5").stdout
    assert out == "Concurrency limit of 5 set on work queue 'x'\n"
    assert broker.read_work_queue("x").concurrency_limit == 5
    out = runq("work-queue", "clear-concurrency-limit", "x").stdout
    assert out == "Concurrency limit removed from work queue 'x'\n"
    assert broker.read_work_queue("x").concurrency_limit is None
    runq("work-queue", "set-concurrency-limit", "x", "many", code=2)


def test_delete_refuses_runs_in_flight_even_with_force(runq: Invoke, broker: Broker) -> None:
    broker.create_flow_run("x")
    [run] = broker.claim("x", "agent-1")
    for force in ((), ("--force",)):
        result = runq("work-queue", "delete", "x", *force, code=1)
        assert result.stderr == (
            "Work queue 'x' has 1 run(s) in flight; wait for them to end or cancel them "
            "(runq flow-run cancel ID), then delete it.\n"
        )
    assert broker.read_work_queue("x").active_runs == 1
    broker.cancel_flow_run(run.id)
    assert runq("work-queue", "delete", "x").stdout == "Deleted work queue 'x'\n"
    assert [q.name for q in broker.list_work_queues()] == []
    assert runq("work-queue", "delete", "x", code=1).stderr == "No work queue named 'x' found.\n"


def test_the_api_flag_wins_over_the_environment(
    redis_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNQ_API_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(cli, ["work-queue", "create", "via-flag", "--api", redis_url])
    assert result.exit_code == 0, result.output
    assert broker.read_work_queue("via-flag").name == "via-flag"
    result = CliRunner().invoke(cli, ["work-queue", "ls"])
    assert result.exit_code == 1 and result.stderr.startswith(
        "Cannot use Redis at redis://127.0.0.1:1/0"
    )
