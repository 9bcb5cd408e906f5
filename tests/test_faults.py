"""Faults operators meet, at the broker: Redis stalls, full memory, fencing.

Each test runs on Redis 6.2 and 7, and on the cluster where only scripts are involved
(``ON_CLUSTER``). A stall is a real SIGSTOP/SIGCONT of the redis-server process; full
memory is ``CONFIG SET maxmemory`` just under what the server uses (noeviction).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from runq.broker import (
    Broker,
    BrokerSettings,
    RedisOutOfMemory,
    StaleClaim,
    StateType,
    claim_id_of,
)
from tests.agent_helpers import wait_for
from tests.figures import Figure
from tests.keyspace import changes, snapshot
from tests.redis_cluster import RedisCluster

ON_CLUSTER = True


def running_run(broker: Broker, queue: str = "q", lease: float = 30.0):
    broker.create_flow_run(queue)
    [run] = broker.claim(queue, "agent", lease_seconds=lease)
    broker.set_state(run.id, StateType.RUNNING, token=run.claim_token, lease_seconds=lease)
    return run


# ---- fencing ----------------------------------------------------------------------------


def test_a_claimed_run_changes_state_only_with_its_token(broker: Broker) -> None:
    run = running_run(broker)
    before = broker.client.hgetall(broker.keys.queue("q").run(str(run.id)))
    for state in (StateType.COMPLETED, StateType.FAILED, StateType.SCHEDULED, StateType.CRASHED):
        with pytest.raises(StaleClaim, match="only its owner"):
            broker.set_state(run.id, state, message="forged", result={"forged": True})
    with pytest.raises(StaleClaim):
        broker.set_state(run.id, StateType.COMPLETED, token="0" * 40, result={"forged": True})
    assert broker.client.hgetall(broker.keys.queue("q").run(str(run.id))) == before
    assert broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token).state.type is (
        StateType.COMPLETED
    )


def test_the_operator_cancels_without_a_token(broker: Broker) -> None:
    run = running_run(broker)
    assert broker.cancel_flow_run(run.id).state.type is StateType.CANCELLING
    assert broker.set_state(run.id, StateType.CANCELLED, token=run.claim_token).state.type is (
        StateType.CANCELLED
    )


def test_tokens_are_unguessable_and_never_stored(broker: Broker, figure: Figure) -> None:
    broker.create_flow_runs("q", [{}, {}, {}])
    runs = broker.claim("q", "agent", max_runs=3)
    tokens = [run.claim_token for run in runs]
    assert all(re.fullmatch(r"[0-9a-f]{40}", str(token)) for token in tokens)
    assert len(set(tokens)) == 3
    for run in runs:
        stored = broker.client.hgetall(broker.keys.queue("q").run(str(run.id)))
        assert run.claim_token not in stored.values()  # reading a record reveals no token
        assert stored["token"] == claim_id_of(str(run.claim_token))
        assert broker.read_flow_run(run.id).claim_token is None
    # A flow holding its own token cannot derive a neighbour's: no shared counter in it.
    assert not any(str(tokens[0])[:8] == str(other)[:8] for other in tokens[1:])
    figure("token_bits", 160, unit="bits")


# ---- Redis stalls -----------------------------------------------------------------------


def stop_redis(redis_server) -> list[int]:
    """SIGSTOP the redis-server process(es); returns the pids to SIGCONT."""
    if isinstance(redis_server, RedisCluster):
        pids = [node.process.pid for node in redis_server.nodes]
    else:
        pids = [redis_server.process.pid]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume_redis(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def short_lease(redis_url: str) -> Iterator[Broker]:
    """A Broker whose agents' lease is 0.4 s (a stall is a pause of over half of it)."""
    instance = Broker.from_url(redis_url, settings=BrokerSettings(lease_seconds=0.4))
    yield instance
    instance.close()


@pytest.fixture
def stallable(redis_server, redis_url: str) -> Iterator[object]:
    """The session's server, always resumed after the test."""
    stopped: list[int] = []

    class Stall:
        def __enter__(self) -> None:
            stopped[:] = stop_redis(redis_server)

        def __exit__(self, *exc: object) -> None:
            resume_redis(stopped)
            stopped.clear()

    yield Stall()
    resume_redis(stopped)


@pytest.mark.slow
def test_a_redis_stall_longer_than_the_lease_crashes_no_healthy_run(
    short_lease: Broker, stallable, figure: Figure
) -> None:
    """20 trials: a RUNNING run, Redis stopped for twice its lease, then the race the
    issue saw: a sweep (any agent's) reaches Redis before the engine's heartbeat."""
    broker, lease = short_lease, 0.4
    lease_for_trials = 0.25
    crashed = 0
    for trial in range(20):
        run = running_run(broker, queue=f"stall-{trial}", lease=lease_for_trials)
        with stallable:
            time.sleep(2 * lease)
        crashed += len(broker.sweep(f"stall-{trial}").crashed)
        assert broker.heartbeat(run.id, run.claim_token, lease_seconds=lease) is StateType.RUNNING
        assert broker.read_flow_run(run.id).state.type is StateType.RUNNING
    figure("stall_trials", 20)
    figure("false_crashes_after_stall", crashed)
    assert crashed == 0


