"""Metrics and logs: the queue gauges of a real `runq exporter` process against
`work-queue inspect`, what a scrape costs, JSON log lines, the scheduler's metrics, and
the Grafana dashboard naming only metrics runq exports. The agent's own /metrics is in
tests/test_metrics_agent.py. Scrapes are parsed with prometheus_client's text parser."""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runq.agent.metrics import AgentMetrics
from runq.broker import Broker, BrokerSettings, StateType
from runq.broker.queue_gauges import read_queue_gauges
from runq.control.exporter import SchedulerMetrics
from runq.control.log_format import JsonFormatter, configure_logging
from runq.display.queue_metrics import QueueCollector
from tests.agent_helpers import wait_for
from tests.redis_server import free_port

ON_CLUSTER = True
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "runq.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (sample name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(port: int, path: str = "/metrics") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return 0, ""
    finally:
        connection.close()


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


@pytest.fixture
def exporter(redis_url: str, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A `runq exporter` process on a free port, JSON logs to a file; stopped after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNQ_")}
    log = open(tmp_path / "exporter.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runq",
            "exporter",
            "--api",
            redis_url,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--log-format",
            "json",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: get(port)[0] == 200 or proc.poll() is not None, 120, "the exporter")
    assert proc.poll() is None, (tmp_path / "exporter.log").read_text()
    yield port, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)


def make_queues(broker: Broker) -> None:
    """Queues in every situation the gauges describe."""
    now = broker.server_time()
    broker.create_work_queue("busy", concurrency_limit=2)
    for _ in range(2):
        broker.create_flow_run("busy")
    broker.claim("busy", "agent-a", max_runs=5)  # both: the limit is reached
    for minutes in (60, 2):  # due an hour ago and two minutes ago: both late
        broker.create_flow_run("busy", scheduled_start_time=now - timedelta(minutes=minutes))
    broker.create_flow_run("busy", start_in_seconds=3600)  # not due
    broker.create_flow_run("busy")  # due now, not late
    broker.create_work_queue("held")
    broker.create_flow_run("held")
    broker.pause_work_queue("held")
    broker.create_work_queue("empty")
    broker.claim("empty", "agent-b")
    broker.claim("empty", "agent-c")  # never registered: like a stopped agent, not live
    for agent in ("agent-a", "agent-b"):
        broker.register_agent(agent, name=agent, work_queues=["busy", "empty"])


def test_the_exporters_gauges_equal_what_inspect_says(
    broker: Broker, runq, exporter: tuple[int, subprocess.Popen]
) -> None:
    make_queues(broker)
    port, _ = exporter
    status, text = get(port)
    assert status == 200
    samples = parse(text)
    assert value(samples, "runq_queues_up") == 1 and value(samples, "runq_queues") == 3
    for name in ("busy", "held", "empty"):
        shown = json.loads(runq("work-queue", "inspect", name, "-o", "json").stdout)
        assert value(samples, "runq_queue_scheduled_runs", queue=name) == shown["scheduled_runs"], (
            name
        )
        assert value(samples, "runq_queue_late_runs", queue=name) == shown["late_runs"], name
        assert value(samples, "runq_queue_active_runs", queue=name) == shown["active_runs"], name
        assert value(samples, "runq_queue_paused", queue=name) == int(shown["is_paused"]), name
        assert value(samples, "runq_queue_agents", queue=name) == len(shown["agents"]), name
        assert (
            value(samples, "runq_queue_concurrency_limit", queue=name) == shown["concurrency_limit"]
        )
    assert value(samples, "runq_queue_agents", queue="empty") == 1
    # busy: 2 claimed of 6; of the 4 waiting, 3 are due now (one is an hour ahead);
    # the oldest was due an hour before the test began.
    assert value(samples, "runq_queue_due_runs", queue="busy") == 3
    assert value(samples, "runq_queue_due_runs", queue="held") == 1  # paused: still backlog
    assert value(samples, "runq_queue_due_runs", queue="empty") == 0
    oldest = value(samples, "runq_queue_oldest_due_age_seconds", queue="busy")
    assert oldest is not None and 3600 <= oldest < 7200
    assert value(samples, "runq_queue_oldest_due_age_seconds", queue="empty") == 0


