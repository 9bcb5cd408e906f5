"""A named limit under real concurrency: sixteen OS processes claim from four queues at
once, each taking its runs' limit slots as an agent does; the limit is judged from the
runs' own records (RUNNING and end times stamped by Redis' clock), not from the
processes' opinions. On Redis 6.2, 7 and a three-master cluster (the queues and the
limit on different nodes there).
"""

from __future__ import annotations

import pytest

from runq.broker import Broker, FlowRun, StateType
from tests import workers
from tests.figures import Figure
from tests.test_invariants import SPAWN, peak_overlap, race

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster
pytestmark = pytest.mark.slow
QUEUES = ["q0", "q1", "q2", "q3"]


def peak_running(runs: list[FlowRun]) -> int:
    """Most flows running at once, from their start to their end (Redis' clock)."""
    return peak_overlap([(run.start_time, run.end_time) for run in runs])


def test_sixteen_processes_on_four_queues_never_exceed_a_shared_limit(
    broker: Broker, redis_url: str, figure: Figure
) -> None:
    broker.create_concurrency_limit("shared", 3)
    run_ids = []
    for queue in QUEUES:
        broker.create_work_queue(queue)
        run_ids += broker.enqueue_flow_runs(queue, [{"tags": ["shared"]} for _ in range(40)])
    start = SPAWN.Barrier(16)
    orders = [QUEUES[i % 4 :] + QUEUES[: i % 4] for i in range(16)]
    reports = race(
        workers.claim_limited_and_finish,
        [(redis_url, orders[i], f"agent-{i}", i, start) for i in range(16)],
        SPAWN.Queue(),
    )

    started = [run_id for _, ids in reports for run_id in ids]
    assert sorted(started) == sorted(run_ids), "every run started exactly once"
    runs = [broker.read_flow_run(run_id) for run_id in run_ids]
    assert all(run.state.type is StateType.COMPLETED for run in runs)
    figure("claimer_processes", len(reports))
    figure("queues", len(QUEUES))
    figure("max_running", peak_running(runs))
    figure("limit", 3)
    assert peak_running(runs) <= 3
    limit = broker.read_concurrency_limit("shared")
    assert (limit.active, limit.waiting) == (0, 0), "no slot leaked"
    assert len({agent for agent, ids in reports if ids}) > 1, "the claims really raced"
