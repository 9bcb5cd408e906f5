"""The claim side of named limits: what a limit costs each claimed run, and how many
claims a run costs when most runs must wait for a limit.

- :func:`claim_rates`: runs claimed and started per second by Python claimers doing
  what an agent does per run (claim, take the limit slots, RUNNING, COMPLETED, give the
  slots back), the runs' tag naming a limit too large to bind, or no limit at all.
- :func:`claims_per_started_run`: a real Agent (on a thread) serving a queue where 90%
  of the runs carry a small limit's tag; counts what Broker.claim hands out, re-claims
  of parked runs included, per run started.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runq.broker import Broker, Deployment, FlowRun, StateType, Waiting, claim_id_of

from .limit_fixtures import ThreadAgent, wait_until
from .noop_infrastructure import DoneHandle, NoopInfrastructure

SPAWN = multiprocessing.get_context("spawn")
LIMIT_NAMES_SECONDS = 2.0  # as agent/limit_taking.py: how long a list of names is trusted
WIDE_LIMIT = 1000  # never binds: the claimers hold a few slots at a time


def _agent_like_claimer(
    url: str, queue: str, runs: int, barrier: Any, results: Any, agent_id: str
) -> None:
    """Claim, take the limit slots, RUNNING, COMPLETED, give the slots back: ``runs``
    times (after one run to warm the connection up), timed between the barrier and the end."""
    broker = Broker.from_url(url)
    names: set[str] = set()
    names_at = float("-inf")

    def one_run() -> None:
        nonlocal names, names_at
        now = time.monotonic()
        if now - names_at >= LIMIT_NAMES_SECONDS:  # the agent's known_limits()
            names, names_at = broker.limit_names(), now
        [run] = broker.claim(queue, agent_id, max_runs=1)
        token = str(run.claim_token)
        slots = broker.take_limit_slots(run, queue, token, names)
        if isinstance(slots, Waiting):
            raise RuntimeError(f"a run waited for {slots.slot}: the limit bound")
        broker.set_state(run.id, StateType.RUNNING, token=token)
        broker.set_state(run.id, StateType.COMPLETED, token=token)
        broker.release_limit_slots(str(run.id), claim_id_of(token), slots)

    one_run()
    barrier.wait()
    started = time.perf_counter()
    for _ in range(runs):
        one_run()
    results.put((started, time.perf_counter()))
    broker.close()


def _one_round(url: str, queue: str, claimers: int, runs: int, tag: str) -> float:
    """Runs per second of ``claimers`` processes through ``runs`` runs tagged ``tag``."""
    each = max(1, runs // claimers)
    broker = Broker.from_url(url)
    broker.enqueue_flow_runs(queue, [{"tags": [tag]} for _ in range(claimers * (each + 1))])
    broker.close()
    barrier, results = SPAWN.Barrier(claimers), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=_agent_like_claimer,
            args=(url, queue, each, barrier, results, f"bench-claimer-{i}"),
            daemon=True,
        )
        for i in range(claimers)
    ]
    for proc in procs:
        proc.start()
    try:
        spans = [results.get(timeout=600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    begin, end = min(s for s, _ in spans), max(e for _, e in spans)
    return float(claimers * each / (end - begin))


def claim_rates(
    url: str, claimers: int, runs: int, rounds: int, tick: Callable[[], None]
) -> tuple[float, float]:
    """(with the limit, without) runs per second, each the best of ``rounds`` rounds,
    alternating; the same tagged runs on the same queue, the limit deleted between."""
    broker = Broker.from_url(url)
    tag, queue = "bench-wide", "bench-claims"
    with_limit: list[float] = []
    without: list[float] = []
    for _ in range(rounds):
        without.append(_one_round(url, queue, claimers, runs, tag))
        tick()
        broker.create_concurrency_limit(tag, WIDE_LIMIT, description="benchmark: never binds")
        with_limit.append(_one_round(url, queue, claimers, runs, tag))
        broker.delete_concurrency_limit(tag)
        tick()
    broker.close()
    return max(with_limit), max(without)


@dataclass
class Delivery:
    """What the claims-per-started-run phase counted."""

    runs: int = 0  # runs started (each ran exactly once)
    claim_calls: int = 0  # Broker.claim calls by the agent (empty ones included)
    claims: int = 0  # runs those calls handed out: first claims and re-claims
    parks: int = 0  # claimed runs that found the limit full and were parked
    seconds: float = 0.0  # first claim possible to last run ended


class CountingInfrastructure(NoopInfrastructure):
    """Completes each run at once (its slot comes back at the agent's next settle)."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.started = 0

    def submit(
        self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]
    ) -> DoneHandle:
        handle = super().submit(run, deployment, env)
        self.started += 1
        return handle


def _count_claims(broker: Broker, counts: Delivery) -> None:
    """Make ``broker``'s claim and take_limit_slots count into ``counts``."""
    lock = threading.Lock()
    claim, take = broker.claim, broker.take_limit_slots

    def counted_claim(*args: Any, **kwargs: Any) -> list[FlowRun]:
        runs = claim(*args, **kwargs)
        with lock:
            counts.claim_calls += 1
            counts.claims += len(runs)
        return runs

    def counted_take(*args: Any, **kwargs: Any) -> Any:
        outcome = take(*args, **kwargs)
        if isinstance(outcome, Waiting):
            with lock:
                counts.parks += 1
        return outcome

    broker.claim = counted_claim  # type: ignore[method-assign]
    broker.take_limit_slots = counted_take  # type: ignore[method-assign]


def claims_per_started_run(
    url: str, total: int, limit: int, tick: Callable[[int], None]
) -> Delivery:
    """``total`` runs due at once on one queue, every tenth untagged and the rest tagged
    with a limit of ``limit``, served by one Agent (no limit of its own) until all ended."""
    setup = Broker.from_url(url)
    tag, queue = "bench-busy", "bench-delivery"
    setup.create_concurrency_limit(tag, limit, description="benchmark: most runs wait")
    ids = setup.enqueue_flow_runs(
        queue, [{"tags": [] if i % 10 == 9 else [tag]} for i in range(total)]
    )
    counts = Delivery()
    agent_broker = Broker.from_url(url)
    _count_claims(agent_broker, counts)
    infrastructure = CountingInfrastructure(Broker.from_url(url))
    started = time.perf_counter()
    with ThreadAgent(agent_broker, queue, lambda d, b: infrastructure):

        def all_ended() -> bool:
            tick(infrastructure.started)
            state, held = setup.read_work_queue(queue), setup.read_concurrency_limit(tag)
            return (
                infrastructure.started >= total
                and state.scheduled_runs == 0
                and state.active_runs == 0
                and held.active == 0
                and held.waiting == 0
            )

        wait_until(all_ended, 600, f"{total} runs to end")
        counts.seconds = time.perf_counter() - started
    completed = sum(setup.read_flow_run(i).state.type is StateType.COMPLETED for i in ids)
    if completed != total or infrastructure.started != total:
        raise RuntimeError(
            f"{completed} of {total} runs completed, {infrastructure.started} started"
        )
    counts.runs = total
    for broker in (setup, agent_broker, infrastructure.broker):
        broker.close()
    return counts