def test_the_gauges_follow_claims_and_deletes(
    broker: Broker, exporter: tuple[int, subprocess.Popen]
) -> None:
    port, _ = exporter
    broker.create_work_queue("flow")
    runs = [broker.create_flow_run("flow") for _ in range(4)]
    assert value(parse(get(port)[1]), "runq_queue_due_runs", queue="flow") == 4
    claimed = broker.claim("flow", "agent-a", max_runs=3)
    samples = parse(get(port)[1])
    assert value(samples, "runq_queue_due_runs", queue="flow") == 1
    assert value(samples, "runq_queue_active_runs", queue="flow") == 3
    broker.cancel_flow_run(runs[3].id)
    assert value(parse(get(port)[1]), "runq_queue_due_runs", queue="flow") == 0
    for run in claimed:
        broker.set_state(run.id, StateType.CRASHED, token=run.claim_token, message="test")
    assert value(parse(get(port)[1]), "runq_queue_active_runs", queue="flow") == 0
    broker.delete_work_queue("flow")
    samples = parse(get(port)[1])
    assert value(samples, "runq_queue_due_runs", queue="flow") is None
    assert value(samples, "runq_queues") == 0


def test_a_scrape_of_many_queues_costs_a_bounded_number_of_round_trips(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(120):
        broker.create_work_queue(f"q{i:03}")
    sends: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sends.append(1)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    gauges = read_queue_gauges(broker, batch=50)
    assert [g.name for g in gauges] == [f"q{i:03}" for i in range(120)]
    nodes = 3 if broker.cluster else 1
    # SMEMBERS, then per node and per batch of 50: SCRIPT EXISTS and the pipeline; then
    # the agents registry (the queues' health), none of whose agents is live here
    assert len(sends) <= 2 + nodes * 2 * math.ceil(120 / 50), len(sends)


def test_a_scrape_while_redis_is_away_answers_up_0() -> None:
    broker = Broker(
        redis.Redis(port=1, socket_connect_timeout=0.2),
        url="redis://127.0.0.1:1",
        settings=BrokerSettings(),
    )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(broker))  # registering reads nothing
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "runq_queues_up") == 0
    assert not [name for name, _ in samples if name.startswith("runq_queue_")]


def test_the_exporters_json_log_lines_parse(
    exporter: tuple[int, subprocess.Popen], tmp_path: Path
) -> None:
    _, proc = exporter
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    lines = (tmp_path / "exporter.log").read_text().splitlines()
    assert len(lines) >= 2
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record), record
    assert json.loads(lines[-1])["message"] == "Exporter stopped."


