"""Listing flow runs through the per-queue indexes: filters, paging, deleted queues, cost,
and runs written before the indexes existed (indexed on first use or by reindex_runs)."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from runq.broker import Broker, InvalidInput, StateType, WorkQueueNotFound

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def finish(broker: Broker, queue: str, state: StateType, **create: object) -> str:
    run = broker.create_flow_run(queue, **create)  # type: ignore[arg-type]
    (claimed,) = broker.claim(queue, "agent")
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    if state is not StateType.RUNNING:
        broker.set_state(run.id, state, token=claimed.claim_token)
    return str(run.id)


def ids(runs: list) -> list[str]:
    return [str(run.id) for run in runs]


def test_filters_by_state_type_and_name(broker: Broker) -> None:
    done = finish(broker, "q", StateType.COMPLETED)
    failed = finish(broker, "q", StateType.FAILED)
    crashed = finish(broker, "other", StateType.CRASHED)
    run = broker.create_flow_run("q")
    (claimed,) = broker.claim("q", "agent")
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    broker.set_state(run.id, StateType.SCHEDULED, name="AwaitingRetry", token=claimed.claim_token)
    waiting = broker.create_flow_run("q")
    assert ids(broker.list_flow_runs(states=["FAILED"])) == [failed]
    assert ids(broker.list_flow_runs(states=["Crashed"])) == [crashed]
    assert ids(broker.list_flow_runs(states=[StateType.COMPLETED, "failed"])) == [failed, done]
    assert ids(broker.list_flow_runs(states=["AwaitingRetry"])) == [str(run.id)]
    assert ids(broker.list_flow_runs(states=["SCHEDULED"])) == [str(waiting.id), str(run.id)]
    assert ids(broker.list_flow_runs("other")) == [crashed]
    assert len(broker.list_flow_runs()) == 5
    assert len(broker.list_flow_runs(states=[])) == 5, "no state given: no filter"


def test_late_runs_are_scheduled_past_due_by_the_threshold(broker: Broker) -> None:
    now = broker.server_time()
    late = broker.create_flow_run("q", scheduled_start_time=now - timedelta(hours=1))
    broker.create_flow_run("q", scheduled_start_time=now - timedelta(seconds=1))
    broker.create_flow_run("q", start_in_seconds=3600)
    assert ids(broker.list_flow_runs(states=["Late"])) == [str(late.id)]
    assert ids(broker.list_flow_runs(states=["late", "FAILED"])) == [str(late.id)]


def test_filters_by_deployment_and_flow_and_combined(broker: Broker) -> None:
    dep = uuid4()
    mine = broker.create_flow_runs("q", [{"deployment_id": dep, "flow_name": "etl"}] * 3)
    broker.create_flow_runs("q", [{"flow_name": "etl"}, {"flow_name": "other"}])
    theirs = broker.create_flow_runs("q2", [{"deployment_id": dep, "flow_name": "etl"}])
    assert ids(broker.list_flow_runs(deployment_id=dep)) == ids(theirs) + ids(mine)[::-1]
    assert len(broker.list_flow_runs(flow_name="etl")) == 5
    assert len(broker.list_flow_runs("q", flow_name="etl", deployment_id=dep)) == 3
    assert broker.list_flow_runs(flow_name="etl", states=["FAILED"]) == []
    assert len(broker.list_flow_runs(flow_name="etl", states=["SCHEDULED"], limit=4)) == 4


def test_paging_with_before_walks_every_run_once(broker: Broker) -> None:
    created = broker.enqueue_flow_runs("q", [{}] * 25)  # one script call: one millisecond
    created += broker.enqueue_flow_runs("q2", [{}] * 10)
    seen: list[str] = []
    page = broker.list_flow_runs(limit=7)
    while page:
        seen += ids(page)
        page = broker.list_flow_runs(limit=7, before=page[-1].id)
    assert sorted(seen) == sorted(created) and len(seen) == len(set(seen)) == 35
    newest_first = [r.created for r in broker.list_flow_runs(limit=35)]
    assert newest_first == sorted(newest_first, reverse=True)


def test_queue_by_name_or_id_and_a_deleted_queue_with_history(broker: Broker) -> None:
    run_id = finish(broker, "gone", StateType.COMPLETED)
    queue = broker.read_work_queue("gone")
    assert ids(broker.list_flow_runs(str(queue.id))) == [run_id]
    # What deleting a queue leaves (broker/work_queues.py): no config, history kept.
    broker.client.delete(broker.keys.queue("gone").config)
    broker.client.srem(broker.keys.queue_names, "gone")
    broker.client.hdel(broker.keys.queue_ids, str(queue.id))
    broker.client.sadd(broker.keys.retired_queues, "gone")
    assert ids(broker.list_flow_runs("gone")) == [run_id]
    assert ids(broker.list_flow_runs(states=["COMPLETED"])) == [run_id]
    assert broker.read_flow_run(run_id).work_queue_name == "gone"
    with pytest.raises(WorkQueueNotFound):
        broker.list_flow_runs("never")


def test_bad_arguments_are_one_line(broker: Broker) -> None:
    with pytest.raises(InvalidInput, match="Unknown state 'bogus': use a state type"):
        broker.list_flow_runs(states=["bogus"])
    for limit in (0, -1, 10**9):
        with pytest.raises(InvalidInput, match="limit must be"):
            broker.list_flow_runs(limit=limit)


def test_a_listing_reads_only_the_records_it_returns(broker: Broker) -> None:
    finish(broker, "q", StateType.FAILED)
    broker.enqueue_flow_runs("q", [{}] * 600)
    calls = command_calls(broker)
    assert len(broker.list_flow_runs(states=["FAILED"], limit=20)) == 1
    ran = {name: count - calls.get(name, 0) for name, count in command_calls(broker).items()}
    assert ran.get("cmdstat_hgetall", 0) == 1
    assert sum(ran.values()) < 10 + 2  # the two INFO calls of this test count too


def command_calls(broker: Broker) -> dict[str, int]:
    """Calls per command, summed over every node (INFO commandstats is per node)."""
    if broker.cluster:
        per_node = broker.client.info("commandstats", target_nodes=broker.client.ALL_NODES)
    else:
        per_node = {"server": broker.client.info("commandstats")}
    totals: dict[str, int] = {}
    for stats in per_node.values():
        for name, figures in stats.items():
            totals[name] = totals.get(name, 0) + int(figures["calls"])
    return totals


def write_old_run(broker: Broker, queue: str, state: str, **fields: str) -> str:
    """A run record as the code before the indexes wrote it: no index, no history."""
    run_id = str(uuid4())
    keys = broker.keys.queue(queue)
    now_ms = int(broker.server_time().timestamp() * 1000)
    record = {
        "id": run_id,
        "name": fields.pop("name", f"old-{run_id[:8]}"),
        "st": state,
        "sn": state.capitalize(),
        "created": str(now_ms * 1000),
        "sts": str(now_ms * 1000 + (0 if state == "SCHEDULED" else 5000)),
        "due": str(now_ms),
        "params": "{}",
        **fields,
    }
    broker.client.hset(keys.run(run_id), mapping=record)
    broker.client.zadd(keys.runs, {run_id: now_ms})
    if state == "SCHEDULED":
        broker.client.zadd(keys.scheduled, {run_id: now_ms})
    else:
        broker.client.zadd(keys.done, {run_id: now_ms})
    broker.client.hset(broker.keys.run_index, run_id, queue)
    return run_id


def make_old_queue(broker: Broker, queue: str) -> None:
    broker.create_work_queue(queue)
    broker.client.hdel(broker.keys.queue(queue).config, "indexed")  # as old queues are


def test_old_runs_are_indexed_on_first_listing(broker: Broker) -> None:
    make_old_queue(broker, "old")
    dep = str(uuid4())
    failed = write_old_run(broker, "old", "FAILED", dep=dep, flow="etl", name="legacy")
    done = write_old_run(broker, "old", "COMPLETED", dep=dep)
    waiting = write_old_run(broker, "old", "SCHEDULED")
    assert ids(broker.list_flow_runs(states=["FAILED"])) == [failed]
    assert broker.client.hget(broker.keys.queue("old").config, "indexed") == "1"
    runs = broker.keys.queue("old").runs
    newest_first = sorted(
        [done, failed], key=lambda i: (broker.client.zscore(runs, i), i), reverse=True
    )
    assert ids(broker.list_flow_runs(deployment_id=dep)) == newest_first  # ties: by id
    assert ids(broker.list_flow_runs(flow_name="etl")) == [failed]
    assert ids(broker.list_flow_runs(states=["SCHEDULED"])) == [waiting]
    old = broker.read_flow_run("legacy")
    assert [(s.type.value, s.name) for s in old.state_history] == [
        ("SCHEDULED", "Scheduled"),
        ("FAILED", "Failed"),
    ]
    retried = broker.retry_flow_run("legacy")  # new code acts on old data
    assert retried.state.type is StateType.SCHEDULED
    assert ids(broker.list_flow_runs(states=["FAILED"])) == []
    assert set(ids(broker.list_flow_runs(states=["SCHEDULED"]))) == {waiting, failed}


def test_reindex_runs_explicitly_in_batches(broker: Broker) -> None:
    make_old_queue(broker, "old")
    written = [write_old_run(broker, "old", "COMPLETED") for _ in range(1203)]
    assert broker.reindex_runs("old") == 1203  # three batches of at most 500
    keys = broker.keys.queue("old")
    assert broker.client.zcard(keys.index("state", "COMPLETED")) == 1203
    assert broker.reindex_runs() == 1203, "idempotent"
    assert broker.client.zcard(keys.index("state", "COMPLETED")) == 1203
    assert len(broker.list_flow_runs(states=["COMPLETED"], limit=2000)) == len(written)
    with pytest.raises(WorkQueueNotFound):
        broker.reindex_runs("never")


def test_a_stale_state_entry_is_corrected_by_reindex(broker: Broker) -> None:
    """An old agent changed a state without the indexes: reindex moves the entry."""
    run_id = finish(broker, "q", StateType.RUNNING)
    keys = broker.keys.queue("q")
    broker.client.hset(keys.run(run_id), mapping={"st": "CRASHED", "sn": "Crashed"})
    broker.reindex_runs("q")
    assert broker.client.zscore(keys.index("state", "RUNNING"), run_id) is None
    assert ids(broker.list_flow_runs(states=["CRASHED"])) == [run_id]
