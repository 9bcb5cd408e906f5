"""Connecting to Redis by URL, with errors a person can act on.

Supports ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs, with a username and
password for ACL users. Failures name the URL with its password masked, never a
traceback, because the CLI prints them as they are.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit, urlunsplit

import redis

from .errors import BrokerUnavailable, InvalidInput

log = logging.getLogger("runq.broker")

SCHEMES = ("redis", "rediss", "unix")


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


def connect(url: str, *, timeout: float = 5.0, check: bool = True) -> redis.Redis:
    """A client for ``url``, pinged once so a bad URL or password fails here, clearly.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS; the CA file
            from ``?ssl_ca_certs=PATH`` or ``RUNQ_REDIS_CA_FILE``) or
            ``unix:///path/to/socket?db=0``.
        timeout: seconds to wait for the connection to be made.
        check: ping the server and warn about an eviction policy that could drop runs.

    Returns:
        A redis-py client that decodes replies to ``str``.

    Raises:
        InvalidInput: the URL is not a Redis URL.
        BrokerUnavailable: the server cannot be reached or refuses the credentials.
    """
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"Invalid Redis URL {mask_url(url)!r}: it must start with redis://, rediss:// or unix://."
        )
    options: dict = {}
    ca_file = os.environ.get("RUNQ_REDIS_CA_FILE")
    if scheme == "rediss" and ca_file and "ssl_ca_certs" not in url:
        options["ssl_ca_certs"] = ca_file  # a private CA's certificate, for rediss://
    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            **options,
        )
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


def warn_if_evicting(client: redis.Redis, url: str) -> str | None:
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
