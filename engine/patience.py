"""Waiting out an unreachable Redis: the engine's connection and every call it makes.

A flow's life never depends on Redis being there at each instant: a restart, a
failover or a dataset still loading is retried with backoff for
``RUNQ_ENGINE_PATIENCE_SECONDS``, with one notice a retry on the engine's stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from runq.broker import Broker, BrokerUnavailable
from runq.broker.backoff import Backoff
from runq.broker.settings import RunqSettings

T = TypeVar("T")


def connect_patiently(url: str | None, settings: RunqSettings | None = None) -> Broker:
    """Connect, waiting out a Redis restart for up to ``RUNQ_ENGINE_PATIENCE_SECONDS``."""
    settings = settings or RunqSettings.from_env()
    return patiently(
        settings.engine_patience_seconds,
        connect_with,
        url,
        settings,
        redis_url=url or settings.api_url or "",
    )


def connect_with(url: str | None, settings: RunqSettings) -> Broker:
    """``Broker.from_env`` with the settings the engine has read already: reading them
    again is a fifth of a warm engine's start (agent/infrastructure/warm_engine.py)."""
    target = settings.redis_url(url)
    if target:
        return Broker.from_url(target, settings=settings.broker, cluster=settings.redis_cluster)
    return Broker.from_env(url)  # the embedded default (or its error): from_env knows it


def patiently(
    seconds: float,
    call: Callable[..., T],
    *args: Any,
    redis_url: str = "",
    wait_out: Callable[[BrokerUnavailable], bool] | None = None,
    **kwargs: Any,
) -> T:
    """Call ``call``, retrying with backoff for ``seconds`` while Redis (at ``redis_url``, named
    in the notices) is unreachable (a restart, a failover, a dataset still loading); a
    refusal for which ``wait_out`` says True does not count against ``seconds``."""
    deadline = time.monotonic() + seconds
    backoff = Backoff(redis_url, first=0.2)
    while True:
        try:
            return call(*args, **kwargs)
        except BrokerUnavailable as error:
            delay, notice = backoff.failed(error)
            if wait_out is not None and wait_out(error):
                deadline = max(deadline, time.monotonic() + delay + seconds)
            elif time.monotonic() + delay > deadline:
                raise
            print(f"runq: {notice}", file=sys.stderr, flush=True)
            time.sleep(delay)
