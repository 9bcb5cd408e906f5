"""The Prefect 2 half of ``bench/versus_prefect.py``, run by the Python of Prefect's venv.

It imports only Prefect (never runq) and talks to the Prefect server named by
PREFECT_API_URL. ``bench/versus_prefect.py`` starts the server and the agents, then runs
one subcommand of this script per measurement; each prints progress on stderr and, as its
last stdout line, one JSON object. Nothing here is part of runq or of its tests.

Subcommands:
- ``setup DIR QUEUE[:LIMIT] ...``: write a no-op flow in DIR, create each work queue (in
  the default agent pool) and a deployment ``noop-QUEUE`` of the flow on it with the
  process infrastructure; prints the deployment ids by queue.
- ``latency DEPLOYMENT_ID --samples N --jitter S``: ad-hoc runs created one by one (after
  a random pause of up to S seconds, so creations fall at random phases of the agent's
  poll), each waited for until it ends; prints created-to-Pending and created-to-Running
  of each, read from the run's own state timestamps.
- ``batch DEPLOYMENT_ID --runs N``: creates N runs one by one, waits for all of them to
  end (counting only those N); prints the seconds from before the first create to all ended.
- ``claims QUEUE DEPLOYMENT_ID --runs N``: creates N runs one by one (no agent on the
  queue; runs created per second), then claims them the way the agent does, one
  ``get_runs_in_work_queue`` call (limit 1) plus the proposal of Pending per run (claims
  per second).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from uuid import UUID

import pendulum
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.deployments import Deployment
from prefect.infrastructure import Process
from prefect.states import Pending

warnings.filterwarnings(
    "ignore"
)  # Prefect 2.20 warns that agents and Process blocks are deprecated
FLOW_SOURCE = "from prefect import flow\n\n\n@flow\ndef noop():\n    return None\n"
TERMINAL = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


def progress(message: str) -> None:
    print(f"  [prefect] {message}", file=sys.stderr, flush=True)


async def setup(directory: Path, queues: list[str]) -> dict[str, str]:
    """Work queues and one process deployment of the no-op flow per queue."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "noop_flow.py").write_text(FLOW_SOURCE)
    os.chdir(directory)  # a deployment without storage runs the flow from this path
    sys.path.insert(0, str(directory))
    flow = importlib.import_module("noop_flow").noop  # a real module: the deployment names its file
    ids: dict[str, str] = {}
    async with get_client() as client:
        for spec in queues:
            name, _, limit = spec.partition(":")
            await client.create_work_queue(
                name=name, concurrency_limit=int(limit) if limit else None
            )
            deployment = await Deployment.build_from_flow(
                flow=flow,
                name=f"noop-{name}",
                work_queue_name=name,
                infrastructure=Process(stream_output=False),
                skip_upload=True,
            )
            ids[name] = str(await deployment.apply())
    return ids


