"""Flow runs: creation, idempotency, states, heartbeats, preview, retention."""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import uuid4

import pytest

from runq.broker import (
    Broker,
    BrokerSettings,
    DeploymentExists,
    DeploymentNotFound,
    FlowRunNotFound,
    InvalidInput,
    InvalidTransition,
    StaleClaim,
    StateType,
)

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def test_a_bare_run_is_scheduled_now_by_redis_clock(broker: Broker) -> None:
    before = broker.server_time()
    run = broker.create_flow_run("q", parameters={"n": 1, "s": "x"}, tags=["a"], name="my-run")
    after = broker.server_time()
    assert run.state.type is StateType.SCHEDULED and run.state.name == "Scheduled"
    assert before - timedelta(milliseconds=1) <= run.expected_start_time <= after
    assert (run.parameters, run.tags, run.name, run.run_count) == (
        {"n": 1, "s": "x"},
        ["a"],
        "my-run",
        0,
    )
    assert broker.read_flow_run(run.id) == run


def test_generated_names_are_adjective_animal(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    adjective, animal = run.name.split("-")
    assert adjective.isalpha() and animal.isalpha()


def test_due_times_absolute_and_relative(broker: Broker) -> None:
    now = broker.server_time()
    later = broker.create_flow_run("q", start_in_seconds=120)
    after = broker.server_time()  # "in 120 s" is 120 s after Redis' clock at creation
    fixed = broker.create_flow_run("q", scheduled_start_time=now + timedelta(hours=2))
    slack = timedelta(milliseconds=1)
    assert (
        now + timedelta(seconds=120) - slack
        <= later.expected_start_time
        <= after + timedelta(seconds=120) + slack
    )
    assert abs(fixed.expected_start_time - (now + timedelta(hours=2))) < timedelta(milliseconds=1)
    assert broker.claim("q", "agent") == [], "nothing is due yet"


def test_runs_from_a_deployment_merge_its_parameters_and_tags(broker: Broker) -> None:
    deployment = broker.create_deployment(
        name="etl",
        entrypoint="flows/etl.py:etl",
        parameters={"a": 1, "b": 2},
        work_queue_name="etl-queue",
        tags=["prod"],
    )
    run = broker.create_flow_run(deployment="etl", parameters={"b": 3}, tags=["manual"])
    assert run.work_queue_name == "etl-queue" and run.deployment_id == deployment.id
    assert run.parameters == {"a": 1, "b": 3} and run.tags == ["prod", "manual"]
    assert run.flow_name == "etl"
    with pytest.raises(DeploymentNotFound):
        broker.create_flow_run(deployment="missing")


def test_deployments_create_read_update_delete(broker: Broker) -> None:
    created = broker.create_deployment(name="d1", command=["echo", "hi"], retries=2)
    assert broker.read_deployment("d1") == created == broker.read_deployment(str(created.id))
    with pytest.raises(DeploymentExists):
        broker.create_deployment(name="d1", entrypoint="m.mod:f")
    updated = broker.update_deployment("d1", work_queue_name="elsewhere", name="d2")
    assert updated.id == created.id and updated.work_queue_name == "elsewhere"
    assert [d.name for d in broker.list_deployments()] == ["d2"]
    with pytest.raises(InvalidInput, match="entrypoint"):
        broker.update_deployment("d2", entrypoint="not an entrypoint", command=None)
    assert broker.read_deployment("d2") == updated
    broker.delete_deployment("d2")
    assert broker.list_deployments() == []


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": "x"}, "exactly one of 'entrypoint' or 'command'"),
        ({"name": "x", "entrypoint": "a.py:f", "command": ["ls"]}, "exactly one"),
        ({"name": "x", "entrypoint": "nocolon"}, "entrypoint"),
        ({"name": "a:b", "entrypoint": "a.py:f"}, "name"),
        ({"name": "x", "entrypoint": "a.py:f", "retries": -1}, "retries"),
        (
            {"name": "x", "entrypoint": "a.py:f", "infrastructure": {"type": "ftp"}},
            "infrastructure",
        ),
    ],
)
def test_invalid_deployments_write_nothing(broker: Broker, fields, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        broker.create_deployment(**fields)
    assert broker.client.dbsize() == 0


def test_idempotency_key_gives_back_the_same_run(broker: Broker) -> None:
    first = broker.create_flow_run("q", idempotency_key="k", parameters={"v": 1})
    second = broker.create_flow_run("q", idempotency_key="k", parameters={"v": 2})
    assert second == first
    runs = broker.create_flow_runs("q", [{"idempotency_key": "k"}, {"idempotency_key": "k2"}])
    assert runs[0].id == first.id and runs[1].id != first.id
    assert len(broker.list_flow_runs("q")) == 2
    assert broker.client.hlen(broker.keys.run_index) == 2


def test_unserialisable_parameters_are_refused(broker: Broker) -> None:
    with pytest.raises(InvalidInput, match="JSON"):
        broker.create_flow_run("q", parameters={"x": object()})
    with pytest.raises(InvalidInput, match="JSON"):
        broker.create_flow_run("q", parameters={"x": float("nan")})
    assert broker.client.dbsize() == 0


def test_bulk_enqueue_crosses_batches_in_order(broker: Broker) -> None:
    ids = broker.enqueue_flow_runs("bulk", [{"parameters": {"i": i}} for i in range(2500)])
    assert len(set(ids)) == 2500
    assert broker.read_work_queue("bulk").scheduled_runs == 2500
    claimed = broker.claim("bulk", "agent", max_runs=2500)
    assert len(claimed) == 1000, "one claim hands out at most 1000 runs"
    while len(claimed) < 2500:
        claimed += broker.claim("bulk", "agent", max_runs=1000)
    assert [run.parameters["i"] for run in claimed] == list(range(2500))


def lifecycle(broker: Broker):
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent")
    return run


def test_the_happy_path_records_times_and_result(broker: Broker) -> None:
    run = lifecycle(broker)
    assert run.state.type is StateType.PENDING and run.agent_id == "agent"
    running = broker.set_state(
        run.id, "RUNNING", token=run.claim_token, infrastructure_id="host:42"
    )
    assert running.run_count == 1 and running.start_time and running.infrastructure_id == "host:42"
    done = broker.set_state(run.id, "COMPLETED", token=run.claim_token, result={"rows": 3})
    assert done.state.is_terminal and done.result == {"rows": 3}
    assert done.end_time >= done.start_time
    assert broker.read_work_queue("q").active_runs == 0
    assert broker.client.xlen(broker.keys.queue("q").ready) == 0, "the stream entry was trimmed"
    assert broker.client.ttl(broker.keys.queue("q").run(str(run.id))) > 0, "kept for retention"


def test_transitions_are_compare_and_set(broker: Broker) -> None:
    run = lifecycle(broker)
    with pytest.raises(InvalidTransition, match="is PENDING; it cannot become COMPLETED"):
        broker.set_state(run.id, "COMPLETED", token=run.claim_token)
    broker.set_state(run.id, "RUNNING", token=run.claim_token)
    with pytest.raises(InvalidTransition):
        broker.set_state(run.id, "RUNNING", token=run.claim_token)
    broker.set_state(run.id, "FAILED", token=run.claim_token, message="boom")
    with pytest.raises(InvalidTransition):
        broker.set_state(run.id, "COMPLETED", token=run.claim_token)
    with pytest.raises(InvalidInput, match="Only a claim"):
        broker.set_state(run.id, "PENDING")
    assert broker.read_flow_run(run.id).state.message == "boom"


def test_a_wrong_token_is_stale(broker: Broker) -> None:
    run = lifecycle(broker)
    with pytest.raises(StaleClaim):
        broker.set_state(run.id, "RUNNING", token=run.claim_token + "0")
    assert broker.read_flow_run(run.id).state.type is StateType.PENDING


def test_retry_goes_back_to_the_queue_as_awaiting_retry(broker: Broker) -> None:
    run = lifecycle(broker)
    broker.set_state(run.id, "RUNNING", token=run.claim_token)
    due = broker.server_time() + timedelta(seconds=30)
    retried = broker.set_state(
        run.id, "SCHEDULED", name="AwaitingRetry", token=run.claim_token, scheduled_start_time=due
    )
    assert retried.state.name == "AwaitingRetry" and retried.agent_id is None
    assert broker.read_work_queue("q").active_runs == 0
    assert [r.id for r in broker.preview("q")] == [run.id]
    assert broker.claim("q", "agent") == []
    [again] = broker.claim("q", "agent", prefetch_seconds=60)
    assert again.id == run.id and again.claim_token != run.claim_token
    assert broker.set_state(again.id, "RUNNING", token=again.claim_token).run_count == 2


def test_cancel_scheduled_pending_and_running_runs(broker: Broker) -> None:
    scheduled = broker.create_flow_run("q", start_in_seconds=60)
    assert broker.cancel_flow_run(scheduled.id).state.type is StateType.CANCELLED
    pending = lifecycle(broker)
    assert broker.cancel_flow_run(pending.id).state.type is StateType.CANCELLED
    running = lifecycle(broker)
    broker.set_state(running.id, "RUNNING", token=running.claim_token)
    assert broker.cancel_flow_run(running.id).state.type is StateType.CANCELLING
    assert broker.heartbeat(running.id, running.claim_token) is StateType.CANCELLING
    with pytest.raises(InvalidTransition):
        broker.cancel_flow_run(scheduled.id)
    broker.set_state(running.id, "CANCELLED", token=running.claim_token)
    assert broker.read_work_queue("q").active_runs == 0


def release_by_hand(broker: Broker, queue: str, run_id) -> None:
    """Move a run from the schedule into the stream, as a claim's release step does."""
    keys = broker.keys.queue(queue)
    broker.client.zrem(keys.scheduled, str(run_id))
    broker.client.xadd(keys.ready, {"run": str(run_id)})


def test_a_run_cancelled_after_release_is_skipped_by_claims(broker: Broker) -> None:
    first, second = broker.create_flow_runs("q", [{}, {}])
    release_by_hand(broker, "q", first.id)
    broker.cancel_flow_run(first.id)
    assert [run.id for run in broker.claim("q", "agent", max_runs=5)] == [second.id]
    assert broker.client.xlen(broker.keys.queue("q").ready) == 1, "the stale entry was dropped"


def test_prefetch_claims_runs_due_within_the_window(broker: Broker) -> None:
    soon = broker.create_flow_run("q", start_in_seconds=60)
    broker.create_flow_run("q", start_in_seconds=600)
    assert broker.claim("q", "agent", max_runs=5) == []
    claimed = broker.claim("q", "agent", max_runs=5, prefetch_seconds=120)
    assert [run.id for run in claimed] == [soon.id]


def test_runs_are_claimed_in_due_order(broker: Broker) -> None:
    later = broker.create_flow_run("q", start_in_seconds=2)
    now = broker.create_flow_run("q")
    claimed = broker.claim("q", "agent", max_runs=5, prefetch_seconds=60)
    assert [run.id for run in claimed] == [now.id, later.id]


def test_preview_sees_scheduled_and_released_runs_and_skips_the_far_future(broker: Broker) -> None:
    broker.create_work_queue("q", concurrency_limit=1)
    a, b, c = broker.create_flow_runs(
        "q", [{}, {"start_in_seconds": 60}, {"start_in_seconds": 7200}]
    )
    assert [run.id for run in broker.preview("q")] == [a.id, b.id]
    assert [run.id for run in broker.preview("q", hours=3)] == [a.id, b.id, c.id]
    release_by_hand(broker, "q", a.id)
    assert [run.id for run in broker.preview("q")] == [a.id, b.id]
    assert broker.read_work_queue("q").scheduled_runs == 3


def test_late_runs(broker: Broker) -> None:
    run = broker.create_flow_run(
        "q", scheduled_start_time=broker.server_time() - timedelta(minutes=1)
    )
    now = broker.server_time()
    assert run.is_late(now, 15) and not run.is_late(now, 120)


def test_heartbeat_extends_the_lease(broker: Broker) -> None:
    """Renewed past twice its first lease by Redis' clock, each renewal followed at once by
    a sweep: a lease of 2 s is longer than any pause a busy machine makes between the two."""
    lease = 2.0
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent", lease_seconds=lease)
    until = run.claimed_at + timedelta(seconds=2 * lease)
    while broker.server_time() < until:  # keep it alive well past its first lease
        assert broker.heartbeat(run.id, run.claim_token, lease_seconds=lease) is StateType.PENDING
        assert broker.sweep().requeued == []
        time.sleep(0.1)
    assert broker.sweep().requeued == []
    assert broker.read_flow_run(run.id).agent_id == "agent"
    statuses = broker.heartbeat_runs("q", [(str(run.id), run.claim_token), (str(uuid4()), "1")])
    assert list(statuses.values()) == ["PENDING", "GONE"]


def test_silent_cancelling_run_is_cancelled_by_the_sweep(broker: Broker) -> None:
    run = lifecycle(broker)
    broker.set_state(run.id, "RUNNING", token=run.claim_token, lease_seconds=0.1)
    broker.cancel_flow_run(run.id)
    deadline = time.monotonic() + 120
    while not broker.sweep().cancelled:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert broker.read_flow_run(run.id).state.type is StateType.CANCELLED


def test_terminal_runs_are_purged_after_retention(redis_url: str) -> None:
    broker = Broker.from_url(redis_url, settings=BrokerSettings(retention_seconds=0.05))
    run = broker.create_flow_run("q", idempotency_key="once")
    [claimed] = broker.claim("q", "agent")
    broker.cancel_flow_run(claimed.id)
    deadline = time.monotonic() + 120
    while not broker.sweep().purged:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(FlowRunNotFound):
        broker.read_flow_run(run.id)
    keys = broker.keys.queue("q")
    assert broker.client.zcard(keys.runs) == 0 and broker.client.hlen(keys.idempotency) == 0
    assert broker.client.hlen(broker.keys.run_index) == 0
    assert broker.create_flow_run("q", idempotency_key="once").id != run.id


def test_list_flow_runs_filters(broker: Broker) -> None:
    deployment = broker.create_deployment(name="d", entrypoint="f.py:f", work_queue_name="a")
    from_deployment = broker.create_flow_run(deployment="d")
    other = broker.create_flow_run("b")
    broker.cancel_flow_run(other.id)
    assert [r.id for r in broker.list_flow_runs()] == [other.id, from_deployment.id]
    assert [r.id for r in broker.list_flow_runs(queue="a")] == [from_deployment.id]
    assert [r.id for r in broker.list_flow_runs(states=["CANCELLED"])] == [other.id]
    assert [r.id for r in broker.list_flow_runs(deployment_id=deployment.id)] == [
        from_deployment.id
    ]
    assert len(broker.list_flow_runs(limit=1)) == 1


def test_bad_run_ids(broker: Broker) -> None:
    with pytest.raises(InvalidInput, match="not a valid flow run id"):
        broker.read_flow_run("xyz")
    with pytest.raises(FlowRunNotFound):
        broker.read_flow_run(uuid4())


def test_agents_registry(broker: Broker) -> None:
    broker.register_agent("agent-1", name="a1", work_queues=["q"], hostname="h", pid=7)
    broker.agent_heartbeat("agent-1")
    [agent] = broker.list_agents()
    assert (agent.id, agent.work_queues, agent.pid) == ("agent-1", ["q"], 7)
    assert agent.last_heartbeat >= agent.started
    broker.deregister_agent("agent-1")
    assert broker.list_agents() == []


def test_logs_are_appended_read_after_an_id_and_followed(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    assert broker.read_logs(run.id) == []
    broker.append_logs(run.id, [("stdout", "one"), ("stderr", "two")])
    first = broker.read_logs(run.id)
    assert [(line.stream, line.message) for line in first] == [("stdout", "one"), ("stderr", "two")]
    broker.append_logs(run.id, [("engine", "three")])
    assert [line.message for line in broker.read_logs(run.id, after=first[-1].id)] == ["three"]
    assert broker.read_logs(run.id, after=broker.read_logs(run.id)[-1].id, block_seconds=0.05) == []


def test_logs_are_capped_and_expire_with_the_run(redis_url: str) -> None:
    """The log keeps the newest lines within its byte budget (a line costs its bytes + 32)
    and says first how many it dropped; the rest is in tests/test_logs.py."""
    broker = Broker.from_url(redis_url, settings=BrokerSettings(log_max_bytes_per_run=20_000))
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, (("stdout", f"{i:03d}".ljust(100, ".")) for i in range(500)))
    marker, *kept = broker.read_logs(run.id, count=1000)
    assert len(kept) == 20_000 // 132 and kept[-1].message.startswith("499")
    assert marker.stream == "engine" and marker.message.startswith(
        f"[runq: {500 - len(kept)} earlier lines"
    )
    broker.cancel_flow_run(run.id)
    assert broker.client.ttl(broker.keys.queue("q").logs(str(run.id))) > 0


def test_a_failed_run_put_back_on_the_queue_is_not_purged(redis_url: str) -> None:
    broker = Broker.from_url(redis_url, settings=BrokerSettings(retention_seconds=0.05))
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent")
    broker.set_state(run.id, "RUNNING", token=run.claim_token)
    broker.set_state(run.id, "FAILED", token=run.claim_token)
    retried = broker.set_state(run.id, "SCHEDULED", name="AwaitingRetry")
    assert retried.end_time is None
    time.sleep(0.1)  # past the retention of the (no longer) terminal record
    assert broker.sweep().purged == []
    assert broker.client.ttl(broker.keys.queue("q").run(str(run.id))) == -1
    [again] = broker.claim("q", "agent")
    assert again.id == run.id


def test_a_purged_crashed_run_takes_its_idempotency_key_with_it(redis_url: str) -> None:
    broker = Broker.from_url(redis_url, settings=BrokerSettings(retention_seconds=0.05))
    broker.create_flow_run("q", idempotency_key="nightly")
    [run] = broker.claim("q", "agent", lease_seconds=0.05)
    broker.set_state(run.id, "RUNNING", token=run.claim_token, lease_seconds=0.05)
    deadline = time.monotonic() + 120
    while not broker.sweep().purged:  # crashes it (lease), then purges it (retention)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert broker.client.hlen(broker.keys.queue("q").idempotency) == 0
