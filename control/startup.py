"""Waiting for Redis when a long-running service starts.

A service (agent, scheduler, ui, exporter) started while Redis is down (a restart, a
failover, a pod scheduled before Redis) must not exit: a replacement agent started
during a Redis restart would simply be gone. It waits the way it rides out an outage
later, with the same :class:`~runq.broker.backoff.Backoff` (0.1 s doubling up to 5 s) and
the same lines: one warning per attempt naming the URL (password masked), the reason and
the next delay, and one line when Redis answers. A setting no wait can mend (a wrong
password, an ACL user without a permission runq needs) is no outage: one line and exit
1, as for a one-shot command, which never waits.

A service makes its Broker with :func:`service_broker` (or ``@with_broker(service=...)``),
which does not contact Redis, checks its own options (bad input fails at once, Redis
or not), then calls :func:`wait_for_redis`. Ctrl-C or SIGTERM while it waits ends the
command cleanly: one line, exit 0, no traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import click
import redis

from runq.broker import Broker, InvalidInput
from runq.broker.backoff import Backoff
from runq.broker.connection import (
    as_cluster_url,
    connect,
    describe_failure,
    is_cluster_url,
    mask_url,
    warn_if_evicting,
)
from runq.broker.errors import BrokerUnavailable
from runq.broker.settings import RunqSettings

T = TypeVar("T")

#: Failures no wait can mend: the URL's credentials, the user's rights, a server that is
#: no cluster for a cluster URL. Redis-py names some only in the text of a wrapped error.
_SETTINGS_ERRORS = (redis.AuthenticationError, redis.exceptions.NoPermissionError)
_SETTINGS_MARKS = (
    "WRONGPASS",
    "NOAUTH",
    "NOPERM",
    "authentication failed",
    "lacks a permission",
    "Cluster mode is not enabled",
)
#: A Redis that is down, starting (LOADING), failing over (READONLY, CLUSTERDOWN,
#: MASTERDOWN) or out of reach. BrokerUnavailable and RedisClusterException are how
#: runq's connection and a cluster's seed say so.
_OUTAGE_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.RedisClusterException,
    BrokerUnavailable,
    OSError,
)


def is_outage(error: Exception) -> bool:
    """Whether waiting may mend ``error`` (an outage), not a setting Redis refuses."""
    if isinstance(error, _SETTINGS_ERRORS) or any(mark in str(error) for mark in _SETTINGS_MARKS):
        return False
    return isinstance(error, _OUTAGE_ERRORS)


def service_broker(api: str | None, service: str, *, stop: threading.Event | None = None) -> Broker:
    """The Broker named by ``--api`` / ``--cluster`` / the environment, made without
    contacting Redis: the service calls :func:`wait_for_redis` once its options are checked.

    A Redis Cluster's client asks a seed node for the slot map as it is made: while none
    answers, this waits already, with the same lines. The embedded server is started
    here (it is this machine's own: nothing to wait for).

    Raises:
        InvalidInput: a malformed URL or setting.
        BrokerUnavailable: Redis refuses the credentials (cluster only; others say so
            in :func:`wait_for_redis`).
    """
    from .connection import CLUSTER, connect_broker

    env = RunqSettings.from_env()
    url = env.redis_url(api)
    ctx = click.get_current_context(silent=True)
    cluster = bool(ctx and ctx.find_root().meta.get(CLUSTER)) or env.redis_cluster
    if not url:
        return connect_broker(api)
    url = as_cluster_url(url) if cluster else url
    if is_cluster_url(url):
        client = retry(lambda: connect(url, check=False), url, service, stop=stop)
    else:
        client = connect(url, check=False)  # redis-py connects at the first command
    return Broker(client, url=url, settings=env.broker)


def wait_for_redis(
    broker: Broker,
    service: str,
    *,
    stop: threading.Event | None = None,
    outage: Backoff | None = None,
) -> None:
    """Block until Redis answers a PING, with the same backoff and lines as later outages;
    then, as a checked connection does, warn if its maxmemory-policy may evict runs.

    Args:
        broker: a Broker, contacted or not (see :func:`service_broker`).
        service: the service's name: the lines go to the ``runq.<service>`` logger.
        stop: set by the caller's signal handlers to end the wait. Without one, SIGINT
            and SIGTERM end it while it lasts (the previous handlers come back after).
        outage: the backoff to count attempts on (default: 0.1 s doubling up to 5 s).

    Raises:
        click.exceptions.Exit: (code 0) stopped before Redis answered, after one line.
        BrokerUnavailable: Redis refuses the credentials or a permission.
    """

    def ping() -> object:
        try:
            return broker.client.ping()
        except TypeError as error:  # an unknown option in the URL's query string
            raise InvalidInput(f"Invalid Redis URL {mask_url(broker.url)!r}: {error}.") from None

    retry(ping, broker.url, service, stop=stop, outage=outage)
    warn_if_evicting(broker.client, broker.url)


def retry(
    attempt: Callable[[], T],
    url: str,
    service: str,
    *,
    stop: threading.Event | None = None,
    outage: Backoff | None = None,
) -> T:
    """``attempt()`` until Redis lets it succeed, with a line per failure and one when
    Redis is back (see :func:`wait_for_redis`)."""
    log = logging.getLogger(f"runq.{service}")
    outage = outage or Backoff(url)
    with StopOnSignals(stop) as stopping:
        while not stopping.is_set():
            try:
                result = attempt()
            except (
                redis.RedisError,
                redis.exceptions.RedisClusterException,
                BrokerUnavailable,
                OSError,
            ) as error:
                if not is_outage(error):
                    if isinstance(error, BrokerUnavailable):
                        raise
                    raise BrokerUnavailable(describe_failure(url, error)) from None
                delay, notice = outage.failed(error)
                log.warning(notice)
                stopping.wait(delay)
                continue
            if stopping.is_set():
                break  # the stop came while Redis answered: it still wins
            if back := outage.recovered():
                log.info(back)
            return result
    log.info("Stopped before Redis answered; nothing was started.")
    raise click.exceptions.Exit(0)


class StopOnSignals:
    """While a start waits: SIGINT and SIGTERM set an event the wait watches, instead of
    raising KeyboardInterrupt inside a socket call, so a stop is a clean exit. A caller
    with its own event (and handlers) keeps them. Otherwise the previous handlers are put
    back when the wait ends, and a signal that came too late for the wait to notice is
    raised again for them: it is never lost."""

    def __init__(self, stop: threading.Event | None) -> None:
        self.stop = stop or threading.Event()
        self.saved: dict[int, Any] = {}
        self.caught: int | None = None
        self.install = stop is None and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> threading.Event:
        if self.install:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.saved[signum] = signal.signal(signum, self._caught)
        return self.stop

    def _caught(self, signum: int, _frame: object) -> None:
        self.caught = signum
        self.stop.set()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        if kind is None and self.caught is not None:
            signal.raise_signal(self.caught)
