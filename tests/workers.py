"""Bodies of the OS processes that race each other in the invariant tests.

They run under multiprocessing's spawn start method, so each is a separate interpreter
with its own Redis connections, as separate agents would be.
"""

from __future__ import annotations

import random
import time

from runq.broker import Broker, StateType, Waiting, claim_id_of


def claim_and_finish(url: str, queue: str, agent_id: str, seed: int, barrier, results) -> None:
    """Claim runs until the queue is drained, finishing each after a short random hold.

    Every process starts claiming at the same moment (``barrier``): however slowly the
    machine starts them, the first one up cannot drain the queue alone. Each claimed run
    id goes to ``results`` so the test can check none was claimed twice.
    """
    rng = random.Random(seed)
    broker = Broker.from_url(url)
    claimed: list[str] = []
    broker.server_time()  # connected before the start
    barrier.wait()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _drained(broker, queue):
        runs = broker.claim(queue, agent_id, max_runs=rng.randint(1, 3))
        if not runs:
            time.sleep(rng.uniform(0.0005, 0.002))  # a load generator's backoff
            continue
        for run in runs:
            claimed.append(str(run.id))
            broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
            time.sleep(rng.uniform(0, 0.004))
            final = rng.choice([StateType.COMPLETED, StateType.COMPLETED, StateType.FAILED])
            broker.set_state(run.id, final, token=run.claim_token)
    results.put((agent_id, claimed))
    broker.close()


def _drained(broker: Broker, queue: str) -> bool:
    state = broker.read_work_queue(queue)
    return state.scheduled_runs == 0 and state.active_runs == 0


def claim_until_stopped(
    url: str, queue: str, agent_id: str, stop, calls, index: int, results
) -> None:
    """Claim (and finish) as fast as possible until ``stop`` is set; ``calls[index]``
    counts the claim calls this process has finished (the test's observation window)."""
    broker = Broker.from_url(url)
    claimed: list[str] = []
    while not stop.is_set():
        runs = broker.claim(queue, agent_id, max_runs=2)
        with calls.get_lock():
            calls[index] += 1
        for run in runs:
            claimed.append(str(run.id))
            broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
            broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
    results.put((agent_id, claimed))
    broker.close()


def create_keyed_run(url: str, queue: str, key: str, barrier, results) -> None:
    """Create the same keyed run as every other process, at the same moment."""
    broker = Broker.from_url(url)
    barrier.wait()
    run = broker.create_flow_run(queue, idempotency_key=key, parameters={"x": 1})
    results.put(str(run.id))
    broker.close()


def scheduler_pass(url: str, barrier, results) -> None:
    """Materialize every deployment at the same moment as the others (no lease, no gate)."""
    broker = Broker.from_url(url)
    deployments = broker.list_deployments()
    scheduler = broker.scheduler()
    barrier.wait()
    results.put(scheduler.materialize_many(deployments, broker.server_time()))
    broker.close()


def claim_limited_and_finish(
    url: str, queues: list[str], agent_id: str, seed: int, barrier, results
) -> None:
    """An agent's steps with named limits: claim from ``queues``, take each run's limit
    slots (or leave it parked), run it briefly, end it, give its slots back; and the
    limit pass now and then. Stops once every queue and every limit line is empty."""
    rng = random.Random(seed)
    broker = Broker.from_url(url)
    started: list[str] = []
    broker.server_time()
    barrier.wait()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _all_done(broker, queues):
        names = broker.limit_names()
        got = 0
        for queue in queues:
            for run in broker.claim(queue, agent_id, max_runs=rng.randint(1, 2)):
                got += 1
                token = str(run.claim_token)
                slots = broker.take_limit_slots(run, queue, token, names)
                if isinstance(slots, Waiting):
                    continue
                started.append(str(run.id))
                broker.set_state(run.id, StateType.RUNNING, token=token)
                time.sleep(rng.uniform(0, 0.004))
                broker.set_state(run.id, StateType.COMPLETED, token=token)
                broker.release_limit_slots(str(run.id), claim_id_of(token), slots)
        if not got:
            broker.pass_limits(names)
            time.sleep(rng.uniform(0.0005, 0.002))
    results.put((agent_id, started))
    broker.close()


def _all_done(broker: Broker, queues: list[str]) -> bool:
    waiting = sum(limit.waiting + limit.active for limit in broker.list_concurrency_limits())
    return waiting == 0 and all(_drained(broker, queue) for queue in queues)
