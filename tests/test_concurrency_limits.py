"""Named concurrency limits through the Python API: slots across queues, per tag value, a
rate, waiting runs parked out of their queues and sent back in due order, and slots that
come back when their holder's run ended without a word. Each step is what an agent does
(claim, take slots, park or start, give back), on Redis 6.2, 7 and a three-master cluster.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from runq.broker import (
    Broker,
    ConcurrencyLimitExists,
    ConcurrencyLimitNotFound,
    FlowRun,
    InvalidInput,
    LimitSlot,
    StateType,
    Waiting,
    claim_id_of,
)
from tests.agent_helpers import wait_for
from tests.keyspace import changes, snapshot

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster
AWAITING = "AwaitingConcurrencySlot"


def deployment(broker: Broker, name: str, queue: str, tags: list[str]) -> None:
    broker.create_deployment(
        name=name,
        entrypoint="flows.py:f",
        work_queue_name=queue,
        tags=tags,
        check_code=False,
    )


def take(broker: Broker, queue: str, count: int = 100) -> tuple[list[FlowRun], list[FlowRun]]:
    """Claim up to ``count`` runs of ``queue`` and take their slots, as an agent does:
    (the runs that hold their slots, the runs that wait)."""
    held, waiting = [], []
    names = broker.limit_names()
    for run in broker.claim(queue, "agent-1", max_runs=count):
        assert run.claim_token
        outcome = broker.take_limit_slots(run, queue, run.claim_token, names)
        (waiting if isinstance(outcome, Waiting) else held).append(run)
    return held, waiting


def finish(broker: Broker, run: FlowRun) -> None:
    """The run's end, then its slots given back (the agent's order)."""
    assert run.claim_token
    broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
    broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
    slots = [LimitSlot(tag) for tag in run.tags if tag in broker.limit_names()]
    broker.release_limit_slots(str(run.id), claim_id_of(run.claim_token), slots)


def state_name(broker: Broker, run: FlowRun) -> str:
    return broker.read_flow_run(run.id).state.name


def test_a_limit_caps_runs_of_every_queue_that_carry_its_tag(broker: Broker) -> None:
    broker.create_concurrency_limit("warehouse", 2, description="the data warehouse")
    deployment(broker, "load-a", "a", ["warehouse"])
    deployment(broker, "load-b", "b", ["warehouse"])
    deployment(broker, "free", "b", [])
    for name in ("load-a", "load-a", "load-b", "load-b", "free"):
        broker.create_flow_run(deployment=name)

    held_a, waiting_a = take(broker, "a")
    held_b, waiting_b = take(broker, "b")

    assert len(held_a) == 2 and len(waiting_a) == 0
    assert [run.tags for run in held_b] == [[]], "only the untagged run of b starts"
    assert len(waiting_b) == 2
    for run in waiting_b:
        found = broker.read_flow_run(run.id)
        assert (found.state.type, found.state.name) == (StateType.SCHEDULED, AWAITING)
        assert found.awaiting_limit == "warehouse"
        assert "warehouse" in (found.state.message or "")
    listed = broker.list_flow_runs("b", states=[AWAITING])
    assert {run.id for run in listed} == {run.id for run in waiting_b}
    limit = broker.read_concurrency_limit("warehouse")
    assert (limit.active, limit.waiting) == (2, 2)
    assert broker.read_work_queue("b").active_runs == 1, "a waiting run holds no queue slot"


def test_a_freed_slot_goes_to_the_waiting_runs_in_due_order(broker: Broker) -> None:
    broker.create_concurrency_limit("w", 1)
    deployment(broker, "d", "q", ["w"])
    runs = [broker.create_flow_run(deployment="d") for _ in range(4)]
    (first,), waiting = take(broker, "q")
    assert first.id == runs[0].id and len(waiting) == 3
    detail = broker.inspect_concurrency_limit("w")
    assert [w.run_id for w in detail.waiting] == [str(run.id) for run in runs[1:]]
    assert [w.place for w in detail.waiting] == [1, 2, 3]
    assert [h.run_id for h in detail.holders] == [str(first.id)]

    order = [first.id]
    current = first
    for _ in range(3):
        finish(broker, current)
        (current,), again = take(broker, "q")
        assert again == [], "only the run whose turn came was sent back"
        order.append(current.id)
    assert order == [run.id for run in runs]


def test_a_limit_per_value_caps_each_customer_on_its_own(broker: Broker) -> None:
    broker.create_concurrency_limit("customer:*", 1)
    deployment(broker, "d", "q", [])
    for customer in ("acme", "acme", "globex"):
        broker.create_flow_run(deployment="d", tags=[f"customer:{customer}"])
    held, waiting = take(broker, "q")
    assert sorted(run.tags[0] for run in held) == ["customer:acme", "customer:globex"]
    assert [run.tags for run in waiting] == [["customer:acme"]]
    found = broker.read_flow_run(waiting[0].id)
    assert (found.awaiting_limit, found.awaiting_limit_value) == ("customer:*", "acme")
    assert broker.read_concurrency_limit("customer:*").active == 2


def test_a_run_takes_all_its_slots_or_none(broker: Broker) -> None:
    broker.create_concurrency_limit("a", 5)
    broker.create_concurrency_limit("b", 1)
    deployment(broker, "d", "q", ["a", "b"])
    broker.create_flow_run(deployment="d")
    broker.create_flow_run(deployment="d")
    held, waiting = take(broker, "q")
    assert len(held) == 1 and len(waiting) == 1
    assert broker.read_concurrency_limit("a").active == 1, "the waiting run gave back 'a'"
    assert broker.read_flow_run(waiting[0].id).awaiting_limit == "b"


def test_a_rate_lets_runs_start_again_once_its_window_moved_on(broker: Broker) -> None:
    broker.create_concurrency_limit("api", rate="2/1s")
    deployment(broker, "d", "q", ["api"])
    for _ in range(3):
        broker.create_flow_run(deployment="d")
    held, waiting = take(broker, "q")
    assert len(held) == 2 and len(waiting) == 1, "two starts per second"

    def sent_back() -> bool:
        broker.pass_limits()
        return broker.next_due_time("q") is not None

    wait_for(sent_back, 30, "the rate's window to let the third run start")
    (third,), _ = take(broker, "q")
    assert third.id == waiting[0].id


def test_runs_waiting_on_a_full_limit_never_hold_up_a_queues_other_runs(
    broker: Broker,
) -> None:
    broker.create_concurrency_limit("w", 0)
    deployment(broker, "free", "q", [])
    broker.enqueue_flow_runs("q", [{"tags": ["w"]} for _ in range(500)])
    _, waiting = take(broker, "q", 1000)
    assert len(waiting) == 500
    broker.create_flow_run(deployment="free")
    held, again = take(broker, "q", 1)
    assert len(held) == 1 and again == [], "the free run is delivered at once"
    assert broker.next_due_time("q") is None, "nothing waiting sits among the due runs"


@pytest.mark.parametrize(
    "change",
    [
        lambda broker: broker.update_concurrency_limit("w", limit=3),
        lambda broker: broker.delete_concurrency_limit("w"),
    ],
    ids=["raised", "deleted"],
)
def test_raising_or_deleting_a_limit_serves_the_runs_already_waiting(
    broker: Broker, change: Callable[[Broker], object]
) -> None:
    broker.create_concurrency_limit("w", 1)
    deployment(broker, "d", "q", ["w"])
    for _ in range(3):
        broker.create_flow_run(deployment="d")
    held, waiting = take(broker, "q")
    assert len(waiting) == 2
    change(broker)
    started, still = take(broker, "q")
    assert {run.id for run in started} == {run.id for run in waiting} and still == []


def test_the_slot_of_a_run_whose_agent_died_comes_back_by_the_pass(broker: Broker) -> None:
    broker.create_concurrency_limit("w", 1)
    deployment(broker, "d", "q", ["w"])
    broker.create_flow_run(deployment="d")
    second = broker.create_flow_run(deployment="d")
    runs = broker.claim("q", "doomed-agent", max_runs=1, lease_seconds=0.2)
    broker.take_limit_slots(runs[0], "q", str(runs[0].claim_token), broker.limit_names())
    _, waiting = take(broker, "q")  # the agent dies here: no heartbeat, no release
    assert [run.id for run in waiting] == [second.id]

    def slot_back() -> bool:
        broker.sweep("q")  # the expired claim is settled (requeued: never started)
        broker.pass_limits()
        return broker.read_concurrency_limit("w").active == 0

    wait_for(slot_back, 30, "the dead holder's slot to come back")
    held, again = take(broker, "q")
    assert [run.id for run in held] == [runs[0].id], "due first, it starts first"
    assert [run.id for run in again] == [second.id]


def test_a_waiting_run_that_was_cancelled_leaves_the_line(broker: Broker) -> None:
    broker.create_concurrency_limit("w", 1)
    deployment(broker, "d", "q", ["w"])
    runs = [broker.create_flow_run(deployment="d") for _ in range(3)]
    (first,), waiting = take(broker, "q")
    broker.cancel_flow_run(waiting[0].id)
    finish(broker, first)
    (started,), _ = take(broker, "q")
    assert started.id == runs[2].id, "the cancelled run's turn passed on"
    assert broker.read_concurrency_limit("w").waiting == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda b: b.create_concurrency_limit("w", -1), "integer from 0"),
        (lambda b: b.create_concurrency_limit("w", 1.5), "integer from 0"),
        (lambda b: b.create_concurrency_limit("w", True), "integer from 0"),
        (lambda b: b.create_concurrency_limit("w", rate="0/1m"), "must be > 0"),
        (lambda b: b.create_concurrency_limit("w", rate="10 per minute"), "N/DURATION"),
        (lambda b: b.create_concurrency_limit("w", rate="1/30d"), "at most 7 days"),
        (lambda b: b.create_concurrency_limit("w", rate="2000000/1d"), "starts per window"),
        (lambda b: b.create_concurrency_limit("w"), "a limit, a rate or both"),
        (lambda b: b.create_concurrency_limit("bad\nname", 1), "control characters"),
        (lambda b: b.create_concurrency_limit("{w}", 1), "'{' or '}'"),
        (lambda b: b.create_concurrency_limit("w*", 1), "KEY:*"),
        (lambda b: b.create_concurrency_limit("", 1), "empty"),
        (lambda b: b.create_concurrency_limit("w", 1, description="x" * 1001), "1000"),
        (lambda b: b.update_concurrency_limit("kept", limit=None), "a limit, a rate"),
    ],
)
def test_a_bad_limit_is_refused_in_one_line_and_nothing_is_written(
    broker: Broker, call: Callable[[Broker], object], error: str
) -> None:
    broker.create_concurrency_limit("kept", 2)
    before = snapshot(broker)
    with pytest.raises(InvalidInput, match=error) as raised:
        call(broker)
    assert "\n" not in str(raised.value)
    assert changes(before, snapshot(broker)) == []


def test_names_are_unique_and_a_missing_limit_is_named(broker: Broker) -> None:
    broker.create_concurrency_limit("w", 1)
    with pytest.raises(ConcurrencyLimitExists, match="'w' already exists"):
        broker.create_concurrency_limit("w", 2)
    for call in (
        lambda: broker.read_concurrency_limit("nope"),
        lambda: broker.update_concurrency_limit("nope", limit=1),
        lambda: broker.delete_concurrency_limit("nope"),
        lambda: broker.inspect_concurrency_limit("nope"),
    ):
        with pytest.raises(ConcurrencyLimitNotFound, match="'nope'"):
            call()
    changed = broker.update_concurrency_limit("w", rate="5/m", description="d")
    assert (changed.limit, str(changed.rate), changed.description) == (1, "5/m", "d")
    assert [limit.name for limit in broker.list_concurrency_limits()] == ["w"]
    broker.delete_concurrency_limit("w")
    assert broker.list_concurrency_limits() == [] and broker.limit_names() == set()


def commands_so_far(broker: Broker) -> int:
    """Every command Redis ran (those inside scripts too), summed over a cluster's nodes."""
    info = broker.client.info("commandstats")
    nodes = (
        info.values()
        if all(isinstance(v, dict) and "calls" not in v for v in info.values())
        else [info]
    )
    return sum(int(stat["calls"]) for node in nodes for stat in node.values())


