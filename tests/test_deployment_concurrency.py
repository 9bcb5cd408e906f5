"""A deployment's own concurrency limit and its collision strategies (Prefect 3's
deployment ``concurrency_limit``): enqueue, cancel-new, cancel-in-progress, as an agent
meets them (claim, take slots with the run's deployment, start or not), on Redis 6.2, 7
and a three-master cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runq.broker import (
    Broker,
    FlowRun,
    InvalidInput,
    LimitSlot,
    StateType,
    Waiting,
    claim_id_of,
)
from runq.broker.limit_slots import deployment_limit_name
from tests.cli_helpers import Invoke
from tests.keyspace import changes, snapshot

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def deploy(broker: Broker, limit: int | None, strategy: str = "enqueue") -> str:
    found = broker.create_deployment(
        name="sync",
        entrypoint="flows.py:f",
        work_queue_name="q",
        concurrency_limit=limit,
        collision_strategy=strategy,
        check_code=False,
    )
    return deployment_limit_name(found.id)


def take(broker: Broker) -> tuple[list[FlowRun], list[tuple[FlowRun, Waiting]]]:
    """Claim the due runs and take their slots as an agent does (with their deployment)."""
    started, stopped = [], []
    for run in broker.claim("q", "agent-1", max_runs=100):
        deployment = broker.read_deployment(str(run.deployment_id))
        outcome = broker.take_limit_slots(
            run, "q", str(run.claim_token), broker.limit_names(), deployment
        )
        if isinstance(outcome, Waiting):
            stopped.append((run, outcome))
        else:
            broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
            started.append(run)
    return started, stopped


def end(broker: Broker, run: FlowRun, state: StateType, name: str) -> None:
    """What the run's agent does at its end: the final state, then its slots back."""
    token = str(run.claim_token)
    broker.set_state(run.id, state, token=token)
    broker.release_limit_slots(str(run.id), claim_id_of(token), [LimitSlot(name)])


def test_enqueue_waits_for_the_deployments_own_slot(broker: Broker) -> None:
    name = deploy(broker, 1)
    first, second = (broker.create_flow_run(deployment="sync") for _ in range(2))
    started, stopped = take(broker)
    assert [run.id for run in started] == [first.id]
    [(run, waiting)] = stopped
    found = broker.read_flow_run(run.id)
    assert (found.state.name, found.awaiting_limit) == ("AwaitingConcurrencySlot", name)
    assert not waiting.cancelled
    end(broker, started[0], StateType.COMPLETED, name)
    again, _ = take(broker)
    assert [run.id for run in again] == [second.id]


def test_cancel_new_ends_the_new_run_cancelled_naming_the_limit(broker: Broker) -> None:
    name = deploy(broker, 1, "cancel-new")
    broker.create_flow_run(deployment="sync")
    second = broker.create_flow_run(deployment="sync")
    started, stopped = take(broker)
    assert len(started) == 1 and stopped[0][1].cancelled
    found = broker.read_flow_run(second.id)
    assert found.state.type is StateType.CANCELLED
    assert "cancel-new" in (found.state.message or "")
    limit = broker.read_concurrency_limit(name)
    assert (limit.active, limit.waiting) == (1, 0), "the cancelled run left the line"


def test_cancel_in_progress_cancels_the_oldest_and_starts_the_new_one(broker: Broker) -> None:
    name = deploy(broker, 1, "cancel-in-progress")
    old = broker.create_flow_run(deployment="sync")
    ([running], _) = take(broker)
    new = broker.create_flow_run(deployment="sync")
    started, stopped = take(broker)
    assert started == [] and [run.id for run, _ in stopped] == [new.id]
    assert broker.read_flow_run(old.id).state.type is StateType.CANCELLING
    end(broker, running, StateType.CANCELLED, name)  # its agent stopped it
    assert broker.read_flow_run(old.id).state.type is StateType.CANCELLED
    again, _ = take(broker)
    assert [run.id for run in again] == [new.id]


def test_the_limit_follows_the_deployment(broker: Broker) -> None:
    name = deploy(broker, 1)
    for _ in range(3):
        broker.create_flow_run(deployment="sync")
    _, stopped = take(broker)
    assert len(stopped) == 2
    broker.update_deployment("sync", concurrency_limit=3)
    assert broker.read_concurrency_limit(name).limit == 3
    again, _ = take(broker)
    assert len(again) == 2, "a raised limit serves the runs already waiting"
    broker.update_deployment("sync", concurrency_limit=None)
    assert name not in broker.limit_names()
    broker.update_deployment("sync", concurrency_limit=2)
    assert name in broker.limit_names()
    broker.delete_deployment("sync")
    assert name not in broker.limit_names(), "deleted with its deployment"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"concurrency_limit": -1}, "greater than or equal to 0"),
        ({"concurrency_limit": "many"}, "valid integer"),
        ({"concurrency_limit": 1, "collision_strategy": "cancel-old"}, "cancel-new"),
    ],
)
def test_a_bad_deployment_limit_is_refused_in_one_line_and_nothing_is_written(
    broker: Broker, fields: dict, error: str
) -> None:
    before = snapshot(broker)
    with pytest.raises(InvalidInput, match=error) as raised:
        broker.create_deployment(
            name="bad", entrypoint="flows.py:f", work_queue_name="q", check_code=False, **fields
        )
    assert "\n" not in str(raised.value)
    assert changes(before, snapshot(broker)) == []


def test_a_yaml_file_sets_the_limit_the_strategy_and_the_timeout(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        "name: sync\nentrypoint: flows.py:f\nwork_queue_name: q\n"
        "concurrency_limit: 2\ncollision_strategy: cancel-new\ntimeout_seconds: 600\n"
    )
    runq("deployment", "apply", str(path), "--skip-validation")
    found = broker.read_deployment("sync")
    assert (found.concurrency_limit, found.collision_strategy) == (2, "cancel-new")
    assert found.timeout_seconds == 600
    assert broker.read_concurrency_limit(deployment_limit_name(found.id)).limit == 2
    path.write_text("name: sync\nentrypoint: flows.py:f\nwork_queue_name: q\n")
    runq("deployment", "apply", str(path), "--skip-validation")
    assert deployment_limit_name(found.id) not in broker.limit_names(), "removed with the field"
    path.write_text(
        "name: sync\nentrypoint: flows.py:f\nwork_queue_name: q\ncollision_strategy: drop\n"
    )
    refused = runq("deployment", "apply", str(path), "--skip-validation", code=1)
    assert "collision_strategy" in refused.stderr and len(refused.stderr.splitlines()) == 1
