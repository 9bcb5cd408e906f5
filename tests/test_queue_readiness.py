"""One judgement of a queue's health, shown alike by `work-queue ls` / `inspect`, the UI
(its pages, "why is this run not running"), the JSON API and the metrics; an agent at its
own --limit is a busy agent, not a missing one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from runq.broker import Agent, Broker
from runq.broker.queue_gauges import read_queue_gauges
from runq.broker.readiness import judge
from runq.ui import views
from runq.ui.waiting import reasons
from tests.cli_helpers import Invoke

ON_CLUSTER = True  # the registry and the queues live in different slots there

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def agent(agent_id: str, *queues: str, at_limit: int | None = None) -> Agent:
    return Agent(
        id=agent_id,
        name=agent_id,
        work_queues=list(queues),
        started=NOW,
        last_heartbeat=NOW,
        at_limit=at_limit,
    )


def judged(
    polls: dict[str, float],
    live: list[Agent],
    *,
    late: int = 0,
    paused: bool = False,
    last: float | None = None,
) -> Any:
    when = {agent_id: NOW - timedelta(seconds=ago) for agent_id, ago in polls.items()}
    last_polled = (
        NOW - timedelta(seconds=last) if last is not None else max(when.values(), default=None)
    )
    return judge(
        name="q",
        is_paused=paused,
        late_runs=late,
        polls=when,
        last_polled=last_polled,
        live_agents=live,
        now=NOW,
    )


def test_the_judgement_itself() -> None:
    # a live agent with room that polled within 60 s: healthy
    health = judged({"a": 5}, [agent("a", "q")])
    assert (health.status, health.label, health.agents, health.problems) == (
        "healthy",
        "Ready",
        1,
        [],
    )
    # never polled; polled by an agent since gone
    assert judged({}, []).problem_texts() == ["never polled by an agent"]
    gone = judged({"a": 5}, [])
    assert gone.problem_texts() == ["no live agent polls it"] and gone.label == "Not ready"
    # live but silent for five minutes (its loop is stuck): unhealthy, saying since when
    assert judged({"a": 300}, [agent("a", "q")]).problem_texts() == ["last polled 5 min ago"]
    # live, silent because it is at its own limit: healthy, and busy
    busy = judged({"a": 300}, [agent("a", "q", at_limit=3)])
    assert busy.is_healthy and busy.waits_for_agents and busy.agents == 1
    assert [(a.id, a.limit) for a in busy.agents_at_limit] == [("a", 3)]
    # full for longer than the agents window (its poll no longer listed): still serving
    assert judged({}, [agent("a", "q", at_limit=1)], last=7200).is_healthy
    assert not judged({}, [agent("a", "other", at_limit=1)], last=7200).is_healthy
    # one full, another with room polling: nothing waits for the full one
    both = judged({"a": 300, "b": 2}, [agent("a", "q", at_limit=1), agent("b", "q")])
    assert both.is_healthy and not both.waits_for_agents and both.agents == 2
    # late runs and pause
    assert judged({"a": 5}, [agent("a", "q")], late=2).problem_texts() == ["2 late runs"]
    paused = judged({}, [], paused=True)
    assert (paused.status, paused.label, paused.is_healthy) == ("paused", "Paused", False)


def backdate_poll(broker: Broker, queue: str, agent_id: str, seconds: float) -> None:
    """As if the agent's last poll of the queue were ``seconds`` ago (the test does not wait)."""
    then = broker.server_time() - timedelta(seconds=seconds)
    broker.client.zadd(broker.keys.queue(queue).agents, {agent_id: int(then.timestamp() * 1000)})


def every_view(broker: Broker, runq: Invoke, queue: str, run_id: str) -> dict[str, Any]:
    """What each consumer says about the queue, and why the run waits."""
    listed = json.loads(runq("work-queue", "ls", "-o", "json").stdout)
    (row,) = [item for item in listed if item["name"] == queue]
    inspected = json.loads(runq("work-queue", "inspect", queue, "-o", "json").stdout)
    ui_row = views.queue_page(broker, queue)["queue"]
    (api_row,) = [item for item in views.queues(broker, None) if item["name"] == queue]
    statuses = {row["status"], inspected["status"], ui_row["status"], api_row["status"]}
    assert len(statuses) == 1, statuses
    assert {ui_row["ui_status"], api_row["ui_status"]} == {
        {"healthy": "Ready", "unhealthy": "Not ready", "paused": "Paused"}[row["status"]]
    }
    (gauges,) = [g for g in read_queue_gauges(broker) if g.name == queue]
    assert gauges.is_healthy is row["is_healthy"] is inspected["is_healthy"]
    run = broker.read_flow_run(run_id)
    kinds = {reason.kind: reason.text for reason in reasons(broker, run, broker.server_time())}
    assert gauges.agents == row["agents_serving"] == ui_row["agents_serving"]
    return {
        "status": row["status"],
        "problems": row["problems"],
        "kinds": kinds,
        "at_limit": inspected["agents_at_limit"],
        "agents_serving": row["agents_serving"],
        "gauges": gauges,
    }


