"""The broker's invariants under real concurrency: separate OS processes, one real Redis.

Each test here fails if its property breaks: it checks the runs' own records (claim and
end times stamped by Redis' clock inside the scripts), not the workers' opinions.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
from typing import Any

import pytest

from runq.broker import Broker, FlowRun, StaleClaim, StateType
from tests import workers
from tests.agent_helpers import wait_for
from tests.figures import Figure

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster
SPAWN = multiprocessing.get_context("spawn")
pytestmark = pytest.mark.slow


def collect(results, count: int, timeout: float = 270) -> list:
    items = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        try:
            items.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue_module.Empty:
            raise AssertionError(f"only {len(items)} of {count} workers reported") from None
    return items


def race(target, argument_lists: list[tuple], results, *, after_start=None) -> list:
    """Run ``target`` in one OS process per argument tuple; collect one report from each.

    ``after_start`` runs in this process while the others race (e.g. a pause).
    """
    procs = [SPAWN.Process(target=target, args=(*args, results)) for args in argument_lists]
    for proc in procs:
        proc.start()
    if after_start is not None:
        after_start()
    reports = collect(results, len(procs))
    for proc in procs:
        proc.join(timeout=30)
    return reports


def peak_overlap(spans: list[tuple[Any, Any]]) -> int:
    """Most ``(start, end)`` spans open at once; an end before a start at a tie."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def max_overlap(runs: list[FlowRun]) -> int:
    """Most runs holding a slot at once, from claim time to end time (Redis' clock)."""
    return peak_overlap([(run.claimed_at, run.end_time) for run in runs])


def test_sixteen_processes_never_exceed_the_limit(
    broker: Broker, redis_url: str, figure: Figure
) -> None:
    broker.create_work_queue("limited", concurrency_limit=3)
    run_ids = broker.enqueue_flow_runs("limited", [{} for _ in range(240)])
    start = SPAWN.Barrier(16)
    reports = race(
        workers.claim_and_finish,
        [(redis_url, "limited", f"agent-{i}", i, start) for i in range(16)],
        SPAWN.Queue(),
    )

    claimed = [run_id for _, ids in reports for run_id in ids]
    assert sorted(claimed) == sorted(run_ids), "every run claimed exactly once"
    runs = [broker.read_flow_run(run_id) for run_id in run_ids]
    figure("claimer_processes", len(reports))
    figure("max_in_flight", max_overlap(runs))
    figure("concurrency_limit", broker.read_work_queue("limited").concurrency_limit)
    figure("runs_claimed_twice", len(claimed) - len(set(claimed)))
    assert all(run.state.is_terminal and run.run_count == 1 for run in runs)
    assert max_overlap(runs) <= 3
    assert len({agent for agent, ids in reports if ids}) > 1, "the claims really raced"


def test_no_claim_returns_a_run_after_pause_returns(
    broker: Broker, redis_url: str, figure: Figure
) -> None:
    broker.create_work_queue("pausable")
    broker.enqueue_flow_runs("pausable", [{} for _ in range(3000)])
    stop = SPAWN.Event()
    calls = SPAWN.Array("q", 4)  # claim calls each claimer finished
    paused: list = []

    def pause_mid_race() -> None:
        try:
            wait_for(
                lambda: broker.read_work_queue("pausable").scheduled_runs <= 2500,
                240,
                "the claimers to get going",
            )
            paused.append(broker.pause_work_queue("pausable").updated)
            assert broker.claim("pausable", "late-agent", max_runs=10) == []
            # The window in which the racing claimers could (wrongly) claim something: until
            # each has finished two more claim calls, so one began after the pause.
            seen = list(calls)
            wait_for(
                lambda: all(now >= then + 2 for now, then in zip(calls, seen)),
                240,
                "every claimer to claim again after the pause",
            )
        finally:
            stop.set()

    race(
        workers.claim_until_stopped,
        [(redis_url, "pausable", f"agent-{i}", stop, calls, i) for i in range(4)],
        SPAWN.Queue(),
        after_start=pause_mid_race,
    )
    paused_at = paused[0]
    runs = broker.list_flow_runs("pausable", limit=10_000)
    claimed = [run for run in runs if run.claimed_at is not None]
    figure("runs_claimed_before_pause", sum(run.claimed_at <= paused_at for run in claimed))
    figure("runs_claimed_after_pause", sum(run.claimed_at > paused_at for run in claimed))
    assert claimed, "runs were claimed before the pause"
    assert all(run.claimed_at <= paused_at for run in claimed)
    assert len(runs) - len(claimed) == broker.read_work_queue("pausable").scheduled_runs
    assert broker.resume_work_queue("pausable") and broker.claim("pausable", "again")


