"""``runq agent start``: run an agent in this terminal until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

import click

from runq.broker import InvalidInput
from runq.broker.settings import RunqSettings

from .common import Duration, api_option, connect_broker

BANNER = r"""
  ____  _   _ _   _  ___       _    ____ _____ _   _ _____
 |  _ \| | | | \ | |/ _ \     / \  / ___| ____| \ | |_   _|
 | |_) | | | |  \| | | | |   / _ \| |  _|  _| |  \| | | |
 |  _ <| |_| | |\  | |_| |  / ___ \ |_| | |___| |\  | | |
 |_| \_\\___/|_| \_|\__\_\ /_/   \_\____|_____|_| \_| |_|
"""


def configure_logging() -> None:
    """One line per event, with time and level, as Prefect's agent prints them."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"
        )
    )
    root = logging.getLogger("runq")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


@click.command("start")
@click.option(
    "-q", "--work-queue", "work_queues", multiple=True, required=True, metavar="NAME",
    help="A work queue to pull from; repeat it, highest priority first.",
)
@api_option
@click.option("--run-once", is_flag=True, help="Claim once, wait for those runs to end, exit.")
@click.option(
    "--prefetch-seconds", type=Duration(), metavar="DURATION",
    help="Claim runs this long before they are due (they still start on time). "
    "Default: RUNQ_AGENT_PREFETCH_SECONDS, else 10 s.",
)
@click.option("--hide-welcome", is_flag=True, help="Do not print the banner.")
@click.option("-l", "--limit", type=click.IntRange(min=1), help="At most N of this agent's runs at once.")
@click.option("-n", "--name", help="A name for people (the id stays unique).")
@click.option("--no-scheduler", is_flag=True, help="Do not run the scheduler loop in this agent.")
@click.option("--kill-on-exit", is_flag=True, help="Stop the runs this agent started when it exits.")
@click.option(
    "--strict", is_flag=True,
    help="Refuse to start when Redis may evict keys (maxmemory-policy is not noeviction).",
)
@click.option(
    "--health-port", type=click.IntRange(0, 65535), metavar="PORT",
    help="Serve GET /healthz on this port (200 while the agent loop is alive).",
)
def start(
    work_queues: tuple[str, ...], api: str | None, run_once: bool, prefetch_seconds: float | None,
    hide_welcome: bool, limit: int | None, name: str | None, no_scheduler: bool,
    kill_on_exit: bool, strict: bool, health_port: int | None,
) -> None:
    """Start an agent that pulls flow runs from work queues and starts them.

    Queues that do not exist are created. With several queues the agent claims from a
    later one only when the earlier ones have nothing it can take. Settings from the
    environment: RUNQ_AGENT_QUERY_INTERVAL (fallback poll, default 5 s),
    RUNQ_HEARTBEAT_SECONDS (5), RUNQ_LEASE_SECONDS (30), RUNQ_CANCEL_GRACE_SECONDS (30),
    RUNQ_SCHEDULER_LOOP_SECONDS (10); `runq config view` shows them all.

    \b
    Examples:
        runq agent start -q 'my-queue'
        runq agent start -q high -q low --limit 4 --name builder-1
        runq agent start -q 'my-queue' --run-once
        runq agent start -q default --health-port 8080
        runq agent start -q default --api redis://redis-0.redis:6379 --cluster
    """
    from runq.agent.agent import Agent, AgentSettings

    configure_logging()
    env = RunqSettings.from_env()  # a bad RUNQ_* value is one line, before anything starts
    if not (api or env.api_url or env.api_url_file):
        click.echo("Starting agent with ephemeral API...")
    broker = connect_broker(api)  # warns loudly when Redis may evict keys
    policy = broker.eviction_policy()
    if strict and policy not in (None, "noeviction"):
        broker.close()
        raise InvalidInput(
            f"Redis maxmemory-policy is {policy}: it may evict flow runs. Set it to "
            "noeviction, or start the agent without --strict."
        )
    settings = AgentSettings.from_settings(
        list(dict.fromkeys(work_queues)),
        env,
        name=name,
        limit=limit,
        prefetch_seconds=prefetch_seconds,
        run_once=run_once,
        kill_on_exit=kill_on_exit,
        scheduler=not no_scheduler,
    )
    runner = Agent(broker, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.request_stop())
    if not hide_welcome:
        click.echo(BANNER)
    created = runner.start()
    click.echo(f"Agent started! Looking for work from queue(s): {', '.join(settings.work_queues)}...")
    log = logging.getLogger("runq.agent")
    for queue in created:
        log.info("Created work queue %r.", queue)
    log.info("Agent id %s (%s).", runner.id, runner.name)
    health = None
    if health_port is not None:
        from runq.agent.health import HealthServer

        health = HealthServer(health_port, runner.is_healthy)
        health.start()
        log.info("Health endpoint on port %d (/healthz).", health.port)
    try:
        runner.run()
    finally:
        if health is not None:
            health.stop()
        broker.close()