def test_an_agent_at_its_own_limit_is_busy_not_missing(broker: Broker, runq: Invoke) -> None:
    broker.create_work_queue("q")
    broker.register_agent("agent-1", name="worker", work_queues=["q"])
    broker.create_flow_run("q", name="first")
    assert len(broker.claim("q", "agent-1", max_runs=1)) == 1  # its --limit 1 is reached
    waiting = broker.create_flow_run("q", name="second")
    broker.set_agent_at_limit("agent-1", 1)
    backdate_poll(broker, "q", "agent-1", 300)  # full for five minutes: no poll since
    seen = every_view(broker, runq, "q", str(waiting.id))
    assert seen["status"] == "healthy" and seen["problems"] == []
    assert seen["at_limit"] == [{"id": "agent-1", "name": "worker", "limit": 1}]
    assert seen["agents_serving"] == 1
    assert seen["gauges"].agents == 1 and seen["gauges"].agents_at_limit == 1
    assert set(seen["kinds"]) == {"agents_at_limit"}
    assert (
        "Agent worker serving work queue 'q' is at its own --limit (worker: 1 runs)"
        in seen["kinds"]["agents_at_limit"]
    )
    out = runq("work-queue", "inspect", "q").stdout
    assert "status='healthy (agent worker at its limit (1))'" in out
    assert "online, at its limit (1)" in runq("agent", "ls").stdout
    # a slot of its own frees: it says so, and a silent agent with room is a problem again
    broker.set_agent_at_limit("agent-1", None)
    seen = every_view(broker, runq, "q", str(waiting.id))
    assert seen["status"] == "unhealthy" and seen["problems"] == ["last polled 5 min ago"]
    assert set(seen["kinds"]) == {"agents_silent"}


def test_just_after_its_agent_stops_every_view_says_not_ready(broker: Broker, runq: Invoke) -> None:
    broker.create_work_queue("q")
    broker.register_agent("agent-1", name="worker", work_queues=["q"])
    broker.claim("q", "agent-1")  # a poll a moment ago
    run = broker.create_flow_run("q", start_in_seconds=3600)
    assert (
        json.loads(runq("work-queue", "inspect", "q", "-o", "json").stdout)["status"] == "healthy"
    )
    broker.deregister_agent("agent-1")  # it stopped: its poll of a moment ago lingers
    seen = every_view(broker, runq, "q", str(run.id))
    assert seen["status"] == "unhealthy" and seen["problems"] == ["no live agent polls it"]
    assert "no_agent" in seen["kinds"] and seen["gauges"].agents == 0
    listed = runq("work-queue", "ls").stdout
    assert "unhealthy" in listed


def test_the_registry_keeps_the_limit_mark_with_the_record(broker: Broker) -> None:
    broker.register_agent("agent-1", name="worker", work_queues=["q"])
    broker.set_agent_at_limit("agent-1", 4)
    ttl = broker.client.ttl(broker.keys.agent("agent-1"))
    (found,) = broker.live_agents()
    assert found.at_limit == 4 and ttl > 0  # the record keeps its expiry
    broker.set_agent_at_limit("gone", 1)  # an agent without a record: nothing written
    assert broker.client.exists(broker.keys.agent("gone")) == 0
    broker.deregister_agent("agent-1")
    assert broker.live_agents() == []


def test_the_queue_page_names_the_full_agent(broker: Broker) -> None:
    from runq.ui.render import environment  # the page's own template, escaped

    broker.create_work_queue("q")
    broker.register_agent("agent-1", name="<b>w</b>", work_queues=["q"])
    broker.claim("q", "agent-1")
    broker.set_agent_at_limit("agent-1", 2)
    page = views.queue_page(broker, "q")
    assert page["queue"]["ui_status"] == "Ready"
    html = environment.get_template("_queue_detail.html").render(**page, read_only=True)
    assert "(agent &lt;b&gt;w&lt;/b&gt; at its own limit of 2)" in html