async def wait_ended(client: PrefectClient, run_id: UUID, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.type.value in TERMINAL:
            return run.state.type.value
        await asyncio.sleep(0.05)
    raise RuntimeError(f"flow run {run_id} did not end within {timeout:.0f} s")


async def latency(
    deployment_id: UUID, samples: int, jitter: float, timeout: float
) -> dict[str, Any]:
    """Created-to-Pending and created-to-Running (ms) of ``samples`` runs, one at a time."""
    pending: list[float] = []
    running: list[float] = []
    async with get_client() as client:
        for i in range(samples):
            await asyncio.sleep(random.uniform(0, jitter))
            run = await client.create_flow_run_from_deployment(deployment_id)
            final = await wait_ended(client, run.id, timeout)
            if final != "COMPLETED":
                raise RuntimeError(f"flow run {run.id} ended {final}")
            states = await client.read_flow_run_states(run.id)
            stamped = {
                state.type.value: state.timestamp for state in reversed(states)
            }  # first of each type
            pending.append((stamped["PENDING"] - run.created).total_seconds() * 1000)
            running.append((stamped["RUNNING"] - run.created).total_seconds() * 1000)
            progress(
                f"run {i + 1}/{samples}: Pending {pending[-1]:.0f} ms, Running {running[-1]:.0f} ms"
            )
    return {"pending_ms": pending, "running_ms": running}


async def count_runs(client: PrefectClient, ids: list[str], states: list[str]) -> int:
    """How many of the runs ``ids`` are in one of ``states`` (one count query)."""
    body = {"flow_runs": {"id": {"any_": ids}, "state": {"type": {"any_": states}}}}
    response = await client._client.post("/flow_runs/count", json=body)
    response.raise_for_status()
    return int(response.json())


async def batch(deployment_id: UUID, runs: int, timeout: float) -> dict[str, Any]:
    """Seconds from the first of ``runs`` creates (one by one) to all of them ended."""
    async with get_client() as client:
        started = time.perf_counter()
        ids = [
            str((await client.create_flow_run_from_deployment(deployment_id)).id)
            for _ in range(runs)
        ]
        progress(f"{runs} runs created in {time.perf_counter() - started:.1f} s")
        deadline = time.monotonic() + timeout
        reported = 0.0
        while (ended := await count_runs(client, ids, TERMINAL)) < runs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ended} of {runs} runs ended within {timeout:.0f} s")
            if time.monotonic() - reported > 10:
                progress(f"{ended}/{runs} ended after {time.perf_counter() - started:.0f} s")
                reported = time.monotonic()
            await asyncio.sleep(0.1)
        seconds = time.perf_counter() - started
        completed = await count_runs(client, ids, ["COMPLETED"])
    if completed != runs:
        raise RuntimeError(f"only {completed} of {runs} runs completed")
    return {"seconds": seconds}


async def claims(queue: str, deployment_id: UUID, runs: int) -> dict[str, Any]:
    """Runs created per second, then claimed per second, through Prefect's client."""
    async with get_client() as client:
        work_queue = await client.read_work_queue_by_name(queue)
        started = time.perf_counter()
        for _ in range(runs):
            await client.create_flow_run_from_deployment(deployment_id)
        creates_per_s = runs / (time.perf_counter() - started)
        progress(f"{runs} runs created one by one: {creates_per_s:.1f}/s")
        claimed = 0
        started = time.perf_counter()
        while True:
            found = await client.get_runs_in_work_queue(
                work_queue.id, limit=1, scheduled_before=pendulum.now("utc")
            )
            if not found:
                break
            result = await client.set_flow_run_state(found[0].id, Pending())
            if result.state is None or result.state.type.value != "PENDING":
                raise RuntimeError(f"the claim of {found[0].id} was refused: {result.status}")
            claimed += 1
        claims_per_s = claimed / (time.perf_counter() - started)
    if claimed != runs:
        raise RuntimeError(f"claimed {claimed} of {runs} runs")
    progress(f"{claimed} runs claimed (get_runs + Pending): {claims_per_s:.1f}/s")
    return {"creates_per_s": creates_per_s, "claims_per_s": claims_per_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("setup")
    one.add_argument("directory", type=Path)
    one.add_argument("queues", nargs="+")
    one = commands.add_parser("latency")
    one.add_argument("deployment_id", type=UUID)
    one.add_argument("--samples", type=int, required=True)
    one.add_argument("--jitter", type=float, required=True)
    one.add_argument("--timeout", type=float, default=120)
    one = commands.add_parser("batch")
    one.add_argument("deployment_id", type=UUID)
    one.add_argument("--runs", type=int, required=True)
    one.add_argument("--timeout", type=float, default=1800)
    one = commands.add_parser("claims")
    one.add_argument("queue")
    one.add_argument("deployment_id", type=UUID)
    one.add_argument("--runs", type=int, required=True)
    args = parser.parse_args()
    if args.command == "setup":
        result: Any = setup(args.directory, args.queues)
    elif args.command == "latency":
        result = latency(args.deployment_id, args.samples, args.jitter, args.timeout)
    elif args.command == "batch":
        result = batch(args.deployment_id, args.runs, args.timeout)
    else:
        result = claims(args.queue, args.deployment_id, args.runs)
    print(json.dumps(asyncio.run(result)))


if __name__ == "__main__":
    main()
