"""What metrics cost: a queue-gauges scrape of 10, 100 and 1,000 queues, and the agent's
claim path with its metrics on and off, in one run.

Run: ``.venv/bin/python bench/metrics.py [--url redis://...] [--claims N]``. Without
--url it starts a private redis-server (see bench/throwaway.py). Prints a table, then as
its last line one JSON object:

- scrape_ms_10 / scrape_ms_100 / scrape_ms_1000: median milliseconds of one scrape of
  every queue's gauges (``QueueCollector`` rendered to Prometheus' text format)
- scrape_commands_1000: commands one scrape of 1,000 queues sends (one EVALSHA a queue,
  pipelined, plus SMEMBERS, SCRIPT EXISTS, and the live agents: ZRANGEBYSCORE and MGET of
  their records); scrape_round_trips_1000: the
  network round trips they take; scrape_server_calls_1000: the commands Redis executes,
  those inside the scripts included (INFO commandstats)
- claims_per_s_metrics_on / claims_per_s_metrics_off: runs per second through the
  agent's claim path (``Agent.claim_pass``: claim, then the submission, on one thread,
  to an infrastructure that starts nothing, and recording where it runs), limit 1 so
  each pass claims one run; rounds
  of the two alternate so both see the same machine; median of the rounds
- metrics_cost_pct: how much slower the claim path is with metrics on (target: < 5), the
  median over adjacent on/off rounds of 1 - on/off
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.throwaway import redis_url  # noqa: E402
from runq.agent.agent import Agent  # noqa: E402
from runq.agent.settings import AgentSettings  # noqa: E402
from runq.broker import Broker, Deployment, FlowRun  # noqa: E402
from runq.display.queue_metrics import QueueCollector  # noqa: E402

SCRAPES = 5


class _Started:
    """A handle of a run that was "started" nowhere (the benchmark times the agent)."""

    def __init__(self, run: FlowRun) -> None:
        self.infrastructure_id = f"bench:{run.id}"

    def poll(self) -> int | None:
        return None

    def stop(self, grace_seconds: float) -> int:
        return 0


class _Nowhere:
    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> _Started:
        return _Started(run)


def _nowhere(deployment: Deployment | None, broker: Broker) -> _Nowhere:
    return _Nowhere()


class _Inline:
    """Submits on the caller's thread (the agent's pool would do it on a worker): one
    thread, so a round times claim and submission together."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def put(self, flight: Any) -> None:
        self._agent.submit(flight)


def server_calls(client: redis.Redis, action: Callable[[], Any]) -> int:
    """Commands Redis executes for ``action``, those the scripts call included, from INFO
    commandstats (less the INFO calls)."""

    def total() -> int:
        stats = client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

    before = total()
    action()
    return total() - before


def client_traffic(action: Callable[[], Any]) -> tuple[int, int]:
    """(commands sent, network round trips) of ``action``: a pipeline is one round trip."""
    sends, commands = [0], [0]
    connection = redis.connection.AbstractConnection
    send, send_one, pack_many = (
        connection.send_packed_command,
        connection.send_command,
        connection.pack_commands,
    )

    def counted_send(self: Any, command: Any, check_health: bool = True) -> None:
        sends[0] += 1
        send(self, command, check_health)

    def counted_one(self: Any, *args: Any, **kwargs: Any) -> None:
        commands[0] += 1
        send_one(self, *args, **kwargs)

    def counted_many(self: Any, batch: Any) -> Any:
        commands[0] += len(batch)
        return pack_many(self, batch)

    connection.send_packed_command = counted_send
    connection.send_command = counted_one
    connection.pack_commands = counted_many
    try:
        action()
    finally:
        connection.send_packed_command = send
        connection.send_command = send_one
        connection.pack_commands = pack_many
    return commands[0], sends[0]


def make_queues(broker: Broker, count: int) -> None:
    """``count`` queues, each with a due run, a future run, a claimed run and an agent."""
    broker.client.flushall()
    broker.register_agent("bench-agent", name="bench", work_queues=["q0"])
    for i in range(count):
        name = f"q{i}"
        broker.create_work_queue(name, concurrency_limit=5)
        broker.enqueue_flow_runs(name, [{}, {}, {"start_in_seconds": 3600}])
        broker.claim(name, "bench-agent")


