"""``runq server ...``: the embedded Redis that runq uses when no ``RUNQ_API_URL`` is set.

Every runq command of a user shares one local redis-server under ``RUNQ_HOME`` (started
on demand by any command). These commands run it in the foreground, report on it, and
stop it; ``status`` can also report on any Redis given with ``--api``.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import click

from runq.broker import Broker
from runq.broker.embedded import EmbeddedServer
from runq.display.time_text import seconds_text

from .common import api_option, connect_broker, fail, output_option, print_json, wants_json


@click.group("server")
def server() -> None:
    """Run, check and stop the embedded Redis server (under RUNQ_HOME, default ~/.runq).

    \b
    Examples:
        runq server start
        runq server status
        runq server stop
    """


@server.command("start")
def start() -> None:
    """Run the embedded Redis server in the foreground until Ctrl+C.

    Useful to watch its log; without it, any runq command starts the server in the
    background. Ctrl+C or SIGTERM shut it down cleanly (its append-only file flushed).

    \b
    Example:
        RUNQ_HOME=/srv/runq runq server start
    """
    embedded = EmbeddedServer.default()
    if embedded.ping():
        fail(f"A runq server is already running at {embedded.url}; `runq server stop` stops it.")
    click.echo(f"Starting the runq server at {embedded.url}; press Ctrl+C to stop it.")
    code = run_in_foreground(embedded)
    click.echo(f"The runq server stopped (exit code {code}).")
    raise click.exceptions.Exit(code)


def run_in_foreground(embedded: EmbeddedServer) -> int:
    """Run redis-server here and let it shut down cleanly when we are asked to stop.

    Ctrl+C reaches redis-server directly (same process group), so we must not kill it
    ourselves, which would skip its final flush; SIGTERM sent to runq alone is passed on.
    """

    def pass_on(signum: int, frame: Any) -> None:
        pid = embedded.pid()
        if signum == signal.SIGTERM and pid:
            os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return embedded.run_foreground()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@server.command("stop")
def stop() -> None:
    """Shut the embedded server down cleanly; it is not an error if none is running.

    The next runq command that needs it starts it again, with its data.

    \b
    Example:
        runq server stop
    """
    embedded = EmbeddedServer.default()
    if embedded.stop():
        click.echo(f"Stopped the runq server at {embedded.url}")
    else:
        click.echo(f"No runq server is running at {embedded.url}")


@server.command("status")
@api_option
@output_option
def status(api: str | None, output: str) -> None:
    """Show the server's URL, pid, version, memory and persistence.

    Reports on the embedded server (without starting it), or on the Redis given by
    --api / RUNQ_API_URL. Exits 1 when no embedded server is running.

    \b
    Examples:
        runq server status
        runq server status --api redis://redis.internal:6379/0 -o json
    """
    if not api:
        embedded = EmbeddedServer.default()
        if not embedded.ping():
            fail(f"No runq server is running at {embedded.url}; `runq server start` runs one.")
        api = embedded.url
    broker = connect_broker(api)
    try:
        info = server_info(broker)
    finally:
        broker.close()
    if wants_json(output):
        print_json(info)
        return
    click.echo(describe(info))


def server_info(broker: Broker) -> dict[str, Any]:
    """What ``status`` reports (see ``Broker.server_info``)."""
    return broker.server_info()


def describe(info: dict[str, Any]) -> str:
    """The human form of ``server_info``."""
    if info["aof_enabled"]:
        fsync = f" (fsync {info['appendfsync']})" if info["appendfsync"] else ""
        persistence = f"append-only file on{fsync}"
    else:
        persistence = "append-only file OFF: accepted runs can be lost if Redis restarts"
    if info["save"] is not None:
        persistence += f"; RDB snapshots {'at ' + info['save'] if info['save'] else 'off'}"
    rows = [
        ("pid", info["pid"]),
        ("version", f"Redis {info['version']}"),
        ("uptime", seconds_text(info["uptime_seconds"] or 0)),
        (
            "memory",
            f"{info['used_memory_human']} used (peak {info['used_memory_peak_human']}), "
            f"maxmemory-policy {info['maxmemory_policy']}",
        ),
        ("persistence", persistence),
    ]
    lines = [f"runq server at {info['url']}"]
    lines += [f"    {label:<12} {value}" for label, value in rows]
    return "\n".join(lines)
