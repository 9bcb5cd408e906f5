"""The scheduler: materialized runs, idempotent under racing replicas and schedule changes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest

from runq.broker import Broker, InvalidInput, StateType
from runq.broker.schedules import due_times
from runq.broker.scheduling import Horizon, desired_times
from tests import workers
from tests.agent_helpers import wait_for
from tests.figures import Figure

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster
SPAWN = multiprocessing.get_context("spawn")
HOURLY = {"cron": "0 * * * *", "timezone": "America/New_York"}


def scheduled_times(broker: Broker, queue: str, hours: float = 24 * 101) -> list:
    """Due times of the schedule-made SCHEDULED runs of ``queue``."""
    return [
        run.expected_start_time
        for run in broker.preview(queue, hours=hours)
        if "auto-scheduled" in run.tags
    ]


def test_writing_a_schedule_materializes_at_once(broker: Broker) -> None:
    deployment = broker.create_deployment(
        name="hourly", entrypoint="flows.py:f", work_queue_name="s", schedule=HOURLY
    )
    runs = broker.preview("s", hours=24)
    now = broker.server_time()
    assert len(runs) == 3, "at least 3 runs and an hour ahead: 3 for an hourly cron"
    assert all(
        run.expected_start_time.minute == 0 and run.expected_start_time > now for run in runs
    )
    assert all("auto-scheduled" in run.tags and run.deployment_id == deployment.id for run in runs)
    assert runs[-1].expected_start_time >= now + timedelta(hours=1)


def test_preview_equals_the_schedule_function(broker: Broker) -> None:
    schedule = {"rrule": "FREQ=MINUTELY;INTERVAL=7", "timezone": "Europe/London"}
    deployment = broker.create_deployment(
        name="r", entrypoint="f.py:f", work_queue_name="r", schedule=schedule
    )
    now = broker.server_time()
    expected = desired_times(deployment, now, Horizon())
    assert scheduled_times(broker, "r") == expected
    assert expected == due_times(deployment.schedule, expected[0], count=len(expected))
    assert expected[-2] < now + timedelta(hours=1) <= expected[-1], "an hour of runs, not 3"


def test_intervals_respect_the_100_run_cap(broker: Broker) -> None:
    broker.create_deployment(
        name="fast", entrypoint="f.py:f", work_queue_name="q", schedule={"interval": 5}
    )
    assert len(scheduled_times(broker, "q")) == 100


def test_changing_clearing_pausing_the_schedule_replaces_future_runs(broker: Broker) -> None:
    broker.create_deployment(name="d", entrypoint="f.py:f", work_queue_name="q", schedule=HOURLY)
    [first, *_] = broker.preview("q", hours=24)
    manual = broker.create_flow_run(deployment="d")  # made by hand: never touched
    broker.update_deployment("d", schedule={"interval": 1800})
    times = scheduled_times(broker, "q")
    assert all(t.minute in (0, 30) for t in times) and len(times) == 3
    assert first.id not in {run.id for run in broker.preview("q", hours=24)}
    broker.update_deployment("d", is_schedule_active=False)
    assert [run.id for run in broker.preview("q", hours=24)] == [manual.id]
    broker.update_deployment("d", is_schedule_active=True)
    assert len(scheduled_times(broker, "q")) == 3
    broker.update_deployment("d", schedule=None)
    assert [run.id for run in broker.preview("q", hours=24)] == [manual.id]


def test_claimed_runs_survive_a_schedule_change(broker: Broker) -> None:
    broker.create_deployment(
        name="d", entrypoint="f.py:f", work_queue_name="q", schedule={"interval": 600}
    )
    [claimed] = broker.claim("q", "agent", prefetch_seconds=3600, max_runs=1)
    broker.update_deployment("d", schedule={"interval": 900})
    assert broker.read_flow_run(claimed.id).state.type is StateType.PENDING


def test_moving_the_deployment_moves_its_future_runs(broker: Broker) -> None:
    broker.create_deployment(name="d", entrypoint="f.py:f", work_queue_name="old", schedule=HOURLY)
    broker.update_deployment("d", work_queue_name="new")
    assert scheduled_times(broker, "old") == []
    assert len(scheduled_times(broker, "new")) == 3


def test_a_change_in_the_middle_of_a_pass_leaves_no_duplicate(
    broker: Broker, figure: Figure
) -> None:
    stale = broker.create_deployment(
        name="d", entrypoint="f.py:f", work_queue_name="q", schedule=HOURLY
    )
    scheduler = broker.scheduler()
    scheduler.forget(str(stale.id))
    broker.unschedule_runs("q", stale.id)
    broker.update_deployment("d", schedule={"interval": 1200})  # lands while a pass...
    scheduler.materialize(stale)  # ...still works from the old record
    times = scheduled_times(broker, "q")
    figure("runs_doubled", len(times) - len(set(times)))
    assert len(times) == len(set(times)), "no duplicate"
    assert all(t.minute % 20 == 0 for t in times), "only the new schedule's runs"
    expected = desired_times(broker.read_deployment("d"), broker.server_time(), Horizon())
    assert times == expected


def test_passes_only_visit_deployments_that_need_runs(broker: Broker) -> None:
    for i in range(20):
        broker.create_deployment(
            name=f"d{i}", entrypoint="f.py:f", work_queue_name="q", schedule=HOURLY
        )
    assert broker.scheduler().run_pass().deployments == 0, "all materialized, none due"


def test_concurrent_scheduler_processes_make_each_run_once(
    broker: Broker, redis_url: str, figure: Figure
) -> None:
    """Six processes materialize the same 30 deployments at the same moment. A busy
    machine may run one of them so far ahead that it makes every run alone, which would
    prove nothing: the race is run again (at most 5 rounds) until several processes made
    the same runs at once, and every round is checked."""
    scheduler = broker.scheduler()
    deployments = [
        broker.create_deployment(
            name=f"d{i}",
            entrypoint="f.py:f",
            work_queue_name=f"q{i % 3}",
            schedule={"cron": f"{i} * * * *", "timezone": "Australia/Sydney"},
        )
        for i in range(30)
    ]
    for _ in range(5):
        for i, deployment in enumerate(deployments):
            broker.unschedule_runs(f"q{i % 3}", deployment.id)
            scheduler.forget(str(deployment.id))
            broker.client.zadd(scheduler.due_key, {str(deployment.id): 0})
        barrier, results = SPAWN.Barrier(6), SPAWN.Queue()
        procs = [
            SPAWN.Process(target=workers.scheduler_pass, args=(redis_url, barrier, results))
            for _ in range(6)
        ]
        for proc in procs:
            proc.start()
        created = [results.get(timeout=240) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        runs = [run for q in ("q0", "q1", "q2") for run in broker.preview(q, hours=48)]
        per_deployment = Counter((run.deployment_id, run.expected_start_time) for run in runs)
        assert max(per_deployment.values()) == 1, "no run doubled"
        assert len(runs) == 30 * 3
        if sum(created) > 90:
            break
    figure("scheduler_processes", len(procs))
    figure("runs_reported_created", sum(created))
    figure("runs_made", len(runs))
    figure("runs_doubled", sum(count - 1 for count in per_deployment.values()))
    assert sum(created) > 90, "several processes created the same runs at once"


def test_the_lease_lets_one_replica_do_the_pass(broker: Broker) -> None:
    scheduler = broker.scheduler()
    assert scheduler.run_pass_if_leader("a", lease_seconds=120) is not None
    assert scheduler.run_pass_if_leader("b", lease_seconds=120) is None
    assert scheduler.run_pass_if_leader("a", lease_seconds=120) is not None


def test_the_scheduler_service_keeps_the_horizon_filled(broker: Broker, redis_url: str) -> None:
    broker.create_deployment(
        name="every-second", entrypoint="f.py:f", work_queue_name="q", schedule={"interval": 1}
    )
    first_last = scheduled_times(broker, "q")[-1]
    service = subprocess.Popen(
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: scheduled_times(broker, "q")[-1] > first_last, 120, "a new run from the service"
        )
    finally:
        service.terminate()
        assert service.wait(timeout=60) == 0
    times = scheduled_times(broker, "q")
    assert len(times) == len(set(times))


@pytest.mark.parametrize("seconds", [60])
def test_late_runs_are_counted(broker: Broker, seconds: int) -> None:
    broker.create_flow_run(
        "q", scheduled_start_time=broker.server_time() - timedelta(seconds=seconds)
    )
    broker.create_flow_run("q")
    assert broker.read_work_queue("q").late_runs == 1


def test_the_horizon_is_configurable(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNQ_SCHEDULER_MIN_RUNS", "5")
    monkeypatch.setenv("RUNQ_SCHEDULER_MIN_AHEAD_SECONDS", "0")
    Broker.from_env(redis_url).create_deployment(
        name="d", entrypoint="f.py:f", work_queue_name="h", schedule=HOURLY
    )
    monkeypatch.delenv("RUNQ_SCHEDULER_MIN_RUNS")
    monkeypatch.delenv("RUNQ_SCHEDULER_MIN_AHEAD_SECONDS")
    monkeypatch.setenv("RUNQ_SCHEDULER_MAX_RUNS", "8")
    broker = Broker.from_env(redis_url)
    broker.create_deployment(
        name="e", entrypoint="f.py:f", work_queue_name="i", schedule={"interval": 60}
    )
    assert len(scheduled_times(broker, "h")) == 5, "at least 5 runs, however soon"
    assert len(scheduled_times(broker, "i")) == 8, "an hour of minutes, capped at 8"
    monkeypatch.setenv("RUNQ_SCHEDULER_MIN_RUNS", "0")
    with pytest.raises(InvalidInput, match="RUNQ_SCHEDULER_MIN_RUNS"):
        Broker.from_env(redis_url)


def test_a_deployment_deleted_during_a_pass_leaves_no_runs(broker: Broker) -> None:
    stale = broker.create_deployment(
        name="d", entrypoint="f.py:f", work_queue_name="q", schedule=HOURLY
    )
    scheduler = broker.scheduler()
    broker.delete_deployment("d")  # lands while a pass...
    scheduler.materialize(stale)  # ...still works from the record it read
    assert scheduled_times(broker, "q") == []
    assert broker.client.zscore(scheduler.due_key, str(stale.id)) is None
