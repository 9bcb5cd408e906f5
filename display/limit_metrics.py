"""The gauges of named concurrency limits as Prometheus metrics, read when scraped.

:class:`LimitCollector` is a prometheus_client custom collector, like the queue gauges'
(``queue_metrics.py``, which yields these families too, so ``runq exporter`` and ``runq
ui``'s ``/metrics`` serve both): each scrape reads every limit afresh in a fixed number
of round trips (``broker/limit_gauges.py``), so any exporter agrees with ``runq
concurrency-limit ls``. Every series has the label ``limit``, the limit's name
(``deployment:ID`` for a deployment's own limit).

A limit with only a rate has no ``runq_concurrency_limit_slots`` series (rather than a
NaN, which alerts and sums handle badly), as a queue without a limit has no
``runq_queue_concurrency_limit``; the rate's two series exist for rate-limited limits
only. A scrape that cannot read the limits yields these families without samples and
logs one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runq.broker import Broker, RunqError
from runq.broker.limit_gauges import LimitGauges, read_limit_gauges

log = logging.getLogger("runq.metrics")

#: name -> (help, the LimitGauges field it shows); every series has the label ``limit``.
LIMIT_GAUGES: dict[str, tuple[str, str]] = {
    "runq_concurrency_limit_slots": (
        "The limit's slots: runs it lets be in flight at once, for each value of a KEY:* "
        "limit (no series for a limit with only a rate).",
        "limit",
    ),
    "runq_concurrency_limit_active": (
        "Slots held now by runs in flight (summed over the values of a KEY:* limit).",
        "active",
    ),
    "runq_concurrency_limit_waiting": (
        "Runs waiting for a slot now, parked outside their queue's due runs (summed over the "
        "values of a KEY:* limit).",
        "waiting",
    ),
    "runq_concurrency_limit_rate_used": (
        "Starts within the rate's rolling window now, by Redis' clock (summed over the "
        "values of a KEY:* limit that have holders or waiting runs; rate-limited limits only).",
        "rate_used",
    ),
    "runq_concurrency_limit_rate_max": (
        "Starts the rate allows in its rolling window, for each value of a KEY:* limit "
        "(rate-limited limits only).",
        "rate_max",
    ),
}


class LimitCollector(Collector):
    """Every named concurrency limit's gauges, read from ``broker`` at each scrape."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The families without samples: registering reads nothing from Redis."""
        return list(families([]))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            gauges = read_limit_gauges(self.broker)
        except RunqError as error:
            log.warning("Could not read the concurrency limit gauges: %s", error)
            gauges = []
        yield from families(gauges)


def families(gauges: list[LimitGauges]) -> Iterator[GaugeMetricFamily]:
    """One family per metric of :data:`LIMIT_GAUGES`, a sample per limit that has one."""
    for name, (help_text, field) in LIMIT_GAUGES.items():
        family = GaugeMetricFamily(name, help_text, labels=["limit"])
        for limit in gauges:
            value = getattr(limit, field)
            if value is not None:
                family.add_metric([limit.name], float(value))
        yield family
