"""runq on a real three-master Redis Cluster.

The broker test modules (work queues, flow runs, invariants, scheduler) set
``ON_CLUSTER = True`` and so also run here; this module adds what only a cluster shows:
queues spread over every primary, the CLI's ``--cluster`` flag, an agent serving twenty
queues on three nodes end to end, and scripts reloaded on a node that lost them. The
``redis_url`` fixture fails any test after which a node counted a CROSSSLOT error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests.agent_helpers import FAST, FLOWS, deploy, wait_for
from tests.cli_helpers import Invoke
from tests.figures import Figure
from tests.redis_cluster import RedisCluster

ONLY_CLUSTER = True  # conftest runs this module on the cluster only
QUEUES = [f"team-{index:02d}" for index in range(20)]


@pytest.fixture
def cluster(redis_server: RedisCluster, redis_url: str) -> RedisCluster:
    """The session's cluster, flushed (``redis_url``) and checked for CROSSSLOT after."""
    return redis_server


def seed_url(cluster: RedisCluster) -> str:
    """The plain URL of one node, as an operator would type it with ``--cluster``."""
    return f"redis://127.0.0.1:{cluster.nodes[0].port}"


def primary_of(broker: Broker, queue: str) -> str:
    return broker.client.get_node_from_key(broker.keys.queue(queue).config).name


def test_twenty_queues_spread_over_every_primary(
    cluster: RedisCluster, runq: Invoke, monkeypatch: pytest.MonkeyPatch, figure: Figure
) -> None:
    monkeypatch.setenv("RUNQ_API_URL", seed_url(cluster))  # a plain URL, plus --cluster
    for queue in QUEUES:
        runq("work-queue", "create", queue, "--limit", "2", "--cluster")
    listed = runq("work-queue", "ls", "--cluster", "-o", "json").stdout
    assert all(f'"{queue}"' in listed for queue in QUEUES)

    broker = Broker.from_url(seed_url(cluster), cluster=True)
    try:
        homes = {primary_of(broker, queue) for queue in QUEUES}
        figure("queues", len(QUEUES))
        figure("primaries_holding_queues", len(homes))
        assert homes == {node.name for node in broker.client.get_primaries()}
        assert broker.server_info()["cluster_primaries"] == 3
    finally:
        broker.close()


@pytest.mark.parametrize(
    "url, says",
    [
        ("redis://127.0.0.1:1", "Cannot use Redis at redis+cluster://127.0.0.1:1: "),
        ("unix:///tmp/runq.sock", "must start with redis:// or rediss://"),
    ],
)
def test_a_bad_cluster_url_is_one_clear_line(runq: Invoke, url: str, says: str) -> None:
    result = runq("work-queue", "ls", "--cluster", "--api", url, code=1)
    assert says in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_single_server_is_not_taken_for_a_cluster(runq: Invoke, tmp_path: Path) -> None:
    """--cluster against a server without cluster mode says so in one line."""
    from tests.redis_server import RedisServer, available_binaries

    single = RedisServer(available_binaries()["redis7"], tmp_path / "single")
    single.start()
    try:
        result = runq("work-queue", "ls", "--cluster", "--api", single.url, code=1)
    finally:
        single.stop()
    assert (
        result.stderr.startswith("Cannot use Redis at redis+cluster://")
        and result.stderr.count("\n") == 1
    )


def test_scripts_come_back_after_a_node_loses_them(cluster: RedisCluster, broker: Broker) -> None:
    """A restarted node has no scripts: the next call loads them again (EVALSHA -> NOSCRIPT)."""
    broker.create_flow_run(QUEUES[0])
    broker.client.script_flush()  # on every node
    assert [run.work_queue_name for run in broker.claim(QUEUES[0], "agent-a")] == [QUEUES[0]]


def test_an_agent_serves_twenty_queues_over_three_nodes(
    cluster: RedisCluster, broker: Broker, tmp_path: Path, figure: Figure
) -> None:
    """One agent, twenty queues on three primaries, flows run by real engine processes."""
    (tmp_path / "flows.py").write_text(FLOWS)
    runs = []
    for index, queue in enumerate(QUEUES):
        deploy(broker, f"hello-{index}", "hello", queue, parameters={"name": queue})
        runs.append(broker.create_flow_run(queue, deployment=f"hello-{index}"))
    command = [
        sys.executable,
        "-m",
        "runq",
        "agent",
        "start",
        "--hide-welcome",
        "--api",
        cluster.url,
    ]
    for queue in QUEUES:
        command += ["-q", queue]
    log = tmp_path / "agent.log"
    with open(log, "w") as out:
        agent = subprocess.Popen(
            command, cwd=tmp_path, env={**os.environ, **FAST}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: all(broker.read_flow_run(run.id).state.is_terminal for run in runs),
            timeout=120,
            what="every run to end",
        )
    finally:
        agent.terminate()
        agent.wait(timeout=120)
    completed = [broker.read_flow_run(run.id).state.type for run in runs].count(StateType.COMPLETED)
    figure("runs_completed", completed)
    figure("crossslot_errors", cluster.crossslot_errors())
    for run in runs:
        final = broker.read_flow_run(run.id)
        assert final.state.type is StateType.COMPLETED, (final.state, log.read_text()[-2000:])
        assert any(
            f"Hello, {run.work_queue_name}!" in line.message for line in broker.read_logs(run.id)
        )
    assert "CROSSSLOT" not in log.read_text() and "Traceback" not in log.read_text()
