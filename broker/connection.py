"""Connecting to Redis by URL, with errors a person can act on.

Supports ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs, with a username and
password for ACL users, and ``redis+cluster://`` / ``rediss+cluster://`` for a Redis
Cluster (any one node as the seed; the client discovers the others). Failures name the
URL with its password masked, never a traceback, because the CLI prints them as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Union
from urllib.parse import unquote_plus, urlsplit

import redis

from .errors import BrokerUnavailable, InvalidInput

log = logging.getLogger("runq.broker")

SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# Union, not |: redis is Any to mypy (follow_imports=skip), and Any | Any is no type alias
Client = Union[redis.Redis, redis.RedisCluster]  # noqa: UP007


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


#: Query parameters redis-py hands to the connection that hold a secret (``password``, and
#: ``ssl_password``, the TLS key's passphrase); any parameter whose name says it is one
#: (``...password``, ``...secret``, ``...token``) is masked too.
SECRET_QUERY_WORDS = ("password", "passwd", "secret", "token")


def _is_secret_parameter(name: str) -> bool:
    lowered = unquote_plus(name).strip().lower()
    return any(word in lowered for word in SECRET_QUERY_WORDS)


def _mask_query(query: str) -> str:
    """``a=1&password=pw`` -> ``a=1&password=***``: every other parameter kept as written."""
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        parts.append(f"{name}=***" if equals and value and _is_secret_parameter(name) else part)
    return "&".join(parts)


def _mask_netloc(netloc: str) -> str:
    """``user:pw@host:port`` -> ``user:***@host:port`` (a password may itself hold ``@``)."""
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, password = userinfo.partition(":")
    return f"{user}:***@{hostport}" if colon and password else netloc


def mask_url(url: str) -> str:
    """The URL with its passwords replaced by ``***`` (safe to print or log): the one in
    ``user:password@`` and those given as query parameters (``?password=``,
    ``?ssl_password=``). Everything else is kept as written, so the URL stays readable.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL (an unbalanced "[" in the host): show nothing of it
        return "<unparseable URL>"
    netloc, query = _mask_netloc(parts.netloc), _mask_query(parts.query) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    # Rebuilt by hand: urlunsplit drops the empty host of unix:///path/to/socket.
    masked = (
        f"{parts.scheme}://{netloc}{parts.path}"
        if "://" in url
        else f"{parts.scheme}:{netloc}{parts.path}"
    )
    masked += f"?{query}" if query else ""
    return masked + (f"#{parts.fragment}" if parts.fragment else "")


def describe_failure(url: str, error: Exception) -> str:
    """One line saying which Redis could not be used and why."""
    reason = str(error).strip().rstrip(".") or type(error).__name__
    if isinstance(error, redis.AuthenticationError) or "WRONGPASS" in reason or "NOAUTH" in reason:
        reason = f"authentication failed ({reason})"
    elif isinstance(error, redis.exceptions.NoPermissionError):
        reason = f"{reason} (the ACL user lacks a permission runq needs; see deploy/redis-acl.conf)"
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
    options: dict[str, Any] = {}
    from .settings import setting  # here: settings.py imports the models, which import this

    ca_file = setting("redis_ca_file")
    if scheme.startswith("rediss") and ca_file and "ssl_ca_certs" not in url:
        options["ssl_ca_certs"] = ca_file  # a private CA's certificate, for rediss://
    try:
        client = _client_for(url, scheme, timeout, options)
    except (redis.exceptions.RedisClusterException, redis.RedisError) as error:
        # no seed node answered, or it refused the cluster client's first commands
        # (CLUSTER SLOTS, COMMAND: an ACL user without them)
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


def _client_for(url: str, scheme: str, timeout: float, options: dict[str, Any]) -> Client:
    common = dict(decode_responses=True, socket_connect_timeout=timeout, **options)
    if scheme in CLUSTER_SCHEMES:
        # The cluster client asks the seed for the slot map at once: that is the check
        # that the URL points at a cluster.
        plain = url.replace("+cluster://", "://", 1)
        return redis.RedisCluster.from_url(plain, **common)
    return redis.Redis.from_url(url, health_check_interval=30, **common)


def eviction_policy(client: Client) -> str | None:
    """Redis' ``maxmemory-policy``, from ``INFO memory`` (no CONFIG: runq's ACL user has
    none, so it can never read ``masterauth`` or ``requirepass``). On a cluster, the first
    node's policy that is not ``noeviction``, if any. None when INFO is refused.
    """
    try:
        info = client.info("memory")
    except redis.RedisError:
        return None
    if "maxmemory_policy" in info:
        policies = [info["maxmemory_policy"]]
    else:  # a cluster client answers per node
        policies = [
            node.get("maxmemory_policy") for node in info.values() if isinstance(node, dict)
        ]
    policies = [str(policy) for policy in policies if policy]
    risky = [policy for policy in policies if policy != "noeviction"]
    chosen: str | None = (risky or policies or [None])[0]
    return chosen


def warn_if_evicting(client: Client, url: str) -> str | None:
    """Warn when Redis may evict keys: an evicted run record is a lost run.

    Returns the policy, or None when the server does not let us read it.
    """
    policy = eviction_policy(client)
    if policy and policy != "noeviction":
        log.warning(
            "Redis at %s has maxmemory-policy %s: it may evict runs under memory pressure; "
            "set it to noeviction.",
            mask_url(url),
            policy,
        )
    return policy


#: The variable naming a file that holds the Redis URL (read when RUNQ_API_URL is unset):
#: a Docker or Kubernetes secret mounted as a file keeps the password out of the
#: environment, which ``docker inspect`` and ``/proc/PID/environ`` show.
URL_FILE_ENV = "RUNQ_API_URL_FILE"


def read_url_file(path: str) -> str:
    """The Redis URL held by the file at ``path`` (surrounding whitespace ignored).

    Raises:
        InvalidInput: the file cannot be read, is empty, or holds more than one line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"Cannot read the Redis URL from {URL_FILE_ENV} {path!r}: it is not UTF-8 text."
        ) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InvalidInput(
            f"Cannot read the Redis URL from {URL_FILE_ENV} {path!r}: {reason}."
        ) from None
    url = text.strip()
    if not url:
        raise InvalidInput(f"{URL_FILE_ENV} {path!r} is empty: it must hold the Redis URL.")
    if "\n" in url:
        raise InvalidInput(f"{URL_FILE_ENV} {path!r} must hold one line, the Redis URL.")
    return url
