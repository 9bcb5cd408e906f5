"""Connecting to Redis by URL, with errors a person can act on.

Supports ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs, with a username and
password for ACL users, and ``redis+cluster://`` / ``rediss+cluster://`` for a Redis
Cluster (any one node as the seed; the client discovers the others). Failures name the
URL with its password masked, never a traceback, because the CLI prints them as they are.
"""

from __future__ import annotations

import logging
import os
from typing import Union
from urllib.parse import urlsplit, urlunsplit

import redis

from .errors import BrokerUnavailable, InvalidInput

log = logging.getLogger("runq.broker")

SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
Client = Union[redis.Redis, redis.RedisCluster]


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def as_cluster_url(url: str) -> str:
    """``redis://h:p`` as ``redis+cluster://h:p`` (what ``--cluster`` means).

    The cluster flag travels inside the URL so everything handed the URL, an engine in a
    container for one, connects the same way.
    """
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    if scheme in CLUSTER_SCHEMES:
        return url
    if scheme not in ("redis", "rediss"):
        raise InvalidInput(
            f"Invalid Redis URL {mask_url(url)!r} for a cluster: it must start with redis:// or rediss://."
        )
    return f"{scheme}+cluster://{rest}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to print or log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def describe_failure(url: str, error: Exception) -> str:
    """One line saying which Redis could not be used and why."""
    reason = str(error).strip().rstrip(".") or type(error).__name__
    if isinstance(error, redis.AuthenticationError) or "WRONGPASS" in reason or "NOAUTH" in reason:
        reason = f"authentication failed ({reason})"
    return f"Cannot use Redis at {mask_url(url)}: {reason}."


def connect(url: str, *, timeout: float = 5.0, check: bool = True) -> Client:
    """A client for ``url``, pinged once so a bad URL or password fails here, clearly.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS; the CA file
            from ``?ssl_ca_certs=PATH`` or ``RUNQ_REDIS_CA_FILE``),
            ``unix:///path/to/socket?db=0``, or ``redis+cluster://host:port`` (also
            ``rediss+cluster://``) for a Redis Cluster.
        timeout: seconds to wait for the connection to be made.
        check: ping the server and warn about an eviction policy that could drop runs.

    Returns:
        A redis-py client (a ``RedisCluster`` for a cluster URL) that decodes replies to
        ``str``.

    Raises:
        InvalidInput: the URL is not a Redis URL.
        BrokerUnavailable: the server cannot be reached or refuses the credentials.
    """
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES + CLUSTER_SCHEMES:
        raise InvalidInput(
            f"Invalid Redis URL {mask_url(url)!r}: it must start with redis://, rediss://, "
            "unix:// or redis+cluster://."
        )
    options: dict = {}
    ca_file = os.environ.get("RUNQ_REDIS_CA_FILE")
    if scheme.startswith("rediss") and ca_file and "ssl_ca_certs" not in url:
        options["ssl_ca_certs"] = ca_file  # a private CA's certificate, for rediss://
    try:
        client = _client_for(url, scheme, timeout, options)
    except redis.exceptions.RedisClusterException as error:  # no seed node answered
        raise BrokerUnavailable(describe_failure(url, error)) from None
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"Invalid Redis URL {mask_url(url)!r}: {error}.") from None
    if check:
        try:
            client.ping()
        except TypeError as error:  # an unknown option in the query string
            raise InvalidInput(f"Invalid Redis URL {mask_url(url)!r}: {error}.") from None
        except (redis.RedisError, OSError) as error:
            raise BrokerUnavailable(describe_failure(url, error)) from None
        warn_if_evicting(client, url)
    return client


def _client_for(url: str, scheme: str, timeout: float, options: dict) -> Client:
    common = dict(decode_responses=True, socket_connect_timeout=timeout, **options)
    if scheme in CLUSTER_SCHEMES:
        # The cluster client asks the seed for the slot map at once: that is the check
        # that the URL points at a cluster.
        plain = url.replace("+cluster://", "://", 1)
        return redis.RedisCluster.from_url(plain, **common)
    return redis.Redis.from_url(url, health_check_interval=30, **common)


def warn_if_evicting(client: Client, url: str) -> str | None:
    """Warn when Redis may evict keys: an evicted run record is a lost run.

    Returns the policy, or None when the server does not let us read it (managed Redis
    services often disable CONFIG).
    """
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.RedisError:
        return None
    if policy and policy != "noeviction":
        log.warning(
            "Redis at %s has maxmemory-policy %s: it may evict runs under memory pressure; "
            "set it to noeviction.",
            mask_url(url),
            policy,
        )
    return policy
