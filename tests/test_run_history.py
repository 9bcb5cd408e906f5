"""Flow-run state history, retry, delete and names: every transition is recorded (bounded),
kept beside the record and purged with it; runs are found by id or by name."""

from __future__ import annotations

import time

import pytest

from runq.broker import (
    Broker,
    BrokerSettings,
    FlowRunNotFound,
    InvalidInput,
    StateType,
)

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def history_of(broker: Broker, run_id: str) -> list[tuple[str, str]]:
    return [(s.type.value, s.name) for s in broker.read_flow_run(run_id).state_history]


def run_to(broker: Broker, queue: str, final: StateType, **create: object) -> str:
    """Create, claim, start and end a run; returns its id."""
    run = broker.create_flow_run(queue, **create)  # type: ignore[arg-type]
    (claimed,) = broker.claim(queue, "agent-1")
    token = claimed.claim_token
    broker.set_state(run.id, StateType.RUNNING, token=token)
    broker.set_state(
        run.id, final, token=token, message="it broke" if final is StateType.FAILED else None
    )
    return str(run.id)


def test_every_transition_is_recorded_oldest_first(broker: Broker) -> None:
    run_id = run_to(broker, "q", StateType.FAILED)
    run = broker.read_flow_run(run_id)
    assert [(s.type.value, s.name) for s in run.state_history] == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("FAILED", "Failed"),
    ]
    assert run.state_history[-1].message == "it broke"
    stamps = [s.timestamp for s in run.state_history]
    assert stamps == sorted(stamps) and stamps[-1] == run.state.timestamp
    assert broker.list_flow_runs()[0].state_history == [], "listings leave the history out"


def test_cancel_requeue_and_crash_are_recorded(redis_url: str) -> None:
    broker = Broker.from_url(redis_url, settings=BrokerSettings(lease_seconds=0.2))
    run = broker.create_flow_run("q")
    broker.claim("q", "a", lease_seconds=0.05)
    deadline = time.monotonic() + 10
    while not broker.sweep().requeued:  # the claim expires: requeued (a reclaim)
        assert time.monotonic() < deadline
    (claimed,) = broker.claim("q", "a")
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    broker.cancel_flow_run(run.name)  # by name: RUNNING -> CANCELLING
    broker.set_state(run.id, StateType.CANCELLED, token=claimed.claim_token)
    assert history_of(broker, str(run.id)) == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("CANCELLING", "Cancelling"),
        ("CANCELLED", "Cancelled"),
    ]
    messages = [s.message for s in broker.read_flow_run(run.id).state_history]
    assert messages[2] == "claim expired before the run started"
    assert messages[5] == "cancelled by an operator"


