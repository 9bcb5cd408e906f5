"""Why a flow run is not running, in plain words, from the facts the claim itself reads.

The claim script (``broker/scripts/claim.lua``) returns nothing for a paused queue,
takes at most ``limit - active`` runs, and moves a run into the ready stream only once
it is due (minus the agent's prefetch); and nothing is claimed unless an agent polls,
which an agent at its own ``--limit`` does not until one of its runs ends; a claimed run
whose concurrency limit is full waits in that limit's line. Each of
those facts becomes one sentence here, judged by Redis' clock, so the page says "queue
at its limit 3/3, held by ..." rather than a bare "Scheduled". Whether an agent will
take the run is the queue's health as every view judges it (``broker/readiness.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from runq.broker import Broker, FlowRun, NotFound, StateType, WorkQueue
from runq.broker.readiness import span
from runq.display.runs import limit_line, run_names
from runq.display.text import quoted

Kind = Literal[
    "awaiting_limit",
    "paused",
    "at_limit",
    "no_agent",
    "agents_silent",
    "agents_at_limit",
    "due_later",
    "late",
    "awaiting_retry",
    "queue_missing",
    "claimed",
    "cancelling",
    "due_now",
]
#: Runs named as holding the slots of a full queue (the rest are counted).
HOLDERS_SHOWN = 10


class Reason(BaseModel):
    """One reason a run waits: a stable ``kind`` for scripts, ``text`` for people."""

    kind: Kind
    text: str


def clock(moment: datetime) -> str:
    """A UTC time of day (the date too when it is not today's)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%H:%M} UTC"


def reasons(broker: Broker, run: FlowRun, now: datetime) -> list[Reason]:
    """Every reason ``run`` is not running now; empty for a running or finished run."""
    if run.state.type is StateType.PENDING:
        return [
            Reason(
                kind="claimed",
                text=(
                    f"Claimed by agent {run.agent_id or '?'}: waiting for its infrastructure to start the run."
                ),
            )
        ]
    if run.state.type is StateType.CANCELLING:
        return [
            Reason(
                kind="cancelling",
                text=(f"Cancelling: agent {run.agent_id or '?'} is stopping its infrastructure."),
            )
        ]
    if run.state.type is not StateType.SCHEDULED:
        return []
    # a run in a concurrency limit's line is out of its queue's due runs: not late
    found = limit_reasons(broker, run) if run.awaiting_limit else timing(broker, run, now)
    try:
        queue = broker.read_work_queue(run.work_queue_name)
    except NotFound:
        return [
            *found,
            Reason(
                kind="queue_missing",
                text=(
                    f"Its work queue {run.work_queue_name!r} no longer exists: no agent can claim it."
                ),
            ),
        ]
    found += queue_reasons(broker, queue, now)
    if not found:
        found.append(Reason(kind="due_now", text="Due now: the next agent poll claims it."))
    return found


def limit_reasons(broker: Broker, run: FlowRun) -> list[Reason]:
    """A run parked in a concurrency limit's line (``broker/limit_slots.py``): the limit,
    the runs holding its slots and the run's place in line."""
    line = limit_line(broker, run)
    if line is None:
        return []
    text = line.text()
    if line.holders:
        shown = line.holders[:HOLDERS_SHOWN]
        names = run_names(broker, shown)
        named = ", ".join(names[run_id] or run_id for run_id in shown)
        if (more := line.held - len(shown)) > 0:
            named += f" and {more} more"
        text += f" The slots are held by {named}."
    return [Reason(kind="awaiting_limit", text=text)]


def timing(broker: Broker, run: FlowRun, now: datetime) -> list[Reason]:
    """Due later, awaiting a retry, or late: the run's own due time against Redis' clock."""
    due = run.expected_start_time
    ahead = (due - now).total_seconds()
    if ahead > 0 and run.state.name == "AwaitingRetry":
        return [
            Reason(
                kind="awaiting_retry",
                text=(f"Awaiting retry until {clock(due)} (in {span(ahead)})."),
            )
        ]
    if ahead > 0:
        return [Reason(kind="due_later", text=f"Due in {span(ahead)} (at {clock(due)}).")]
    if -ahead > broker.settings.late_after_seconds:
        return [Reason(kind="late", text=f"Late by {span(-ahead)} (was due at {clock(due)}).")]
    return []


def queue_reasons(broker: Broker, queue: WorkQueue, now: datetime) -> list[Reason]:
    """What the claim checks on the queue: paused, the limit, and whether anyone polls."""
    found: list[Reason] = []
    if queue.is_paused:
        found.append(
            Reason(
                kind="paused",
                text=(f"Work queue {queue.name!r} is paused: it delivers nothing until resumed."),
            )
        )
    limit = queue.concurrency_limit
    if limit is not None and queue.active_runs >= limit:
        found.append(Reason(kind="at_limit", text=limit_text(broker, queue, limit)))
    found += agent_reasons(broker, queue, now)
    return found


def limit_text(broker: Broker, queue: WorkQueue, limit: int) -> str:
    """``Work queue 'q' is at its limit 3/3; the slots are held by a (Running), ...``."""
    if limit == 0:
        return f"Work queue {queue.name!r} has a concurrency limit of 0: it holds every run."
    holders = broker.in_flight_runs(queue.name)
    named = ", ".join(f"{run.name} ({run.state.name})" for run in holders[:HOLDERS_SHOWN])
    more = len(holders) - HOLDERS_SHOWN
    if more > 0:
        named += f" and {more} more"
    return (
        f"Work queue {queue.name!r} is at its limit {queue.active_runs}/{limit}; "
        f"the slots are held by {named or 'runs ending now'}."
    )


def agent_reasons(broker: Broker, queue: WorkQueue, now: datetime) -> list[Reason]:
    """Whether an agent will take it: the queue's health as every view judges it
    (``broker/readiness.py``): no live agent, live ones silent, or all at their own limit."""
    health = broker.work_queue_health([queue])[0]
    kinds = {problem.kind: problem.text for problem in health.problems}
    start = f"`runq agent start -q {quoted(queue.name)}`"
    if "no_agent" in kinds:
        last = queue.last_polled
        when = (
            "never polled"
            if last is None
            else f"last polled {span((now - last).total_seconds())} ago"
        )
        return [
            Reason(
                kind="no_agent",
                text=(
                    f"No live agent polls work queue {queue.name!r} ({when}): start one with {start}."
                ),
            )
        ]
    if "agents_silent" in kinds:
        return [
            Reason(
                kind="agents_silent",
                text=(
                    f"The live agents of work queue {queue.name!r} have not polled it for a while "
                    f"({kinds['agents_silent']}): look at their logs, or start another with {start}."
                ),
            )
        ]
    if health.waits_for_agents:
        full = health.agents_at_limit
        who = f"Agent {full[0].name}" if len(full) == 1 else "Every agent"
        named = ", ".join(f"{agent.name}: {agent.limit} runs" for agent in full)
        return [
            Reason(
                kind="agents_at_limit",
                text=(
                    f"{who} serving work queue {queue.name!r} is at its own --limit ({named}): the "
                    f"run starts when one of {'its' if len(full) == 1 else 'their'} runs ends, or "
                    f"start another agent with {start}."
                ),
            )
        ]
    return []
