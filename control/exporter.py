"""Serving metrics over HTTP: ``runq exporter`` (the queue and concurrency limit gauges, for
deployments without the UI) and the scheduler's own metrics when it runs on its own.

The exporter keeps no state: each scrape reads every queue's gauges from Redis
(:class:`runq.display.queue_metrics.QueueCollector`), so any number of exporters agree and
one can be restarted at any time. It is what KEDA's Prometheus trigger reads, through
Prometheus, to scale agents on a queue's due-now backlog (``deploy/kubernetes/keda/``).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import click
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from runq.broker.connection import mask_url
from runq.display.queue_metrics import QueueCollector

from .connection import api_option
from .errors import fail
from .log_format import configure_logging, log_format_option
from .startup import service_broker, wait_for_redis

log = logging.getLogger("runq.exporter")
DEFAULT_PORT = 9464  # the port OpenTelemetry's Prometheus exporter uses by convention


def serve_metrics(registry: CollectorRegistry, port: int, host: str) -> Any:
    """Serve ``registry`` at ``/metrics`` (any path, as prometheus_client does) in a daemon
    thread; returns the server (``.shutdown()`` stops it). A taken port is one line, exit 1."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        fail(f"Cannot serve metrics on {host}:{port}: {error.strerror or error}.")
    return server


def stop_on_signals() -> threading.Event:
    """An event SIGTERM or SIGINT sets (Kubernetes stops pods with SIGTERM)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@click.command("exporter")
@api_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Serve GET /metrics on this port.",
)
@click.option(
    "--host",
    default="0.0.0.0",
    show_default=True,
    metavar="ADDRESS",
    help="Address to listen on (127.0.0.1: this host only). /metrics has no "
    "authentication: it shows every work queue's and concurrency limit's name and counts.",
)
@log_format_option
def exporter(api: str | None, port: int, host: str, log_format: str) -> None:
    """Serve every work queue's gauges at /metrics for Prometheus, read from Redis at
    each scrape: scheduled, due now (the backlog), late, active, concurrency limit,
    paused, live agents and the age of the oldest due run, each labelled by queue; and
    every named concurrency limit's slots, slots held, waiting runs and rate used and
    allowed, labelled by limit. Names and counts only: never a run's parameters or logs.

    A scrape of 1,000 queues costs a handful of round trips (pipelined on one server,
    grouped per node on a cluster). While Redis is unreachable (at start too: the
    exporter then logs each attempt, as through a later outage) a scrape still answers,
    with runq_queues_up 0. `runq ui` serves the same gauges at its own /metrics.

    \b
    Examples:
        runq exporter
        runq exporter --port 9464 --api redis://redis.runq.svc:6379/0
        runq exporter --host 127.0.0.1 --log-format json
    """
    configure_logging(log_format)
    broker = service_broker(api, "exporter")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(broker))
    server = serve_metrics(registry, port, host)  # before the wait: scrapes answer up 0
    log.info(
        "Exporter serving queue metrics of %s on %s:%d/metrics.",
        mask_url(broker.url),
        host,
        server.server_port,
    )
    stop = stop_on_signals()
    try:
        wait_for_redis(broker, "exporter", stop=stop)
        while not stop.wait(3600):
            pass
    finally:
        server.shutdown()
        broker.close()
        log.info("Exporter stopped.")


class SchedulerMetrics:
    """What a scheduler running on its own serves: pass duration and runs materialized."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.passes = Counter(
            "runq_scheduler_passes",
            "Scheduler passes by outcome: done (this scheduler held "
            "the lease), standby (another one did), failed.",
            ["outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "runq_scheduler_pass_duration_seconds",
            "Seconds a pass that held the lease took.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.materialized = Counter(
            "runq_scheduler_runs_materialized",
            "Flow runs the scheduler created from schedules.",
            registry=registry,
        )
        self.last_pass = Gauge(
            "runq_scheduler_last_pass_timestamp_seconds",
            "Unix time of the last pass that held the lease.",
            registry=registry,
        )

    def instrument(self, scheduler: Any) -> None:
        """Time every pass of ``scheduler`` (a broker Scheduler) from now on."""
        original = scheduler.run_pass_if_leader

        def timed(holder: str, lease_seconds: float) -> Any:
            started = time.perf_counter()
            try:
                result = original(holder, lease_seconds=lease_seconds)
            except Exception:
                self.passes.labels("failed").inc()
                raise
            if result is None:
                self.passes.labels("standby").inc()
                return None
            self.passes.labels("done").inc()
            self.duration.observe(time.perf_counter() - started)
            self.materialized.inc(result.created)
            self.last_pass.set_to_current_time()
            return result

        setattr(scheduler, "run_pass_if_leader", timed)
