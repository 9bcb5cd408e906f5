"""The broker connection of a command: the ``--api`` / ``--cluster`` options.

:func:`with_broker` hands a command a connected :class:`~runq.broker.Broker` once Click
has parsed its arguments (refusing text that is not UTF-8 first), and closes it after.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, overload

import click

from runq.broker import Broker, InvalidInput
from runq.broker.backoff import Backoff
from runq.broker.models import is_utf8

CLUSTER = "runq.cluster"  # ctx.meta key: --cluster was given


def _remember_cluster(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[CLUSTER] = True


def api_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--api URL`` and ``--cluster`` to a command; see :func:`connect_broker`."""
    command = click.option(
        "--cluster",
        is_flag=True,
        expose_value=False,
        callback=_remember_cluster,
        help="The --api URL is a node of a Redis Cluster (same as a redis+cluster:// URL). "
        "Default: RUNQ_REDIS_CLUSTER.",
    )(command)
    return click.option(
        "--api",
        metavar="URL",
        help="Redis URL (redis://, rediss://, unix://, redis+cluster://). "
        "Default: RUNQ_API_URL, else the embedded local server.",
    )(command)


def connect_broker(api: str | None) -> Broker:
    """The Broker named by ``--api`` / ``--cluster`` (or the environment, or embedded)."""
    ctx = click.get_current_context(silent=True)
    cluster = bool(ctx and ctx.find_root().meta.get(CLUSTER))
    return Broker.from_env(api or None, cluster=cluster)


Command = Callable[..., Any]


@overload
def with_broker(command: Command) -> Command: ...


@overload
def with_broker(
    command: None = None, *, service: str | None = None
) -> Callable[[Command], Command]: ...


def with_broker(
    command: Command | None = None, *, service: str | None = None
) -> Command | Callable[[Command], Command]:
    """Add ``--api`` to a command and hand it a Broker as ``broker``.

    ``@with_broker``: a one-shot command's Broker, connected (an unreachable Redis is one
    line and exit 1 at once). ``@with_broker(service="ui")``: a long-running service's,
    made without contacting Redis; the command checks its options, then calls
    ``control.startup.wait_for_redis(broker, "ui")``, which waits for Redis as later
    outages do.

    The connection is made only after Click has parsed the arguments, so a usage error
    never waits on Redis, and it is closed however the command ends.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @api_option
        @functools.wraps(function)
        def wrapper(*args: Any, api: str | None, **kwargs: Any) -> Any:
            refuse_undecodable(kwargs.values())
            if service is None:
                broker = connect_broker(api)
            else:
                from .startup import service_broker

                broker = service_broker(api, service)
            try:
                return function(*args, broker=broker, **kwargs)
            finally:
                broker.close()

        return wrapper

    return decorate if command is None else decorate(command)


def refuse_undecodable(values: Iterable[Any]) -> None:
    """Refuse text a shell passed as bytes that are not UTF-8: Redis could not store it.

    Python decodes such arguments with surrogate escapes. They are refused here, before
    the connection, whatever the command would do with them: a command's own strings,
    repeated options (tuples) and ``k=v`` options (dicts; JSON values nested in them are
    the models' to check).
    """
    for value in values:
        if isinstance(value, dict):
            texts = [text for pair in value.items() for text in pair]
        elif isinstance(value, (tuple, list)):
            texts = list(value)
        else:
            texts = [value]
        for text in texts:
            if isinstance(text, str) and not is_utf8(text):
                raise InvalidInput(f"Invalid argument {text!r}: it is not valid UTF-8 text.")


def sit_out(outage: Backoff, error: Exception) -> None:
    """Say on stderr that Redis is unreachable and wait the outage's next delay: what a
    command that follows something live (logs --follow, run --watch) does between tries."""
    delay, notice = outage.failed(error)
    click.echo(notice, err=True)
    time.sleep(delay)


def say_recovered(outage: Backoff) -> None:
    """Say on stderr that Redis is back, once, after an outage."""
    if back := outage.recovered():
        click.echo(back, err=True)
