"""The Broker's core: the Redis client, the key names, the scripts, and what a failure
of Redis looks like to a caller.

Every concept of the Broker (work queues, deployments, flow runs, claims, logs, the
agents registry) is a class over this core in a module of its own; ``broker/api.py``
composes them into one :class:`Broker` and wraps its public methods with
:func:`names_redis_on_failure`, so a lost connection says which Redis and why.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Self

import redis

from .checks import check_bytes, check_text, checked_name
from .connection import Client, as_cluster_url, connect, describe_failure, mask_url
from .embedded import EmbeddedServer
from .errors import (
    BrokerUnavailable,
    FlowRunNotFound,
    InvalidInput,
    RedisOutOfMemory,
    is_out_of_memory,
)
from .keys import Keys, QueueKeys
from .scripts import Scripts
from .scripts.sources import locate
from .settings import ENV_SETTINGS, BrokerSettings
from .timeutil import us_to_datetime

RUN_QUEUE_CACHE = 10_000  # run ids whose queue a Broker remembers


@contextmanager
def translated_failures(url: str) -> Iterator[None]:
    """Redis' failures as runq's exceptions, naming the server (masked)."""
    try:
        yield
    except RedisOutOfMemory:
        raise RedisOutOfMemory(f"Redis at {mask_url(url)}") from None
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise BrokerUnavailable(describe_failure(url, error)) from None
    except redis.exceptions.NoPermissionError as error:
        raise BrokerUnavailable(
            f"Redis at {mask_url(url)} refused a command: {error} "
            "(the ACL user lacks a permission runq needs; see deploy/redis-acl.conf)."
        ) from None
    except (redis.RedisError, redis.exceptions.RedisClusterException) as error:
        if is_out_of_memory(error):
            raise RedisOutOfMemory(f"Redis at {mask_url(url)}") from None
        # READONLY, BUSY, LOADING, a cluster resharding...: transient; an error inside a
        # script queued on a pipeline names the script's file and line
        text = locate(str(error))
        raise BrokerUnavailable(f"Redis at {mask_url(url)} refused a command: {text}.") from None


def names_redis_on_failure(cls: type) -> type:
    """Wrap the public methods of ``cls`` (its own and those it inherits from its bases,
    the Broker's concept classes) so a lost connection says which Redis and why, and text
    Redis cannot take is refused before the method starts. Instances need ``url``."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            check_text(args)
            check_text(kwargs.values())
            with translated_failures(self.url):
                return method(self, *args, **kwargs)

        wrapper.__runq_wrapped__ = True  # type: ignore[attr-defined]
        return wrapper

    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, member in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if name.startswith("_") or isinstance(member, (type, staticmethod, classmethod)):
                continue
            if not callable(member):
                continue
            if getattr(member, "__runq_wrapped__", False):
                continue
            setattr(cls, name, wrap(member))
    return cls


class BrokerCore:
    """The connection, keys, settings and scripts every part of the Broker works through."""

    def __init__(
        self, client: Client, *, url: str = "", settings: BrokerSettings | None = None
    ) -> None:
        self.client = client
        self.url = url
        #: On a Redis Cluster scripts cannot be pipelined (redis-py refuses EVALSHA in a
        #: cluster pipeline) and multi-key reads must go slot by slot.
        self.cluster = isinstance(client, redis.RedisCluster)
        self.settings = settings or BrokerSettings()
        self.keys = Keys(self.settings.prefix)
        self.scripts = Scripts(client)
        self._run_queues: dict[str, str] = {}
        #: Queues seen with their listing indexes complete (``indexed`` in the config), so
        #: a listing checks each queue once per Broker, not on every call.
        self._indexed_queues: set[str] = set()

    @classmethod
    def from_url(
        cls, url: str, *, settings: BrokerSettings | None = None, cluster: bool = False
    ) -> Self:
        """Connect to the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``, or
        ``redis+cluster://`` for a Redis Cluster).

        Args:
            url: the Redis URL, with ``user:password@`` for an ACL user.
            settings: tunables; defaults to :class:`BrokerSettings`.
            cluster: treat a ``redis://`` or ``rediss://`` URL as a cluster's seed node.

        Returns:
            A connected Broker.

        Raises:
            InvalidInput: the URL is malformed.
            BrokerUnavailable: Redis cannot be reached or refuses the credentials.
        """
        url = as_cluster_url(url) if cluster else url
        return cls(connect(url), url=url, settings=settings)

    @classmethod
    def embedded(
        cls, home: str | os.PathLike[str] | None = None, *, settings: BrokerSettings | None = None
    ) -> Self:
        """Start or reuse the local redis-server under ``home`` (default ``RUNQ_HOME``).

        Args:
            home: directory holding the socket, configuration and data.
            settings: tunables; defaults to :class:`BrokerSettings`.

        Returns:
            A Broker connected to the embedded server.

        Raises:
            BrokerUnavailable: no redis-server binary, or the server did not start.
        """
        from pathlib import Path

        server = EmbeddedServer(Path(home)) if home else EmbeddedServer.default()
        return cls.from_url(server.ensure_running(), settings=settings)

    @classmethod
    def from_env(cls, url: str | None = None, *, cluster: bool = False) -> Self:
        """``url``, else ``RUNQ_API_URL``, else the URL in the file ``RUNQ_API_URL_FILE``
        names (a mounted secret), else the embedded default; settings from env.

        ``cluster`` (or ``RUNQ_REDIS_CLUSTER=1``) reads a ``redis://`` URL as a Redis
        Cluster's seed node.

        Raises:
            InvalidInput: a malformed URL or setting, or an unreadable URL file.
            BrokerUnavailable: Redis cannot be reached.
        """
        from .settings import RunqSettings

        env = RunqSettings.from_env()
        settings, url, cluster = env.broker, env.redis_url(url), cluster or env.redis_cluster
        if url:
            return cls.from_url(url, settings=settings, cluster=cluster)
        if cluster:
            raise InvalidInput("--cluster needs a Redis URL (--api or RUNQ_API_URL).")
        return cls.embedded(settings=settings)

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def server_time(self) -> datetime:
        """Redis' clock, which judges every due time and lease.

        Returns:
            The server's current time as an aware UTC datetime.
        """
        seconds, micros = self.client.time()
        return us_to_datetime(int(seconds) * 1_000_000 + int(micros))

    def eviction_policy(self) -> str | None:
        """Redis' ``maxmemory-policy``, read from ``INFO memory`` (None when INFO is not
        allowed): anything but ``noeviction`` may drop run records under memory pressure.
        Never CONFIG: runq's ACL user has none (deploy/redis-acl.conf)."""
        from .connection import eviction_policy

        return eviction_policy(self.client)

    def server_info(self) -> dict[str, Any]:
        """What ``runq server status`` reports: version, pid, memory and persistence.

        CONFIG is read where the server allows it (managed services often do not).
        """
        info = self.client.info()
        details: dict[str, Any] = {
            "url": mask_url(self.url),
            "pid": info.get("process_id"),
            "version": info.get("redis_version"),
            "uptime_seconds": info.get("uptime_in_seconds"),
            "used_memory": info.get("used_memory"),
            "used_memory_human": info.get("used_memory_human"),
            "used_memory_peak_human": info.get("used_memory_peak_human"),
            "maxmemory_policy": info.get("maxmemory_policy"),
            "aof_enabled": bool(info.get("aof_enabled")),
            "appendfsync": None,
            "save": None,
        }
        try:
            config = self.client.config_get("appendfsync") | self.client.config_get("save")
        except redis.ResponseError:
            config = {}
        details.update(appendfsync=config.get("appendfsync"), save=config.get("save"))
        if self.cluster:  # INFO and CONFIG above came from one node; say how many there are
            details["cluster_primaries"] = len(self.client.get_primaries())
        return details

    def load_scripts(self, *, only_missing: bool = False) -> None:
        """Load runq's scripts into Redis now (agents do at start, and after a restart of
        Redis), so that a client whose ACL user may run them (EVALSHA) but not load them
        (the engine user) can. ``only_missing``: one SCRIPT EXISTS, then load what is gone."""
        self.scripts.load_all(only_missing=only_missing)

    def _queue(self, name: str) -> QueueKeys:
        return self.keys.queue(checked_name(name))

    def _remember_queue(self, run_id: str, queue: str) -> None:
        """Cache run id -> queue (immutable for a run); bounded for long-lived agents."""
        if len(self._run_queues) >= RUN_QUEUE_CACHE:
            self._run_queues.clear()
        self._run_queues[run_id] = queue

    def _queue_of(self, run_id: str) -> str:
        queue = self._run_queues.get(run_id)
        if queue is None:
            queue = self.client.hget(self.keys.run_index, run_id)
            if queue is None:
                raise FlowRunNotFound(run_id)
            self._remember_queue(run_id, queue)
        return queue

    def _mget(self, keys: list[str]) -> list[str | None]:
        """MGET of keys in any slots: one MGET per node on a cluster (not atomic)."""
        values: list[str | None] = (
            self.client.mget_nonatomic(keys) if self.cluster else self.client.mget(keys)
        )
        return values

    def _check_parameters(self, encoded: str, what: str = "Parameters are") -> None:
        """Refuse parameters (their compact JSON, ASCII: one byte a character) over the bound."""
        check_bytes(
            what,
            len(encoded),
            self.settings.max_parameters_bytes,
            ENV_SETTINGS["max_parameters_bytes"],
        )
