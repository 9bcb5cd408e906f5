"""`make demo`: the broker's whole claim loop on the embedded default, no Redis to set up.

It creates a work queue with a concurrency limit, a deployment of ``examples/flows.py``,
and eight runs; then a stand-in agent claims from the queue as fast as the limit lets
it, marks each run RUNNING and COMPLETED, and the final table shows every run with the
agent that claimed it. (The real agent, which starts each run as a process, comes with
the agent issue; this demo drives the same claim / set_state API it will use.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker import Broker, StateType, WorkQueueNotFound  # noqa: E402
from examples.flows import hello  # noqa: E402

QUEUE = "demo"
console = Console()


def reset(broker: Broker) -> None:
    """Start from an empty ``demo`` queue so the demo can run again and again."""
    try:
        broker.delete_work_queue(QUEUE, force=True)
    except WorkQueueNotFound:
        pass
    try:
        broker.delete_deployment("hello-demo")
    except Exception:
        pass


def main() -> None:
    broker = Broker.from_env()
    console.print(f"[bold]runq demo[/bold] on {broker.url}")
    reset(broker)
    queue = broker.create_work_queue(QUEUE, concurrency_limit=2, description="runq demo")
    console.print(f"Created work queue {queue.name!r} (limit {queue.concurrency_limit}).")
    deployment = broker.create_deployment(
        name="hello-demo",
        entrypoint="examples/flows.py:hello",
        parameters={"name": "runq"},
        work_queue_name=QUEUE,
    )
    runs = [
        broker.create_flow_run(deployment=deployment.name, parameters={"times": i % 3 + 1})
        for i in range(8)
    ]
    console.print(f"Created {len(runs)} runs of deployment {deployment.name!r}.")

    agent_id = "demo-agent"
    broker.register_agent(agent_id, name="demo", work_queues=[QUEUE], hostname="localhost")
    rounds = 0
    while broker.read_work_queue(QUEUE).scheduled_runs:
        claimed = broker.claim(QUEUE, agent_id, max_runs=8)
        rounds += 1
        assert len(claimed) <= 2, "the concurrency limit holds"
        for run in claimed:
            broker.set_state(run.id, StateType.RUNNING, token=run.claim_token)
            result = hello(**run.parameters)
            broker.set_state(run.id, StateType.COMPLETED, token=run.claim_token, result=result)
    broker.deregister_agent(agent_id)
    console.print(f"The agent claimed in {rounds} rounds (limit 2 per round).")

    table = Table(title=f"Flow runs on work queue {QUEUE!r}")
    for column in ("Run ID", "Name", "State", "times"):
        table.add_column(column, no_wrap=True)
    for run in sorted(broker.list_flow_runs(QUEUE), key=lambda r: r.created):
        table.add_row(str(run.id), run.name, run.state.name, str(run.parameters["times"]))
    console.print(table)
    broker.close()


if __name__ == "__main__":
    main()