def test_eight_processes_creating_one_keyed_run_make_one_run(
    broker: Broker, redis_url: str, figure: Figure
) -> None:
    barrier = SPAWN.Barrier(8)
    ids = race(
        workers.create_keyed_run,
        [(redis_url, "keyed", "nightly-2026-11-29", barrier)] * 8,
        SPAWN.Queue(),
    )

    figure("creating_processes", len(ids))
    figure("runs_made", len(broker.list_flow_runs("keyed")))
    assert len(set(ids)) == 1
    assert [str(run.id) for run in broker.list_flow_runs("keyed")] == ids[:1]
    assert broker.read_work_queue("keyed").scheduled_runs == 1
    assert broker.client.hlen(broker.keys.run_index) == 1, "no dangling index entries"


def wait_for_lease_expiry(broker: Broker, run: FlowRun, lease_seconds: float) -> None:
    """Wait, by Redis' clock, until the run's lease has run out."""
    deadline = time.monotonic() + 120
    while (broker.server_time() - run.heartbeat_at).total_seconds() <= lease_seconds + 0.01:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_reclaimed_run_rejects_its_silent_owner(broker: Broker, figure: Figure) -> None:
    broker.create_flow_run("q")
    [first] = broker.claim("q", "silent-agent", lease_seconds=0.2)
    wait_for_lease_expiry(broker, first, 0.2)

    [second] = broker.claim("q", "live-agent")
    figure("lease", 0.2, unit="s")
    figure("reclaimed_after", (second.claimed_at - first.heartbeat_at).total_seconds(), unit="s")
    assert second.id == first.id and second.claim_token != first.claim_token
    with pytest.raises(StaleClaim):
        broker.heartbeat(first.id, first.claim_token)
    with pytest.raises(StaleClaim):
        broker.set_state(first.id, StateType.RUNNING, token=first.claim_token)
    with pytest.raises(StaleClaim):
        broker.set_state(
            first.id, StateType.COMPLETED, token=first.claim_token, from_states=["PENDING"]
        )
    assert broker.set_state(second.id, StateType.RUNNING, token=second.claim_token)
    assert broker.set_state(second.id, StateType.COMPLETED, token=second.claim_token)
    run = broker.read_flow_run(first.id)
    figure("attempts_started", run.run_count)
    assert run.state.type is StateType.COMPLETED and run.agent_id == "live-agent"
    assert run.run_count == 1


def test_sweep_requeues_unstarted_and_crashes_silent_runs(broker: Broker, figure: Figure) -> None:
    """Leases of 3 s: "both slots are taken" is checked within them however busy the
    machine; then the test waits, by Redis' clock, for them to run out."""
    lease = 3.0
    broker.create_work_queue("swept", concurrency_limit=2)
    broker.create_flow_runs("swept", [{}, {}, {}])
    never_started, started = broker.claim("swept", "doomed", max_runs=2, lease_seconds=lease)
    broker.set_state(started.id, StateType.RUNNING, token=started.claim_token, lease_seconds=lease)
    assert broker.claim("swept", "other") == [], "both slots are taken"
    wait_for_lease_expiry(broker, broker.read_flow_run(started.id), lease)

    result = broker.sweep()
    figure("requeued", len(result.requeued))
    figure("crashed", len(result.crashed))
    figure("slots_held_after_sweep", broker.read_work_queue("swept").active_runs)
    assert result.requeued == [never_started.id]
    assert result.crashed == [started.id]
    crashed = broker.read_flow_run(started.id)
    assert crashed.state.type is StateType.CRASHED and crashed.end_time is not None
    requeued = broker.read_flow_run(never_started.id)
    assert requeued.state.type is StateType.SCHEDULED and requeued.agent_id is None
    assert broker.read_work_queue("swept").active_runs == 0, "slots were freed"

    again = broker.claim("swept", "other", max_runs=2)
    assert never_started.id in {run.id for run in again}, "delivered again"
    assert len(again) == 2


def test_claim_cost_does_not_grow_with_queue_length(broker: Broker, figure: Figure) -> None:
    """Counted in Redis commands run inside the script (INFO commandstats), not seconds."""

    def commands_for_one_claim(queue: str) -> dict[str, int]:
        on_node = {}  # on a cluster: the counters of the node that holds the queue
        if broker.cluster:
            on_node["target_nodes"] = broker.client.get_node_from_key(
                broker.keys.queue(queue).config
            )
        broker.client.config_resetstat(**on_node)
        runs = broker.claim(queue, "agent", max_runs=1)
        assert len(runs) == 1
        stats = broker.client.info("commandstats", **on_node)
        return {
            name: stat["calls"]
            for name, stat in stats.items()
            if not name.startswith(
                (
                    "cmdstat_evalsha",
                    "cmdstat_eval",
                    "cmdstat_script",
                    "cmdstat_config",
                    "cmdstat_info",
                )
            )
        }

    broker.create_flow_run("small")
    broker.create_flow_run("big")
    broker.enqueue_flow_runs("big", [{"start_in_seconds": 86400} for _ in range(100_000)])
    assert broker.read_work_queue("big").scheduled_runs == 100_001

    small, big = commands_for_one_claim("small"), commands_for_one_claim("big")
    figure("commands_per_claim_1_run_queue", sum(small.values()))
    figure("commands_per_claim_100001_run_queue", sum(big.values()))
    assert big == small
    assert sum(big.values()) < 40
