"""Work queue create / read / list / update / delete through the Python API."""

from __future__ import annotations

from typing import Any

import pytest

from runq.broker import (
    Broker,
    InvalidInput,
    StateType,
    WorkQueueBusy,
    WorkQueueExists,
    WorkQueueNotFound,
)

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def test_create_then_read_by_name_and_id(broker: Broker) -> None:
    queue = broker.create_work_queue("test-queue", concurrency_limit=5, description="nightly")
    assert (queue.name, queue.concurrency_limit, queue.description) == ("test-queue", 5, "nightly")
    assert not queue.is_paused and queue.created == queue.updated
    assert broker.read_work_queue("test-queue").id == queue.id
    assert broker.read_work_queue(str(queue.id)).name == "test-queue"


def test_an_existing_name_is_refused_and_left_unchanged(broker: Broker) -> None:
    first = broker.create_work_queue("dup", concurrency_limit=1)
    with pytest.raises(WorkQueueExists, match="'dup' already exists"):
        broker.create_work_queue("dup", concurrency_limit=9)
    again = broker.read_work_queue("dup")
    assert (again.id, again.concurrency_limit) == (first.id, 1)


@pytest.mark.parametrize(
    "name", ["", " ", "a{b", "a}b", "a:b", "tab\there", "x" * 101, "new\nline", "bell\x07"]
)
def test_bad_names_are_refused_before_anything_is_written(broker: Broker, name: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid work queue name"):
        broker.create_work_queue(name)
    assert broker.client.dbsize() == 0


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True])
def test_bad_limits_are_refused(broker: Broker, limit) -> None:
    with pytest.raises(InvalidInput, match="concurrency limit"):
        broker.create_work_queue("q", concurrency_limit=limit)
    broker.create_work_queue("q")
    with pytest.raises(InvalidInput):
        broker.set_concurrency_limit("q", limit)
    assert broker.read_work_queue("q").concurrency_limit is None


def test_names_may_hold_spaces_unicode_and_100_characters(broker: Broker) -> None:
    for name in ["with space", "café-队列", "x" * 100]:
        assert broker.create_work_queue(name).name == name
    assert [q.name for q in broker.list_work_queues()] == sorted(
        ["with space", "café-队列", "x" * 100]
    )


def test_list_is_sorted_and_filters_by_prefix(broker: Broker) -> None:
    for name in ["beta", "alpha", "alphabet", "gamma"]:
        broker.create_work_queue(name)
    assert [q.name for q in broker.list_work_queues()] == ["alpha", "alphabet", "beta", "gamma"]
    assert [q.name for q in broker.list_work_queues(prefix="alpha")] == ["alpha", "alphabet"]


def test_pause_resume_limits_and_description(broker: Broker) -> None:
    broker.create_work_queue("q")
    assert broker.pause_work_queue("q").is_paused
    assert not broker.resume_work_queue("q").is_paused
    assert broker.set_concurrency_limit("q", 0).concurrency_limit == 0
    assert broker.clear_concurrency_limit("q").concurrency_limit is None
    assert broker.set_work_queue_description("q", "hello").description == "hello"
    queue = broker.read_work_queue("q")
    assert queue.updated > queue.created


def test_updates_of_a_missing_queue_say_so(broker: Broker) -> None:
    for call in (
        lambda: broker.read_work_queue("nope"),
        lambda: broker.pause_work_queue("nope"),
        lambda: broker.set_concurrency_limit("nope", 1),
        lambda: broker.delete_work_queue("nope"),
        lambda: broker.claim("nope", "agent"),
    ):
        with pytest.raises(WorkQueueNotFound, match="No work queue named 'nope' found."):
            call()
    assert broker.list_work_queues() == []


def test_queues_are_created_when_referenced(broker: Broker) -> None:
    run = broker.create_flow_run("auto")
    assert run.work_queue_name == "auto"
    assert broker.read_work_queue("auto").scheduled_runs == 1
    queue, created = broker.ensure_work_queue("auto")
    assert not created and queue.name == "auto"
    broker.create_deployment(
        name="d", entrypoint="flows.py:main", work_queue_name="from-deployment"
    )
    assert [q.name for q in broker.list_work_queues()] == ["auto", "from-deployment"]


def test_delete_refuses_while_runs_are_in_flight_even_forced(broker: Broker) -> None:
    """Their owners still write to them; once they end, the delete keeps their history
    (tests/test_queue_ops.py says what goes and what stays)."""
    broker.create_flow_runs("q", [{}, {}])
    [run] = broker.claim("q", "agent")
    for force in (False, True):
        with pytest.raises(WorkQueueBusy, match="1 run"):
            broker.delete_work_queue("q", force=force)
    assert broker.read_work_queue("q").active_runs == 1
    broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
    broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
    broker.delete_work_queue("q")
    assert broker.list_work_queues() == []
    assert broker.read_flow_run(run.id).state.type is StateType.COMPLETED


def test_counters_and_polling_agents(broker: Broker) -> None:
    broker.create_flow_runs("q", [{}, {}, {"start_in_seconds": 3600}])
    broker.register_agent("agent-a", name="a", work_queues=["q"])  # only live agents count
    broker.claim("q", "agent-a")
    queue = broker.read_work_queue("q")
    assert (queue.active_runs, queue.scheduled_runs) == (1, 2)
    assert [agent.id for agent in queue.agents] == ["agent-a"]
    assert queue.last_polled is not None


def test_a_queue_created_again_during_its_delete_stays_listed(broker: Broker) -> None:
    """An agent serving the queue recreates it between the delete script and the index
    writes after it (found by the suite under load): it must not end up unlisted."""
    broker.create_work_queue("comeback")
    forget = broker._forget_queue

    def recreated_meanwhile(*args: Any, **kwargs: Any) -> None:
        broker.ensure_work_queue("comeback")  # the agent's claim found it gone
        forget(*args, **kwargs)

    broker._forget_queue = recreated_meanwhile  # type: ignore[method-assign]
    broker.delete_work_queue("comeback")
    assert "comeback" in [queue.name for queue in broker.list_work_queues()]
    assert broker.work_queue_name(str(broker.read_work_queue("comeback").id)) == "comeback"