def test_json_lines_carry_context_and_stay_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", loggers=("runq.test-json",))
    log = logging.getLogger("runq.test-json")
    log.info(
        "Claimed %r\nsecond line", "run", extra={"run_id": "abc", "queue": "q", "agent_id": "a-1"}
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("It failed")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "Claimed 'run'\nsecond line" and first["level"] == "INFO"
    assert (first["run_id"], first["queue"], first["agent_id"]) == ("abc", "q", "a-1")
    assert first["time"].endswith("+00:00") and first["logger"] == "runq.test-json"
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exception"]
    assert "run_id" not in second
    assert JsonFormatter().format(logging.makeLogRecord({"msg": "x"})).count("\n") == 0


def test_a_bad_log_format_is_one_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNQ_")}
    bad = subprocess.run(
        [sys.executable, "-m", "runq", "exporter", "--port", "0"],
        env={**env, "RUNQ_LOG_FORMAT": "xml", "RUNQ_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "RUNQ_LOG_FORMAT" in bad.stderr and "Traceback" not in bad.stderr


def test_a_taken_port_is_one_line_and_exit_1(redis_url: str) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "runq",
                "exporter",
                "--api",
                redis_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port}" in result.stderr


def test_the_scheduler_on_its_own_serves_pass_duration_and_runs_materialized(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    broker.create_deployment(
        name="every-minute",
        command=["true"],
        work_queue_name="sched",
        schedule={"interval": 1},  # capped at 100 runs ahead: each second needs a new one
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNQ_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runq",
            "scheduler",
            "start",
            "--api",
            redis_url,
            "--loop-seconds",
            "0.2",
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=open(tmp_path / "scheduler.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:

        def passed() -> Samples | None:
            status, text = get(port)
            samples = parse(text) if status == 200 else {}
            made = value(samples, "runq_scheduler_runs_materialized_total") or 0
            return samples if made >= 1 else None

        samples = wait_for(passed, 120, "a pass that made a run")
        assert isinstance(samples, dict)
        assert (value(samples, "runq_scheduler_pass_duration_seconds_count") or 0) >= 1
        assert (value(samples, "runq_scheduler_passes_total", outcome="done") or 0) >= 1
        assert value(samples, "runq_scheduler_last_pass_timestamp_seconds")
    finally:
        proc.terminate()
        proc.wait(60)
    for line in (tmp_path / "scheduler.log").read_text().splitlines():
        assert json.loads(line)["logger"].startswith("runq")


# ---- the dashboard ------------------------------------------------------------------------


def exported_names() -> set[str]:
    """Every sample name runq can export: the agent's, the queues', the scheduler's."""
    registry = CollectorRegistry(auto_describe=True)
    agent = AgentMetrics(registry=registry)
    SchedulerMetrics(registry)
    names = {family.name for family in QueueCollector(None).describe()}  # type: ignore[arg-type]
    for family in registry.collect():
        kind = {
            "counter": ["_total", "_created"],
            "histogram": ["_bucket", "_count", "_sum", "_created"],
            "info": ["_info"],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in kind)
    assert agent.enabled
    return names


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    expressions = []
    for panel in document["panels"]:
        expressions += [target["expr"] for target in panel.get("targets", [])]
    for variable in document.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and query:
            expressions.append(query)
    return expressions


def test_every_dashboard_expression_names_a_metric_runq_exports() -> None:
    exported = exported_names()
    expressions = dashboard_expressions()
    assert len(expressions) >= 6
    for expression in expressions:
        named = set(re.findall(r"\brunq_[a-z_]+", expression))
        assert named, expression
        assert named <= exported, (expression, named - exported)


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    text = " ".join(dashboard_expressions())
    for metric in (
        "runq_queue_due_runs",
        "runq_queue_late_runs",
        "runq_queue_active_runs",
        "runq_queue_concurrency_limit",
        "runq_agent_due_to_claimed_seconds_bucket",
        "runq_agent_runs_ended_total",
        "runq_queue_agents",
    ):
        assert metric in text, metric
    assert "histogram_quantile(0.5" in text and "histogram_quantile(0.99" in text


# ---- the agent's metrics, hook by hook (no agent process: see test_metrics_agent.py) ----


def a_run(state: StateType, due_s: float, claimed_s: float, started_s: float | None) -> Any:
    from datetime import datetime

    from runq.broker import FlowRun, State

    zero = datetime(2026, 1, 1, tzinfo=UTC)
    return FlowRun.model_construct(
        state=State(type=state, name=state.value.title()),
        expected_start_time=zero + timedelta(seconds=due_s),
        claimed_at=zero + timedelta(seconds=claimed_s),
        start_time=None if started_s is None else zero + timedelta(seconds=started_s),
    )


def test_agent_metrics_count_on_their_own_registry_and_none_when_off() -> None:
    first, second, off = AgentMetrics(), AgentMetrics(), AgentMetrics(enabled=False)
    for metrics in (first, second, off):  # several in one process never clash
        metrics.describe_agent("agent-1", "one", lambda: 3)
        metrics.run_claimed("q", a_run(StateType.PENDING, 10, 12.5, None))
        metrics.run_claimed("q", a_run(StateType.PENDING, 10, 4, None))  # claimed early
        metrics.run_started("q", None)
        metrics.run_ended("q", None, a_run(StateType.COMPLETED, 10, 12.5, 13.5))
        metrics.run_ended("q", None, a_run(StateType.RUNNING, 10, 4, 10.25), state="CRASHED")
        metrics.submission_failed("q", None)
        metrics.redis_failed("claim")
        metrics.redis_answered()
        metrics.redis_answered()  # one reconnect, not two
        metrics.heartbeat_refused("stale")
        metrics.heartbeat_refused("anything else")
        metrics.heartbeat_succeeded()
    samples = parse(first.exposition().decode())
    assert value(samples, "runq_agent_runs_claimed_total", queue="q") == 1 * 2
    assert value(samples, "runq_agent_runs_started_total", queue="q", infrastructure="process") == 1
    assert (
        value(
            samples,
            "runq_agent_runs_ended_total",
            queue="q",
            infrastructure="process",
            state="COMPLETED",
        )
        == 1
    )
    assert (
        value(
            samples,
            "runq_agent_runs_ended_total",
            queue="q",
            infrastructure="process",
            state="CRASHED",
        )
        == 1
    )
    assert value(samples, "runq_agent_due_to_claimed_seconds_sum", queue="q") == 2.5  # 2.5 + 0
    assert (
        value(
            samples,
            "runq_agent_claimed_to_running_seconds_sum",
            queue="q",
            infrastructure="process",
        )
        == 1.25
    )
    assert value(samples, "runq_agent_runs_in_flight") == 3
    assert value(samples, "runq_agent_redis_errors_total", operation="claim") == 1
    assert value(samples, "runq_agent_redis_reconnects_total") == 1
    assert value(samples, "runq_agent_heartbeats_refused_total", reason="stale") == 1
    assert value(samples, "runq_agent_heartbeats_refused_total", reason="error") == 1
    assert (value(samples, "runq_agent_last_heartbeat_timestamp_seconds") or 0) > 0
    assert value(samples, "runq_agent_info", id="agent-1", name="one") == 1
    assert (
        value(parse(second.exposition().decode()), "runq_agent_runs_claimed_total", queue="q") == 2
    )
    assert off.exposition() == b""
