"""``runq scheduler start``: the scheduler service, one loop of passes.

Each agent runs the same loop unless started with ``--no-scheduler``; any number of
them may run at once (see broker/scheduling.py).
"""

from __future__ import annotations

import logging
import signal
import threading

import click

from runq.broker.connection import mask_url
from runq.broker.settings import RunqSettings

from .common import Duration, api_option
from .log_format import configure_logging, log_format_option
from .startup import service_broker, wait_for_redis

log = logging.getLogger("runq.scheduler")


@click.group("scheduler")
def scheduler() -> None:
    """The scheduler, which turns deployment schedules into flow runs.

    \b
    Example:
        runq scheduler start --loop-seconds 10
    """


@scheduler.command("start")
@api_option
@click.option(
    "--loop-seconds",
    type=Duration(minimum=0.1),
    metavar="DURATION",
    help="Time between passes (seconds or e.g. 30s, 1m). "
    "Default: RUNQ_SCHEDULER_LOOP_SECONDS, else 10 s.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Serve GET /metrics on this port: pass counts and durations, runs materialized "
    "(no authentication; no queue, deployment or run names).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    metavar="ADDRESS",
    help="Address --metrics-port listens on (127.0.0.1: this host only).",
)
@log_format_option
def start(
    api: str | None,
    loop_seconds: float | None,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
) -> None:
    """Run the scheduler in this terminal until Ctrl-C or SIGTERM.

    Every pass materializes, for each active schedule, the runs due within the horizon
    (at least 3 runs and 1 hour ahead, at most 100 runs and 100 days). Several
    schedulers may run at once: a short lease picks who does each pass, and no run is
    ever doubled whatever happens to the lease.

    Redis unreachable, at start or later (a restart, a failover), the scheduler waits
    it out: it retries with a growing delay (up to 5 s), a log line per attempt naming
    the URL, and logs when Redis is back. A wrong password is one line, exit 1.

    \b
    Examples:
        runq scheduler start
        runq scheduler start --loop-seconds 5 --api redis://redis:6379/0
        runq scheduler start --metrics-port 9465 --log-format json
        runq scheduler start --metrics-port 9465 --metrics-host 127.0.0.1
    """
    import os
    import socket

    configure_logging(log_format)
    if loop_seconds is None:
        loop_seconds = RunqSettings.from_env().scheduler_loop_seconds
    broker = service_broker(api, "scheduler")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    holder = f"scheduler-{socket.gethostname()}-{os.getpid()}"
    service, server = broker.scheduler(), None
    if metrics_port is not None:  # bound before the wait: a taken port is one line at once
        from prometheus_client import CollectorRegistry

        from .exporter import SchedulerMetrics, serve_metrics

        registry = CollectorRegistry(auto_describe=True)
        SchedulerMetrics(registry).instrument(service)
        server = serve_metrics(registry, metrics_port, metrics_host)
        log.info("Scheduler metrics on %s:%d (/metrics).", metrics_host, server.server_port)
    try:
        wait_for_redis(broker, "scheduler", stop=stop)
        log.info(
            "Scheduler started (%s) on %s, a pass every %.1f s.",
            holder,
            mask_url(broker.url),
            loop_seconds,
        )
        service.run_forever(holder, loop_seconds, stop)
    finally:
        if server is not None:
            server.shutdown()
        broker.close()
        log.info("Scheduler stopped.")