def test_a_thousand_waiting_runs_cost_an_idle_queue_nothing(broker: Broker) -> None:
    """No busy loop: with the limit full, the claims and limit passes of an idle agent run
    the same commands whether 0 or 1,000 runs wait (counted, not timed)."""
    broker.create_concurrency_limit("w", 1)
    broker.enqueue_flow_runs("q", [{"tags": ["w"]}])
    held, _ = take(broker, "q")
    assert len(held) == 1

    def idle_cost() -> int:
        before = commands_so_far(broker)
        for _ in range(20):
            assert broker.claim("q", "agent-1", max_runs=10) == []
            broker.pass_limits()
        return commands_so_far(broker) - before

    none_waiting = idle_cost()
    broker.enqueue_flow_runs("q", [{"tags": ["w"]} for _ in range(1000)])
    _, waiting = take(broker, "q", 1000)
    assert len(waiting) == 1000
    thousand_waiting = idle_cost()
    assert thousand_waiting <= none_waiting * 1.5, (none_waiting, thousand_waiting)


def test_with_most_due_runs_waiting_a_run_is_claimed_at_most_twice(broker: Broker) -> None:
    """90% of the due runs carry a limit of 2: each run is claimed once, parked, and claimed
    once more when its turn comes, never again and again (runs claimed per run started)."""
    broker.create_concurrency_limit("w", 2)
    broker.enqueue_flow_runs("q", [{"tags": [] if i % 10 == 0 else ["w"]} for i in range(100)])
    claimed = started = 0
    while started < 100:
        held, waiting = take(broker, "q", 10)
        claimed += len(held) + len(waiting)
        assert held or waiting, "every pass claims something until all have started"
        for run in held:
            finish(broker, run)
        started += len(held)
    assert claimed / started <= 2, (claimed, started)
