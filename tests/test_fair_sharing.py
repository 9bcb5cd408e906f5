"""Fair sharing inside a queue (``work-queue update Q --fair-by KEY``): due runs of many
values of the tags KEY:VALUE are handed out round-robin across values, so a tenant with a
thousand queued runs does not starve one with five. On Redis 6.2, 7 and a three-master
cluster.
"""

from __future__ import annotations

import pytest

from runq.broker import Broker, FlowRun, InvalidInput, StateType
from tests.cli_helpers import Invoke
from tests.keyspace import changes, snapshot

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def start_next(broker: Broker, queue: str = "q") -> FlowRun | None:
    """Claim one run and run it to its end, as a one-slot agent would."""
    runs = broker.claim(queue, "agent-1", max_runs=1)
    if not runs:
        return None
    [run] = runs
    broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
    broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
    return run


def tenant_of(run: FlowRun) -> str:
    return next(tag for tag in run.tags if tag.startswith("tenant:"))


def test_a_tenant_with_five_runs_is_not_starved_by_one_with_a_thousand(
    broker: Broker,
) -> None:
    broker.create_work_queue("q", concurrency_limit=2)
    queue = broker.update_work_queue("q", fair_by="tenant")
    assert queue.fair_by == "tenant"
    broker.enqueue_flow_runs("q", [{"tags": ["tenant:a"]} for _ in range(1000)])
    broker.enqueue_flow_runs("q", [{"tags": ["tenant:b"]} for _ in range(5)])
    started = [tenant_of(run) for run in iter(lambda: start_next(broker), None)][:12]
    assert "tenant:b" in started[:4], started
    assert started[:10].count("tenant:b") == 5, "round-robin while b has runs"


def test_without_fair_sharing_the_queue_serves_in_due_order(broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.enqueue_flow_runs("q", [{"tags": ["tenant:a"]} for _ in range(20)])
    broker.enqueue_flow_runs("q", [{"tags": ["tenant:b"]} for _ in range(2)])
    started = [tenant_of(run) for run in iter(lambda: start_next(broker), None)]
    assert started == ["tenant:a"] * 20 + ["tenant:b"] * 2


def test_untagged_and_put_back_runs_are_served_too(broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.enqueue_flow_runs("q", [{} for _ in range(3)])  # before fair sharing: no line
    broker.update_work_queue("q", fair_by="tenant")
    broker.enqueue_flow_runs("q", [{"tags": ["tenant:a"]} for _ in range(3)])
    broker.enqueue_flow_runs("q", [{}])
    [claimed] = broker.claim("q", "agent-1", max_runs=1)
    broker.set_state(  # handed back: into its line again
        claimed.id,
        StateType.SCHEDULED,
        token=claimed.claim_token,
        from_states=[StateType.PENDING],
        scheduled_start_time=claimed.expected_start_time,
    )
    seen = [run.id for run in iter(lambda: start_next(broker), None)]
    assert len(seen) == len(set(seen)) == 7, "every run once, none lost"


def test_a_cancelled_run_leaves_no_gap_in_its_line(broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.update_work_queue("q", fair_by="tenant")
    first, second = (broker.create_flow_run("q", tags=["tenant:a"]) for _ in range(2))
    broker.cancel_flow_run(first.id)
    started = start_next(broker)
    assert started is not None and started.id == second.id
    assert start_next(broker) is None


@pytest.mark.parametrize("key", ["", "tenant:x", "a*", "bad\nkey"])
def test_a_bad_key_is_refused_and_nothing_is_written(broker: Broker, key: str) -> None:
    broker.create_work_queue("q")
    before = snapshot(broker)
    with pytest.raises(InvalidInput, match="fair-by key"):
        broker.update_work_queue("q", fair_by=key)
    assert changes(before, snapshot(broker)) == []


def test_fair_sharing_is_removed_with_none(broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.update_work_queue("q", fair_by="tenant")
    assert broker.update_work_queue("q", fair_by=None).fair_by is None


def test_the_cli_sets_and_removes_fair_sharing(runq: Invoke, broker: Broker) -> None:
    assert "fair by - 'tenant'" in runq("work-queue", "create", "q", "--fair-by", "tenant").stdout
    assert broker.read_work_queue("q").fair_by == "tenant"
    assert "fair_by" in runq("work-queue", "inspect", "q").stdout
    runq("work-queue", "update", "q", "--no-fair-by")
    assert broker.read_work_queue("q").fair_by is None
    refused = runq("work-queue", "create", "other", "--fair-by", "a:b", code=1)
    assert "fair-by key" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert [queue.name for queue in broker.list_work_queues()] == ["q"], "nothing created"