def test_a_dead_engine_is_still_crashed_within_its_lease_after_a_stall(
    short_lease: Broker, stallable, figure: Figure
) -> None:
    broker, lease = short_lease, 0.4
    run = running_run(broker, lease=lease)
    with stallable:
        time.sleep(2 * lease)
    back = time.monotonic()
    assert broker.sweep("q").crashed == []  # the stall does not count against the lease
    # Nobody heartbeats (the engine is dead): the sweeps see its lease run out. A pause of
    # this test longer than half the lease counts as a stall too, so the bound is the
    # wait's timeout, and how long it took is a figure.
    wait_for(lambda: broker.sweep("q").crashed, 120, "the dead engine's run to be CRASHED")
    figure("dead_engine_crashed_after_stall", round(time.monotonic() - back, 2), unit="s")
    assert broker.read_flow_run(run.id).state.type is StateType.CRASHED


def test_without_a_stall_an_expired_lease_is_reclaimed_as_before(broker: Broker) -> None:
    run = running_run(broker, lease=0.2)
    # sweeps every 50 ms: no gap (half the broker's 30 s lease), so no stretch
    wait_for(lambda: broker.sweep("q").crashed, 120, "the expired lease to be reclaimed")
    assert broker.read_flow_run(run.id).state.type is StateType.CRASHED


# ---- full memory ------------------------------------------------------------------------


@pytest.fixture
def full_memory(redis_server, broker: Broker) -> Iterator[object]:
    """Call it to make Redis' memory full (maxmemory just under what it uses)."""
    if isinstance(redis_server, RedisCluster):
        clients = [redis.Redis(host="127.0.0.1", port=node.port) for node in redis_server.nodes]
    else:
        clients = [redis.Redis.from_url(redis_server.url)]

    def fill(headroom: int = 0) -> None:
        """Full memory now (headroom 0), or after ``headroom`` more bytes."""
        for client in clients:
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", str(used + headroom) if headroom else "1")

    def free() -> None:
        for client in clients:
            client.config_set("maxmemory", "0")

    fill.free = free  # type: ignore[attr-defined]
    yield fill
    free()
    for client in clients:
        client.close()


def test_under_full_memory_heartbeats_renew_and_nothing_healthy_crashes(
    short_lease: Broker, full_memory, figure: Figure
) -> None:
    """Five leases of full memory by Redis' clock, the engine renewing every quarter lease
    and an agent sweeping between renewals. The lease (2 s) is long enough that this
    test, paused by a busy machine between two calls, cannot miss one."""
    broker = Broker.from_url(short_lease.url, settings=BrokerSettings(lease_seconds=2.0))
    lease = 2.0
    run = running_run(broker, lease=lease)
    full_memory()
    with pytest.raises(RedisOutOfMemory, match=r"Redis at .* is out of memory"):
        broker.create_flow_run("q")
    refused = 0
    until = broker.server_time() + timedelta(seconds=5 * lease)
    while broker.server_time() < until:
        assert broker.heartbeat(run.id, run.claim_token, lease_seconds=lease) is StateType.RUNNING
        assert broker.sweep("q").crashed == []
        time.sleep(lease / 4)
    try:
        broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
    except RedisOutOfMemory:
        refused += 1
    assert broker.read_flow_run(run.id).state.type is StateType.RUNNING
    full_memory.free()
    broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
    assert broker.read_flow_run(run.id).state.type is StateType.COMPLETED
    figure("healthy_runs_crashed_under_full_memory", 0)
    broker.close()


def test_full_memory_leaves_no_half_written_run(
    broker: Broker, full_memory, figure: Figure
) -> None:
    broker.create_work_queue("q")
    created, refused = [], 0
    full_memory(headroom=256 * 1024)
    padding = {"pad": "x" * 4096}
    for _ in range(400):  # one at a time, as the issue did, up to and over the limit
        try:
            created.append(broker.create_flow_run("q", parameters=padding).id)
        except RedisOutOfMemory as error:
            assert "out of memory" in str(error) and "Traceback" not in str(error)
            refused += 1
    index = broker.client.hgetall(broker.keys.run_index)
    records = [
        run_id for run_id in index if broker.client.exists(broker.keys.queue("q").run(run_id))
    ]
    figure("orphan_index_entries", len(index) - len(records))
    figure("creations_refused", refused)
    assert refused > 0
    assert sorted(index) == sorted(records) == sorted(str(run_id) for run_id in created)
    full_memory.free()
    broker.create_flow_run("q")
    assert len(broker.list_flow_runs(queue="q")) == len(created) + 1


def test_every_queue_script_is_refused_whole_or_runs_whole(broker: Broker, full_memory) -> None:
    """Under full memory a claim is refused before its first write: the keyspace (every
    key's value and expiry, tests/keyspace.py) is the same after the refusal."""
    broker.create_flow_runs("q", [{}, {}, {}])
    full_memory()
    before = snapshot(broker)
    with pytest.raises(RedisOutOfMemory):
        broker.claim("q", "agent", max_runs=3)
    assert changes(before, snapshot(broker)) == []
    full_memory.free()
    assert len(broker.claim("q", "agent", max_runs=3)) == 3


def test_settings_for_a_long_lease_still_detect_no_stall_in_normal_use(redis_url: str) -> None:
    """A lease clock that stands still only for gaps: runs claimed and renewed normally
    keep deadlines of now + lease by Redis' clock."""
    broker = Broker.from_url(redis_url, settings=BrokerSettings(lease_seconds=30))
    before_ms = broker.server_time().timestamp() * 1000
    run = running_run(broker, lease=30)
    after_ms = broker.server_time().timestamp() * 1000
    score = broker.client.zscore(broker.keys.queue("q").active, str(run.id))
    assert before_ms + 30_000 - 1 <= score <= after_ms + 30_000 + 1  # no stall counted
    broker.close()