def test_history_is_bounded_in_count_and_bytes(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    for attempt in range(40):
        (claimed,) = broker.claim("q", "a")
        broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
        broker.set_state(
            run.id,
            StateType.SCHEDULED,
            name="AwaitingRetry",
            token=claimed.claim_token,
            message="é" * 5000 + str(attempt),
        )
    history = broker.read_flow_run(run.id).state_history
    assert len(history) == 50
    assert history[-1].name == "AwaitingRetry"
    assert all(len((s.message or "").encode()) <= 1000 for s in history)
    assert history[-1].message == "é" * 500, "cut on a character boundary"
    assert len(broker.read_flow_run(run.id).state.message.encode()) <= 1000


def test_history_expires_and_is_purged_with_the_record(redis_url: str) -> None:
    broker = Broker.from_url(redis_url, settings=BrokerSettings(retention_seconds=0.05))
    run_id = run_to(broker, "q", StateType.COMPLETED)
    history_key = broker.keys.queue("q").history(run_id)
    assert broker.client.pttl(history_key) > 0, "expires with the record (backstop)"
    deadline = time.monotonic() + 10
    while not broker.sweep().purged:
        assert time.monotonic() < deadline
    assert not broker.client.exists(history_key)
    index = broker.keys.queue("q")
    for key in (index.index("state", "COMPLETED"), index.names_index):
        assert broker.client.zcard(key) == 0, key


@pytest.mark.parametrize("final", [StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])
def test_retry_puts_an_ended_run_back_due_now(broker: Broker, final: StateType) -> None:
    run_id = run_to(broker, "q", final)
    before = broker.read_flow_run(run_id)
    retried = broker.retry_flow_run(before.name)
    assert retried.state.type is StateType.SCHEDULED and retried.state.name == "Scheduled"
    assert retried.run_count == before.run_count, "counted when it runs, not when retried"
    assert retried.expected_start_time <= broker.server_time()
    assert broker.read_flow_run(run_id).state_history[-1].message == "retried by an operator"
    assert broker.client.pttl(broker.keys.queue("q").run(run_id)) == -1, "live again"
    assert broker.client.pttl(broker.keys.queue("q").history(run_id)) == -1
    (claimed,) = broker.claim("q", "a")
    assert str(claimed.id) == run_id
    assert [r.id for r in broker.list_flow_runs(states=[final])] == []


def test_retry_refuses_other_states(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    with pytest.raises(InvalidInput, match="is SCHEDULED: only a FAILED, CRASHED or CANCELLED"):
        broker.retry_flow_run(run.id)
    completed = run_to(broker, "q2", StateType.COMPLETED)
    with pytest.raises(InvalidInput, match="is COMPLETED"):
        broker.retry_flow_run(completed)
    assert broker.read_flow_run(completed).state.type is StateType.COMPLETED


def test_delete_removes_record_history_logs_and_index_entries(broker: Broker) -> None:
    run_id = run_to(broker, "q", StateType.FAILED, name="doomed", idempotency_key="k")
    broker.delete_flow_run("doomed")
    with pytest.raises(FlowRunNotFound):
        broker.read_flow_run(run_id)
    keys = broker.keys.queue("q")
    assert not broker.client.exists(keys.run(run_id), keys.history(run_id), keys.logs(run_id))
    assert broker.client.zcard(keys.index("state", "FAILED")) == 0
    assert broker.client.zcard(keys.names_index) == 0
    assert broker.client.zscore(keys.runs, run_id) is None
    assert broker.list_flow_runs() == []
    again = broker.create_flow_run("q", idempotency_key="k")
    assert str(again.id) != run_id, "its idempotency key is free again"


def test_delete_refuses_a_run_in_flight(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    broker.claim("q", "a")
    with pytest.raises(InvalidInput, match="is PENDING: a run in flight cannot be deleted"):
        broker.delete_flow_run(run.id)
    assert broker.read_flow_run(run.id).state.type is StateType.PENDING


def test_a_scheduled_run_deleted_is_never_claimed(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    broker.delete_flow_run(run.id)
    assert broker.claim("q", "a") == []


def test_runs_by_name_and_ambiguous_names(broker: Broker) -> None:
    first = broker.create_flow_run("q", name="nightly")
    assert broker.resolve_flow_run_id("nightly") == str(first.id)
    assert broker.read_flow_run("nightly").id == first.id
    second = broker.create_flow_run("other", name="nightly")
    with pytest.raises(InvalidInput) as refused:
        broker.read_flow_run("nightly")
    message = str(refused.value)
    assert message.startswith("2 flow runs are named 'nightly': ") and message.endswith(
        "; pass an id."
    )
    assert str(first.id) in message and str(second.id) in message and "\n" not in message
    with pytest.raises(InvalidInput, match="not a valid flow run id, nor the name"):
        broker.read_flow_run("night")  # a prefix is not a name
    assert broker.resolve_flow_run_id(str(second.id)) == str(second.id)


def test_events_are_published_for_runs_and_queues(broker: Broker) -> None:
    keys = broker.keys.queue("q")
    broker.create_work_queue("q")
    pubsub = broker.client.pubsub()
    pubsub.subscribe(keys.events)
    assert pubsub.get_message(timeout=60)["type"] == "subscribe"
    run = broker.create_flow_run("q")
    broker.pause_work_queue("q")
    broker.resume_work_queue("q")
    broker.cancel_flow_run(run.id)
    broker.delete_flow_run(run.id)
    seen = []
    deadline = time.monotonic() + 120
    while len(seen) < 5 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "message":
            seen.append(message["data"])
    pubsub.close()
    assert seen == [
        f"run {run.id} SCHEDULED",
        "queue",
        "queue",
        f"run {run.id} CANCELLED",
        f"deleted {run.id}",
    ]


def index_entries_of(broker: Broker, queue: str, run_id: str) -> list[str]:
    """Every listing-index key of ``queue`` that still names ``run_id`` (the queue's
    index keys all share its slot, so one node's SCAN finds them)."""
    keys = broker.keys.queue(queue)
    found = []
    for key in broker.client.scan_iter(match=keys.index_prefix + "*", count=1000):
        kind = broker.client.type(key)
        if kind == "zset" and key == keys.names_index:
            if any(member.endswith("\0" + run_id) for member in broker.client.zrange(key, 0, -1)):
                found.append(key)
        elif kind == "zset" and broker.client.zscore(key, run_id) is not None:
            found.append(key)
        elif kind == "hash" and broker.client.hexists(key, run_id):
            found.append(key)
    return found


DEP_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def test_a_record_expired_before_its_purge_leaves_no_index_entry(redis_url: str) -> None:
    """The record's backstop expiry may come first (DEL is what it does): the purge still
    finds what to remove, from the facts finish kept beside the indexes."""
    broker = Broker.from_url(redis_url, settings=BrokerSettings(retention_seconds=0.05))
    run = broker.create_flow_run("q", name="short-lived", idempotency_key="once")
    broker.client.hset(
        broker.keys.queue("q").run(str(run.id)), mapping={"dep": DEP_ID, "flow": "etl"}
    )
    (claimed,) = broker.claim("q", "agent-1")
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    broker.set_state(run.id, StateType.COMPLETED, name="Done", token=claimed.claim_token)
    run_id = str(run.id)
    keys = broker.keys.queue("q")
    assert broker.client.zscore(keys.index("sname", "Done"), run_id) is not None
    broker.client.delete(keys.run(run_id))  # what the PEXPIRE backstop does
    deadline = time.monotonic() + 10
    while run.id not in broker.sweep().purged:
        assert time.monotonic() < deadline, "the sweep never purged the run"
    assert index_entries_of(broker, "q", run_id) == []
    assert broker.client.hget(keys.idempotency, "once") is None


def test_listing_drops_index_entries_whose_record_is_gone(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    keys = broker.keys.queue("q")
    broker.client.delete(keys.run(str(run.id)))  # a record gone without its purge
    assert broker.list_flow_runs(states=["SCHEDULED"]) == []
    assert broker.client.zscore(keys.index("state", "SCHEDULED"), str(run.id)) is None


def test_the_state_name_index_follows_the_type_name_pair(broker: Broker) -> None:
    """(RUNNING, 'Scheduled') is an unusual name, indexed; (SCHEDULED, 'Scheduled') is the
    default, not indexed, though the name did not change."""
    run = broker.create_flow_run("q")
    (claimed,) = broker.claim("q", "agent-1")
    broker.set_state(run.id, StateType.RUNNING, name="Scheduled", token=claimed.claim_token)
    key = broker.keys.queue("q").index("sname", "Scheduled")
    assert broker.client.zscore(key, str(run.id)) is not None
    broker.set_state(run.id, StateType.SCHEDULED, name="Scheduled", token=claimed.claim_token)
    assert broker.client.zscore(key, str(run.id)) is None
    assert [r.id for r in broker.list_flow_runs(states=["Scheduled"])] == [run.id]


@pytest.mark.parametrize("name", ["", "x" * 65, "two\nlines", "tab\there"])
def test_state_names_are_refused_unless_short_and_printable(broker: Broker, name: str) -> None:
    run = broker.create_flow_run("q")
    with pytest.raises(InvalidInput, match="1 to 64 printable") as error:
        broker.set_state(run.id, StateType.CANCELLED, name=name)
    assert "\n" not in str(error.value)
    assert broker.read_flow_run(run.id).state.type is StateType.SCHEDULED


def test_the_script_cuts_a_long_state_name(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    keys = broker.keys.queue("q")
    broker.scripts.set_state(
        keys,
        run_id=str(run.id),
        state_type="CANCELLED",
        state_name="é" * 200,
        message="",
        token="",
        from_states=["SCHEDULED"],
        due_ms=None,
        lease_ms=30000,
        retention_ms=60000,
        queue_name="q",
    )
    stored = broker.client.hget(keys.run(str(run.id)), "sn")
    assert stored == "é" * 128  # 256 bytes, cut on a character boundary


def test_the_ended_facts_go_with_a_retry_and_a_delete(broker: Broker) -> None:
    run_id = run_to(broker, "q", StateType.FAILED)
    ended = broker.keys.queue("q").index_prefix + "ended"
    assert broker.client.hexists(ended, run_id), "finish keeps what purge needs"
    broker.retry_flow_run(run_id)
    assert not broker.client.hexists(ended, run_id), "a live run is not purged"
    (claimed,) = broker.claim("q", "agent-2")
    broker.set_state(run_id, StateType.CRASHED, token=claimed.claim_token)
    broker.delete_flow_run(run_id)
    assert index_entries_of(broker, "q", run_id) == []
