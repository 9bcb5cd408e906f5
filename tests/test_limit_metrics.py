"""Named concurrency limits seen from outside: what a real `runq exporter` process serves
for a full limit, a per-value limit and a rate (parsed with prometheus_client's text
parser), the same families at a real `runq ui`'s /metrics, what a scrape of many limits
costs, and the Grafana dashboard's limit panels. Runs hold and wait exactly as an agent makes
them (claim, then take_limit_slots: tests/test_concurrency_limits.py)."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from runq.broker import Broker, BrokerSettings
from runq.broker.limit_gauges import read_limit_gauges
from runq.broker.timeutil import datetime_to_ms
from runq.display.limit_metrics import LIMIT_GAUGES, LimitCollector
from tests.test_concurrency_limits import deployment, finish, take
from tests.test_metrics import (
    DASHBOARD,
    Samples,
    dashboard_expressions,
    exported_names,
    exporter,  # noqa: F401 (a fixture)
    get,
    parse,
    value,
)
from tests.ui_helpers import UIServers, ui_servers  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster

SLOTS, ACTIVE, WAITING = (
    "runq_concurrency_limit_slots",
    "runq_concurrency_limit_active",
    "runq_concurrency_limit_waiting",
)
RATE_USED, RATE_MAX = "runq_concurrency_limit_rate_used", "runq_concurrency_limit_rate_max"


def scrape(port: int) -> Samples:
    status, text = get(port)
    assert status == 200
    samples = parse(text)
    assert value(samples, "runq_queues_up") == 1
    return samples


def test_the_exporter_shows_a_full_limit_a_limit_per_value_and_a_rate(
    broker: Broker, exporter: tuple[int, subprocess.Popen]
) -> None:
    broker.create_concurrency_limit("warehouse", 1)
    deployment(broker, "load", "nightly", ["warehouse"])
    for _ in range(2):
        broker.create_flow_run(deployment="load")
    held, waiting = take(broker, "nightly")
    assert len(held) == 1 and len(waiting) == 1, "one run holds the slot, one waits"

    broker.create_concurrency_limit("customer:*", 1)
    deployment(broker, "bill", "billing", [])
    for customer in ("acme", "acme", "globex"):
        broker.create_flow_run(deployment="bill", tags=[f"customer:{customer}"])
    held, waiting = take(broker, "billing")
    assert len(held) == 2 and len(waiting) == 1

    broker.create_concurrency_limit("partner-api", rate="3/1h")  # a rate only
    deployment(broker, "call", "calls", ["partner-api"])
    broker.create_flow_run(deployment="call")
    (called,), _ = take(broker, "calls")

    port, _ = exporter
    samples = scrape(port)
    assert value(samples, SLOTS, limit="warehouse") == 1
    assert value(samples, ACTIVE, limit="warehouse") == 1
    assert value(samples, WAITING, limit="warehouse") == 1
    assert value(samples, RATE_USED, limit="warehouse") is None, "no rate: no rate series"
    assert value(samples, RATE_MAX, limit="warehouse") is None
    # KEY:*: the limit applies to each customer; held and waiting are summed over them
    assert value(samples, SLOTS, limit="customer:*") == 1
    assert value(samples, ACTIVE, limit="customer:*") == 2
    assert value(samples, WAITING, limit="customer:*") == 1
    # a rate only: no slots series, one start of three in the window
    assert value(samples, SLOTS, limit="partner-api") is None
    assert value(samples, ACTIVE, limit="partner-api") == 1
    assert value(samples, WAITING, limit="partner-api") == 0
    assert value(samples, RATE_USED, limit="partner-api") == 1
    assert value(samples, RATE_MAX, limit="partner-api") == 3
    for limit in broker.list_concurrency_limits():  # what `concurrency-limit ls` counts
        assert value(samples, ACTIVE, limit=limit.name) == limit.active, limit.name
        assert value(samples, WAITING, limit=limit.name) == limit.waiting, limit.name
    # The waiting runs are parked outside their queues' due runs: the due-now gauge KEDA
    # scales on leaves them out, and they hold no queue slot.
    for queue in ("nightly", "billing"):
        assert value(samples, "runq_queue_due_runs", queue=queue) == 0, queue
    assert value(samples, "runq_queue_active_runs", queue="nightly") == 1

    finish(broker, called)  # its slot comes back; its start stays in the window
    starts = broker.keys.limit("partner-api").starts("")
    an_hour_and_more_ago = datetime_to_ms(broker.server_time() - timedelta(minutes=61))
    broker.client.zadd(starts, {"older:start": an_hour_and_more_ago})  # not yet trimmed
    samples = scrape(port)
    assert value(samples, ACTIVE, limit="partner-api") == 0
    assert value(samples, RATE_USED, limit="partner-api") == 1, "only starts in the window"
    broker.delete_concurrency_limit("warehouse")
    samples = scrape(port)
    assert value(samples, SLOTS, limit="warehouse") is None
    assert value(samples, ACTIVE, limit="warehouse") is None


def test_runq_ui_serves_the_limit_gauges_at_its_metrics(
    broker: Broker, ui_servers: UIServers
) -> None:
    broker.create_concurrency_limit("gpu", 2, rate="5/1m")
    deployment(broker, "train", "q", ["gpu"])
    broker.create_flow_run(deployment="train")
    take(broker, "q")
    reply = httpx.get(ui_servers.start().url + "/metrics", timeout=60)
    assert reply.status_code == 200
    samples = parse(reply.text)
    assert value(samples, SLOTS, limit="gpu") == 2
    assert value(samples, ACTIVE, limit="gpu") == 1
    assert value(samples, WAITING, limit="gpu") == 0
    assert value(samples, RATE_USED, limit="gpu") == 1
    assert value(samples, RATE_MAX, limit="gpu") == 5
    assert value(samples, "runq_queue_active_runs", queue="q") == 1


def test_a_scrape_of_many_limits_costs_a_fixed_number_of_round_trips(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(40):
        broker.create_concurrency_limit(f"plain-{i:02}", 3)
        broker.create_concurrency_limit(f"rated-{i:02}", rate="10/1m")
    broker.create_concurrency_limit("tenant:*", 1)
    deployment(broker, "d", "q", [])
    for i in range(30):
        broker.create_flow_run(deployment="d", tags=[f"tenant:t{i:02}"])  # 30 values
    for _ in range(5):
        broker.create_flow_run(deployment="d", tags=["plain-00", "rated-00"])
    take(broker, "q")
    sends: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sends.append(1)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    gauges = {limit.name: limit for limit in read_limit_gauges(broker)}
    assert len(gauges) == 81
    assert (gauges["tenant:*"].active, gauges["plain-00"].active) == (30, 3)
    assert gauges["plain-00"].waiting == 2 and gauges["rated-00"].rate_used == 3
    nodes = 3 if broker.cluster else 1
    # SMEMBERS of the names, per node the settings' pipeline, TIME, per node the counts'
    assert len(sends) <= 2 + 2 * nodes, len(sends)


def test_a_scrape_while_redis_is_away_yields_the_families_without_samples() -> None:
    broker = Broker(
        redis.Redis(port=1, socket_connect_timeout=0.2),
        url="redis://127.0.0.1:1",
        settings=BrokerSettings(),
    )
    registry = CollectorRegistry(auto_describe=True)
    registry.register(LimitCollector(broker))  # registering reads nothing
    text = generate_latest(registry).decode()
    assert not parse(text)
    for name in LIMIT_GAUGES:
        assert f"# TYPE {name} gauge" in text


def test_the_dashboard_shows_the_limits() -> None:
    with DASHBOARD.open() as file:
        document = json.load(file)
    titles = [panel["title"] for panel in document["panels"]]
    assert "Concurrency limits" in titles, "a row for the limits"
    text = " ".join(dashboard_expressions())
    for name in (SLOTS, ACTIVE, WAITING, RATE_USED, RATE_MAX):
        assert name in text, name
    assert set(LIMIT_GAUGES) <= exported_names()
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
