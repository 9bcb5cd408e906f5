"""The queue gauges as Prometheus metrics, read from Redis when scraped.

:class:`QueueCollector` is a prometheus_client custom collector: nothing is cached or
polled in the background, each scrape reads every queue's figures afresh in a bounded
number of round trips (``broker/queue_gauges.py``), so two exporters or a UI beside an
exporter always agree with ``runq work-queue inspect``. ``runq exporter`` and ``runq
ui``'s ``/metrics`` register it on their own registry; it yields the named concurrency
limits' gauges too (``limit_metrics.py``), so both serve them with the queues'.

A scrape while Redis is away is not an HTTP error: it answers ``runq_queues_up 0`` (and
no queue series), which an alert can watch, and logs one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runq.broker import Broker, RunqError
from runq.broker.queue_gauges import QueueGauges, read_queue_gauges

from .limit_metrics import LimitCollector

log = logging.getLogger("runq.metrics")

#: name -> (help, the QueueGauges field it shows); every series has the label ``queue``.
QUEUE_GAUGES: dict[str, tuple[str, str]] = {
    "runq_queue_scheduled_runs": (
        "Runs SCHEDULED in the queue's schedule, due or not (runs waiting for a concurrency "
        "limit are not: runq_concurrency_limit_waiting).",
        "scheduled",
    ),
    "runq_queue_due_runs": (
        "SCHEDULED runs whose due time has come: the claimable backlog (what KEDA scales on).",
        "due_now",
    ),
    "runq_queue_late_runs": ("SCHEDULED runs past their due time by the late threshold.", "late"),
    "runq_queue_active_runs": ("Runs PENDING, RUNNING or CANCELLING: the slots taken.", "active"),
    "runq_queue_concurrency_limit": (
        "The queue's concurrency limit (no series for a queue without one).",
        "concurrency_limit",
    ),
    "runq_queue_paused": ("1 while the queue is paused, else 0.", "is_paused"),
    "runq_queue_agents": (
        "Live agents serving the queue: polled it within the agents window, or at their own "
        "limit with it among their queues.",
        "agents",
    ),
    "runq_queue_agents_at_limit": (
        "Of the queue's agents, those at their own --limit (claiming nothing until a run ends).",
        "agents_at_limit",
    ),
    "runq_queue_healthy": (
        "1 when the queue is healthy as `work-queue ls` and the UI (Ready) judge it: served "
        "by a live agent that polled it within 60 s or is at its own limit, no late run.",
        "is_healthy",
    ),
    "runq_queue_oldest_due_age_seconds": (
        "How long the oldest due run has waited (0 when none is due).",
        "oldest_due_age_seconds",
    ),
}
UP = "runq_queues_up"
SCRAPE_SECONDS = "runq_queues_scrape_duration_seconds"
QUEUES = "runq_queues"


class QueueCollector(Collector):
    """Every queue's gauges, and every named limit's, read from ``broker`` at each scrape."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.limits = LimitCollector(broker)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The families without samples: registering reads nothing from Redis."""
        return [*self._families([], up=True, seconds=0.0), *self.limits.describe()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        try:
            gauges = read_queue_gauges(self.broker)
        except RunqError as error:
            log.warning("Could not read the queue gauges: %s", error)
            yield from self._families([], up=False, seconds=time.perf_counter() - started)
            yield from self.limits.describe()  # no second wait for a Redis that is away
            return
        limits = list(self.limits.collect())
        yield from self._families(gauges, up=True, seconds=time.perf_counter() - started)
        yield from limits

    @staticmethod
    def _families(
        gauges: list[QueueGauges], *, up: bool, seconds: float
    ) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, field) in QUEUE_GAUGES.items():
            family = GaugeMetricFamily(name, help_text, labels=["queue"])
            for queue in gauges:
                value = getattr(queue, field)
                if value is not None:
                    family.add_metric([queue.name], float(value))
            yield family
        yield GaugeMetricFamily(
            UP, "1 when the last scrape read Redis, else 0.", value=1.0 if up else 0.0
        )
        yield GaugeMetricFamily(
            QUEUES, "Work queues read by the last scrape.", value=float(len(gauges))
        )
        yield GaugeMetricFamily(
            SCRAPE_SECONDS, "Seconds the last scrape spent reading Redis.", value=seconds
        )
