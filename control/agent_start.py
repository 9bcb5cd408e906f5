"""``runq agent start``: run an agent in this terminal until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

import click

from runq.broker import Broker, InvalidInput
from runq.broker.checks import checked_name
from runq.broker.connection import mask_url
from runq.broker.settings import RunqSettings
from runq.display.text import quoted

from . import log_format as logs
from .common import Duration, api_option, connect_broker
from .startup import service_broker, wait_for_redis

if TYPE_CHECKING:  # the agent is imported only when one starts
    from runq.agent.agent import Agent
    from runq.agent.health import HealthServer

BANNER = r"""
  ____  _   _ _   _  ___       _    ____ _____ _   _ _____
 |  _ \| | | | \ | |/ _ \     / \  / ___| ____| \ | |_   _|
 | |_) | | | |  \| | | | |   / _ \| |  _|  _| |  \| | | |
 |  _ <| |_| | |\  | |_| |  / ___ \ |_| | |___| |\  | | |
 |_| \_\\___/|_| \_|\__\_\ /_/   \_\____|_____|_| \_| |_|
"""


@click.command("start")
@click.option(
    "-q",
    "--work-queue",
    "work_queues",
    multiple=True,
    metavar="NAME",
    help="A work queue to pull from; repeat it, highest priority first.",
)
@click.option(
    "-m",
    "--match",
    "match",
    multiple=True,
    metavar="PREFIX",
    help="Also pull from every work queue whose name starts with PREFIX, including "
    "queues created later; repeatable.",
)
@api_option
@click.option("--run-once", is_flag=True, help="Claim once, wait for those runs to end, exit.")
@click.option(
    "--prefetch-seconds",
    type=Duration(),
    metavar="DURATION",
    help="Claim runs this long before they are due (they still start on time). "
    "Default: RUNQ_AGENT_PREFETCH_SECONDS, else 10 s.",
)
@click.option("--hide-welcome", is_flag=True, help="Do not print the banner.")
@click.option(
    "-l", "--limit", type=click.IntRange(min=1), help="At most N of this agent's runs at once."
)
@click.option("-n", "--name", help="A name for people (the id stays unique).")
@click.option("--no-scheduler", is_flag=True, help="Do not run the scheduler loop in this agent.")
@click.option(
    "--kill-on-exit", is_flag=True, help="Stop the runs this agent started when it exits."
)
@click.option(
    "--no-warm-engine",
    is_flag=True,
    help="Start every process run in a fresh Python, not forked from the agent's warm engine.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse to start when Redis may evict keys (maxmemory-policy is not noeviction).",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve GET /healthz on this port (200 while the agent loop is alive), and "
    "GET /metrics (Prometheus): no authentication; they expose the agent's health and "
    "counts per work queue (queue names, runs claimed, started and ended), never a "
    "run's parameters or logs.",
)
@click.option(
    "--health-host",
    default="0.0.0.0",
    show_default=True,
    metavar="ADDRESS",
    help="Address the health and metrics endpoint listens on (127.0.0.1: this host only).",
)
@click.option(
    "--no-metrics",
    is_flag=True,
    help="Count nothing for /metrics (default: RUNQ_AGENT_METRICS, on).",
)
@logs.log_format_option
def start(
    work_queues: tuple[str, ...],
    match: tuple[str, ...],
    api: str | None,
    run_once: bool,
    prefetch_seconds: float | None,
    hide_welcome: bool,
    limit: int | None,
    name: str | None,
    no_scheduler: bool,
    kill_on_exit: bool,
    strict: bool,
    health_port: int | None,
    no_metrics: bool,
    log_format: str,
    no_warm_engine: bool = False,
    health_host: str = "0.0.0.0",
) -> None:
    """Start an agent that pulls flow runs from work queues and starts them.

    Queues that do not exist are created. With several queues the agent claims from a
    later one only when the earlier ones have nothing it can take. Started while Redis
    is unreachable, the agent waits for it (a line per attempt, the delay growing to
    5 s), as it rides out a later outage; --run-once fails at once instead. Settings from the
    environment: RUNQ_AGENT_QUERY_INTERVAL (fallback poll, default 5 s),
    RUNQ_HEARTBEAT_SECONDS (5), RUNQ_LEASE_SECONDS (30), RUNQ_CANCEL_GRACE_SECONDS (30),
    RUNQ_SCHEDULER_LOOP_SECONDS (10); `runq config view` shows them all.

    \b
    Examples:
        runq agent start -q 'my-queue'
        runq agent start -q high -q low --limit 4 --name builder-1
        runq agent start -q 'my-queue' --run-once
        runq agent start -q 'my-queue' --no-warm-engine
        runq agent start -m 'k8s-' -m 'gpu-'
        runq agent start -q default --health-port 8080
        runq agent start -q default --health-port 8080 --log-format json
        runq agent start -q default --health-port 8080 --health-host 127.0.0.1
        runq agent start -q default --api redis://redis-0.redis:6379 --cluster
    """
    from runq.agent.agent import Agent, AgentSettings

    logs.configure_logging(log_format)
    check_queue_options(work_queues, match)
    env = RunqSettings.from_env()  # a bad RUNQ_* value is one line, before anything starts
    embedded = not (api or env.api_url or env.api_url_file)
    # a one-shot fails at once on an unreachable Redis; a service waits for it below
    broker = connect_broker(api) if run_once else service_broker(api, "agent")
    logs.say(f"Starting agent connected to {connection_text(broker.url, embedded)}...")
    settings = AgentSettings.from_settings(
        list(dict.fromkeys(work_queues)),
        env,
        name=name,
        limit=limit,
        prefetch_seconds=prefetch_seconds,
        run_once=run_once,
        kill_on_exit=kill_on_exit,
        scheduler=not no_scheduler,
        metrics=False if no_metrics else None,
        warm_engine=False if no_warm_engine else None,  # AgentSettings.warm_engine (H6)
        match=list(dict.fromkeys(match)) or None,  # AgentSettings.match (H7)
    )
    runner = Agent(broker, settings)
    logs.add_log_context(agent_id=runner.id)
    for signum in (signal.SIGTERM, signal.SIGINT):  # from now on: a stop at any point
        signal.signal(signum, lambda *_: runner.request_stop())
    started = threading.Event()  # registered, its loop about to run: /healthz may say ok
    health = (
        None
        if health_port is None
        else serve_health(runner, started, health_host, health_port, broker)
    )
    try:
        if not run_once:  # as through a later outage; warns on eviction
            wait_for_redis(broker, "agent", stop=runner.stopping)
        check_eviction(broker, strict)
        run_agent(runner, broker, settings.work_queues, match, hide_welcome, started)
    finally:
        if health is not None:
            health.stop()
        broker.close()


def serve_health(
    runner: Agent, started: threading.Event, host: str, port: int, broker: Broker
) -> HealthServer:
    """Bind ``/healthz`` and ``/metrics`` before waiting for Redis: a taken port is one
    line at once. Unhealthy (503) until the agent has registered and its loop runs."""
    from runq.agent.health import HealthServer

    metrics = runner.metrics.exposition if runner.metrics.enabled else None
    health = HealthServer(
        port, lambda: started.is_set() and runner.is_healthy(), host=host, metrics=metrics
    )
    try:
        health.start()
    except OSError as error:
        broker.close()
        raise InvalidInput(
            f"Cannot serve /healthz on {host}:{port}: {error.strerror or error}."
        ) from None
    logging.getLogger("runq.agent").info(
        "Health endpoint on %s:%d (/healthz%s).", host, health.port, ", /metrics" if metrics else ""
    )
    return health


def check_eviction(broker: Broker, strict: bool) -> None:
    """With ``--strict``, refuse a Redis that may evict keys."""
    policy = broker.eviction_policy()
    if strict and policy not in (None, "noeviction"):
        raise InvalidInput(
            f"Redis maxmemory-policy is {policy}: it may evict flow runs. Set it to "
            "noeviction, or start the agent without --strict."
        )


def run_agent(
    runner: Agent,
    broker: Broker,
    work_queues: list[str],
    match: tuple[str, ...],
    hide_welcome: bool,
    started: threading.Event,
) -> None:
    """Register the agent and run its loop until it stops."""
    if not hide_welcome and not logs.json_logs():
        click.echo(BANNER)
    created = runner.start()
    logs.say(f"Agent started! Looking for work from {serving_text(work_queues, match)}...")
    log = logging.getLogger("runq.agent")
    warn_paused(broker, work_queues, match, log)
    for queue in created:
        log.info("Created work queue %r.", queue)
    log.info("Agent id %s (%s).", runner.id, runner.name)
    started.set()
    runner.run()


def check_queue_options(work_queues: tuple[str, ...], match: tuple[str, ...]) -> None:
    """At least one queue or prefix; names checked before Redis is waited for, and a
    prefix held to the rules of a queue name, or it could match nothing, ever."""
    if not work_queues and not match:
        raise InvalidInput("Give a work queue (-q NAME) or a prefix (-m PREFIX), or both.")
    for queue in work_queues:
        checked_name(queue)
    for prefix in match:
        checked_name(prefix, "work queue prefix")


def connection_text(url: str, embedded: bool) -> str:
    """What the agent connects to, for its first line: the embedded Redis and its
    socket, or the URL with its password masked."""
    if embedded and url.startswith("unix://"):
        return f"the embedded Redis (socket {url.removeprefix('unix://')})"
    return mask_url(url)


def serving_text(work_queues: list[str], match: tuple[str, ...]) -> str:
    """The queues and prefixes of the start line."""
    parts = []
    if work_queues:
        parts.append(f"queue(s): {', '.join(work_queues)}")
    if match:
        parts.append(f"queues matching: {', '.join(p + '*' for p in dict.fromkeys(match))}")
    return "; ".join(parts)


def warn_paused(
    broker: Broker, work_queues: list[str], match: tuple[str, ...], log: logging.Logger
) -> None:
    """One warning line per paused queue the agent serves: it gets nothing from it."""
    served = {name: broker.read_work_queue(name) for name in work_queues}
    for prefix in dict.fromkeys(match):
        served.update((queue.name, queue) for queue in broker.list_work_queues(prefix))
    for name, queue in served.items():
        if queue.is_paused:
            log.warning(
                "Work queue %r is paused: this agent gets no runs from it until "
                "`runq work-queue resume %s`.",
                name,
                quoted(name),
            )