def scrape_figures(broker: Broker, count: int) -> dict[str, float]:
    make_queues(broker, count)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(broker))
    generate_latest(registry)  # scripts loaded, connections open
    times = []
    for _ in range(SCRAPES):
        started = time.perf_counter()
        body = generate_latest(registry)
        times.append((time.perf_counter() - started) * 1000)
    assert f'queue="q{count - 1}"'.encode() in body
    commands, trips = client_traffic(lambda: generate_latest(registry))
    return {
        "ms": statistics.median(times),
        "commands": commands,
        "round_trips": trips,
        "server_calls": server_calls(broker.client, lambda: generate_latest(registry)),
        "bytes": len(body),
    }


def claim_round(agent: Agent, claims: int) -> float:
    """Runs per second through ``claim_pass``, one run a pass, ``claims`` times."""
    started = time.perf_counter()
    done = 0
    while done < claims:
        got = agent.claim_pass()
        assert got == 1, "the queue ran dry"
        agent.in_flight.clear()  # as if settled: room for the next claim
        done += got
    return claims / (time.perf_counter() - started)


def claim_figures(broker: Broker, claims: int, rounds: int) -> dict[str, float]:
    broker.client.flushall()
    agents = {}
    for mode in ("on", "off"):
        settings = AgentSettings(
            work_queues=[f"claims-{mode}"],
            limit=1,
            prefetch_seconds=0,
            scheduler=False,
            metrics=mode == "on",
        )
        agents[mode] = Agent(broker, settings, infrastructure_for=_nowhere)
        if hasattr(agents[mode], "submissions"):
            agents[mode].submissions = _Inline(agents[mode])  # type: ignore[assignment]
        broker.ensure_work_queue(f"claims-{mode}")
        broker.enqueue_flow_runs(f"claims-{mode}", ({} for _ in range(claims * (rounds + 1))))
        claim_round(agents[mode], claims // 10 or 1)  # warm-up
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(rounds):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            rates[mode].append(claim_round(agents[mode], claims))
    metrics = getattr(agents["on"], "metrics", None)
    hooked = metrics is not None and b"runq_agent_runs_claimed_total" in metrics.exposition()
    # Each round of one mode is next to a round of the other: the median of the pairs'
    # ratios cancels the drift of a shared machine better than the ratio of medians.
    ratio = statistics.median(on / off for on, off in zip(rates["on"], rates["off"]))
    return {
        "on": statistics.median(rates["on"]),
        "off": statistics.median(rates["off"]),
        "cost": (1 - ratio) * 100,
        "hooked": float(hooked),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--claims", type=int, default=1000, help="claims per round")
    parser.add_argument("--rounds", type=int, default=12, help="rounds per mode")
    args = parser.parse_args()

    with redis_url(args.url) as url:
        broker = Broker.from_url(url)
        version = broker.client.info("server")["redis_version"]
        scrapes = {count: scrape_figures(broker, count) for count in (10, 100, 1000)}
        claims = claim_figures(broker, args.claims, args.rounds)
        broker.close()

    table = Table(title=f"runq metrics benchmark (Redis {version})")
    for column in ("measure", "value", "note"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for count, figures in scrapes.items():
        table.add_row(
            f"scrape of {count:,} queues",
            f"{figures['ms']:.2f} ms",
            f"{figures['commands']} commands in {figures['round_trips']} round trips "
            f"({figures['server_calls']} calls in Redis), {figures['bytes']:,} B",
        )
    cost = claims["cost"]
    table.add_row(
        "claim path, metrics off",
        f"{claims['off']:,.0f} runs/s",
        f"{args.rounds} rounds of {args.claims}",
    )
    table.add_row(
        "claim path, metrics on",
        f"{claims['on']:,.0f} runs/s",
        "hooks counted" if claims["hooked"] else "no hooks in the agent yet",
    )
    table.add_row("metrics cost on the claim path", f"{cost:.1f} %", "target < 5 %")
    Console().print(table)
    print(
        json.dumps(
            {
                "scrape_ms_10": round(scrapes[10]["ms"], 2),
                "scrape_ms_100": round(scrapes[100]["ms"], 2),
                "scrape_ms_1000": round(scrapes[1000]["ms"], 2),
                "scrape_commands_1000": scrapes[1000]["commands"],
                "scrape_round_trips_1000": scrapes[1000]["round_trips"],
                "scrape_server_calls_1000": scrapes[1000]["server_calls"],
                "claims_per_s_metrics_on": round(claims["on"]),
                "claims_per_s_metrics_off": round(claims["off"]),
                "metrics_cost_pct": round(cost, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
